/* Unit tests for percent-encoding/decoding and query strings (url_codec.c). */
#include "hgtest.h"

#include "base/error.h"
#include "url/url.h"

static hg_buf_t out = HG_BUF_INIT;

static const char *enc(const char *s, unsigned flags) {
  hg_buf_clear(&out);
  return hg_url_encode(&out, s, strlen(s), flags) == 0 ? out.data : NULL;
}
static const char *dec(const char *s, unsigned flags) {
  hg_buf_clear(&out);
  return hg_url_decode(&out, s, strlen(s), flags) == 0 ? out.data : NULL;
}
static const char *qset(const char *url, const char *name, const char *value) {
  hg_buf_clear(&out);
  return hg_url_query_set(&out, url, strlen(url), name, value) == 0 ? out.data : NULL;
}

HG_TEST(encode_modes) {
  CHECK_STR(enc("AZaz09-._~", 0), "AZaz09-._~");
  CHECK_STR(enc("https://o.example/a b/x.m3u8?k=v&w=1#f", 0),
            "https%3A%2F%2Fo.example%2Fa%20b%2Fx.m3u8%3Fk%3Dv%26w%3D1%23f");
  /* SigV4 UriEncode (VECTORS.md §1.5 rule 1): '+'→%2B, '$'→%24, '/' kept in paths only. */
  CHECK_STR(enc("a+b$c/d e", 0), "a%2Bb%24c%2Fd%20e");
  CHECK_STR(enc("a+b$c/d e", HG_URL_ENC_KEEP_SLASH), "a%2Bb%24c/d%20e");
  CHECK_STR(enc("a b+c", HG_URL_ENC_SPACE_PLUS), "a+b%2Bc");
  CHECK_STR(enc("\xc3\xa9\x01\x7f\xff", 0), "%C3%A9%01%7F%FF");
  CHECK_STR(enc("", 0), "");
  hg_buf_clear(&out);
  CHECK_INT(hg_url_encode(&out, "a\0b", 3, 0), 0);
  CHECK_STR(out.data, "a%00b");
  /* Appends. */
  hg_buf_clear(&out);
  hg_buf_puts(&out, "x=");
  hg_url_encode(&out, "/", 1, 0);
  CHECK_STR(out.data, "x=%2F");
}

HG_TEST(escape_invalid) {
  hg_buf_clear(&out);
  const char *s = "seg 1.ts?a=%41&b=%zz#x\"<>\xc3\xa9%";
  CHECK_INT(hg_url_escape_invalid(&out, s, strlen(s)), 0);
  CHECK_STR(out.data, "seg%201.ts?a=%41&b=%25zz#x%22%3C%3E%C3%A9%25");
  hg_url_t u;
  CHECK_INT(hg_url_parse(out.data, out.len, &u), 0);
}

HG_TEST(decode_strict) {
  CHECK_STR(dec("a%20b%2fc%2F%7e", 0), "a b/c/~");
  CHECK_STR(dec("a+b", 0), "a+b");
  CHECK_STR(dec("a+b%2B", HG_URL_DEC_PLUS), "a b+");
  CHECK(dec("%", 0) == NULL);
  CHECK(dec("%4", 0) == NULL);
  CHECK(dec("%zz", 0) == NULL);
  CHECK(dec("ab%g0", 0) == NULL);
  CHECK_STR(dec("%e2%82%AC", 0), "\xe2\x82\xac");
  hg_buf_clear(&out);
  CHECK_INT(hg_url_decode(&out, "a%00b", 5, 0), 0);
  CHECK_INT(out.len, 3);
  CHECK_MEM(out.data, "a\0b", 3);
  hg_buf_clear(&out);
  hg_buf_puts(&out, "keep");
  CHECK_INT(hg_url_decode(&out, "a%00b", 5, HG_URL_DEC_NO_NUL), HG_EPARSE);
  CHECK_INT(hg_url_decode(&out, "a\0b", 3, HG_URL_DEC_NO_NUL), HG_EPARSE);
  CHECK_INT(hg_url_decode(&out, "abc%", 4, 0), HG_EPARSE);
  CHECK_STR(out.data, "keep");
  CHECK_INT(out.len, 4);
}

HG_TEST(decode_lenient) {
  /* req.query's reading: an invalid escape stays as written, a valid one is decoded. */
  unsigned f = HG_URL_DEC_PLUS | HG_URL_DEC_LENIENT;
  CHECK_STR(dec("%", f), "%");
  CHECK_STR(dec("100%", f), "100%");
  CHECK_STR(dec("%4", f), "%4");
  CHECK_STR(dec("%zz%41+b", f), "%zzA b");
  CHECK_STR(dec("%%41", f), "%A");
  CHECK_STR(dec("%74oken", f), "token");
}

HG_TEST(roundtrip_all_bytes) {
  char all[256];
  for (int i = 0; i < 256; i++) all[i] = (char)i;
  hg_buf_t e = HG_BUF_INIT;
  for (unsigned flags = 0; flags < 4; flags++) {
    hg_buf_clear(&e);
    CHECK_INT(hg_url_encode(&e, all, 256, flags), 0);
    hg_buf_clear(&out);
    CHECK_INT(hg_url_decode(&out, e.data, e.len, (flags & HG_URL_ENC_SPACE_PLUS) ? HG_URL_DEC_PLUS : 0), 0);
    CHECK_INT(out.len, 256);
    CHECK_MEM(out.data, all, 256);
  }
  hg_buf_free(&e);
}

HG_TEST(query_iterate) {
  const char *q = "a=1&&b&c=&d=x=y&=v&e=%20+&";
  hg_url_query_iter_t it;
  hg_url_param_t p;
  hg_url_query_iter(&it, q, strlen(q));
  const char *names[] = {"a", "b", "c", "d", "", "e"};
  const char *values[] = {"1", "", "", "x=y", "v", "%20+"};
  int has[] = {1, 0, 1, 1, 1, 1};
  int i = 0;
  while (hg_url_query_next(&it, &p)) {
    CHECK(i < 6);
    if (i >= 6) break;
    CHECK(p.name_len == strlen(names[i]) && memcmp(p.name, names[i], p.name_len) == 0);
    CHECK(p.value_len == strlen(values[i]) && memcmp(p.value, values[i], p.value_len) == 0);
    CHECK_INT(p.has_value, has[i]);
    i++;
  }
  CHECK_INT(i, 6);
  hg_url_query_iter(&it, "", 0);
  CHECK_INT(hg_url_query_next(&it, &p), 0);
  hg_url_query_iter(&it, "&&&", 3);
  CHECK_INT(hg_url_query_next(&it, &p), 0);
}

HG_TEST(query_get) {
  const char *q = "x=1&tok%65n=a%2Fb+c&token=second&url=http%3A%2F%2Fh%2Fp%3Fa%3D1&bare&bad=%zz";
  size_t n = strlen(q);
  hg_buf_clear(&out);
  CHECK_INT(hg_url_query_get(&out, q, n, "token", 5, HG_URL_DEC_PLUS), 0);
  CHECK_STR(out.data, "a/b c"); /* first match, by decoded name */
  hg_buf_clear(&out);
  CHECK_INT(hg_url_query_get(&out, q, n, "url", 3, HG_URL_DEC_PLUS), 0);
  CHECK_STR(out.data, "http://h/p?a=1");
  hg_buf_clear(&out);
  CHECK_INT(hg_url_query_get(&out, q, n, "bare", 4, 0), 0);
  CHECK_STR(out.data, "");
  CHECK_INT(hg_url_query_get(&out, q, n, "nope", 4, 0), HG_ENOKEY);
  CHECK_INT(hg_url_query_get(&out, q, n, "to", 2, 0), HG_ENOKEY);
  CHECK_INT(hg_url_query_get(&out, q, n, "bad", 3, 0), HG_EPARSE);
}

HG_TEST(query_add) {
  hg_buf_clear(&out);
  CHECK_INT(hg_url_query_add(&out, "a", 1, "1 2", 3), 0);
  CHECK_INT(hg_url_query_add(&out, "b&c", 3, "=/?", 3), 0);
  CHECK_INT(hg_url_query_add(&out, "flag", 4, NULL, 0), 0);
  CHECK_INT(hg_url_query_add(&out, "e", 1, "", 0), 0);
  CHECK_STR(out.data, "a=1%202&b%26c=%3D%2F%3F&flag&e=");
  hg_buf_clear(&out);
  hg_buf_puts(&out, "/proxy?");
  hg_url_query_add(&out, "url", 3, "https://x/y.m3u8", 16);
  CHECK_STR(out.data, "/proxy?url=https%3A%2F%2Fx%2Fy.m3u8");
}

HG_TEST(query_set_cases) {
  /* No query, no fragment. */
  CHECK_STR(qset("https://h/a/b.m3u8", "token", "T"), "https://h/a/b.m3u8?token=T");
  /* Existing query: '&'. */
  CHECK_STR(qset("https://h/a.ts?x=1", "token", "T"), "https://h/a.ts?x=1&token=T");
  /* Fragment kept after the query. */
  CHECK_STR(qset("https://h/a.ts#t=1", "token", "T"), "https://h/a.ts?token=T#t=1");
  CHECK_STR(qset("https://h/a.ts?x=1#t=1?y", "token", "T"), "https://h/a.ts?x=1&token=T#t=1?y");
  /* '?' inside the fragment is not a query. */
  CHECK_STR(qset("a.ts#f?x=1", "token", "T"), "a.ts?token=T#f?x=1");
  /* Already present: replaced in place, never twice; duplicates removed. */
  CHECK_STR(qset("a.ts?token=old", "token", "T"), "a.ts?token=T");
  CHECK_STR(qset("a.ts?x=1&token=old&y=2", "token", "T"), "a.ts?x=1&token=T&y=2");
  CHECK_STR(qset("a.ts?token=1&x&token=2&token", "token", "T"), "a.ts?token=T&x");
  CHECK_STR(qset("a.ts?tok%65n=1&x=2", "token", "T"), "a.ts?token=T&x=2");
  CHECK_STR(qset("a.ts?tokens=1&xtoken=2", "token", "T"), "a.ts?tokens=1&xtoken=2&token=T");
  /* Empty query / trailing '&': no extra separator; other bytes kept. */
  CHECK_STR(qset("a.ts?", "token", "T"), "a.ts?token=T");
  CHECK_STR(qset("a.ts?x=1&", "token", "T"), "a.ts?x=1&token=T");
  CHECK_STR(qset("a.ts?x=1&&y=%2F", "token", "T"), "a.ts?x=1&&y=%2F&token=T");
  CHECK_STR(qset("a.ts?&", "token", "T"), "a.ts?&token=T");
  CHECK_STR(qset("a.ts?token=1&", "token", "T"), "a.ts?token=T&");
  /* Queries holding '/' and '?'. */
  CHECK_STR(qset("p?u=/a?b&c", "token", "T"), "p?u=/a?b&c&token=T");
  /* Values are encoded with the unreserved set (a whole URL in `url=`). */
  CHECK_STR(qset("/proxy", "url", "https://o.example/a b/x.m3u8?k=v&w=1#f"),
            "/proxy?url=https%3A%2F%2Fo.example%2Fa%20b%2Fx.m3u8%3Fk%3Dv%26w%3D1%23f");
  CHECK_STR(qset("", "a", ""), "?a=");
  /* Appends after existing content. */
  hg_buf_clear(&out);
  hg_buf_puts(&out, "URI=\"");
  CHECK_INT(hg_url_query_set(&out, "k.bin", 5, "token", "T"), 0);
  CHECK_STR(out.data, "URI=\"k.bin?token=T");
}

HG_TEST(query_set_long) {
  size_t n = 1 << 20;
  char *url = malloc(n + 1);
  memset(url, 'a', n);
  memcpy(url, "http://h/?", 10);
  for (size_t i = 10; i + 1 < n; i += 4) memcpy(url + i, "x=1&", 4 < n - i ? 4 : n - i);
  url[n] = '\0';
  hg_buf_clear(&out);
  CHECK_INT(hg_url_query_set(&out, url, n, "token", "T"), 0);
  CHECK(out.len > n && memcmp(out.data + out.len - 7, "token=T", 7) == 0);
  free(url);
}

int main(void) {
  RUN(encode_modes);
  RUN(escape_invalid);
  RUN(decode_strict);
  RUN(decode_lenient);
  RUN(roundtrip_all_bytes);
  RUN(query_iterate);
  RUN(query_get);
  RUN(query_add);
  RUN(query_set_cases);
  RUN(query_set_long);
  hg_buf_free(&out);
  return hgtest_done();
}
