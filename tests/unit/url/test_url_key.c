/* Unit tests for object-key normalisation (hg_url_join_key, hg_url_key_in_scope) and
 * http(s) origins (hg_url_origin). Traversal must be HG_EESCAPE (400), out of scope
 * HG_EDENIED (403): SPEC §9. */
#include "hgtest.h"

#include "base/error.h"
#include "url/url.h"

static hg_buf_t out = HG_BUF_INIT;
static int last_rc;

static const char *key(const char *prefix, const char *path) {
  hg_buf_clear(&out);
  last_rc = hg_url_join_key(&out, prefix, strlen(prefix), path, strlen(path));
  return last_rc == 0 ? out.data : NULL;
}
static int key_rc(const char *prefix, const char *path) {
  key(prefix, path);
  return last_rc;
}
static const char *scope(const char *prefix, const char *path) {
  hg_buf_clear(&out);
  last_rc = hg_url_key_in_scope(&out, prefix, strlen(prefix), path, strlen(path));
  return last_rc == 0 ? out.data : NULL;
}

HG_TEST(join_key_normal) {
  CHECK_STR(key("videos/abc", "master.m3u8"), "videos/abc/master.m3u8");
  CHECK_STR(key("videos/abc/", "/v1/seg1.ts"), "videos/abc/v1/seg1.ts");
  CHECK_STR(key("/videos/abc", "v1//./seg1.ts"), "videos/abc/v1/seg1.ts");
  CHECK_STR(key("videos/abc", "a%20b/%C3%A9t%C3%A9.ts"), "videos/abc/a b/\xc3\xa9t\xc3\xa9.ts");
  CHECK_STR(key("videos/abc", "a%2Bb+c"), "videos/abc/a+b+c");
  CHECK_STR(key("videos/abc", "v1/"), "videos/abc/v1");
  CHECK_STR(key("", "a/b"), "a/b");
  CHECK_STR(key("/", "a"), "a");
  /* Names that merely contain dots are fine. */
  CHECK_STR(key("p", "..."), "p/...");
  CHECK_STR(key("p", "..a/a../.b/a.%2e"), "p/..a/a../.b/a..");
  CHECK_STR(key("p", "%2ea"), "p/.a");
  /* A literal '%' (from %25) not forming a dangerous escape is kept. */
  CHECK_STR(key("p", "100%25/a%2541"), "p/100%/a%41");
  /* Appends, and leaves the buffer unchanged on failure. */
  hg_buf_clear(&out);
  hg_buf_puts(&out, "k=");
  CHECK_INT(hg_url_join_key(&out, "p", 1, "a", 1), 0);
  CHECK_STR(out.data, "k=p/a");
  CHECK_INT(hg_url_join_key(&out, "p", 1, "../a", 4), HG_EESCAPE);
  CHECK_STR(out.data, "k=p/a");
  CHECK_INT(out.len, 5);
}

HG_TEST(join_key_traversal) {
  const char *bad[] = {
      "..",          "../x",          "a/../../x",     "a/..",          "a/../b",
      "%2e%2e/x",    "%2E%2E/x",      ".%2e/x",        "%2e./x",        "a/%2e%2e",
      "%2e",         "a/%2E/b",       "a%2fb",         "a%2F..%2Fb",    "..%2f..%2fetc",
      "a%5cb",       "..%5C..%5Cx",   "a\\b",          "..\\x",         "a%00b",
      "%252e%252e/x", "a%252fb",      "a%255cb",       "a%2500",        "%252E%252E",
      "x/..//y",
  };
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    int rc = key_rc("videos/abc", bad[i]);
    if (rc != HG_EESCAPE) fprintf(stderr, "  \"%s\" gave %d\n", bad[i], rc);
    CHECK_INT(rc, HG_EESCAPE);
  }
  hg_buf_clear(&out);
  CHECK_INT(hg_url_join_key(&out, "p", 1, "a\0b", 3), HG_EESCAPE);
  CHECK_INT(out.len, 0);
}

HG_TEST(join_key_other_errors) {
  /* Nothing left: the prefix itself, out of scope (403). */
  CHECK_INT(key_rc("videos/abc", ""), HG_EDENIED);
  CHECK_INT(key_rc("videos/abc", "/"), HG_EDENIED);
  CHECK_INT(key_rc("videos/abc", "./"), HG_EDENIED);
  CHECK_INT(key_rc("videos/abc", "//./."), HG_EDENIED);
  /* Malformed escapes, controls, invalid UTF-8 (overlong "%c0%ae" is a dot in disguise). */
  CHECK_INT(key_rc("p", "a%"), HG_EPARSE);
  CHECK_INT(key_rc("p", "a%2"), HG_EPARSE);
  CHECK_INT(key_rc("p", "a%zz"), HG_EPARSE);
  CHECK_INT(key_rc("p", "a%0a"), HG_EPARSE);
  CHECK_INT(key_rc("p", "a\r\nb"), HG_EPARSE);
  CHECK_INT(key_rc("p", "%c0%ae%c0%ae/x"), HG_EPARSE);
  CHECK_INT(key_rc("p", "%ed%a0%80"), HG_EPARSE);
  CHECK_INT(key_rc("p", "%f4%90%80%80"), HG_EPARSE);
  CHECK_INT(key_rc("p", "%ff"), HG_EPARSE);
  CHECK_INT(key_rc("p", "%e2%82"), HG_EPARSE);
  /* Unsafe prefixes fail closed. */
  CHECK_INT(key_rc("videos/../abc", "x"), HG_EINVAL);
  CHECK_INT(key_rc("videos/./abc", "x"), HG_EINVAL);
  CHECK_INT(key_rc("videos//abc", "x"), HG_EINVAL);
  CHECK_INT(key_rc("..", "x"), HG_EINVAL);
  CHECK_INT(key_rc("a\\b", "x"), HG_EINVAL);
}

HG_TEST(key_in_scope) {
  CHECK_STR(scope("videos/abc", "/videos/abc/master.m3u8"), "videos/abc/master.m3u8");
  CHECK_STR(scope("videos/abc/", "videos//abc/./v1/s.ts"), "videos/abc/v1/s.ts");
  CHECK_STR(scope("videos/abc", "/videos/%61bc/x"), "videos/abc/x");
  CHECK(scope("videos/abc", "/videos/abcd/x") == NULL);
  CHECK_INT(last_rc, HG_EDENIED);
  CHECK(scope("videos/abc", "/videos/abc") == NULL);
  CHECK_INT(last_rc, HG_EDENIED);
  CHECK(scope("videos/abc", "/videos/abc/") == NULL);
  CHECK_INT(last_rc, HG_EDENIED);
  CHECK(scope("videos/abc", "/videos/xyz/a.ts") == NULL);
  CHECK_INT(last_rc, HG_EDENIED);
  CHECK(scope("videos/abc", "/videos") == NULL);
  CHECK_INT(last_rc, HG_EDENIED);
  CHECK_INT(out.len, 0);
  /* Traversal wins over scope (400 before 403), even when it would land inside. */
  CHECK(scope("videos/abc", "/videos/x/../abc/a.ts") == NULL);
  CHECK_INT(last_rc, HG_EESCAPE);
  CHECK(scope("videos/abc", "/videos/abc%2f..%2fxyz/a.ts") == NULL);
  CHECK_INT(last_rc, HG_EESCAPE);
  CHECK_STR(scope("", "/a"), "a");
  CHECK(scope("", "/") == NULL);
  CHECK_INT(last_rc, HG_EDENIED);
}

HG_TEST(key_long_inputs) {
  size_t n = 1 << 20;
  char *p = malloc(n + 1);
  for (size_t i = 0; i < n; i++) p[i] = i % 2 ? '/' : 'a';
  p[n] = '\0';
  hg_buf_clear(&out);
  CHECK_INT(hg_url_join_key(&out, "pre", 3, p, n), 0);
  CHECK_INT(out.len, 3 + n); /* "pre" + "/a" * n/2 */
  for (size_t i = 0; i < n; i++) p[i] = i % 3 == 2 ? '/' : '.';
  CHECK_INT(key_rc("pre", p), HG_EESCAPE);
  free(p);
}

static int origin(const char *s, hg_url_origin_t *o) {
  hg_url_t u;
  int rc = hg_url_parse(s, strlen(s), &u);
  return rc ? rc : hg_url_origin(&u, o);
}

HG_TEST(origins) {
  hg_url_origin_t o;
  CHECK_INT(origin("HTTPS://Example.COM/a", &o), 0);
  CHECK(o.https == 1 && o.port == 443 && !o.explicit_port && !o.ipv6);
  CHECK_STR(o.host, "example.com");
  CHECK_INT(o.host_len, 11);
  CHECK_INT(origin("http://h:8080", &o), 0);
  CHECK(o.https == 0 && o.port == 8080 && o.explicit_port);
  CHECK_INT(origin("http://h:80/", &o), 0);
  CHECK(o.port == 80 && o.explicit_port);
  CHECK_INT(origin("http://h:/", &o), 0);
  CHECK(o.port == 80 && !o.explicit_port);
  CHECK_INT(origin("http://u:p@[2001:DB8::1]:8443/x", &o), 0);
  CHECK(o.ipv6 && o.port == 8443);
  CHECK_STR(o.host, "2001:db8::1");
  CHECK_INT(origin("ftp://h/", &o), HG_EINVAL);
  CHECK_INT(origin("/rel", &o), HG_EINVAL);
  CHECK_INT(origin("data:text/plain,x", &o), HG_EINVAL);
  CHECK_INT(origin("http:///x", &o), HG_EPARSE);
  CHECK_INT(origin("http://%6cocalhost/", &o), HG_EPARSE);
  CHECK_INT(origin("http://[v1.x]/", &o), HG_EPARSE);
  CHECK_INT(origin("http://h:0/", &o), HG_EPARSE);
  char big[300] = "http://";
  memset(big + 7, 'a', 256);
  big[263] = '\0';
  CHECK_INT(origin(big, &o), HG_EPARSE);
}

int main(void) {
  RUN(join_key_normal);
  RUN(join_key_traversal);
  RUN(join_key_other_errors);
  RUN(key_in_scope);
  RUN(key_long_inputs);
  RUN(origins);
  hg_buf_free(&out);
  return hgtest_done();
}
