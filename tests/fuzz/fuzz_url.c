/* fuzz_url.c — libFuzzer target for src/url: parse, resolve, keys, queries, codecs.
 *
 * Input: "base\nref" (no newline: the input is both). Besides crashes and sanitizer
 * reports it checks properties that must hold for every input:
 *   - a parse's spans lie inside the input and recompose to it exactly;
 *   - a resolved target parses, has a scheme, and re-resolving it reaches a fixed point;
 *   - a key from join_key/key_in_scope is under the prefix with no empty, "." or ".."
 *     segment, no '\' and no NUL;
 *   - query_set yields a query where the parameter appears exactly once, with its value;
 *   - decode(encode(x)) == x.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/error.h"
#include "http/freshness.h"
#include "url/url.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_parse(const char *s, size_t n) {
  hg_url_t u;
  if (hg_url_parse(s, n, &u) != 0) return;
  hg_buf_t b = HG_BUF_INIT;
  if (u.has_scheme) hg_buf_append(&b, u.scheme, u.scheme_len), hg_buf_putc(&b, ':');
  if (u.has_authority) hg_buf_puts(&b, "//"), hg_buf_append(&b, u.authority, u.authority_len);
  hg_buf_append(&b, u.path, u.path_len);
  if (u.has_query) hg_buf_putc(&b, '?'), hg_buf_append(&b, u.query, u.query_len);
  if (u.has_fragment) hg_buf_putc(&b, '#'), hg_buf_append(&b, u.fragment, u.fragment_len);
  if (b.len != n || (n && memcmp(b.data, s, n) != 0)) abort();
  if (u.has_authority && (u.host < s || u.host + u.host_len > s + n)) abort();
  hg_url_origin_t o;
  if (hg_url_origin(&u, &o) == 0 && (o.host_len == 0 || o.host[o.host_len] != '\0' || o.port == 0))
    abort();
  hg_buf_free(&b);
}

static void check_resolve(const char *base, size_t bn, const char *ref, size_t rn) {
  hg_buf_t t = HG_BUF_INIT, t2 = HG_BUF_INIT;
  if (hg_url_resolve(&t, base, bn, ref, rn) == 0) {
    hg_url_t u;
    if (hg_url_parse(t.data, t.len, &u) != 0 || !u.has_scheme) abort();
    /* An absolute reference resolves to itself minus dot segments; the target may
     * still hold the base's (an empty ref keeps the base path verbatim, §5.2.2), so
     * resolve twice: the second pass must be a fixed point. */
    if (hg_url_resolve(&t2, base, bn, t.data, t.len) != 0) abort();
    hg_buf_clear(&t);
    if (hg_url_resolve(&t, base, bn, t2.data, t2.len) != 0) abort();
    if (t2.len != t.len || memcmp(t2.data, t.data, t.len) != 0) abort();
  }
  hg_buf_free(&t);
  hg_buf_free(&t2);
}

static void check_key(const char *s, size_t n) {
  static const char prefix[] = "videos/abc";
  hg_buf_t k = HG_BUF_INIT;
  for (int mode = 0; mode < 2; mode++) {
    hg_buf_clear(&k);
    int rc = mode ? hg_url_key_in_scope(&k, prefix, 10, s, n) : hg_url_join_key(&k, prefix, 10, s, n);
    if (rc != 0) {
      if (k.len != 0) abort(); /* unchanged on failure */
      if (rc != HG_EESCAPE && rc != HG_EDENIED && rc != HG_EPARSE) abort();
      continue;
    }
    if (k.len <= 11 || memcmp(k.data, "videos/abc/", 11) != 0) abort();
    if (memchr(k.data, '\\', k.len) || memchr(k.data, 0, k.len)) abort();
    for (size_t a = 0; a <= k.len;) { /* every segment non-empty, not "." or ".." */
      const char *sl = memchr(k.data + a, '/', k.len - a);
      size_t e = sl ? (size_t)(sl - k.data) : k.len;
      size_t len = e - a;
      if (len == 0 || (len == 1 && k.data[a] == '.') || (len == 2 && !memcmp(k.data + a, "..", 2)))
        abort();
      a = e + 1;
    }
  }
  hg_buf_free(&k);
}

static void check_query(const char *s, size_t n) {
  static const char value[] = "T v/&=?#";
  hg_buf_t o = HG_BUF_INIT, v = HG_BUF_INIT, name = HG_BUF_INIT;
  if (hg_url_query_set(&o, s, n, "token", value) != 0) abort();
  const char *hash = memchr(o.data, '#', o.len);
  size_t fe = hash ? (size_t)(hash - o.data) : o.len;
  const char *q = memchr(o.data, '?', fe);
  if (q == NULL) abort();
  size_t qs = (size_t)(q - o.data) + 1;
  if (hg_url_query_get(&v, o.data + qs, fe - qs, "token", 5, HG_URL_DEC_PLUS) != 0) abort();
  if (v.len != sizeof(value) - 1 || memcmp(v.data, value, v.len) != 0) abort();
  hg_url_query_iter_t it;
  hg_url_param_t p;
  int count = 0;
  hg_url_query_iter(&it, o.data + qs, fe - qs);
  while (hg_url_query_next(&it, &p)) {
    hg_buf_clear(&name);
    if (hg_url_decode(&name, p.name, p.name_len, HG_URL_DEC_PLUS) == 0 && name.len == 5 &&
        memcmp(name.data, "token", 5) == 0)
      count++;
  }
  if (count != 1) abort();
  hg_buf_free(&o);
  hg_buf_free(&v);
  hg_buf_free(&name);
}

static void check_codec(const char *s, size_t n) {
  hg_buf_t e = HG_BUF_INIT, d = HG_BUF_INIT;
  for (unsigned f = 0; f < 4; f++) {
    hg_buf_clear(&e);
    hg_buf_clear(&d);
    if (hg_url_encode(&e, s, n, f) != 0) abort();
    if (hg_url_decode(&d, e.data, e.len, (f & HG_URL_ENC_SPACE_PLUS) ? HG_URL_DEC_PLUS : 0) != 0) abort();
    if (d.len != n || (n && memcmp(d.data, s, n) != 0)) abort();
  }
  hg_buf_clear(&e);
  if (hg_url_escape_invalid(&e, s, n) != 0) abort();
  hg_buf_clear(&d);
  (void)hg_url_decode(&d, s, n, HG_URL_DEC_NO_NUL);
  hg_buf_free(&e);
  hg_buf_free(&d);
}

/* An origin's Cache-Control, Expires, Date and Age (one per line): never a negative or
 * unbounded freshness, whatever the spelling. */
static void check_freshness(const char *s, size_t n) {
  char *copy = malloc(n + 1);
  if (copy == NULL) return;
  memcpy(copy, s, n);
  copy[n] = '\0';
  const char *field[4] = {NULL, NULL, NULL, NULL};
  char *p = copy;
  for (int i = 0; i < 4 && p; i++) {
    field[i] = p;
    p = strchr(p, '\n');
    if (p) *p++ = '\0';
  }
  hg_freshness_t f;
  hg_freshness_parse(field[0], field[1], field[2], field[3], 1700000000, &f);
  if (f.limit_ms < 0 || (!f.has_limit && f.limit_ms != 0)) abort();
  free(copy);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *s = (const char *)data;
  check_freshness(s, size);
  const char *nl = memchr(s, '\n', size);
  size_t bn = nl ? (size_t)(nl - s) : size;
  const char *ref = nl ? nl + 1 : s;
  size_t rn = nl ? size - bn - 1 : size;
  check_parse(s, size);
  check_parse(ref, rn);
  check_resolve(s, bn, ref, rn);
  check_key(ref, rn);
  check_query(s, size);
  check_codec(s, size);
  return 0;
}
