/* url_key.c — request path → object key under a prefix, and http(s) origins (url.h).
 *
 * Security-critical: the key decides which object of a private bucket (or which file of
 * a local directory) a token holder gets. The rule is "decode exactly once, then refuse
 * anything that is, or could become after another decoding, a path separator or a dot
 * segment", so no layer below (S3, a filesystem, a CDN that decodes again) can be talked
 * into leaving the prefix. Traversal attempts are HG_EESCAPE (400), paths that are clean
 * but not under the prefix HG_EDENIED (403), so the policy can tell them apart.
 */
#include <stdint.h>
#include <string.h>
#include <strings.h>

#include "base/error.h"
#include "url/url.h"
#include "url/url_chars.h"

static int fail(hg_buf_t *out, size_t len, int rc) {
  out->len = len;
  if (out->data) out->data[len] = '\0';
  return rc;
}

/* Strict UTF-8 (RFC 3629): no overlongs (the classic "%c0%ae" dot), no surrogates,
 * nothing above U+10FFFF. S3 keys are UTF-8, so this only refuses junk. */
static int valid_utf8(const unsigned char *s, size_t n) {
  for (size_t i = 0; i < n;) {
    unsigned c = s[i];
    if (c < 0x80) {
      i++;
      continue;
    }
    size_t len;
    unsigned cp, min;
    if ((c & 0xe0) == 0xc0) len = 2, cp = c & 0x1f, min = 0x80;
    else if ((c & 0xf0) == 0xe0) len = 3, cp = c & 0x0f, min = 0x800;
    else if ((c & 0xf8) == 0xf0) len = 4, cp = c & 0x07, min = 0x10000;
    else return 0;
    if (n - i < len) return 0;
    for (size_t k = 1; k < len; k++) {
      if ((s[i + k] & 0xc0) != 0x80) return 0;
      cp = cp << 6 | (s[i + k] & 0x3fu);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return 0;
    i += len;
  }
  return 1;
}

/* "%XX" at d[i..) (already decoded once) naming '.', '/', '\' or NUL: what a second
 * decoder would turn into traversal. */
static int double_encoded_danger(const char *d, size_t n, size_t i) {
  if (d[i] != '%' || n - i < 3) return 0;
  unsigned char a = (unsigned char)d[i + 1], b = (unsigned char)d[i + 2];
  if (!(hg__url_cls[a] & HG__C_HEX) || !(hg__url_cls[b] & HG__C_HEX)) return 0;
  unsigned v = hg__url_hexval(a) << 4 | hg__url_hexval(b);
  return v == '.' || v == '/' || v == '\\' || v == 0;
}

/* Appends the decoded, normalised segments of path[0..n) joined by '/' (no leading or
 * trailing '/'); *nseg counts them. `sep` says whether to put a '/' before the first.
 * On error the caller restores the buffer. */
static int norm_path(hg_buf_t *out, const char *path, size_t n, int sep, size_t *nseg) {
  *nseg = 0;
  int rc = hg_buf_reserve(out, n + 1); /* decoding never grows; +1 for the first '/' */
  if (rc) return rc;
  char *o = out->data;
  size_t w = out->len;
  for (size_t a = 0; a < n;) {
    const char *slash = memchr(path + a, '/', n - a);
    size_t b = slash ? (size_t)(slash - path) : n;
    const char *seg = path + a;
    size_t len = b - a;
    a = b + 1;
    if (len == 0 || (len == 1 && seg[0] == '.')) continue; /* "//" and "/./" */
    if (len == 2 && seg[0] == '.' && seg[1] == '.') return HG_EESCAPE;
    if (*nseg > 0 || sep) o[w++] = '/';
    size_t d0 = w;
    int encoded_dot = 0;
    for (size_t i = 0; i < len; i++) {
      unsigned char c = (unsigned char)seg[i];
      if (c == '%') {
        if (len - i < 3 || !(hg__url_cls[(unsigned char)seg[i + 1]] & HG__C_HEX) ||
            !(hg__url_cls[(unsigned char)seg[i + 2]] & HG__C_HEX))
          return HG_EPARSE;
        c = (unsigned char)(hg__url_hexval((unsigned char)seg[i + 1]) << 4 |
                            hg__url_hexval((unsigned char)seg[i + 2]));
        i += 2;
        /* Security: %2f/%5c would split the key into new segments below us. */
        if (c == '/' || c == '\\' || c == 0) return HG_EESCAPE;
        if (c == '.') encoded_dot = 1;
      } else if (c == '\\' || c == 0) {
        return HG_EESCAPE; /* a separator on some backends; NUL truncates */
      }
      if (c < 0x20 || c == 0x7f) return HG_EPARSE;
      o[w++] = (char)c;
    }
    const char *d = o + d0;
    size_t dl = w - d0;
    /* "%2e", ".%2e", "%2e%2E": dot segments in disguise. */
    if (encoded_dot && (dl == 1 || dl == 2) && d[0] == '.' && d[dl - 1] == '.') return HG_EESCAPE;
    for (size_t i = 0; i < dl; i++)
      if (double_encoded_danger(d, dl, i)) return HG_EESCAPE;
    if (!valid_utf8((const unsigned char *)d, dl)) return HG_EPARSE;
    (*nseg)++;
  }
  out->len = w;
  o[w] = '\0';
  return 0;
}

/* Trims the prefix's outer '/' and checks it is a safe key prefix. The prefix comes from
 * a signed token, but a bad one must fail closed rather than widen the scope. */
static int trim_prefix(const char **p, size_t *n) {
  const char *s = *p;
  size_t len = *n;
  while (len > 0 && s[0] == '/') s++, len--;
  while (len > 0 && s[len - 1] == '/') len--;
  for (size_t a = 0; a < len;) {
    const char *slash = memchr(s + a, '/', len - a);
    size_t b = slash ? (size_t)(slash - s) : len;
    size_t sl = b - a;
    if (sl == 0 || (sl == 1 && s[a] == '.') || (sl == 2 && s[a] == '.' && s[a + 1] == '.'))
      return HG_EINVAL;
    for (size_t i = a; i < b; i++) {
      unsigned char c = (unsigned char)s[i];
      if (c < 0x20 || c == 0x7f || c == '\\') return HG_EINVAL;
    }
    a = b + 1;
  }
  *p = s;
  *n = len;
  return 0;
}

int hg_url_join_key(hg_buf_t *out, const char *prefix, size_t prefix_len, const char *path,
                    size_t path_len) {
  size_t start = out->len, nseg;
  int rc = trim_prefix(&prefix, &prefix_len);
  if (rc) return rc;
  rc = hg_buf_append(out, prefix, prefix_len);
  if (rc == 0) rc = norm_path(out, path, path_len, prefix_len > 0, &nseg);
  if (rc == 0 && nseg == 0) rc = HG_EDENIED; /* the prefix itself is not an object */
  return rc ? fail(out, start, rc) : 0;
}

int hg_url_key_in_scope(hg_buf_t *out, const char *prefix, size_t prefix_len, const char *path,
                        size_t path_len) {
  size_t start = out->len, nseg;
  int rc = trim_prefix(&prefix, &prefix_len);
  if (rc) return rc;
  rc = norm_path(out, path, path_len, 0, &nseg); /* traversal first: 400 beats 403 */
  if (rc) return fail(out, start, rc);
  const char *k = out->data + start;
  size_t klen = out->len - start;
  /* Whole segments: "videos/abcd/x" is not under "videos/abc". */
  int under = prefix_len == 0 ? nseg > 0
                              : klen > prefix_len + 1 && k[prefix_len] == '/' &&
                                    memcmp(k, prefix, prefix_len) == 0;
  return under ? 0 : fail(out, start, HG_EDENIED);
}

/* ---- http(s) origins -------------------------------------------------------------- */

int hg_url_origin(const hg_url_t *u, hg_url_origin_t *o) {
  memset(o, 0, sizeof(*o));
  if (!u->has_scheme) return HG_EINVAL;
  if (u->scheme_len == 4 && strncasecmp(u->scheme, "http", 4) == 0) o->https = 0;
  else if (u->scheme_len == 5 && strncasecmp(u->scheme, "https", 5) == 0) o->https = 1;
  else return HG_EINVAL;
  if (!u->has_authority || u->host_len == 0 || u->host_len >= sizeof(o->host)) return HG_EPARSE;
  if (u->host_literal && (u->host[0] == 'v' || u->host[0] == 'V')) return HG_EPARSE;
  for (size_t i = 0; i < u->host_len; i++) {
    unsigned char c = (unsigned char)u->host[i];
    /* Security: refuse "%6cocalhost" so allowlists and SSRF checks see the real name. */
    if (c == '%') return HG_EPARSE;
    o->host[i] = (char)(c >= 'A' && c <= 'Z' ? c | 0x20 : c);
  }
  o->host[u->host_len] = '\0';
  o->host_len = u->host_len;
  o->ipv6 = u->host_literal;
  o->port = o->https ? 443 : 80;
  if (u->has_port && u->port_len > 0) {
    unsigned v = 0;
    for (size_t i = 0; i < u->port_len; i++) { /* hg_url_parse checked it; u may be hand-made */
      if (u->port[i] < '0' || u->port[i] > '9') return HG_EPARSE;
      v = v * 10 + (unsigned)(u->port[i] - '0');
      if (v > 65535) return HG_EPARSE;
    }
    if (v == 0) return HG_EPARSE; /* not a destination */
    o->port = v;
    o->explicit_port = 1;
  }
  return 0;
}
