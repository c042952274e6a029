/* Unit tests for hg_url_parse and hg_url_resolve (RFC 3986 §3, §4, §5.2).
 *
 * The §5.4 examples are read at test time from the published table in
 * $HG_SHARED_DIR/conformance/VECTORS.md §3.1 and §3.2 (RFC 3986 values, not ours), so a
 * transcription error here cannot make them pass.
 */
#include "hgtest.h"

#include "base/error.h"
#include "url/url.h"

static hg_buf_t out = HG_BUF_INIT;

/* Resolves and returns the NUL-terminated target (valid until the next call), or NULL. */
static const char *res(const char *base, const char *ref) {
  hg_buf_clear(&out);
  if (hg_url_resolve(&out, base, strlen(base), ref, strlen(ref)) != 0) return NULL;
  return out.data;
}

/* Copies the first `...` span of cell [p, end) into dst; returns 1 if there was one. */
static int first_code(const char *p, const char *end, char *dst, size_t cap) {
  const char *a = memchr(p, '`', (size_t)(end - p));
  if (a == NULL) return 0;
  const char *b = memchr(a + 1, '`', (size_t)(end - a - 1));
  if (b == NULL || (size_t)(b - a - 1) >= cap) return 0;
  memcpy(dst, a + 1, (size_t)(b - a - 1));
  dst[b - a - 1] = '\0';
  return 1;
}

HG_TEST(rfc3986_section_5_4_examples_from_vectors) {
  char *doc = hgtest_slurp(HG_SHARED_DIR "/conformance/VECTORS.md", NULL);
  CHECK(doc != NULL);
  if (doc == NULL) return;
  const char *sec = strstr(doc, "## 3. RFC 3986");
  const char *base_line = sec ? strstr(sec, "Base URI: `") : NULL;
  const char *stop = sec ? strstr(sec, "### 3.3") : NULL;
  CHECK(sec && base_line && stop);
  if (!sec || !base_line || !stop) {
    free(doc);
    return;
  }
  char base[64];
  CHECK(first_code(base_line, base_line + 64, base, sizeof(base)));
  CHECK_STR(base, "http://a/b/c/d;p?q");
  int rows = 0;
  for (const char *line = base_line; line && line < stop; line = strchr(line, '\n')) {
    if (*line == '\n') line++;
    const char *eol = strchr(line, '\n');
    if (eol == NULL || line[0] != '|' || line[1] != ' ' || line[2] != '`') continue;
    const char *mid = strchr(line + 1, '|');
    if (mid == NULL || mid > eol) continue;
    char ref[64], want[64];
    if (!first_code(line, mid, ref, sizeof(ref)) || !first_code(mid, eol, want, sizeof(want)))
      continue;
    /* For `http:g` the table gives the strict result first; we are a strict parser. */
    rows++;
    const char *got = res(base, ref);
    if (got == NULL || strcmp(got, want) != 0)
      fprintf(stderr, "  ref \"%s\": got \"%s\", expected \"%s\"\n", ref, got ? got : "(error)", want);
    CHECK_STR(got, want);
  }
  CHECK_INT(rows, 23 + 19); /* §5.4.1 has 23 examples, §5.4.2 has 19 */
  free(doc);
}

/* §5.2.4's two walkthroughs (VECTORS.md §3, after the table). */
HG_TEST(remove_dot_segments_walkthroughs) {
  CHECK_STR(res("http://h", "/a/b/c/./../../g"), "http://h/a/g");
  CHECK_STR(res("x:/", "mid/content=5/../6"), "x:/mid/6");
  CHECK_STR(res("http://h/x/y", "mid/content=5/../6"), "http://h/x/mid/6");
}

/* VECTORS.md §3.3 (HLS-flavoured, derived by the §5.2 algorithm), transcribed. */
HG_TEST(hls_flavoured_resolutions) {
  const char *b = "https://cdn.example.com/live/v1/master.m3u8?token=abc";
  CHECK_STR(res(b, "seg1.ts"), "https://cdn.example.com/live/v1/seg1.ts");
  CHECK_STR(res(b, "./seg1.ts"), "https://cdn.example.com/live/v1/seg1.ts");
  CHECK_STR(res(b, "../key.bin"), "https://cdn.example.com/live/key.bin");
  CHECK_STR(res(b, "../../../../key.bin"), "https://cdn.example.com/key.bin");
  CHECK_STR(res(b, "/abs/seg.ts"), "https://cdn.example.com/abs/seg.ts");
  CHECK_STR(res(b, "//other.example/a.ts"), "https://other.example/a.ts");
  CHECK_STR(res(b, "?x=1"), "https://cdn.example.com/live/v1/master.m3u8?x=1");
  CHECK_STR(res(b, "#t=10"), "https://cdn.example.com/live/v1/master.m3u8?token=abc#t=10");
  CHECK_STR(res(b, ".."), "https://cdn.example.com/live/");
  CHECK_STR(res(b, "."), "https://cdn.example.com/live/v1/");
  CHECK_STR(res(b, "data:text/plain;base64,AAAA"), "data:text/plain;base64,AAAA");
  CHECK_STR(res(b, "skd://any"), "skd://any");
  CHECK_STR(res(b, "https://o.example/x.m3u8"), "https://o.example/x.m3u8");
  CHECK_STR(res(b, "a:b.ts"), "a:b.ts");
  CHECK_STR(res(b, "./a:b.ts"), "https://cdn.example.com/live/v1/a:b.ts");
  CHECK(res(b, "seg 1.ts") == NULL); /* not a URI reference: rejected, caller decides */
  /* The base's fragment is never inherited (§5.2.2). */
  CHECK_STR(res("https://cdn.example.com/live/v1/master.m3u8?token=abc#frag", ""),
            "https://cdn.example.com/live/v1/master.m3u8?token=abc");
}

HG_TEST(resolve_edges) {
  /* Base with authority and empty path: merge adds "/" (§5.2.3). */
  CHECK_STR(res("http://h", "g"), "http://h/g");
  CHECK_STR(res("http://h?q", ""), "http://h?q");
  /* Empty ref path keeps the base path verbatim, dot segments included. */
  CHECK_STR(res("http://h/a/./b/../c", "?y"), "http://h/a/./b/../c?y");
  CHECK_STR(res("http://h/a/./b/../c", "#f"), "http://h/a/./b/../c#f");
  /* Absolute refs get their dot segments removed. */
  CHECK_STR(res("http://h/", "https://x/a/../b/./c"), "https://x/b/c");
  CHECK_STR(res("http://h/", "//x/../y"), "http://x/y");
  /* IPv6, ports, userinfo carried through verbatim. */
  CHECK_STR(res("http://[2001:db8::1]:8080/a/b", "c"), "http://[2001:db8::1]:8080/a/c");
  CHECK_STR(res("http://u:p@h:1/a", "//[::1]/x"), "http://[::1]/x");
  /* Query with '/' and '?' is opaque. */
  CHECK_STR(res("http://h/a/b?x=/../y", "c?u=http://o/p?q#f/../g"), "http://h/a/c?u=http://o/p?q#f/../g");
  CHECK_STR(res("http://h/a/b?x=/../y", "?a/../b?c"), "http://h/a/b?a/../b?c");
  /* Non-hierarchical bases. */
  CHECK_STR(res("mailto:a@b", "#x"), "mailto:a@b#x");
  CHECK_STR(res("urn:a:b", "c"), "urn:c");
  /* A path that would start with "//" without an authority gets "/." (reparse-safe). */
  CHECK_STR(res("x:/a/b", "..//g"), "x:/.//g");
  CHECK_STR(res("x:/a", "/.//g"), "x:/.//g");
  /* Scheme case is kept (no normalisation beyond dot removal). */
  CHECK_STR(res("HTTP://h/a", "b"), "HTTP://h/b");
  /* Errors: no base scheme, unparsable base or ref, and out unchanged. */
  hg_buf_clear(&out);
  hg_buf_puts(&out, "keep");
  CHECK_INT(hg_url_resolve(&out, "/rel", 4, "g", 1), HG_EPARSE);
  CHECK_INT(hg_url_resolve(&out, "http://h/", 9, "a b", 3), HG_EPARSE);
  CHECK_INT(hg_url_resolve(&out, "http://h /", 10, "a", 1), HG_EPARSE);
  CHECK_STR(out.data, "keep");
  CHECK_INT(out.len, 4);
  /* Appends (does not overwrite). */
  CHECK_INT(hg_url_resolve(&out, "http://h/", 9, "a", 1), 0);
  CHECK_STR(out.data, "keephttp://h/a");
}

HG_TEST(resolve_long_inputs) {
  size_t n = 100000;
  char *ref = malloc(n * 3 + 2);
  size_t k = 0;
  for (size_t i = 0; i < n; i++) ref[k++] = i % 2 ? '.' : 'a', ref[k++] = '.', ref[k++] = '/';
  ref[k] = '\0'; /* "a./../a./../" ... */
  hg_buf_clear(&out);
  CHECK_INT(hg_url_resolve(&out, "http://h/b/", 11, ref, k), 0);
  CHECK(out.len == 11 && memcmp(out.data, "http://h/b/", 11) == 0);
  for (size_t i = 0; i < k; i++) ref[i] = i % 2 ? '/' : 'x';
  hg_buf_clear(&out);
  CHECK_INT(hg_url_resolve(&out, "http://h/b/", 11, ref, k), 0);
  CHECK_INT(out.len, 11 + k);
  for (size_t i = 0; i < k; i++) ref[i] = '.';
  ref[0] = '/';
  hg_buf_clear(&out);
  CHECK_INT(hg_url_resolve(&out, "http://h/b/", 11, ref, k), 0);
  CHECK_INT(out.len, 8 + k); /* "/...." is one ordinary segment */
  free(ref);
}

static hg_url_t U;
static int P(const char *s) { return hg_url_parse(s, strlen(s), &U); }
static int span_is(const char *p, size_t n, const char *want) {
  return p != NULL && n == strlen(want) && memcmp(p, want, n) == 0;
}

HG_TEST(parse_components) {
  CHECK_INT(P("https://user:pw@Example.COM:8443/a/b;c?q=/x?y#frag/?"), 0);
  CHECK(U.has_scheme && span_is(U.scheme, U.scheme_len, "https"));
  CHECK(U.has_userinfo && span_is(U.userinfo, U.userinfo_len, "user:pw"));
  CHECK(U.has_authority && span_is(U.host, U.host_len, "Example.COM"));
  CHECK(U.has_port && span_is(U.port, U.port_len, "8443"));
  CHECK(span_is(U.authority, U.authority_len, "user:pw@Example.COM:8443"));
  CHECK(span_is(U.path, U.path_len, "/a/b;c"));
  CHECK(U.has_query && span_is(U.query, U.query_len, "q=/x?y"));
  CHECK(U.has_fragment && span_is(U.fragment, U.fragment_len, "frag/?"));
  CHECK_INT(U.host_literal, 0);

  /* Empty vs absent components. */
  CHECK_INT(P("http://h/p?#"), 0);
  CHECK(U.has_query && U.query_len == 0 && U.has_fragment && U.fragment_len == 0);
  CHECK_INT(P("http://h/p"), 0);
  CHECK(!U.has_query && !U.has_fragment && !U.has_port && !U.has_userinfo);
  CHECK_INT(P("file:///etc/x"), 0);
  CHECK(U.has_authority && U.host_len == 0 && span_is(U.path, U.path_len, "/etc/x"));
  CHECK_INT(P("http://h:/"), 0);
  CHECK(U.has_port && U.port_len == 0);
  CHECK_INT(P("http://@h"), 0);
  CHECK(U.has_userinfo && U.userinfo_len == 0 && span_is(U.host, U.host_len, "h"));
  CHECK_INT(P(""), 0);
  CHECK(!U.has_scheme && !U.has_authority && U.path_len == 0);
  CHECK_INT(P("//h"), 0);
  CHECK(!U.has_scheme && U.has_authority && span_is(U.host, U.host_len, "h"));
  CHECK_INT(P("g:h"), 0);
  CHECK(span_is(U.scheme, U.scheme_len, "g") && span_is(U.path, U.path_len, "h"));
  CHECK_INT(P("1a:b"), 0); /* not a scheme (starts with a digit): a path */
  CHECK(!U.has_scheme && span_is(U.path, U.path_len, "1a:b"));
  CHECK_INT(P("a+b-c.d:x"), 0);
  CHECK(span_is(U.scheme, U.scheme_len, "a+b-c.d"));
  CHECK_INT(P("./a:b"), 0);
  CHECK(!U.has_scheme);
  CHECK_INT(P("?a=1/2?3"), 0);
  CHECK(U.path_len == 0 && span_is(U.query, U.query_len, "a=1/2?3"));
  CHECK_INT(P("http://h/%41%2f%2E"), 0);
  CHECK_INT(P("http://h:65535/"), 0);
  CHECK_INT(P("http://h:0080/"), 0);
}

HG_TEST(parse_ip_literals) {
  const char *good[] = {
      "http://[::1]/",        "http://[::]/",           "http://[2001:db8::7]:80/",
      "http://[1:2:3:4:5:6:7:8]/", "http://[1::]/",     "http://[1:2:3:4:5:6:7::]/",
      "http://[::ffff:192.0.2.1]/", "http://[1:2:3:4:5:6:1.2.3.4]/", "http://[v1.x:y]/",
      "http://[FE80::A]/",    "http://192.0.2.1:1/",
  };
  for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
    int rc = P(good[i]);
    if (rc) fprintf(stderr, "  rejected %s\n", good[i]);
    CHECK_INT(rc, 0);
  }
  CHECK_INT(P("http://[2001:db8::7]:8080/x"), 0);
  CHECK(U.host_literal && span_is(U.host, U.host_len, "2001:db8::7") &&
        span_is(U.port, U.port_len, "8080"));
  const char *bad[] = {
      "http://[::1/",          "http://[:1]/",          "http://[1:2:3:4:5:6:7:8:9]/",
      "http://[1::2::3]/",     "http://[12345::]/",     "http://[1:]/",
      "http://[::1%25eth0]/",  "http://[::1]x/",        "http://[1:2:3:4:5:6:7:1.2.3.4]/",
      "http://[::256.1.1.1]/", "http://[::01.1.1.1]/",  "http://[v.x]/",
      "http://[vg.x]/",        "http://[v1.]/",         "http://[]/",
      "http://[g::]/",         "http://::1/",           "http://[1:2:3:4:5:6:7:8::]/",
  };
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    int rc = P(bad[i]);
    if (rc != HG_EPARSE) fprintf(stderr, "  accepted %s\n", bad[i]);
    CHECK_INT(rc, HG_EPARSE);
  }
}

HG_TEST(parse_rejects) {
  const char *bad[] = {
      "http://h/a b",  "http://h/\x01",   "http://h/%4",   "http://h/%zz", "http://h/a%",
      "http://h:x/",   "http://h:65536/", "http://h:99999999999999999999/", "http://a@b@c/",
      "http://h/#a#b", "http://h/\xc3\xa9", "http://h/<",  "http://h/a\\b",  "http://h/{x}",
      "http://h^/",    "http://h/\"",     "http://h/|",    "ht tp://h/",   "http://h/\x7f",
      "http://h/p?a=%GG", "http://u%zz@h/", "http://[::1]:/x[",
  };
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    int rc = P(bad[i]);
    if (rc != HG_EPARSE) fprintf(stderr, "  accepted %s\n", bad[i]);
    CHECK_INT(rc, HG_EPARSE);
  }
  /* Embedded NUL is a control byte. */
  CHECK_INT(hg_url_parse("http://h/\0x", 11, &U), HG_EPARSE);
  CHECK_INT(hg_url_parse("http://h/p?q\0x", 14, &U), HG_EPARSE);
  CHECK_INT(hg_url_parse("http://h/p#f\0x", 14, &U), HG_EPARSE); /* found by fuzz_url */
  CHECK_INT(hg_url_parse("a#\0", 3, &U), HG_EPARSE);
}

int main(void) {
  RUN(rfc3986_section_5_4_examples_from_vectors);
  RUN(remove_dot_segments_walkthroughs);
  RUN(hls_flavoured_resolutions);
  RUN(resolve_edges);
  RUN(resolve_long_inputs);
  RUN(parse_components);
  RUN(parse_ip_literals);
  RUN(parse_rejects);
  hg_buf_free(&out);
  return hgtest_done();
}
