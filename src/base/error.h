/* error.h — hlsgate error codes.
 *
 * Functions return 0 on success or a negative code: libuv's UV_E* for I/O (they are
 * negated errno values), or one of the HG_E* codes below for everything else. The
 * HG_E* range starts at -10000 so it never collides with errno/UV codes.
 * Constructors return NULL on failure instead.
 */
#ifndef HG_BASE_ERROR_H
#define HG_BASE_ERROR_H

#define HG_ERRNO_MAP(X)                                                  \
  X(NOMEM,      -10001, "out of memory")                                 \
  X(INVAL,      -10002, "invalid argument")                              \
  X(TOOBIG,     -10003, "value too large")                               \
  X(PARSE,      -10004, "parse error")                                   \
  X(CRYPTO,     -10005, "cryptographic operation failed")                \
  X(BADSIG,     -10006, "signature mismatch")                            \
  X(EXPIRED,    -10007, "token expired")                                 \
  X(NOTYET,     -10008, "token not yet valid")                           \
  X(BADALG,     -10009, "algorithm not allowed")                         \
  X(NOKEY,      -10010, "no such key")                                   \
  X(ESCAPE,     -10011, "path escapes its prefix")                       \
  X(POLICY,     -10012, "policy error")                                  \
  X(BUDGET,     -10013, "policy instruction budget exceeded")            \
  X(UPSTREAM,   -10014, "bad upstream response")                         \
  X(TIMEOUT,    -10015, "timed out")                                     \
  X(DENIED,     -10016, "denied")

enum {
#define X(name, code, msg) HG_E##name = (code),
  HG_ERRNO_MAP(X)
#undef X
};

/* Returns a static, human-readable message for any HG_E* or UV_E* code (0 → "ok").
 * Never returns NULL. Any thread. */
const char *hg_strerror(int err);

#endif
