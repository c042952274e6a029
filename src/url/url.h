/* url.h — RFC 3986 URLs: parse, resolve (§5.2), percent-encoding, queries, paths.
 *
 * Pure functions over buffers: no I/O, no global state; any thread. Results are
 * appended to a caller-owned hg_buf_t so hot paths (the playlist rewriter) reuse one
 * buffer and never allocate per URI once it has grown.
 */
#ifndef HG_URL_URL_H
#define HG_URL_URL_H

#include <stddef.h>

#include "core/buf.h"

/* A parsed URI reference. Each component is a span into the parsed string; `has_*`
 * distinguishes an empty component from an absent one (e.g. "http://h/p?" has an empty
 * query). Spans are only valid while the source string lives. */
typedef struct hg_url_s {
  const char *scheme;   size_t scheme_len;   int has_scheme;
  const char *userinfo; size_t userinfo_len; int has_userinfo;
  const char *host;     size_t host_len;     int has_authority; /* host without [] for IPv6 */
  const char *port;     size_t port_len;     int has_port;
  const char *path;     size_t path_len;
  const char *query;    size_t query_len;    int has_query;     /* without '?' */
  const char *fragment; size_t fragment_len; int has_fragment;  /* without '#' */
} hg_url_t;

/* Parses s[0..n) as a URI reference (RFC 3986 §4.1). Returns 0, or HG_EPARSE for
 * bytes that cannot appear in a URI reference (controls, spaces, bad % escapes, a bad
 * port or IP literal). `out` points into s. */
int hg_url_parse(const char *s, size_t n, hg_url_t *out);

/* Resolves reference `ref` against absolute URI `base` (RFC 3986 §5.2, strict) and
 * appends the target to `out`. Returns 0, HG_EPARSE if either fails to parse or the base
 * has no scheme, or HG_ENOMEM. On failure `out` is unchanged. */
int hg_url_resolve(hg_buf_t *out, const char *base, size_t base_len,
                   const char *ref, size_t ref_len);

#endif
