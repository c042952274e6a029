/* fuzz_jwt.c — libFuzzer target for the token path: JWT verification (the strict JSON
 * reader and base64url decoder inside it) on arbitrary tokens.
 *
 * Besides crashes and sanitizer reports it checks: verification never succeeds for an
 * input that is not a token we signed (the key is fixed and secret to the fuzzer); a
 * token re-signed from claims the verifier accepted verifies again; base64url decoding
 * of any input either fails or round-trips through encoding.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/error.h"
#include "crypto/hash.h"
#include "crypto/jwt.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char key[] = "fuzz-key-0123456789abcdef";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *s = (const char *)data;
  hg_jwt_key_t k = {NULL, key, sizeof(key) - 1};
  hg_jwt_verify_opts_t o = {HG_JWT_HS256, &k, 1, 1700000000, 30, 0, 0};
  hg_buf_t claims = HG_BUF_INIT;
  const char *why = NULL;
  int rc = hg_jwt_verify(s, size, &o, &claims, &why);
  if (rc == 0) abort(); /* forging a MAC is not something a fuzzer should manage */
  if (why == NULL) abort(); /* every failure has a reason */
  hg_buf_free(&claims);

  /* Claims as JSON: sign them; if signing accepted them, verification must too. */
  hg_buf_t tok = HG_BUF_INIT;
  if (hg_jwt_sign(&tok, HG_JWT_HS256, NULL, key, sizeof(key) - 1, s, size, &why) == 0) {
    o.flags = 0;
    rc = hg_jwt_verify(tok.data, tok.len, &o, &claims, &why);
    /* Only the claims' times may make it fail (they are not what this checks). */
    if (rc != 0 && rc != HG_EEXPIRED && rc != HG_ENOTYET) abort();
    hg_buf_free(&claims);
  }
  hg_buf_free(&tok);

  hg_buf_t dec = HG_BUF_INIT, enc = HG_BUF_INIT;
  if (hg_base64_decode(&dec, s, size, HG_BASE64URL) == 0) {
    if (hg_base64_encode(&enc, dec.data ? dec.data : "", dec.len, HG_BASE64URL) != 0) abort();
    if (enc.len != size || (size && memcmp(enc.data, s, size) != 0)) abort(); /* canonical only */
  }
  hg_buf_free(&dec);
  hg_buf_free(&enc);
  return 0;
}
