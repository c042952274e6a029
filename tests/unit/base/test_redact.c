/* Unit tests for core/log redaction in every spelling of a secret (issue #11 item 3):
 * percent-encoded names, nested URLs and queries encoded once or twice, '+', mixed case,
 * URLs in the path, and free-text log messages. Each case also checks that the secret
 * (raw and in its encoded forms) is gone from the output. */
#include "hgtest.h"

#include "base/buf.h"
#include "base/log.h"

#define SECRET "s3cr3tVALUE"

static void check(const char *in, const char *want) {
  hg_buf_t b = HG_BUF_INIT;
  CHECK_INT(hg_log_redact_target(&b, in, strlen(in)), 0);
  if (want) CHECK_STR(b.data, want);
  if (b.data && strstr(b.data, "s3cr3t")) fprintf(stderr, "leaked: %s -> %s\n", in, b.data);
  CHECK(b.data != NULL && strstr(b.data, SECRET) == NULL);
  CHECK(b.data != NULL && strstr(b.data, "s3cr3t") == NULL);
  hg_buf_free(&b);
}

HG_TEST(redacts_every_spelling) {
  static const struct {
    const char *in, *want;
  } cases[] = {
      /* the plain names, any case */
      {"/a?token=" SECRET, "/a?token=REDACTED"},
      {"/a?ToKeN=" SECRET, "/a?ToKeN=REDACTED"},
      {"/a?x-amz-signature=" SECRET "&x-amz-expires=60", "/a?x-amz-signature=REDACTED&x-amz-expires=60"},
      {"/a?refresh_token=" SECRET, "/a?refresh_token=REDACTED"},
      {"/a?api_key=" SECRET, "/a?api_key=REDACTED"},
      {"/a?X-Goog-Signature=" SECRET, "/a?X-Goog-Signature=REDACTED"},
      /* the open proxy's per-stream upstream headers carry cookies */
      {"/proxy?headers=%7B%22Cookie%22%3A%22" SECRET "%22%7D&url=x", "/proxy?headers=REDACTED&url=x"},
      /* percent-encoded names: accepted by the query decoder, so redacted */
      {"/a?%74oken=" SECRET, "/a?%74oken=REDACTED"},
      {"/a?%54%4F%4B%45%4E=" SECRET, "/a?%54%4F%4B%45%4E=REDACTED"},
      {"/a?%2574oken=" SECRET, "/a?%2574oken=REDACTED"}, /* twice */
      {"/a?X%2DAmz%2DSignature=" SECRET, "/a?X%2DAmz%2DSignature=REDACTED"},
      {"/a?access%5Ftoken=" SECRET, "/a?access%5Ftoken=REDACTED"},
      /* nested URL, encoded once */
      {"/proxy?url=https%3A%2F%2Fo%2Fa.m3u8%3Ftoken%3D" SECRET "%26X-Amz-Signature%3D" SECRET,
       "/proxy?url=https://o/a.m3u8%3Ftoken%3DREDACTED%26X-Amz-Signature%3DREDACTED"},
      /* lower-case hex, '+' and mixed-case names inside */
      {"/proxy?url=https%3a%2f%2fo%2fa%3fx%3d1+2%26TOKEN%3d" SECRET, NULL},
      /* encoded twice */
      {"/proxy?url=https%253A%252F%252Fo%252Fa%253Ftoken%253D" SECRET, NULL},
      /* the name itself encoded inside the nested query */
      {"/proxy?url=https%3A%2F%2Fo%2Fa%3F%2574oken%3D" SECRET, NULL},
      /* a URL inside a URL inside a URL */
      {"/proxy?url=https%3A%2F%2Fo%2Fp%3Furl%3Dhttps%253A%252F%252Fq%252Fa%253Fsig%253D" SECRET, NULL},
      /* a bare nested query (no '?') */
      {"/a?state=a%3D1%26token%3D" SECRET, NULL},
      /* a URL carried in the path */
      {"/proxy/https%3A%2F%2Fo%2Fa.m3u8%3Ftoken%3D" SECRET, NULL},
      /* nothing secret: kept byte for byte */
      {"/proxy?url=http%3A%2F%2Fo%2Fa.m3u8%3Fx%3D1&b=2", "/proxy?url=http%3A%2F%2Fo%2Fa.m3u8%3Fx%3D1&b=2"},
      {"/a?tokenx=1&token", "/a?tokenx=1&token"},
      {"/a?%zz=1&%", "/a?%zz=1&%"},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) check(cases[i].in, cases[i].want);
}

HG_TEST(redacts_log_messages) {
  const char msg[] = "upstream https://o/a.m3u8?X-Amz-Credential=" SECRET "&x=1 failed: \"https://o/b?token="
                     SECRET "\" (redirect to /c?%74oken=" SECRET ")";
  hg_buf_t b = HG_BUF_INIT;
  CHECK_INT(hg_log_redact_text(&b, msg, sizeof(msg) - 1), 0);
  CHECK(strstr(b.data, SECRET) == NULL);
  CHECK(strstr(b.data, "X-Amz-Credential=REDACTED&x=1 failed") != NULL);
  CHECK(strstr(b.data, "(redirect to /c?%74oken=REDACTED") != NULL);
  hg_buf_free(&b);
  /* found by fuzz_http: a value starting with a quote or bracket used to end the word
   * before the value, which was then logged whole */
  static const char *const quoted[] = {"GET /p?token=<" SECRET, "/p?token=\"" SECRET "\"",
                                       "x '/p?jwt='" SECRET};
  for (size_t i = 0; i < 3; i++) {
    hg_buf_t q = HG_BUF_INIT;
    CHECK_INT(hg_log_redact_text(&q, quoted[i], strlen(quoted[i])), 0);
    CHECK(strstr(q.data, SECRET) == NULL);
    hg_buf_free(&q);
  }
}

/* Pathological inputs stay bounded and leave `out` as it was on failure-free runs. */
HG_TEST(redaction_is_bounded) {
  hg_buf_t in = HG_BUF_INIT, b = HG_BUF_INIT;
  hg_buf_puts(&in, "/a?u=");
  for (int i = 0; i < 2000; i++) hg_buf_puts(&in, "%25");
  hg_buf_puts(&in, "3Ftoken=" SECRET);
  CHECK_INT(hg_log_redact_target(&b, in.data, in.len), 0);
  CHECK(b.len > 0);
  hg_buf_free(&in);
  hg_buf_free(&b);
}

int main(void) {
  RUN(redacts_every_spelling);
  RUN(redacts_log_messages);
  RUN(redaction_is_bounded);
  return hgtest_done();
}
