/* url_codec.c — percent-encoding/decoding and query strings (see url.h).
 *
 * Each function reserves its worst case once and writes straight into the buffer, so
 * encoding a value is one pass with no per-byte bounds checks. On failure the buffer's
 * length is restored (and its NUL put back), as buf.h promises.
 */
#include <stdint.h>
#include <string.h>

#include "base/error.h"
#include "url/url.h"
#include "url/url_chars.h"

static const char HEX[] = "0123456789ABCDEF";

/* Undoes a partial append: back to `len`, NUL-terminated again. */
static int fail(hg_buf_t *out, size_t len, int rc) {
  out->len = len;
  if (out->data) out->data[len] = '\0';
  return rc;
}

static int is_hex(unsigned char c) { return (hg__url_cls[c] & HG__C_HEX) != 0; }

/* Reserves room for n bytes expanding to at most 3n (plus `extra`). */
static int reserve3(hg_buf_t *out, size_t n, size_t extra) {
  if (n > (SIZE_MAX - extra) / 3 - 1) return HG_ETOOBIG;
  return hg_buf_reserve(out, 3 * n + extra);
}

/* Encodes into o (room already reserved); returns bytes written. Runs of unreserved bytes
 * (a whole JWT, most path segments) are copied at once. */
static size_t encode_to(char *o, const char *s, size_t n, unsigned flags) {
  size_t w = 0;
  for (size_t i = 0; i < n; i++) {
    size_t j = i;
    while (j < n && (hg__url_cls[(unsigned char)s[j]] & HG__C_UNRES)) j++;
    memcpy(o + w, s + i, j - i);
    w += j - i;
    if ((i = j) == n) break;
    unsigned char c = (unsigned char)s[i];
    if (c == '/' && (flags & HG_URL_ENC_KEEP_SLASH)) {
      o[w++] = (char)c;
    } else if (c == ' ' && (flags & HG_URL_ENC_SPACE_PLUS)) {
      o[w++] = '+';
    } else {
      o[w++] = '%';
      o[w++] = HEX[c >> 4];
      o[w++] = HEX[c & 15];
    }
  }
  return w;
}

int hg_url_encode(hg_buf_t *out, const char *s, size_t n, unsigned flags) {
  int rc = reserve3(out, n, 0);
  if (rc) return rc;
  out->len += encode_to(out->data + out->len, s, n, flags);
  out->data[out->len] = '\0';
  return 0;
}

int hg_url_escape_invalid(hg_buf_t *out, const char *s, size_t n) {
  const unsigned ok = HG__C_UNRES | HG__C_SUB | HG__C_COLAT | HG__C_SLASH | HG__C_QMARK | HG__C_GEN;
  int rc = reserve3(out, n, 0);
  if (rc) return rc;
  char *o = out->data + out->len;
  size_t w = 0;
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if ((hg__url_cls[c] & ok) ||
        (c == '%' && n - i >= 3 && is_hex((unsigned char)s[i + 1]) && is_hex((unsigned char)s[i + 2]))) {
      o[w++] = (char)c; /* a valid escape's hex digits are copied by the next rounds */
    } else {
      o[w++] = '%';
      o[w++] = HEX[c >> 4];
      o[w++] = HEX[c & 15];
    }
  }
  out->len += w;
  out->data[out->len] = '\0';
  return 0;
}

int hg_url_decode(hg_buf_t *out, const char *s, size_t n, unsigned flags) {
  size_t start = out->len;
  int rc = hg_buf_reserve(out, n);
  if (rc) return rc;
  char *o = out->data + start;
  size_t w = 0;
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c == '%' && (n - i < 3 || !is_hex((unsigned char)s[i + 1]) || !is_hex((unsigned char)s[i + 2]))) {
      if (!(flags & HG_URL_DEC_LENIENT)) return fail(out, start, HG_EPARSE);
    } else if (c == '%') {
      c = (unsigned char)(hg__url_hexval((unsigned char)s[i + 1]) << 4 |
                          hg__url_hexval((unsigned char)s[i + 2]));
      i += 2;
    } else if (c == '+' && (flags & HG_URL_DEC_PLUS)) {
      c = ' ';
    }
    /* Security: a NUL smuggled into a value would truncate it for C consumers. */
    if (c == 0 && (flags & HG_URL_DEC_NO_NUL)) return fail(out, start, HG_EPARSE);
    o[w++] = (char)c;
  }
  out->len += w;
  out->data[out->len] = '\0';
  return 0;
}

/* ---- Queries ---------------------------------------------------------------------- */

void hg_url_query_iter(hg_url_query_iter_t *it, const char *q, size_t n) {
  it->p = q;
  it->end = q + n;
}

int hg_url_query_next(hg_url_query_iter_t *it, hg_url_param_t *param) {
  while (it->p < it->end) {
    const char *s = it->p;
    const char *amp = memchr(s, '&', (size_t)(it->end - s));
    const char *e = amp ? amp : it->end;
    it->p = amp ? amp + 1 : it->end;
    if (e == s) continue; /* "&&" */
    const char *eq = memchr(s, '=', (size_t)(e - s));
    param->name = s;
    if (eq) {
      param->name_len = (size_t)(eq - s);
      param->value = eq + 1;
      param->value_len = (size_t)(e - eq - 1);
      param->has_value = 1;
    } else {
      param->name_len = (size_t)(e - s);
      param->value = e;
      param->value_len = 0;
      param->has_value = 0;
    }
    return 1;
  }
  return 0;
}

/* Does raw (encoded) name raw[0..rn) decode to name[0..nn)? Decodes on the fly, no
 * copy. A malformed escape never matches. Comparing decoded names matters for security:
 * "tok%65n=x" is the parameter `token` to every decoder downstream. */
static int name_eq(const char *raw, size_t rn, const char *name, size_t nn, unsigned flags) {
  size_t j = 0;
  for (size_t i = 0; i < rn; j++) {
    unsigned char c = (unsigned char)raw[i];
    if (c == '%') {
      if (rn - i < 3 || !is_hex((unsigned char)raw[i + 1]) || !is_hex((unsigned char)raw[i + 2]))
        return 0;
      c = (unsigned char)(hg__url_hexval((unsigned char)raw[i + 1]) << 4 |
                          hg__url_hexval((unsigned char)raw[i + 2]));
      i += 3;
    } else {
      if (c == '+' && (flags & HG_URL_DEC_PLUS)) c = ' ';
      i++;
    }
    if (j >= nn || (unsigned char)name[j] != c) return 0;
  }
  return j == nn;
}

int hg_url_query_get(hg_buf_t *out, const char *q, size_t n, const char *name,
                     size_t name_len, unsigned flags) {
  hg_url_query_iter_t it;
  hg_url_param_t p;
  hg_url_query_iter(&it, q, n);
  while (hg_url_query_next(&it, &p))
    if (name_eq(p.name, p.name_len, name, name_len, flags))
      return hg_url_decode(out, p.value, p.value_len, flags);
  return HG_ENOKEY;
}

/* Appends encode(name) ["=" encode(value)] with no separator. */
static int put_pair(hg_buf_t *out, const char *name, size_t nlen, const char *value,
                    size_t vlen) {
  if (nlen > SIZE_MAX / 4 || vlen > SIZE_MAX / 4) return HG_ETOOBIG;
  int rc = reserve3(out, nlen + vlen, 1);
  if (rc) return rc;
  char *o = out->data + out->len;
  size_t w = encode_to(o, name, nlen, 0);
  if (value != NULL) {
    o[w++] = '=';
    w += encode_to(o + w, value, vlen, 0);
  }
  out->len += w;
  out->data[out->len] = '\0';
  return 0;
}

int hg_url_query_add(hg_buf_t *out, const char *name, size_t name_len, const char *value,
                     size_t value_len) {
  size_t start = out->len;
  if (start > 0 && out->data[start - 1] != '?' && out->data[start - 1] != '&') {
    int rc = hg_buf_putc(out, '&');
    if (rc) return rc;
  }
  int rc = put_pair(out, name, name_len, value, value_len);
  return rc ? fail(out, start, rc) : 0;
}

/* The rewriter's "same token" rule (SPEC §5): keep the URL's bytes, set one parameter,
 * never twice. Segments are split on every '&' (empty ones included) and re-joined with
 * one '&' each, so dropping a duplicate removes exactly it and one separator. */
int hg_url_query_set(hg_buf_t *out, const char *url, size_t n, const char *name,
                     const char *value) {
  size_t start = out->len;
  size_t nlen = strlen(name), vlen = strlen(value);
  const char *hash = memchr(url, '#', n);
  size_t fe = hash ? (size_t)(hash - url) : n;
  const char *q = memchr(url, '?', fe);
  size_t qs = q ? (size_t)(q - url) + 1 : fe; /* query start (after '?') */
  int rc = hg_buf_append(out, url, q ? qs : fe);
  if (rc == 0 && q == NULL) rc = hg_buf_putc(out, '?');
  int emitted = 0, last_empty = 0, replaced = 0;
  for (size_t s = qs; rc == 0 && s < fe;) { /* a query "" has no segments */
    const char *amp = memchr(url + s, '&', fe - s);
    size_t e = amp ? (size_t)(amp - url) : fe;
    const char *eq = memchr(url + s, '=', e - s);
    size_t ne = eq ? (size_t)(eq - url) : e;
    int match = e > s && name_eq(url + s, ne - s, name, nlen, HG_URL_DEC_PLUS);
    if (!(match && replaced)) {
      if (emitted++ > 0) rc = hg_buf_putc(out, '&');
      if (rc == 0 && match) {
        rc = put_pair(out, name, nlen, value, vlen);
        replaced = 1;
      } else if (rc == 0) {
        rc = hg_buf_append(out, url + s, e - s);
      }
      last_empty = e == s;
    }
    s = amp ? e + 1 : fe;
    if (amp && s == fe && rc == 0) { /* a trailing '&': one more, empty, segment */
      if (emitted++ > 0) rc = hg_buf_putc(out, '&');
      last_empty = 1;
    }
  }
  if (rc == 0 && !replaced) {
    if (emitted > 0 && !last_empty) rc = hg_buf_putc(out, '&');
    if (rc == 0) rc = put_pair(out, name, nlen, value, vlen);
  }
  if (rc == 0) rc = hg_buf_append(out, url + fe, n - fe);
  return rc ? fail(out, start, rc) : 0;
}
