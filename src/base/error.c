/* error.c — messages for HG_E* codes; libuv/errno codes are described by strerror. */
#include "base/error.h"

#include <string.h>

const char *hg_strerror(int err) {
  switch (err) {
  case 0: return "ok";
#define X(name, code, msg) case code: return msg;
  HG_ERRNO_MAP(X)
#undef X
  default: break;
  }
  if (err < 0 && err > -4096) {
    /* Negated errno (what libuv's UV_E* are on Unix). strerror is not thread-safe in
     * theory, but glibc returns static strings for known codes. */
    return strerror(-err);
  }
  return "unknown error";
}
