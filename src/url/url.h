/* url.h — RFC 3986 URLs: parse, resolve (§5.2), percent-encoding, queries, paths.
 *
 * Pure functions over buffers: no I/O, no global state; any thread. Results are
 * appended to a caller-owned hg_buf_t so hot paths (the playlist rewriter) reuse one
 * buffer and never allocate per URI once it has grown. Every function that appends
 * leaves the buffer unchanged when it fails. No input may point into the output buffer
 * (appending may move it).
 */
#ifndef HG_URL_URL_H
#define HG_URL_URL_H

#include <stddef.h>

#include "base/buf.h"

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
  /* Added after the first version (append-only): */
  const char *authority; size_t authority_len; /* whole authority as written, without "//" */
  int host_literal; /* 1: host was an IP-literal in [] (IPv6 or IPvFuture), 0: reg-name/IPv4 */
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

/* ---- Percent-encoding ------------------------------------------------------------ */

/* What hg_url_encode leaves unescaped. The default (0) keeps only the RFC 3986
 * unreserved set A-Z a-z 0-9 - . _ ~ : right for query names and values (a whole URL
 * in `?url=`), and it is exactly SigV4's UriEncode. Hex digits are uppercase. */
enum {
  HG_URL_ENC_KEEP_SLASH = 1, /* also keep '/': object keys / SigV4 canonical S3 paths */
  HG_URL_ENC_SPACE_PLUS = 2  /* write ' ' as '+' (HTML form encoding) */
};

/* Appends s[0..n) percent-encoded to `out`. Returns 0 or HG_ENOMEM/HG_ETOOBIG. */
int hg_url_encode(hg_buf_t *out, const char *s, size_t n, unsigned flags);

/* Appends s[0..n) with every byte that may not appear in a URI reference (controls,
 * space, non-ASCII, "<>\"{}|\\^`", and a '%' not starting a valid escape) written as
 * %XX; everything else, valid escapes included, is copied. Turns "seg 1.ts" into
 * "seg%201.ts". Returns 0 or HG_ENOMEM/HG_ETOOBIG. */
int hg_url_escape_invalid(hg_buf_t *out, const char *s, size_t n);

enum {
  HG_URL_DEC_PLUS = 1,   /* decode '+' as ' ' (query strings, forms) */
  HG_URL_DEC_NO_NUL = 2, /* reject a NUL byte, encoded (%00) or raw, with HG_EPARSE */
  HG_URL_DEC_LENIENT = 4 /* keep an invalid escape ("%zz", a trailing "%") as written
                            instead of failing, as browsers do (the policy's req.query) */
};

/* Appends s[0..n) percent-decoded to `out`. Strict: a '%' not followed by two hex
 * digits is HG_EPARSE. Returns 0, HG_EPARSE or HG_ENOMEM. */
int hg_url_decode(hg_buf_t *out, const char *s, size_t n, unsigned flags);

/* ---- Queries (the part after '?', without the '?') -------------------------------- */

/* One `name[=value]` pair of a query, as raw (still encoded) spans into the query. */
typedef struct hg_url_param_s {
  const char *name;  size_t name_len;
  const char *value; size_t value_len;
  int has_value; /* 0 for a bare "name" (no '='); value is then empty */
} hg_url_param_t;

/* An iterator over a query string; plain data, no cleanup. */
typedef struct hg_url_query_iter_s {
  const char *p, *end;
} hg_url_query_iter_t;

/* Starts iterating q[0..n) (no leading '?'). */
void hg_url_query_iter(hg_url_query_iter_t *it, const char *q, size_t n);

/* Stores the next pair in *param and returns 1, or returns 0 at the end. Pairs are split
 * on '&' and skipped when empty ("a=1&&b" yields a, b); the value runs from the first '='
 * to the next '&' (later '=' belong to it). Spans point into the query. */
int hg_url_query_next(hg_url_query_iter_t *it, hg_url_param_t *param);

/* Appends the decoded value of the first pair of q[0..n) whose decoded name equals
 * name[0..name_len) (flags as hg_url_decode, e.g. HG_URL_DEC_PLUS). Returns 0,
 * HG_ENOKEY if there is no such pair, HG_EPARSE for a bad escape in the value, or
 * HG_ENOMEM. A bare "name" yields an empty value. */
int hg_url_query_get(hg_buf_t *out, const char *q, size_t n, const char *name,
                     size_t name_len, unsigned flags);

/* Appends one pair to a query being built in `out`: '&' first unless `out` is empty or
 * ends in '?' or '&', then name and value percent-encoded (unreserved kept, space as
 * %20), joined by '='. value == NULL appends the bare name. Returns 0 or HG_ENOMEM. */
int hg_url_query_add(hg_buf_t *out, const char *name, size_t name_len, const char *value,
                     size_t value_len);

/* Appends url[0..n) with query parameter `name` set to `value` (both NUL-terminated,
 * encoded here as by hg_url_query_add). The query starts at the first '?' before the
 * first '#'. An existing pair with the same decoded name is replaced in place and later
 * duplicates are removed, so the parameter is never there twice; otherwise the pair is
 * added after the existing query with '&' (none if it is empty or ends in '&'), or after
 * a new '?'. Every other byte, the fragment included, is kept in order. Returns 0 or
 * HG_ENOMEM. */
int hg_url_query_set(hg_buf_t *out, const char *url, size_t n, const char *name,
                     const char *value);

/* ---- Object keys ------------------------------------------------------------------ */

/* Maps a request path as it came off the wire (percent-encoded, relative to the prefix;
 * leading '/' ignored) to the object key "prefix/path", appended to `out`. The path is
 * decoded once; empty and "." segments are dropped (so "a//./b" is "a/b"). Prefix is a
 * key (not decoded); its leading and trailing '/' are dropped. Returns 0 or:
 *   HG_EESCAPE  a traversal attempt (→ 400): a ".." segment, a "." or ".." segment
 *               written with %2e, an encoded '/' or '\' (%2f, %5c), a raw '\', a NUL
 *               (raw or %00), or a double-encoded one of these (%252e, %252f, %255c,
 *               %2500) that a second decoder would turn into traversal;
 *   HG_EDENIED  nothing is left of the path (it names the prefix itself, not an object
 *               under it: "", "/", "./") (→ 403);
 *   HG_EPARSE   a bad % escape, a control character, or invalid UTF-8 after decoding;
 *   HG_EINVAL   the prefix itself is unsafe: "."/".." or empty inner segments, '\',
 *               controls;
 *   HG_ENOMEM.
 * An empty prefix yields just the normalised path. */
int hg_url_join_key(hg_buf_t *out, const char *prefix, size_t prefix_len, const char *path,
                    size_t path_len);

/* Like hg_url_join_key for a full key path (e.g. "/videos/abc/seg.ts" as requested):
 * normalises and decodes path with the same rules, then checks it lies strictly under
 * `prefix` (whole segments: "videos/abcd" is not under "videos/abc"). Appends the key.
 * Returns 0, HG_EDENIED if it does not (→ 403), or the errors of hg_url_join_key. */
int hg_url_key_in_scope(hg_buf_t *out, const char *prefix, size_t prefix_len,
                        const char *path, size_t path_len);

/* ---- HTTP(S) targets (the open proxy) ---------------------------------------------- */

typedef struct hg_url_origin_s {
  int https;          /* 1 for https, 0 for http */
  int explicit_port;  /* 1 if the URL wrote a port (even the default one) */
  unsigned port;      /* the URL's port, else 80/443 */
  int ipv6;           /* host is an IP literal (was in [], written here without) */
  size_t host_len;
  char host[256];     /* lowercased host, NUL-terminated */
} hg_url_origin_t;

/* Describes where an absolute http(s) URL points. Returns 0; HG_EINVAL if the scheme
 * is not http or https (any case); HG_EPARSE if the host is empty, longer than 255
 * bytes, percent-encoded (refused so allowlists and address checks see the real name),
 * or an IPvFuture literal. */
int hg_url_origin(const hg_url_t *u, hg_url_origin_t *out);

#endif
