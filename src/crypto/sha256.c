/* sha256.c — streaming SHA-256 with an x86 SHA extensions (SHA-NI) compression function,
 * falling back to mbedTLS's (see hg_sha256_* in hash.h).
 *
 * Why: SHA-256 is the whole cost of SigV4 (a presign is ~9 compressions) and of HS256.
 * mbedTLS 2.28 only has portable C (~320 ns per block on the reference EPYC); the SHA
 * instructions do a block in a fraction of that. The choice is made once, from CPUID,
 * and both paths are checked against each other and the published vectors by
 * tests/unit/crypto/test_hash.c.
 */
#include <stdint.h>
#include <string.h>

#include <mbedtls/platform_util.h>
#include <mbedtls/sha256.h>

#include "crypto/hash.h"

typedef void (*compress_fn)(uint32_t h[8], const unsigned char *p, size_t nblocks);

static void compress_mbedtls(uint32_t h[8], const unsigned char *p, size_t nblocks) {
  mbedtls_sha256_context c;
  mbedtls_sha256_init(&c);
  memcpy(c.state, h, 32);
  for (size_t i = 0; i < nblocks; i++) mbedtls_internal_sha256_process(&c, p + 64 * i);
  memcpy(h, c.state, 32);
  mbedtls_platform_zeroize(&c, sizeof(c)); /* security: may hold HMAC key state */
}

#if defined(__x86_64__) && defined(__GNUC__)
#include <cpuid.h>
#include <immintrin.h>

#define SHANI_TARGET __attribute__((target("sha,sse4.1,ssse3")))

static const uint32_t K[64] __attribute__((aligned(16))) = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4,
    0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe,
    0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f,
    0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7,
    0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc,
    0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b,
    0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116,
    0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
    0xc67178f2};

/* The Intel SHA extensions recipe: the state lives as ABEF/CDGH, each rnds2 does two
 * rounds, msg1/msg2 extend the message schedule four words at a time. Quad q (rounds
 * 4q..4q+3) uses W[q%4]; while it runs, W for quad q+1 is finished (msg2) and W for quad
 * q+3 started (msg1). */
SHANI_TARGET static void compress_shani(uint32_t h[8], const unsigned char *p, size_t nblocks) {
  const __m128i bswap = _mm_set_epi64x(0x0c0d0e0f08090a0bULL, 0x0405060700010203ULL);
  __m128i tmp = _mm_loadu_si128((const __m128i *)&h[0]);
  __m128i s1 = _mm_loadu_si128((const __m128i *)&h[4]);
  tmp = _mm_shuffle_epi32(tmp, 0xB1);       /* CDAB */
  s1 = _mm_shuffle_epi32(s1, 0x1B);         /* EFGH */
  __m128i s0 = _mm_alignr_epi8(tmp, s1, 8); /* ABEF */
  s1 = _mm_blend_epi16(s1, tmp, 0xF0);      /* CDGH */

  for (; nblocks; nblocks--, p += 64) {
    __m128i abef = s0, cdgh = s1, w[4], m;
    for (int q = 0; q < 16; q++) {
      if (q < 4) w[q] = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(p + 16 * q)), bswap);
      m = _mm_add_epi32(w[q & 3], _mm_load_si128((const __m128i *)&K[4 * q]));
      s1 = _mm_sha256rnds2_epu32(s1, s0, m);
      if (q >= 3 && q <= 14) {
        __m128i t = _mm_alignr_epi8(w[q & 3], w[(q + 3) & 3], 4);
        w[(q + 1) & 3] = _mm_add_epi32(w[(q + 1) & 3], t);
        w[(q + 1) & 3] = _mm_sha256msg2_epu32(w[(q + 1) & 3], w[q & 3]);
      }
      m = _mm_shuffle_epi32(m, 0x0E);
      s0 = _mm_sha256rnds2_epu32(s0, s1, m);
      if (q >= 1 && q <= 12) w[(q + 3) & 3] = _mm_sha256msg1_epu32(w[(q + 3) & 3], w[q & 3]);
    }
    s0 = _mm_add_epi32(s0, abef);
    s1 = _mm_add_epi32(s1, cdgh);
  }

  tmp = _mm_shuffle_epi32(s0, 0x1B);   /* FEBA */
  s1 = _mm_shuffle_epi32(s1, 0xB1);    /* DCHG */
  s0 = _mm_blend_epi16(tmp, s1, 0xF0); /* DCBA */
  s1 = _mm_alignr_epi8(s1, tmp, 8);    /* ABEF -> HGFE order as words E..H */
  _mm_storeu_si128((__m128i *)&h[0], s0);
  _mm_storeu_si128((__m128i *)&h[4], s1);
}

static int cpu_has_shani(void) {
  unsigned a, b, c, d;
  if (!__get_cpuid(1, &a, &b, &c, &d)) return 0;
  int sse41 = (c >> 19) & 1, ssse3 = (c >> 9) & 1;
  if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return 0;
  return sse41 && ssse3 && ((b >> 29) & 1);
}
#endif

/* 0: not chosen yet, 1: portable, 2: SHA-NI. Racing first callers compute the same
 * value, so relaxed atomics suffice. */
static int impl;

static compress_fn pick(void) {
  int v = __atomic_load_n(&impl, __ATOMIC_RELAXED);
  if (v == 0) {
    v = 1;
#if defined(__x86_64__) && defined(__GNUC__)
    if (cpu_has_shani()) v = 2;
#endif
    __atomic_store_n(&impl, v, __ATOMIC_RELAXED);
  }
#if defined(__x86_64__) && defined(__GNUC__)
  if (v == 2) return compress_shani;
#endif
  return compress_mbedtls;
}

int hg__sha256_force_portable(int on) {
  int prev = __atomic_load_n(&impl, __ATOMIC_RELAXED);
  __atomic_store_n(&impl, on ? 1 : 0, __ATOMIC_RELAXED);
  pick();
  return prev;
}

int hg__sha256_accelerated(void) { return pick() != compress_mbedtls; }

void hg_sha256_init(hg_sha256_t *c) {
  static const uint32_t iv[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                                 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
  memcpy(c->h, iv, sizeof(iv));
  c->len = 0;
  c->nbuf = 0;
}

void hg_sha256_update(hg_sha256_t *c, const void *data, size_t n) {
  const unsigned char *p = data;
  if (n == 0) return;
  compress_fn f = pick();
  c->len += n;
  if (c->nbuf) {
    size_t k = 64 - c->nbuf < n ? 64 - c->nbuf : n;
    memcpy(c->buf + c->nbuf, p, k);
    c->nbuf += k;
    p += k;
    n -= k;
    if (c->nbuf < 64) return;
    f(c->h, c->buf, 1);
    c->nbuf = 0;
  }
  if (n >= 64) {
    f(c->h, p, n / 64);
    p += n / 64 * 64;
    n %= 64;
  }
  if (n) {
    memcpy(c->buf, p, n);
    c->nbuf = n;
  }
}

void hg_sha256_final(hg_sha256_t *c, unsigned char out[32]) {
  compress_fn f = pick();
  uint64_t bits = c->len * 8;
  c->buf[c->nbuf++] = 0x80;
  if (c->nbuf > 56) {
    memset(c->buf + c->nbuf, 0, 64 - c->nbuf);
    f(c->h, c->buf, 1);
    c->nbuf = 0;
  }
  memset(c->buf + c->nbuf, 0, 56 - c->nbuf);
  for (int i = 0; i < 8; i++) c->buf[56 + i] = (unsigned char)(bits >> (56 - 8 * i));
  f(c->h, c->buf, 1);
  for (int i = 0; i < 8; i++) {
    out[4 * i] = (unsigned char)(c->h[i] >> 24);
    out[4 * i + 1] = (unsigned char)(c->h[i] >> 16);
    out[4 * i + 2] = (unsigned char)(c->h[i] >> 8);
    out[4 * i + 3] = (unsigned char)c->h[i];
  }
  mbedtls_platform_zeroize(c, sizeof(*c)); /* security: may be an HMAC key state */
}
