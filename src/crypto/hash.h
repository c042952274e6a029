/* hash.h — SHA-2, HMAC, hex, base64/base64url, secure random bytes and constant-time
 * comparison over mbedTLS: the primitives SigV4, JWT and the Lua crypto API share.
 *
 * Pure functions over caller memory: no global state, no heap; any thread.
 */
#ifndef HG_CRYPTO_HASH_H
#define HG_CRYPTO_HASH_H

#include <stddef.h>
#include <stdint.h>

#include <mbedtls/sha512.h>

#include "base/buf.h"

typedef enum hg_hash_alg_e {
  HG_HASH_SHA256 = 1,
  HG_HASH_SHA384 = 2,
  HG_HASH_SHA512 = 3,
} hg_hash_alg_t;

#define HG_HASH_MAX 64 /* largest digest (SHA-512), bytes */

/* Streaming SHA-256 (plain data, no heap). Uses the CPU's SHA instructions when it has
 * them (x86 SHA-NI), else mbedTLS's compression function: same results, several times
 * faster on the SigV4 and HS256 hot paths. */
typedef struct hg_sha256_s {
  uint32_t h[8];
  uint64_t len;
  unsigned char buf[64];
  size_t nbuf;
} hg_sha256_t;

void hg_sha256_init(hg_sha256_t *c);
void hg_sha256_update(hg_sha256_t *c, const void *p, size_t n);
/* Writes the digest and wipes the context. */
void hg_sha256_final(hg_sha256_t *c, unsigned char out[32]);

/* Internal, for tests and benchmarks: force the portable compression (on=1) or go back
 * to automatic selection (on=0); returns the previous setting. Not thread-safe. */
int hg__sha256_force_portable(int on);
/* 1 if SHA-256 currently runs on the CPU's SHA instructions. */
int hg__sha256_accelerated(void);

/* Digest size in bytes of `alg` (32, 48 or 64), or 0 for an unknown value. */
size_t hg_hash_size(hg_hash_alg_t alg);

/* Parses "sha256"/"sha384"/"sha512" (case-insensitive, optional '-' as in "SHA-256").
 * Returns the algorithm, or 0 if the name is unknown. */
hg_hash_alg_t hg_hash_from_name(const char *name, size_t n);

/* out[0..hg_hash_size(alg)) = digest of msg[0..n). Returns 0 or HG_EINVAL. */
int hg_hash(hg_hash_alg_t alg, const void *msg, size_t n, unsigned char *out);
int hg_sha256(const void *msg, size_t n, unsigned char out[32]);

/* out[0..hg_hash_size(alg)) = HMAC-alg(key, msg) (RFC 2104; any key length).
 * Returns 0 or HG_EINVAL. */
int hg_hmac(hg_hash_alg_t alg, const void *key, size_t key_len, const void *msg, size_t n,
            unsigned char *out);

/* A keyed HMAC: the hash states after absorbing key^ipad and key^opad, so every MAC
 * under the same key skips two compressions and never rehashes a long key. Plain data
 * (copyable, no heap); wipe it with hg_hmac_key_wipe when the key is retired. */
typedef struct hg_hmac_key_s {
  hg_hash_alg_t alg;
  union {
    hg_sha256_t s256;
    mbedtls_sha512_context s512;
  } inner, outer;
} hg_hmac_key_t;

/* Prepares `k` for HMAC-alg under key[0..key_len). Returns 0 or HG_EINVAL. */
int hg_hmac_key_init(hg_hmac_key_t *k, hg_hash_alg_t alg, const void *key, size_t key_len);

/* out = HMAC(k, concatenation of the `nparts` spans). `k` is not modified, so one key may
 * serve several threads at once. Returns 0 or HG_EINVAL. */
int hg_hmac_key_mac(const hg_hmac_key_t *k, const void *const *parts, const size_t *lens,
                    size_t nparts, unsigned char *out);

/* Zeroes the key material (security: derived keys must not linger in freed memory). */
void hg_hmac_key_wipe(hg_hmac_key_t *k);

/* Writes 2n lowercase hex digits and a NUL to out (room for 2n+1). */
void hg_hex(const void *in, size_t n, char *out);

/* Base64 variants: HG_BASE64 is RFC 4648 §4 with '=' padding; HG_BASE64URL is §5
 * without padding (what JWS uses). */
typedef enum hg_base64_e { HG_BASE64 = 0, HG_BASE64URL = 1 } hg_base64_t;

/* Length of the encoding of n bytes (without NUL). */
size_t hg_base64_encoded_len(size_t n, hg_base64_t v);

/* Writes the encoding of in[0..n) plus a NUL to out (room for encoded_len+1).
 * Returns the number of characters written (without the NUL). */
size_t hg_base64_encode_to(char *out, const void *in, size_t n, hg_base64_t v);

/* Strict decode of s[0..n) into out (room for n/4*3+2 bytes); *out_len gets the size.
 * Rejects (HG_EPARSE) any byte outside the variant's alphabet (whitespace included),
 * wrong or missing padding (HG_BASE64) or any padding (HG_BASE64URL), an impossible
 * length, and non-canonical encodings whose unused trailing bits are not zero
 * (security: one byte string has exactly one accepted encoding). */
int hg_base64_decode_to(unsigned char *out, size_t *out_len, const char *s, size_t n,
                        hg_base64_t v);

/* Same, appending to a buffer. Return 0, HG_EPARSE or HG_ENOMEM; `out` is unchanged on
 * failure. */
int hg_base64_encode(hg_buf_t *out, const void *in, size_t n, hg_base64_t v);
int hg_base64_decode(hg_buf_t *out, const char *s, size_t n, hg_base64_t v);

/* Fills buf with n bytes from the kernel CSPRNG (getrandom(2), blocking only until the
 * pool is first initialised). Returns 0 or a negative errno. Any thread. */
int hg_random(void *buf, size_t n);

/* 1 if a[0..an) and b[0..bn) are equal, else 0. The time taken depends only on the
 * lengths, never on the contents (mbedtls_ct_memcmp): use it for MACs and secrets. */
int hg_ct_equal(const void *a, size_t an, const void *b, size_t bn);

#endif
