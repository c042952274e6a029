/* test_request_parse.c — the server's request parser through its test seam
 * (hg__http_parse, src/http/server.h): the RFC 9112 strictness of issue 11 item 7, and
 * the regressions fuzz_http_request found. Each case is parsed whole and one byte per
 * read: the outcome must not change. */
#include <string.h>

#include "hgtest.h"
#include "http/server.h"

static const hg_http_limits_t LIM = {.max_headers = 16384, .max_uri = 8192, .max_body = 65536};

typedef struct {
  size_t n;
  int err;
  hg__http_parsed_t r[8];
} res_t;

static res_t parse(const char *s, size_t len) {
  res_t a, b;
  size_t cuts[1024];
  for (size_t i = 0; i < len && i < 1024; i++) cuts[i] = i + 1;
  hg__http_parse(s, len, NULL, 0, &LIM, a.r, 8, &a.n, &a.err);
  hg__http_parse(s, len, cuts, len < 1024 ? len : 1024, &LIM, b.r, 8, &b.n, &b.err);
  CHECK_INT(b.n, a.n);
  CHECK_INT(b.err, a.err);
  for (size_t i = 0; i < a.n && i < b.n && i < 8; i++) {
    CHECK_INT(b.r[i].body_len, a.r[i].body_len);
    CHECK(b.r[i].body_hash == a.r[i].body_hash);
    CHECK(b.r[i].host_hash == a.r[i].host_hash);
  }
  return a;
}
#define P(lit) parse(lit, sizeof(lit) - 1)

HG_TEST(strict_framing) {
  CHECK_INT(P("GET / HTTP/1.1\r\nHost: t\r\nX: a\r\n b\r\n\r\n").err, 400);      /* obs-fold */
  CHECK_INT(P("GET / HTTP/1.1\r\nHost : t\r\n\r\n").err, 400);                  /* blank before ':' */
  CHECK_INT(P("GET /\r\n\r\n").err, 400);                                        /* HTTP/0.9 */
  CHECK_INT(P("GET / HTTP/1.1\r\n\r\n").err, 400);                               /* no Host */
  CHECK_INT(P("GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n").err, 400);        /* two Hosts */
  CHECK_INT(P("GET / HTTP/1.1\r\nHost: a/b\r\n\r\n").err, 400);
  CHECK_INT(P("POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n").err, 501);
  CHECK_INT(P("CONNECT a:1 HTTP/1.1\r\nHost: a:1\r\n\r\n").err, 405);
  res_t r = P("GET /a HTTP/1.1\r\nHost: x \r\n\r\nGET http://h:1/b HTTP/1.1\r\nHost: y\r\n\r\n");
  CHECK_INT(r.err, 0);
  CHECK_INT(r.n, 2);
  CHECK_INT(r.r[1].target_len, 2); /* "/b": the authority went to Host */
}

HG_TEST(chunk_extensions) {
  res_t r = P("POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
              "4;a=b;c=d\r\nabcd\r\n3;x=\"y;z\";w;v=u\r\nefg\r\n0;e=f;g=h\r\n\r\n");
  CHECK_INT(r.err, 0);
  CHECK_INT(r.n, 1);
  CHECK_INT(r.r[0].body_len, 7);
}

/* fuzz_http_request: a quote in the middle of an unquoted extension value switched llhttp
 * to its quoted states while the workaround still treated the value as a token: the
 * outcome depended on where reads ended. */
HG_TEST(regress_quote_mid_extension_value) {
  P("POST /post HTTP/1.1\r\nHost: T\r\nTransfe: T\r\nTransfer-Encoding: chunked\r\n\r\n"
    "4;a=b;;xLb;c=d\r\nabcd\r\n4;x=ran\"{;z\";w\r\r\n\r\n");
  res_t r = P("POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
              "4;x=ran\"{;z\";w=v\r\nabcd\r\n0\r\n\r\n");
  CHECK_INT(r.n, 1);
}

/* fuzz_http_request: llhttp 8.1 ends a head at "\r " (a bare CR), so the raw check and
 * llhttp disagreed on where the head ends, and the outcome depended on reads. A bare CR
 * is refused (RFC 9112 §2.2). */
HG_TEST(regress_bare_cr) {
  static const char s[] = "PUT /x HTTP/1.1\r\nHost: [::1]:8 \r\nExpect: 100-continue\r\n"
                          "Content-Lengt:\r \n2:h [::1]:\nExpec * Hk";
  res_t r = parse(s, sizeof(s) - 1);
  CHECK_INT(r.n, 0);
  CHECK_INT(r.err, 400);
  CHECK_INT(P("GET / HTTP/1.1\r\nHost: t\r\nX: a\rb\r\n\r\n").err, 400);
  CHECK_INT(P("GET / HTTP/1.1\r\nHost: t\r\n\r \r\n").err, 400);
}

/* fuzz_http_request (long run): a target both over the limit and malformed was 400 when
 * read whole and 414 when it came in pieces. Now: malformed wins (400) either way, and a
 * well-formed target over the limit is 414 either way. */
HG_TEST(regress_long_malformed_target) {
  char req[9000 + 64];
  int n = snprintf(req, sizeof(req), "GET /%0*d\x01x HTTP/1.1\r\nHost: t\r\n\r\n", 8500, 0);
  CHECK_INT(parse(req, (size_t)n).err, 400);
  size_t cut[1] = {8300}; /* a read that ends past the limit, before the bad byte */
  res_t r;
  hg__http_parse(req, (size_t)n, cut, 1, &LIM, r.r, 8, &r.n, &r.err);
  CHECK_INT(r.err, 400);
  n = snprintf(req, sizeof(req), "GET /%0*d HTTP/1.1\r\nHost: t\r\n\r\n", 8500, 0);
  CHECK_INT(parse(req, (size_t)n).err, 414);
  n = snprintf(req, sizeof(req), "GET /%0*d HTTP/1.1\r\nHost: t\r\n\r\n", 8000, 0);
  CHECK_INT(parse(req, (size_t)n).err, 0); /* under the limit: served */
}

/* fuzz_http_request (second long run): a target over the limit, then a bare CR in a header
 * line: the raw check used to scan the whole read first, so one read gave 400 (the CR)
 * and smaller reads 414 (the target, judged first). The earlier error in the stream wins
 * now, whatever the reads: 414. */
HG_TEST(regress_earlier_error_wins) {
  char req[9000 + 64];
  int n = snprintf(req, sizeof(req), "GET /%0*d HTTP/1.1\r\nHost: t\rX\r\n\r\n", 8500, 0);
  CHECK_INT(parse(req, (size_t)n).err, 414);
  size_t cut[1] = {4000};
  res_t r;
  hg__http_parse(req, (size_t)n, cut, 1, &LIM, r.r, 8, &r.n, &r.err);
  CHECK_INT(r.err, 414);
  CHECK_INT(P("GET / HTTP/1.1\r\nHost: t\r\nBad Name: x\r\n\r\n").err, 400); /* still refused */
}

int main(void) {
  RUN(strict_framing);
  RUN(chunk_extensions);
  RUN(regress_quote_mid_extension_value);
  RUN(regress_bare_cr);
  RUN(regress_long_malformed_target);
  RUN(regress_earlier_error_wins);
  return hgtest_done();
}
