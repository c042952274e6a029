/* Unit tests for base/buf (growable buffer, JSON escaping) and base/log redaction. */
#include "hgtest.h"

#include "base/buf.h"
#include "base/error.h"
#include "base/log.h"

HG_TEST(buf_appends_and_grows) {
  hg_buf_t b = HG_BUF_INIT;
  for (int i = 0; i < 1000; i++) CHECK_INT(hg_buf_printf(&b, "%d,", i % 10), 0);
  CHECK_INT(b.len, 2000);
  CHECK(b.data[b.len] == '\0');
  CHECK_INT(hg_buf_printf(&b, "%s", "a long string that does not fit in the stack buffer of"
                                     " printf, which is two hundred and fifty six bytes long, so"
                                     " this has to take the second path that reserves exactly"
                                     " what vsnprintf said it needs and prints again........."),
            0);
  CHECK(b.len > 2200);
  hg_buf_clear(&b);
  CHECK_INT(b.len, 0);
  CHECK_STR(b.data, "");
  size_t n;
  hg_buf_puts(&b, "xyz");
  char *p = hg_buf_steal(&b, &n);
  CHECK_STR(p, "xyz");
  CHECK_INT(n, 3);
  CHECK(b.data == NULL);
  free(p);
}

HG_TEST(buf_json_escape) {
  hg_buf_t b = HG_BUF_INIT;
  const char in[] = "a\"b\\c\n\r\t\x01\x7f\xc3\xa9";
  CHECK_INT(hg_buf_json_escape(&b, in, sizeof(in) - 1), 0);
  CHECK_STR(b.data, "a\\\"b\\\\c\\n\\r\\t\\u0001\\u007f\xc3\xa9");
  hg_buf_free(&b);
}

static void check_redact(const char *in, const char *want) {
  hg_buf_t b = HG_BUF_INIT;
  CHECK_INT(hg_log_redact_target(&b, in, strlen(in)), 0);
  CHECK_STR(b.data, want);
  hg_buf_free(&b);
}

HG_TEST(redacts_secrets_in_targets) {
  check_redact("/a/b", "/a/b");
  check_redact("/a?token=abc", "/a?token=REDACTED");
  check_redact("/a?x=1&TOKEN=abc&y=2", "/a?x=1&TOKEN=REDACTED&y=2");
  check_redact("/p?X-Amz-Credential=AK%2F&X-Amz-Signature=ff&X-Amz-Expires=60",
               "/p?X-Amz-Credential=REDACTED&X-Amz-Signature=REDACTED&X-Amz-Expires=60");
  check_redact("/proxy?url=http%3A%2F%2Fo%2Fa.m3u8&key=k", "/proxy?url=http%3A%2F%2Fo%2Fa.m3u8&key=REDACTED");
  check_redact("/a?tokenx=1&token", "/a?tokenx=1&token");
  check_redact("/a?", "/a?");
  check_redact("/a?&&token=z&", "/a?&&token=REDACTED&");
}

HG_TEST(buf_errors_are_sticky) {
  hg_buf_t b = HG_BUF_INIT;
  CHECK_INT(hg_buf_puts(&b, "key:"), 0);
  CHECK_INT(hg_buf_error(&b), 0);
  /* A size no allocator can give: the append fails and every later one too, leaving
   * the buffer as it was, so the sequence is checked once at its end. */
  CHECK_INT(hg_buf_reserve(&b, (size_t)-1), HG_ETOOBIG);
  CHECK_INT(hg_buf_puts(&b, "viewer-a"), HG_ETOOBIG);
  CHECK_INT(hg_buf_printf(&b, "%d", 42), HG_ETOOBIG);
  CHECK_INT(hg_buf_putc(&b, 'x'), HG_ETOOBIG);
  CHECK_INT(hg_buf_error(&b), HG_ETOOBIG);
  CHECK_STR(b.data, "key:");
  hg_buf_clear(&b); /* a fresh start forgets it */
  CHECK_INT(hg_buf_error(&b), 0);
  CHECK_INT(hg_buf_puts(&b, "ok"), 0);
  CHECK_STR(b.data, "ok");
  hg_buf_free(&b);
}

int main(void) {
  RUN(buf_errors_are_sticky);
  RUN(buf_appends_and_grows);
  RUN(buf_json_escape);
  RUN(redacts_secrets_in_targets);
  return hgtest_done();
}
