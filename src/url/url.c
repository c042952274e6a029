/* url.c — RFC 3986 parse and §5.2 reference resolution (see url.h).
 *
 * Hot path: the playlist rewriter resolves every URI of every playlist, so parsing is a
 * single pass over a 256-entry class table, and resolution works on spans of the two
 * parsed strings, writing the target straight into the output buffer (one reserve,
 * dot segments removed in place). Nothing here allocates except that buffer.
 */
#include "url/url.h"

#include <stdint.h>
#include <string.h>

#include "base/error.h"
#include "url/url_chars.h"

/* ---- Parsing ---------------------------------------------------------------------- */

/* Validates s[i..) up to the first byte in `stop` (or n) against the class mask `ok`,
 * also accepting %XX escapes. Returns the end index, or SIZE_MAX for a byte that may not
 * appear there or a malformed escape. */
static size_t scan(const char *s, size_t i, size_t n, unsigned ok, char stop1, char stop2) {
  while (i < n) {
    unsigned char c = (unsigned char)s[i];
    if (c == (unsigned char)stop1 || c == (unsigned char)stop2) break;
    if (hg__url_cls[c] & ok) {
      i++;
    } else if (c == '%' && n - i >= 3 && (hg__url_cls[(unsigned char)s[i + 1]] & HG__C_HEX) &&
               (hg__url_cls[(unsigned char)s[i + 2]] & HG__C_HEX)) {
      i += 3;
    } else {
      return SIZE_MAX;
    }
  }
  return i;
}

/* dec-octet "." dec-octet "." dec-octet "." dec-octet, no leading zeros (§3.2.2). */
static int valid_ipv4(const char *s, size_t n) {
  size_t i = 0;
  for (int part = 0; part < 4; part++) {
    if (part > 0) {
      if (i >= n || s[i] != '.') return 0;
      i++;
    }
    size_t start = i;
    unsigned v = 0;
    while (i < n && s[i] >= '0' && s[i] <= '9' && i - start < 3) v = v * 10 + (unsigned)(s[i++] - '0');
    size_t len = i - start;
    if (len == 0 || v > 255 || (len > 1 && s[start] == '0')) return 0;
  }
  return i == n;
}

/* IPv6address (§3.2.2): eight h16 groups, or fewer with one "::", the last two groups
 * optionally an IPv4 address. Zone identifiers (RFC 6874) are not RFC 3986: refused. */
static int valid_ipv6(const char *s, size_t n) {
  int groups = 0, dbl = 0;
  size_t i = 0;
  if (n >= 2 && s[0] == ':' && s[1] == ':') {
    dbl = 1;
    i = 2;
  } else if (n > 0 && s[0] == ':') {
    return 0;
  }
  while (i < n) {
    size_t j = i;
    while (j < n && (hg__url_cls[(unsigned char)s[j]] & HG__C_HEX)) j++;
    if (j < n && s[j] == '.') { /* IPv4 tail: takes the last two groups */
      if (groups > 6 || !valid_ipv4(s + i, n - i)) return 0;
      groups += 2;
      break;
    }
    if (j == i || j - i > 4 || groups == 8) return 0;
    groups++;
    i = j;
    if (i == n) break;
    if (s[i] != ':') return 0;
    i++;
    if (i < n && s[i] == ':') {
      if (dbl) return 0;
      dbl = 1;
      i++;
    } else if (i == n) {
      return 0; /* a single trailing ':' */
    }
  }
  return dbl ? groups <= 7 : groups == 8;
}

/* IP-literal content (between the brackets): IPv6address or IPvFuture. */
static int valid_ip_literal(const char *s, size_t n) {
  if (n > 0 && (s[0] == 'v' || s[0] == 'V')) { /* "v" 1*HEXDIG "." 1*( unreserved / sub-delims / ":" ) */
    size_t i = 1;
    while (i < n && (hg__url_cls[(unsigned char)s[i]] & HG__C_HEX)) i++;
    if (i == 1 || i >= n || s[i] != '.') return 0;
    i++;
    if (i == n) return 0;
    for (; i < n; i++)
      if (!(hg__url_cls[(unsigned char)s[i]] & (HG__C_UNRES | HG__C_SUB)) && s[i] != ':') return 0;
    return 1;
  }
  return valid_ipv6(s, n);
}

/* authority = [ userinfo "@" ] host [ ":" port ]  (a[0..n), without the "//"). */
static int parse_authority(const char *a, size_t n, hg_url_t *u) {
  u->has_authority = 1;
  u->authority = a;
  u->authority_len = n;
  size_t h = 0;
  const char *at = memchr(a, '@', n);
  if (at != NULL) {
    size_t ui = (size_t)(at - a);
    /* userinfo may hold ':' but not '@', so a second '@' fails the host scan below:
     * "http://a@b@evil" is refused rather than guessed at (URL-confusion SSRF). */
    if (scan(a, 0, ui, HG__C_UNRES | HG__C_SUB | HG__C_COLAT, '@', '@') != ui) return HG_EPARSE;
    u->userinfo = a;
    u->userinfo_len = ui;
    u->has_userinfo = 1;
    h = ui + 1;
  }
  size_t k;
  if (h < n && a[h] == '[') {
    const char *close = memchr(a + h, ']', n - h);
    if (close == NULL) return HG_EPARSE;
    size_t c = (size_t)(close - a);
    if (!valid_ip_literal(a + h + 1, c - h - 1)) return HG_EPARSE;
    u->host = a + h + 1;
    u->host_len = c - h - 1;
    u->host_literal = 1;
    k = c + 1;
  } else {
    k = scan(a, h, n, HG__C_UNRES | HG__C_SUB, ':', ':'); /* reg-name or IPv4address */
    if (k == SIZE_MAX) return HG_EPARSE;
    u->host = a + h;
    u->host_len = k - h;
  }
  if (k < n) {
    if (a[k] != ':') return HG_EPARSE;
    unsigned long v = 0;
    for (size_t i = k + 1; i < n; i++) {
      if (a[i] < '0' || a[i] > '9') return HG_EPARSE;
      v = v * 10 + (unsigned long)(a[i] - '0');
      if (v > 65535) return HG_EPARSE;
    }
    u->port = a + k + 1;
    u->port_len = n - k - 1;
    u->has_port = 1;
  }
  return 0;
}

/* URI-reference = URI / relative-ref (§4.1), in one left-to-right pass:
 * [scheme ":"] ["//" authority] path ["?" query] ["#" fragment]. */
int hg_url_parse(const char *s, size_t n, hg_url_t *u) {
  memset(u, 0, sizeof(*u));
  size_t i = 0;
  if (n > 0 && hg__url_is_alpha((unsigned char)s[0])) {
    size_t j = 1;
    while (j < n && (hg__url_cls[(unsigned char)s[j]] & HG__C_SCHEME)) j++;
    if (j < n && s[j] == ':') {
      u->scheme = s;
      u->scheme_len = j;
      u->has_scheme = 1;
      i = j + 1;
    }
  }
  if (n - i >= 2 && s[i] == '/' && s[i + 1] == '/') {
    size_t a = i + 2, e = a;
    while (e < n && s[e] != '/' && s[e] != '?' && s[e] != '#') e++;
    int rc = parse_authority(s + a, e - a, u);
    if (rc) return rc;
    i = e;
  }
  size_t e = scan(s, i, n, HG__C_UNRES | HG__C_SUB | HG__C_COLAT | HG__C_SLASH, '?', '#');
  if (e == SIZE_MAX) return HG_EPARSE;
  u->path = s + i;
  u->path_len = e - i;
  i = e;
  if (i < n && s[i] == '?') {
    e = scan(s, i + 1, n, HG__C_UNRES | HG__C_SUB | HG__C_COLAT | HG__C_SLASH | HG__C_QMARK, '#', '#');
    if (e == SIZE_MAX) return HG_EPARSE;
    u->query = s + i + 1;
    u->query_len = e - i - 1;
    u->has_query = 1;
    i = e;
  }
  if (i < n) { /* s[i] == '#' */
    e = scan(s, i + 1, n, HG__C_UNRES | HG__C_SUB | HG__C_COLAT | HG__C_SLASH | HG__C_QMARK, '#', '#');
    if (e != n) return HG_EPARSE; /* a bad byte, or a second '#' */
    u->fragment = s + i + 1;
    u->fragment_len = e - i - 1;
    u->has_fragment = 1;
  }
  return 0;
}

/* ---- Resolution (§5.2) ------------------------------------------------------------ */

/* remove_dot_segments (§5.2.4) on p[0..n), in place; returns the new length.
 * The RFC's input buffer is p[r..n) and its output buffer p[0..w). Every step consumes
 * at least as many bytes as it emits, so w <= r always holds and writing the output (or
 * the single '/' that rules B and C put back into the input, at index r >= w) never
 * overwrites input not yet read. */
static size_t remove_dots(char *p, size_t n) {
  size_t r = 0, w = 0;
  while (r < n) {
    const char *in = p + r;
    size_t left = n - r;
    if (left >= 3 && in[0] == '.' && in[1] == '.' && in[2] == '/') {
      r += 3; /* A: "../" */
    } else if (left >= 2 && in[0] == '.' && in[1] == '/') {
      r += 2; /* A: "./" */
    } else if (left >= 3 && in[0] == '/' && in[1] == '.' && in[2] == '/') {
      r += 2; /* B: "/./" -> "/" */
    } else if (left == 2 && in[0] == '/' && in[1] == '.') {
      r += 1; /* B: "/." -> "/" */
      p[r] = '/';
    } else if ((left >= 4 && memcmp(in, "/../", 4) == 0) || (left == 3 && memcmp(in, "/..", 3) == 0)) {
      /* C: "/../" or "/.." -> "/", dropping the last output segment and its '/'. */
      if (left == 3) {
        r += 2;
        p[r] = '/';
      } else {
        r += 3;
      }
      while (w > 0 && p[--w] != '/') {
      }
    } else if ((left == 1 && in[0] == '.') || (left == 2 && in[0] == '.' && in[1] == '.')) {
      r = n; /* D */
    } else {
      /* E: move the first segment (with its leading '/', if any) to the output. */
      size_t k = 1;
      while (k < left && in[k] != '/') k++;
      memmove(p + w, in, k);
      w += k;
      r += k;
    }
  }
  return w;
}

static size_t put(char *o, size_t w, const char *s, size_t n) {
  if (n) memcpy(o + w, s, n);
  return w + n;
}

/* T = resolve(B, R) per §5.2.2 (strict: a reference with a scheme is absolute even when
 * it equals the base's, so "http:g" stays "http:g"), recomposed per §5.3. */
int hg_url_resolve(hg_buf_t *out, const char *base, size_t base_len, const char *ref,
                   size_t ref_len) {
  hg_url_t B, R;
  if (hg_url_parse(base, base_len, &B) != 0 || !B.has_scheme) return HG_EPARSE;
  if (hg_url_parse(ref, ref_len, &R) != 0) return HG_EPARSE;

  /* Every component is copied from a disjoint span of base or ref, plus at most
   * ':' "//" '?' '#' (5), a '/' from merging (1) and a "/." guard (2). */
  if (base_len > SIZE_MAX / 2 - 16 || ref_len > SIZE_MAX / 2 - 16) return HG_ETOOBIG;
  int rc = hg_buf_reserve(out, base_len + ref_len + 8);
  if (rc) return rc;

  const hg_url_t *S = &B, *A = &B, *Q = &R;
  const char *p1 = "", *p2 = R.path;
  size_t p1_len = 0, p2_len = R.path_len;
  int dots = 1;
  if (R.has_scheme) {
    S = A = &R;
  } else if (R.has_authority) {
    A = &R;
  } else if (R.path_len == 0) {
    p2 = B.path;
    p2_len = B.path_len;
    dots = 0; /* the base path is taken as is */
    if (!R.has_query) Q = &B;
  } else if (R.path[0] != '/') {
    /* merge (§5.2.3) */
    if (B.has_authority && B.path_len == 0) {
      p1 = "/";
      p1_len = 1;
    } else {
      p1 = B.path;
      p1_len = B.path_len;
      while (p1_len > 0 && p1[p1_len - 1] != '/') p1_len--;
    }
  }

  char *o = out->data + out->len;
  size_t w = put(o, 0, S->scheme, S->scheme_len);
  o[w++] = ':';
  if (A->has_authority) {
    o[w++] = '/';
    o[w++] = '/';
    w = put(o, w, A->authority, A->authority_len);
  }
  size_t ps = w;
  w = put(o, w, p1, p1_len);
  w = put(o, w, p2, p2_len);
  if (dots) w = ps + remove_dots(o + ps, w - ps);
  if (!A->has_authority && w - ps >= 2 && o[ps] == '/' && o[ps + 1] == '/') {
    /* A path starting with "//" would read back as an authority ("x:/a" + "..//g"
     * → "x://g"); prefix "/." so the target reparses to the same path (as WHATWG). */
    memmove(o + ps + 2, o + ps, w - ps);
    o[ps] = '/';
    o[ps + 1] = '.';
    w += 2;
  }
  if (Q->has_query) {
    o[w++] = '?';
    w = put(o, w, Q->query, Q->query_len);
  }
  if (R.has_fragment) { /* never the base's (§5.2.2: T.fragment = R.fragment) */
    o[w++] = '#';
    w = put(o, w, R.fragment, R.fragment_len);
  }
  out->len += w;
  out->data[out->len] = '\0';
  return 0;
}
