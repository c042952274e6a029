/* test_hash.c — SHA-2, HMAC, hex, base64/base64url, random, constant-time compare.
 *
 * Expected values are published ones: FIPS 180-2 "abc" digests, RFC 4231 HMAC test
 * cases 2 and 6, RFC 4648 §10 base64 vectors, and the RFC 7515 A.1 JWK key (its
 * base64url `k` and the hex bytes, both from VECTORS.md §2.1).
 */
#include <string.h>

#include "base/error.h"
#include "crypto/hash.h"
#include "hgtest.h"

static void hexof(hg_hash_alg_t alg, const unsigned char *d, char *out) {
  hg_hex(d, hg_hash_size(alg), out);
}

HG_TEST(sha2_abc) {
  /* FIPS 180-2 appendix examples, message "abc" */
  unsigned char d[64];
  char hex[129];
  CHECK_INT(hg_sha256("abc", 3, d), 0);
  hexof(HG_HASH_SHA256, d, hex);
  CHECK_STR(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  CHECK_INT(hg_hash(HG_HASH_SHA384, "abc", 3, d), 0);
  hexof(HG_HASH_SHA384, d, hex);
  CHECK_STR(hex, "cb00753f45a35e8bb5a03d699ac65007272c32ab0eded1631a8b605a43ff5bed"
                 "8086072ba1e7cc2358baeca134c825a7");
  CHECK_INT(hg_hash(HG_HASH_SHA512, "abc", 3, d), 0);
  hexof(HG_HASH_SHA512, d, hex);
  CHECK_STR(hex, "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a"
                 "2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f");
  /* empty message: VECTORS.md §1.1 empty-body hash */
  CHECK_INT(hg_sha256("", 0, d), 0);
  hexof(HG_HASH_SHA256, d, hex);
  CHECK_STR(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  CHECK_INT(hg_hash(0, "x", 1, d), HG_EINVAL);
  CHECK_INT((int)hg_hash_size(HG_HASH_SHA384), 48);
  CHECK_INT(hg_hash_from_name("SHA-256", 7), HG_HASH_SHA256);
  CHECK_INT(hg_hash_from_name("sha384", 6), HG_HASH_SHA384);
  CHECK_INT(hg_hash_from_name("Sha512", 6), HG_HASH_SHA512);
  CHECK_INT(hg_hash_from_name("md5", 3), 0);
  CHECK_INT(hg_hash_from_name("sha256x", 7), 0);
  CHECK_INT(hg_hash_from_name("sha2-56", 7), 0);
}

HG_TEST(hmac_rfc4231) {
  static const struct {
    hg_hash_alg_t alg;
    const char *tc2, *tc6;
  } v[] = {
      {HG_HASH_SHA256, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
       "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"},
      {HG_HASH_SHA384,
       "af45d2e376484031617f78d2b58a6b1b9c7ef464f5a01b47e42ec3736322445e8e2240ca5e69e2c78b3239ecfab21649",
       "4ece084485813e9088d2c63a041bc5b44f9ef1012a2b588f3cd11f05033ac4c60c2ef6ab4030fe8296248df163f44952"},
      {HG_HASH_SHA512,
       "164b7a7bfcf819e2e395fbe73b56e0a387bd64222e831fd610270cd7ea2505549758bf75c05a994a6d034f65f8f0e6fdcaeab1a34d4a6b4b636e070a38bce737",
       "80b24263c7c1a3ebb71493c1dd7be8b49b46d1f41b4aeec1121b013783f8f3526b56d037e05f2598bd0fd2215d6a1e5295e64f73f63f0aec8b915a985d786598"},
  };
  unsigned char key6[131];
  memset(key6, 0xaa, sizeof(key6));
  const char *m6 = "Test Using Larger Than Block-Size Key - Hash Key First";
  for (size_t i = 0; i < 3; i++) {
    unsigned char d[64];
    char hex[129];
    CHECK_INT(hg_hmac(v[i].alg, "Jefe", 4, "what do ya want for nothing?", 28, d), 0);
    hexof(v[i].alg, d, hex);
    CHECK_STR(hex, v[i].tc2);
    CHECK_INT(hg_hmac(v[i].alg, key6, sizeof(key6), m6, strlen(m6), d), 0);
    hexof(v[i].alg, d, hex);
    CHECK_STR(hex, v[i].tc6);
    /* precomputed key, message in pieces */
    hg_hmac_key_t k;
    CHECK_INT(hg_hmac_key_init(&k, v[i].alg, "Jefe", 4), 0);
    const void *parts[3] = {"what do ", "ya want", " for nothing?"};
    size_t lens[3] = {8, 7, 13};
    for (int round = 0; round < 2; round++) { /* the key is reusable */
      memset(d, 0, sizeof(d));
      CHECK_INT(hg_hmac_key_mac(&k, parts, lens, 3, d), 0);
      hexof(v[i].alg, d, hex);
      CHECK_STR(hex, v[i].tc2);
    }
    hg_hmac_key_wipe(&k);
  }
}

HG_TEST(base64_rfc4648) {
  static const char *const plain[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar"};
  static const char *const std[] = {"", "Zg==", "Zm8=", "Zm9v", "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy"};
  static const char *const url[] = {"", "Zg", "Zm8", "Zm9v", "Zm9vYg", "Zm9vYmE", "Zm9vYmFy"};
  for (int i = 0; i < 7; i++) {
    hg_buf_t b = HG_BUF_INIT;
    CHECK_INT(hg_base64_encode(&b, plain[i], strlen(plain[i]), HG_BASE64), 0);
    CHECK_STR(b.data ? b.data : "", std[i]);
    hg_buf_clear(&b);
    CHECK_INT(hg_base64_encode(&b, plain[i], strlen(plain[i]), HG_BASE64URL), 0);
    CHECK_STR(b.data ? b.data : "", url[i]);
    hg_buf_clear(&b);
    CHECK_INT(hg_base64_decode(&b, std[i], strlen(std[i]), HG_BASE64), 0);
    CHECK_STR(b.data ? b.data : "", plain[i]);
    hg_buf_clear(&b);
    CHECK_INT(hg_base64_decode(&b, url[i], strlen(url[i]), HG_BASE64URL), 0);
    CHECK_STR(b.data ? b.data : "", plain[i]);
    hg_buf_free(&b);
  }
}

HG_TEST(base64_strict) {
  static const struct {
    const char *s;
    hg_base64_t v;
  } bad[] = {
      {"Zg", HG_BASE64},        /* missing padding */
      {"Zg=", HG_BASE64},       /* short padding */
      {"Zg===", HG_BASE64},     {"Z===", HG_BASE64},  {"====", HG_BASE64},
      {"Zm9v\n", HG_BASE64},    /* whitespace */
      {"Zm 9v", HG_BASE64},     {"Zh==", HG_BASE64},  /* non-canonical: 'h' has low bits */
      {"Zm9=", HG_BASE64},      /* non-canonical: '9' low bits */
      {"Zm=v", HG_BASE64},      /* padding in the middle */
      {"Zm9v-_", HG_BASE64},    /* url alphabet in std */
      {"Zg==", HG_BASE64URL},   /* padding in url */
      {"Zm9v+/", HG_BASE64URL}, /* std alphabet in url */
      {"Z", HG_BASE64URL},      /* impossible length */
      {"Zh", HG_BASE64URL},     {"Zm9", HG_BASE64URL}, {"Zm9v Yg", HG_BASE64URL},
      /* VECTORS.md §2.3 T26: last char B instead of A (same bytes when lenient) */
      {"kuBp8OFyoS9IKWsV82wRF5freNkJyeV_v7KfQ09Sg2B", HG_BASE64URL},
  };
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    hg_buf_t b = HG_BUF_INIT;
    hg_buf_puts(&b, "keep");
    int rc = hg_base64_decode(&b, bad[i].s, strlen(bad[i].s), bad[i].v);
    if (rc != HG_EPARSE) fprintf(stderr, "accepted: %s\n", bad[i].s);
    CHECK_INT(rc, HG_EPARSE);
    CHECK_STR(b.data, "keep"); /* unchanged on failure */
    hg_buf_free(&b);
  }
  /* the canonical form of T26's signature decodes to 32 bytes */
  unsigned char out[48];
  size_t n;
  CHECK_INT(hg_base64_decode_to(out, &n, "kuBp8OFyoS9IKWsV82wRF5freNkJyeV_v7KfQ09Sg2A", 43,
                                HG_BASE64URL), 0);
  CHECK_INT((int)n, 32);
  /* RFC 7515 A.1.1 JWK "k" → the 64 key bytes given in hex (VECTORS.md §2.1) */
  const char *k = "AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow";
  unsigned char kb[66];
  char hex[129];
  CHECK_INT(hg_base64_decode_to(kb, &n, k, strlen(k), HG_BASE64URL), 0);
  CHECK_INT((int)n, 64);
  hg_hex(kb, 64, hex);
  CHECK_STR(hex, "0323354b2b0fa5bc837e0665777ba68f5ab328e6f054c928a90f84b2d2502ebf"
                 "d3fb5a92d20647ef968ab4c377623d223d2e2172052e4f08c0cd9af567d080a3");
  /* every byte value round-trips in both variants */
  unsigned char all[256];
  for (int i = 0; i < 256; i++) all[i] = (unsigned char)i;
  for (size_t len = 0; len <= 256; len += 1) {
    for (int v = 0; v < 2; v++) {
      char enc[400];
      unsigned char dec[300];
      size_t el = hg_base64_encode_to(enc, all, len, (hg_base64_t)v);
      if (el != hg_base64_encoded_len(len, (hg_base64_t)v) ||
          hg_base64_decode_to(dec, &n, enc, el, (hg_base64_t)v) != 0 || n != len ||
          memcmp(dec, all, len) != 0) {
        CHECK(0);
        fprintf(stderr, "round trip failed at len %zu variant %d\n", len, v);
      }
    }
  }
}

HG_TEST(random_and_compare) {
  unsigned char a[64], b[64];
  memset(a, 0, sizeof(a));
  memset(b, 0, sizeof(b));
  CHECK_INT(hg_random(a, sizeof(a)), 0);
  CHECK_INT(hg_random(b, sizeof(b)), 0);
  CHECK(memcmp(a, b, sizeof(a)) != 0); /* 2^-512 chance of a false failure */
  static const unsigned char zero[64];
  CHECK(memcmp(a, zero, sizeof(a)) != 0);
  CHECK_INT(hg_random(a, 0), 0);
  unsigned char big[100000];
  CHECK_INT(hg_random(big, sizeof(big)), 0);

  CHECK(hg_ct_equal("abc", 3, "abc", 3));
  CHECK(!hg_ct_equal("abc", 3, "abd", 3));
  CHECK(!hg_ct_equal("abc", 3, "abcd", 4));
  CHECK(hg_ct_equal("", 0, "", 0));
  CHECK(!hg_ct_equal("a", 1, "", 0));
  memcpy(b, a, sizeof(a));
  CHECK(hg_ct_equal(a, 64, b, 64));
  b[63] ^= 1;
  CHECK(!hg_ct_equal(a, 64, b, 64));
}

HG_TEST(sha256_both_engines) {
  /* The SHA-NI and the portable (mbedTLS) compression must agree on every length and
   * split; both must give the published FIPS 180-2 digests (incl. the two-block one). */
  printf("sha256 engine: %s\n", hg__sha256_accelerated() ? "SHA-NI" : "portable");
  static const char *const msgs[] = {
      "abc", "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"};
  static const char *const want[] = {
      "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
      "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"};
  for (int engine = 0; engine < 2; engine++) {
    hg__sha256_force_portable(engine);
    for (int i = 0; i < 2; i++) {
      unsigned char d[32];
      char hex[65];
      hg_sha256(msgs[i], strlen(msgs[i]), d);
      hg_hex(d, 32, hex);
      CHECK_STR(hex, want[i]);
    }
  }
  hg__sha256_force_portable(0);
  static unsigned char data[1100];
  hg_random(data, sizeof(data));
  int bad = 0;
  for (size_t len = 0; len <= sizeof(data); len += (len < 200 ? 1 : 37)) {
    unsigned char a[32], b[32], c[32];
    hg__sha256_force_portable(1);
    hg_sha256(data, len, a);
    hg__sha256_force_portable(0);
    hg_sha256(data, len, b);
    /* streamed in uneven pieces */
    hg_sha256_t ctx;
    hg_sha256_init(&ctx);
    size_t off = 0, step = 1;
    while (off < len) {
      size_t k = step < len - off ? step : len - off;
      hg_sha256_update(&ctx, data + off, k);
      off += k;
      step = step * 3 % 97 + 1;
    }
    hg_sha256_final(&ctx, c);
    if (memcmp(a, b, 32) || memcmp(a, c, 32)) bad++;
  }
  CHECK_INT(bad, 0);
  /* HMAC over the accelerated path still gives RFC 4231 */
  unsigned char m[32];
  char hex[65];
  hg_hmac(HG_HASH_SHA256, "Jefe", 4, "what do ya want for nothing?", 28, m);
  hg_hex(m, 32, hex);
  CHECK_STR(hex, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
}

int main(void) {
  RUN(sha2_abc);
  RUN(sha256_both_engines);
  RUN(hmac_rfc4231);
  RUN(base64_rfc4648);
  RUN(base64_strict);
  RUN(random_and_compare);
  return hgtest_done();
}
