/* test_jwt.c — JWT HS256/384/512 sign and verify against VECTORS.md §2.
 *
 * The RFC 7515 A.1 token, the RFC 7519 §6.1 unsecured token, the jwt.io token and every
 * attack token T1–T29 are read from tests/data/conformance/VECTORS.md at run time; what
 * each must do (accept in a time window, or the reason it is rejected) follows §2.2/§2.3.
 */
#include <string.h>

#include "base/error.h"
#include "crypto/hash.h"
#include "crypto/jwt.h"
#include "hgtest.h"

static char *vectors;
static unsigned char a1_key[64]; /* RFC 7515 A.1 key bytes */

/* Finds the backticked token after `label`. */
static int token_after(const char *label, char *out, size_t cap) {
  const char *l = strstr(vectors, label);
  if (!l) return 0;
  const char *a = strchr(l + strlen(label), '`');
  const char *b = a ? strchr(a + 1, '`') : NULL;
  if (!b || (size_t)(b - a - 1) >= cap) return 0;
  memcpy(out, a + 1, (size_t)(b - a - 1));
  out[b - a - 1] = '\0';
  return 1;
}

/* Token of row Tn of the §2.3 table. */
static int attack_token(int n, char *out, size_t cap) {
  char label[16];
  snprintf(label, sizeof(label), "\n| T%d |", n);
  const char *row = strstr(vectors, label);
  if (!row) return 0;
  const char *eol = strchr(row + 1, '\n');
  const char *b = eol - 1;
  while (b > row && *b != '`') b--;
  const char *a = b - 1;
  while (a > row && *a != '`') a--;
  if (a <= row || (size_t)(b - a - 1) >= cap) return 0;
  memcpy(out, a + 1, (size_t)(b - a - 1));
  out[b - a - 1] = '\0';
  return 1;
}

static int verify_at(const char *tok, double now, unsigned flags, const char **why,
                     hg_buf_t *claims) {
  hg_jwt_key_t k = {NULL, a1_key, sizeof(a1_key)};
  hg_jwt_verify_opts_t o = {HG_JWT_HS256, &k, 1, now, 0, 0, flags};
  return hg_jwt_verify(tok, strlen(tok), &o, claims, why);
}

HG_TEST(rfc7515_a1) {
  char tok[512];
  CHECK(token_after("* Compact serialization:", tok, sizeof(tok)));
  CHECK(strncmp(tok, "eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9.", 41) == 0);
  hg_buf_t claims = HG_BUF_INIT;
  const char *why = "x";
  /* exp = 1300819380: verifies with a clock before it, not on or after it */
  CHECK_INT(verify_at(tok, 1300819379, HG_JWT_REQUIRE_EXP, &why, &claims), 0);
  CHECK(why == NULL);
  CHECK_STR(claims.data,
            "{\"iss\":\"joe\",\r\n \"exp\":1300819380,\r\n \"http://example.com/is_root\":true}");
  CHECK_INT(verify_at(tok, 1300819380, 0, &why, &claims), HG_EEXPIRED);
  CHECK_STR(why, "token expired");
  CHECK_INT(verify_at(tok, 1700000000, 0, &why, NULL), HG_EEXPIRED);
  /* leeway lets a slightly expired token through */
  hg_jwt_key_t k = {NULL, a1_key, 64};
  hg_jwt_verify_opts_t o = {HG_JWT_HS256, &k, 1, 1300819380 + 59, 60, 0, 0};
  CHECK_INT(hg_jwt_verify(tok, strlen(tok), &o, NULL, &why), 0);
  o.now = 1300819380 + 60;
  CHECK_INT(hg_jwt_verify(tok, strlen(tok), &o, NULL, &why), HG_EEXPIRED);
  /* pinned to another alg */
  o.alg = HG_JWT_HS512, o.now = 0;
  CHECK_INT(hg_jwt_verify(tok, strlen(tok), &o, NULL, &why), HG_EBADALG);
  CHECK_STR(why, "alg not allowed");
  /* the ASCII of the JWK instead of its bytes is the wrong key */
  const char *ascii = "AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow";
  hg_jwt_key_t wrong = {NULL, ascii, strlen(ascii)};
  hg_jwt_verify_opts_t o2 = {HG_JWT_HS256, &wrong, 1, 1300819379, 0, 0, 0};
  CHECK_INT(hg_jwt_verify(tok, strlen(tok), &o2, NULL, &why), HG_EBADSIG);
  hg_buf_free(&claims);

  /* RFC 7519 §6.1 unsecured JWT: must be rejected */
  CHECK(token_after("**RFC 7519 §6.1** Unsecured JWT example (`{\"alg\":\"none\"}`):", tok, sizeof(tok)));
  CHECK_INT(verify_at(tok, 1300819379, 0, &why, NULL), HG_EBADALG);
  CHECK_STR(why, "alg none not allowed");
}

HG_TEST(jwt_io_token) {
  char tok[512];
  CHECK(token_after("secret = the ASCII bytes `your-256-bit-secret`):\n", tok, sizeof(tok)));
  hg_jwt_key_t k = {NULL, "your-256-bit-secret", 19};
  hg_jwt_verify_opts_t o = {HG_JWT_HS256, &k, 1, 1516239022, 0, 0, 0};
  hg_buf_t c = HG_BUF_INIT;
  const char *why;
  CHECK_INT(hg_jwt_verify(tok, strlen(tok), &o, &c, &why), 0);
  CHECK_STR(c.data, "{\"sub\":\"1234567890\",\"name\":\"John Doe\",\"iat\":1516239022}");
  /* iat in the future is refused unless within the leeway */
  o.now = 1516239022 - 10;
  CHECK_INT(hg_jwt_verify(tok, strlen(tok), &o, NULL, &why), HG_ENOTYET);
  CHECK_STR(why, "token issued in the future (iat)");
  o.leeway = 10;
  CHECK_INT(hg_jwt_verify(tok, strlen(tok), &o, NULL, &why), 0);
  /* max_age counts from iat */
  o.leeway = 0, o.max_age = 100, o.now = 1516239022 + 100;
  CHECK_INT(hg_jwt_verify(tok, strlen(tok), &o, NULL, &why), 0);
  o.now += 1;
  CHECK_INT(hg_jwt_verify(tok, strlen(tok), &o, NULL, &why), HG_EEXPIRED);
  /* no exp, and exp required */
  o.max_age = 0, o.flags = HG_JWT_REQUIRE_EXP;
  CHECK_INT(hg_jwt_verify(tok, strlen(tok), &o, NULL, &why), HG_EINVAL);
  CHECK_STR(why, "exp claim required");
  hg_buf_free(&c);
}

HG_TEST(attack_tokens) {
  /* VECTORS.md §2.3, pinned HS256, RFC 7515 A.1 key, a clock inside T1's window
   * (1300819300 <= now < 1300819380) and exp required. */
  static const struct {
    int id, rc;
    const char *why;
  } want[] = {
      {1, 0, NULL},
      {2, HG_EBADSIG, "signature mismatch"},
      {3, HG_EBADSIG, "signature mismatch"},
      {4, HG_EBADALG, "alg none not allowed"},
      {5, HG_EBADALG, "alg none not allowed"},
      {6, HG_EBADALG, "alg none not allowed"},
      {7, HG_EBADALG, "alg not allowed"},
      {8, HG_EBADALG, "alg not allowed"},
      {9, HG_EINVAL, "crit header not supported"},
      {10, HG_EINVAL, "crit header not supported"},
      {11, HG_EPARSE, "duplicate member in header"},
      {12, HG_EPARSE, "duplicate member in header"},
      {13, HG_EPARSE, "duplicate member in claims"},
      {14, HG_EPARSE, "exp is not a number"},
      {15, HG_EINVAL, "exp claim required"},
      {16, 0, NULL},
      {17, HG_EPARSE, "header is not a JSON object"},
      {18, HG_EPARSE, "claims are not valid JSON"},
      {19, HG_EBADALG, "alg missing"},
      {20, HG_EPARSE, "malformed base64url in signature"},
      {21, HG_EPARSE, "malformed base64url in payload"},
      {22, HG_EPARSE, "bad segment count"},
      {23, HG_EPARSE, "bad segment count"},
      {24, HG_EPARSE, "malformed base64url in signature"},
      {25, HG_EPARSE, "malformed base64url in signature"},
      {26, HG_EPARSE, "malformed base64url in signature"},
      {27, HG_EBADSIG, "bad signature length"},
      {28, HG_EBADSIG, "signature mismatch"},
      {29, HG_EPARSE, "header is not valid JSON"},
  };
  for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
    char tok[512];
    const char *why = "unset";
    CHECK(attack_token(want[i].id, tok, sizeof(tok)));
    int rc = verify_at(tok, 1300819350, HG_JWT_REQUIRE_EXP, &why, NULL);
    if (rc != want[i].rc || (want[i].why && (!why || strcmp(why, want[i].why))))
      fprintf(stderr, "T%d: rc %d (%s), want %d (%s)\n", want[i].id, rc, why ? why : "-",
              want[i].rc, want[i].why ? want[i].why : "-");
    CHECK_INT(rc, want[i].rc);
    if (want[i].why) CHECK_STR(why, want[i].why);
  }
  /* T1's window: exp is "on or after", nbf is "before" */
  char t1[512], t16[512], t15[512];
  const char *why;
  attack_token(1, t1, sizeof(t1));
  CHECK_INT(verify_at(t1, 1300819300, HG_JWT_REQUIRE_EXP, &why, NULL), 0);
  CHECK_INT(verify_at(t1, 1300819379.9, HG_JWT_REQUIRE_EXP, &why, NULL), 0);
  CHECK_INT(verify_at(t1, 1300819380, HG_JWT_REQUIRE_EXP, &why, NULL), HG_EEXPIRED);
  CHECK_INT(verify_at(t1, 1300819299, HG_JWT_REQUIRE_EXP, &why, NULL), HG_ENOTYET);
  CHECK_STR(why, "token not yet valid (nbf)");
  /* T16: fractional exp 1300819380.5 */
  attack_token(16, t16, sizeof(t16));
  CHECK_INT(verify_at(t16, 1300819380.4, HG_JWT_REQUIRE_EXP, &why, NULL), 0);
  CHECK_INT(verify_at(t16, 1300819380.5, HG_JWT_REQUIRE_EXP, &why, NULL), HG_EEXPIRED);
  /* T15 passes only when exp is not required */
  attack_token(15, t15, sizeof(t15));
  CHECK_INT(verify_at(t15, 1300819350, 0, &why, NULL), 0);
  /* T7/T8 verify when pinned to their own alg (their MACs are right) */
  char t7[512], t8[512];
  attack_token(7, t7, sizeof(t7));
  attack_token(8, t8, sizeof(t8));
  hg_jwt_key_t k = {NULL, a1_key, 64};
  hg_jwt_verify_opts_t o = {HG_JWT_HS512, &k, 1, 1300819350, 0, 0, HG_JWT_REQUIRE_EXP};
  CHECK_INT(hg_jwt_verify(t7, strlen(t7), &o, NULL, &why), 0);
  o.alg = HG_JWT_HS384;
  CHECK_INT(hg_jwt_verify(t8, strlen(t8), &o, NULL, &why), 0);
  CHECK_INT(hg_jwt_verify(t7, strlen(t7), &o, NULL, &why), HG_EBADALG);
}

HG_TEST(sign_round_trip_and_kids) {
  hg_buf_t tok = HG_BUF_INIT, c = HG_BUF_INIT;
  const char *why;
  const char *claims = "{\"sub\":\"hls\",\"pfx\":\"videos/a\",\"exp\":2000000000}";
  for (int a = HG_JWT_HS256; a <= HG_JWT_HS512; a++) {
    hg_buf_clear(&tok);
    CHECK_INT(hg_jwt_sign(&tok, (hg_jwt_alg_t)a, NULL, "k1-secret", 9, claims, strlen(claims),
                          &why), 0);
    hg_jwt_key_t k = {NULL, "k1-secret", 9};
    hg_jwt_verify_opts_t o = {(hg_jwt_alg_t)a, &k, 1, 1900000000, 0, 0, HG_JWT_REQUIRE_EXP};
    hg_buf_clear(&c);
    CHECK_INT(hg_jwt_verify(tok.data, tok.len, &o, &c, &why), 0);
    CHECK_STR(c.data, claims);
  }
  /* RFC 7515 A.1 header/payload signed with HS256 and its key give the published MAC
   * when the same header is used: check via the A.1 token's signing input instead. */
  hg_buf_clear(&tok);
  CHECK_INT(hg_jwt_sign(&tok, HG_JWT_HS256, NULL, "k", 1, claims, strlen(claims), &why), 0);
  CHECK(strncmp(tok.data, "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.", 37) == 0); /* {"alg":"HS256","typ":"JWT"} */

  /* key rotation with kids */
  hg_buf_clear(&tok);
  CHECK_INT(hg_jwt_sign(&tok, HG_JWT_HS256, "2024-b", "new-secret", 10, claims, strlen(claims),
                        &why), 0);
  hg_jwt_key_t keys[] = {{"2024-a", "old-secret", 10}, {"2024-b", "new-secret", 10}};
  hg_jwt_verify_opts_t o = {HG_JWT_HS256, keys, 2, 1900000000, 0, 0, 0};
  CHECK_INT(hg_jwt_verify(tok.data, tok.len, &o, NULL, &why), 0);
  o.nkeys = 1; /* only the old key: its kid does not match */
  CHECK_INT(hg_jwt_verify(tok.data, tok.len, &o, NULL, &why), HG_ENOKEY);
  CHECK_STR(why, "unknown kid");
  /* a kid selects: the right secret under another kid does not verify */
  hg_jwt_key_t swapped[] = {{"2024-a", "new-secret", 10}, {"2024-b", "old-secret", 10}};
  o.keys = swapped, o.nkeys = 2;
  CHECK_INT(hg_jwt_verify(tok.data, tok.len, &o, NULL, &why), HG_EBADSIG);
  /* kid-less keys are tried for any token, in order */
  hg_jwt_key_t anykeys[] = {{NULL, "old-secret", 10}, {NULL, "new-secret", 10}};
  o.keys = anykeys;
  CHECK_INT(hg_jwt_verify(tok.data, tok.len, &o, NULL, &why), 0);
  o.nkeys = 0;
  CHECK_INT(hg_jwt_verify(tok.data, tok.len, &o, NULL, &why), HG_ENOKEY);

  /* kid needing JSON escaping survives the round trip */
  hg_buf_clear(&tok);
  CHECK_INT(hg_jwt_sign(&tok, HG_JWT_HS256, "a\"b\\c", "s", 1, "{}", 2, &why), 0);
  hg_jwt_key_t ek = {"a\"b\\c", "s", 1};
  hg_jwt_verify_opts_t eo = {HG_JWT_HS256, &ek, 1, 0, 0, 0, 0};
  CHECK_INT(hg_jwt_verify(tok.data, tok.len, &eo, NULL, &why), 0);

  /* sign refuses what verify would refuse, and leaves out unchanged */
  hg_buf_clear(&tok);
  CHECK_INT(hg_jwt_sign(&tok, HG_JWT_HS256, NULL, "s", 1, "[1]", 3, &why), HG_EPARSE);
  CHECK_INT(hg_jwt_sign(&tok, HG_JWT_HS256, NULL, "s", 1, "{\"a\":1,\"a\":2}", 13, &why), HG_EPARSE);
  CHECK_STR(why, "duplicate member name");
  CHECK_INT(hg_jwt_sign(&tok, HG_JWT_HS256, NULL, "", 0, "{}", 2, &why), HG_EINVAL);
  CHECK_INT(hg_jwt_sign(&tok, (hg_jwt_alg_t)9, NULL, "s", 1, "{}", 2, &why), HG_EINVAL);
  CHECK_INT((int)tok.len, 0);
  CHECK_INT(hg_jwt_alg_from_name("HS384", 5), HG_JWT_HS384);
  CHECK_INT(hg_jwt_alg_from_name("hs256", 5), 0);
  CHECK_INT(hg_jwt_alg_from_name("none", 4), 0);
  CHECK_STR(hg_jwt_alg_name(HG_JWT_HS512), "HS512");

  /* malformed inputs and options */
  hg_jwt_key_t k = {NULL, "s", 1};
  hg_jwt_verify_opts_t bad = {0, &k, 1, 0, 0, 0, 0};
  CHECK_INT(hg_jwt_verify("a.b.c", 5, &bad, NULL, &why), HG_EINVAL);
  hg_jwt_verify_opts_t ok = {HG_JWT_HS256, &k, 1, 0, 0, 0, 0};
  CHECK_INT(hg_jwt_verify("", 0, &ok, NULL, &why), HG_EPARSE);
  CHECK_INT(hg_jwt_verify("..", 2, &ok, NULL, &why), HG_EPARSE);
  CHECK_STR(why, "empty header");
  static char longtok[HG_JWT_MAX_LEN + 10];
  memset(longtok, 'A', sizeof(longtok) - 1);
  CHECK_INT(hg_jwt_verify(longtok, strlen(longtok), &ok, NULL, &why), HG_EPARSE);
  CHECK_STR(why, "token too long");
  hg_buf_free(&tok);
  hg_buf_free(&c);
}

/* Found by fuzz_jwt: sign must refuse what verify would refuse (time claims that are
 * not numbers), so we never mint a token we would reject. */
HG_TEST(sign_refuses_time_claims_of_the_wrong_type) {
  static const char *claims[] = {"{\"exp\":\"1\"}", "{\"nbf\":true}", "{\"iat\":null}", "{\"exp\":[1]}"};
  for (size_t i = 0; i < sizeof(claims) / sizeof(claims[0]); i++) {
    hg_buf_t out = HG_BUF_INIT;
    const char *why = NULL;
    CHECK_INT(hg_jwt_sign(&out, HG_JWT_HS256, NULL, "k", 1, claims[i], strlen(claims[i]), &why), HG_EPARSE);
    CHECK(why != NULL && strstr(why, "is not a number") != NULL);
    CHECK_INT(out.len, 0);
    hg_buf_free(&out);
  }
}

int main(void) {
  vectors = hgtest_slurp(HG_SHARED_DIR "/conformance/VECTORS.md", NULL);
  if (vectors == NULL) {
    fprintf(stderr, "cannot read VECTORS.md\n");
    return 1;
  }
  /* RFC 7515 A.1.1: the key is the base64url-decoded JWK "k" */
  size_t n;
  const char *k = "AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow";
  unsigned char tmp[66];
  if (hg_base64_decode_to(tmp, &n, k, strlen(k), HG_BASE64URL) || n != 64) return 1;
  memcpy(a1_key, tmp, 64);
  RUN(rfc7515_a1);
  RUN(jwt_io_token);
  RUN(attack_tokens);
  RUN(sign_round_trip_and_kids);
  free(vectors);
  RUN(sign_refuses_time_claims_of_the_wrong_type);
  return hgtest_done();
}
