/* header.h — a name/value pair with lengths: HTTP headers (requests, responses, upstream
 * fetches), query parameters and plan fields. The strings belong to whoever built the
 * pair (an arena, a static table, a parser's buffer); the pair owns nothing. */
#ifndef HG_BASE_HEADER_H
#define HG_BASE_HEADER_H

#include <stddef.h>

typedef struct hg_header_s {
  const char *name; /* as received (responses: as set) */
  size_t name_len;
  const char *value;
  size_t value_len;
} hg_header_t;

#endif
