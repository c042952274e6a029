/* test_response_parse.c — the upstream response parser through its test seam
 * (hg__upstream_parse, src/upstream/client.h), and the regressions fuzz_upstream_response
 * found. Each case is parsed whole and one byte per read: the outcome must not change. */
#include <string.h>

#include "base/error.h"
#include "hgtest.h"
#include "upstream/client.h"

/* Parses `s` whole and byte by byte; checks both agree, returns the whole result. */
static hg__parsed_t parse(const char *s, size_t n, int head) {
  hg__parsed_t a, b;
  size_t cuts[512];
  for (size_t i = 0; i < n && i < 512; i++) cuts[i] = i + 1;
  hg__upstream_parse(s, n, NULL, 0, head, &a);
  hg__upstream_parse(s, n, cuts, n < 512 ? n : 512, head, &b);
  CHECK_INT(b.rc, a.rc);
  if (a.rc == 0) {
    CHECK_INT(b.status, a.status);
    CHECK_INT(b.body_len, a.body_len);
    CHECK(b.body_hash == a.body_hash);
    CHECK_INT(b.nheaders, a.nheaders);
  }
  return a;
}
#define P(lit, head) parse(lit, sizeof(lit) - 1, head)

HG_TEST(content_length) {
  hg__parsed_t r = P("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: a  \r\n\r\nhello", 0);
  CHECK_INT(r.rc, 0);
  CHECK_INT(r.status, 200);
  CHECK_INT(r.clen, 5);
  CHECK_INT(r.body_len, 5);
  CHECK_INT(r.nheaders, 2);
  CHECK_INT(r.keepalive, 1);
}

HG_TEST(chunked_with_extension_and_trailer) {
  hg__parsed_t r = P("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                     "4;a=b\r\nabcd\r\n3\r\nefg\r\n0\r\nX-T: t\r\n\r\n", 0);
  CHECK_INT(r.rc, 0);
  CHECK_INT(r.clen, -1);
  CHECK_INT(r.body_len, 7);
  CHECK_INT(r.nheaders, 1); /* the trailer is not kept */
}

HG_TEST(close_delimited_head_interim) {
  hg__parsed_t r = P("HTTP/1.0 200 OK\r\n\r\nuntil the end", 0);
  CHECK_INT(r.rc, 0);
  CHECK_INT(r.body_len, 13);
  CHECK_INT(r.keepalive, 0);
  r = P("HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n", 1);
  CHECK_INT(r.rc, 0);
  CHECK_INT(r.body_len, 0);
  r = P("HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 404 Not Found\r\nContent-Length: 2\r\n\r\nno", 0);
  CHECK_INT(r.rc, 0);
  CHECK_INT(r.status, 404);
  CHECK_INT(r.nheaders, 1);
}

HG_TEST(malformed) {
  CHECK_INT(P("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort", 0).rc, HG_EUPSTREAM);
  CHECK_INT(P("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 0).rc, HG_EUPSTREAM);
  CHECK_INT(P("HTTP/1.1 101 Switching Protocols\r\n\r\n", 0).rc, HG_EUPSTREAM);
  CHECK_INT(P("", 0).rc, HG_EUPSTREAM);
}

/* fuzz_upstream_response: llhttp 8.1 takes a one-digit status; it was relayed as "1". */
HG_TEST(regress_short_status_code) {
  CHECK_INT(P("HTTP/1.0 1 video/mp3t\r\n\r\n00 OK\r\nContent-Type: video/mp3t\r\n\r\nG@", 0).rc, HG_EUPSTREAM);
  CHECK_INT(P("HTTP/1.1 99 X\r\nContent-Length: 0\r\n\r\n", 0).rc, HG_EUPSTREAM);
}

/* fuzz_upstream_response: a bad header name after a fold; the outcome (refused) must not
 * depend on where reads end. */
HG_TEST(regress_error_state_split) {
  static const char s[] = "HTTP/1.1 200 OK\r\nX-A: a\r\n b\r\nContent-Len\0\0\0" "2 0\r\n\r\n";
  CHECK_INT(parse(s, sizeof(s) - 1, 0).rc, HG_EUPSTREAM);
}

int main(void) {
  RUN(content_length);
  RUN(chunked_with_extension_and_trailer);
  RUN(close_delimited_head_interim);
  RUN(malformed);
  RUN(regress_short_status_code);
  RUN(regress_error_state_split);
  return hgtest_done();
}
