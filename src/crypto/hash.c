/* hash.c — SHA-2, HMAC, hex, base64, random and constant-time compare (see hash.h).
 *
 * SHA-256 is hg_sha256_* (sha256.c: SHA-NI or mbedTLS); SHA-384/512 are mbedTLS's.
 * HMAC is built here over those raw contexts rather than mbedtls_md_hmac:
 * md contexts are heap-allocated by mbedtls_md_setup, and the SigV4 hot path wants the
 * precomputed ipad/opad states of a key (hg_hmac_key_t) anyway.
 */
#include "crypto/hash.h"

#include <errno.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>

#include <mbedtls/constant_time.h>
#include <mbedtls/platform_util.h>

#include "base/error.h"

size_t hg_hash_size(hg_hash_alg_t alg) {
  switch (alg) {
  case HG_HASH_SHA256: return 32;
  case HG_HASH_SHA384: return 48;
  case HG_HASH_SHA512: return 64;
  }
  return 0;
}

/* Block size of the compression function: the HMAC pad length. */
static size_t block_size(hg_hash_alg_t alg) { return alg == HG_HASH_SHA256 ? 64 : 128; }

hg_hash_alg_t hg_hash_from_name(const char *name, size_t n) {
  char tmp[8];
  size_t k = 0;
  for (size_t i = 0; i < n; i++) {
    if (name[i] == '-' && i == 3) continue; /* "sha-256" */
    if (k == sizeof(tmp) - 1) return 0;
    tmp[k++] = name[i];
  }
  tmp[k] = '\0';
  if (strcasecmp(tmp, "sha256") == 0) return HG_HASH_SHA256;
  if (strcasecmp(tmp, "sha384") == 0) return HG_HASH_SHA384;
  if (strcasecmp(tmp, "sha512") == 0) return HG_HASH_SHA512;
  return 0;
}

/* A running hash of either family. */
typedef struct {
  hg_hash_alg_t alg;
  union {
    hg_sha256_t s256;
    mbedtls_sha512_context s512;
  } u;
} hctx_t;

static void h_start(hctx_t *h, hg_hash_alg_t alg) {
  h->alg = alg;
  if (alg == HG_HASH_SHA256) {
    hg_sha256_init(&h->u.s256);
  } else {
    mbedtls_sha512_init(&h->u.s512);
    mbedtls_sha512_starts_ret(&h->u.s512, alg == HG_HASH_SHA384);
  }
}

static void h_update(hctx_t *h, const void *p, size_t n) {
  if (n == 0) return;
  if (h->alg == HG_HASH_SHA256)
    hg_sha256_update(&h->u.s256, p, n);
  else
    mbedtls_sha512_update_ret(&h->u.s512, p, n);
}

/* Writes the digest and wipes the state (it may hold key-dependent data). */
static void h_finish(hctx_t *h, unsigned char *out) {
  if (h->alg == HG_HASH_SHA256) {
    hg_sha256_final(&h->u.s256, out);
  } else {
    unsigned char full[64];
    mbedtls_sha512_finish_ret(&h->u.s512, full);
    memcpy(out, full, hg_hash_size(h->alg));
    mbedtls_platform_zeroize(full, sizeof(full));
    mbedtls_sha512_free(&h->u.s512);
  }
}

int hg_hash(hg_hash_alg_t alg, const void *msg, size_t n, unsigned char *out) {
  if (hg_hash_size(alg) == 0 || (msg == NULL && n)) return HG_EINVAL;
  hctx_t h;
  h_start(&h, alg);
  h_update(&h, msg, n);
  h_finish(&h, out);
  return 0;
}

int hg_sha256(const void *msg, size_t n, unsigned char out[32]) {
  return hg_hash(HG_HASH_SHA256, msg, n, out);
}

int hg_hmac_key_init(hg_hmac_key_t *k, hg_hash_alg_t alg, const void *key, size_t key_len) {
  if (hg_hash_size(alg) == 0 || (key == NULL && key_len)) return HG_EINVAL;
  size_t bs = block_size(alg);
  unsigned char kb[128], pad[128];
  memset(kb, 0, sizeof(kb));
  if (key_len > bs) { /* RFC 2104: long keys are hashed first */
    hg_hash(alg, key, key_len, kb);
  } else if (key_len) {
    memcpy(kb, key, key_len);
  }
  hctx_t h;
  k->alg = alg;
  for (size_t i = 0; i < bs; i++) pad[i] = kb[i] ^ 0x36;
  h_start(&h, alg);
  h_update(&h, pad, bs);
  memcpy(&k->inner, &h.u, sizeof(h.u));
  for (size_t i = 0; i < bs; i++) pad[i] = kb[i] ^ 0x5c;
  h_start(&h, alg);
  h_update(&h, pad, bs);
  memcpy(&k->outer, &h.u, sizeof(h.u));
  /* security: the padded key and the copies of the states are secrets */
  mbedtls_platform_zeroize(kb, sizeof(kb));
  mbedtls_platform_zeroize(pad, sizeof(pad));
  mbedtls_platform_zeroize(&h, sizeof(h));
  return 0;
}

int hg_hmac_key_mac(const hg_hmac_key_t *k, const void *const *parts, const size_t *lens,
                    size_t nparts, unsigned char *out) {
  size_t hs = hg_hash_size(k->alg);
  if (hs == 0) return HG_EINVAL;
  unsigned char ih[HG_HASH_MAX];
  hctx_t h;
  h.alg = k->alg;
  memcpy(&h.u, &k->inner, sizeof(h.u));
  for (size_t i = 0; i < nparts; i++) h_update(&h, parts[i], lens[i]);
  h_finish(&h, ih);
  memcpy(&h.u, &k->outer, sizeof(h.u));
  h_update(&h, ih, hs);
  h_finish(&h, out);
  mbedtls_platform_zeroize(ih, sizeof(ih));
  return 0;
}

void hg_hmac_key_wipe(hg_hmac_key_t *k) { mbedtls_platform_zeroize(k, sizeof(*k)); }

int hg_hmac(hg_hash_alg_t alg, const void *key, size_t key_len, const void *msg, size_t n,
            unsigned char *out) {
  if (msg == NULL && n) return HG_EINVAL;
  hg_hmac_key_t k;
  int rc = hg_hmac_key_init(&k, alg, key, key_len);
  if (rc == 0) {
    const void *parts[1] = {msg};
    rc = hg_hmac_key_mac(&k, parts, &n, 1, out);
  }
  hg_hmac_key_wipe(&k);
  return rc;
}

void hg_hex(const void *in, size_t n, char *out) {
  static const char digits[] = "0123456789abcdef";
  const unsigned char *p = in;
  for (size_t i = 0; i < n; i++) {
    out[2 * i] = digits[p[i] >> 4];
    out[2 * i + 1] = digits[p[i] & 15];
  }
  out[2 * n] = '\0';
}

/* ---- base64 ---------------------------------------------------------------------- */

static const char alpha_std[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
static const char alpha_url[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

size_t hg_base64_encoded_len(size_t n, hg_base64_t v) {
  if (v == HG_BASE64) return (n + 2) / 3 * 4;
  return n / 3 * 4 + (n % 3 ? n % 3 + 1 : 0);
}

size_t hg_base64_encode_to(char *out, const void *in, size_t n, hg_base64_t v) {
  const char *a = v == HG_BASE64URL ? alpha_url : alpha_std;
  const unsigned char *p = in;
  size_t o = 0, i = 0;
  for (; i + 3 <= n; i += 3) {
    unsigned w = (unsigned)p[i] << 16 | (unsigned)p[i + 1] << 8 | p[i + 2];
    out[o++] = a[w >> 18];
    out[o++] = a[(w >> 12) & 63];
    out[o++] = a[(w >> 6) & 63];
    out[o++] = a[w & 63];
  }
  size_t rem = n - i;
  if (rem) {
    unsigned w = (unsigned)p[i] << 16 | (rem == 2 ? (unsigned)p[i + 1] << 8 : 0);
    out[o++] = a[w >> 18];
    out[o++] = a[(w >> 12) & 63];
    if (rem == 2) out[o++] = a[(w >> 6) & 63];
    if (v == HG_BASE64) {
      if (rem == 1) out[o++] = '=';
      out[o++] = '=';
    }
  }
  out[o] = '\0';
  return o;
}

/* Each character's 6-bit value plus one in the variant's alphabet; 0: not in it. A
 * table, not comparisons: a token's characters are random, so branches mispredict
 * (a JWT is decoded on every new viewer's request). */
#define B64_ALNUM \
  ['A'] = 1, ['B'] = 2, ['C'] = 3, ['D'] = 4, ['E'] = 5, ['F'] = 6, ['G'] = 7, ['H'] = 8, \
  ['I'] = 9, ['J'] = 10, ['K'] = 11, ['L'] = 12, ['M'] = 13, ['N'] = 14, ['O'] = 15, \
  ['P'] = 16, ['Q'] = 17, ['R'] = 18, ['S'] = 19, ['T'] = 20, ['U'] = 21, ['V'] = 22, \
  ['W'] = 23, ['X'] = 24, ['Y'] = 25, ['Z'] = 26, ['a'] = 27, ['b'] = 28, ['c'] = 29, \
  ['d'] = 30, ['e'] = 31, ['f'] = 32, ['g'] = 33, ['h'] = 34, ['i'] = 35, ['j'] = 36, \
  ['k'] = 37, ['l'] = 38, ['m'] = 39, ['n'] = 40, ['o'] = 41, ['p'] = 42, ['q'] = 43, \
  ['r'] = 44, ['s'] = 45, ['t'] = 46, ['u'] = 47, ['v'] = 48, ['w'] = 49, ['x'] = 50, \
  ['y'] = 51, ['z'] = 52, ['0'] = 53, ['1'] = 54, ['2'] = 55, ['3'] = 56, ['4'] = 57, \
  ['5'] = 58, ['6'] = 59, ['7'] = 60, ['8'] = 61, ['9'] = 62,
static const unsigned char B64[2][256] = {
  {B64_ALNUM ['+'] = 63, ['/'] = 64},
  {B64_ALNUM ['-'] = 63, ['_'] = 64},
};
#undef B64_ALNUM

/* Maps a character to its 6-bit value in the variant's alphabet, or -1. */
static inline int b64val(unsigned char c, hg_base64_t v) { return (int)B64[v == HG_BASE64URL][c] - 1; }

int hg_base64_decode_to(unsigned char *out, size_t *out_len, const char *s, size_t n,
                        hg_base64_t v) {
  size_t data = n;
  if (v == HG_BASE64) {
    if (n % 4) return HG_EPARSE;
    if (n && s[n - 1] == '=') {
      data--;
      if (s[n - 2] == '=') data--;
    }
  }
  if (data % 4 == 1) return HG_EPARSE; /* 6 bits cannot end a byte string */
  size_t o = 0, i = 0;
  for (; i + 4 <= data; i += 4) {
    int a = b64val((unsigned char)s[i], v), b = b64val((unsigned char)s[i + 1], v);
    int c = b64val((unsigned char)s[i + 2], v), d = b64val((unsigned char)s[i + 3], v);
    if ((a | b | c | d) < 0) return HG_EPARSE;
    unsigned w = (unsigned)a << 18 | (unsigned)b << 12 | (unsigned)c << 6 | (unsigned)d;
    out[o++] = (unsigned char)(w >> 16);
    out[o++] = (unsigned char)(w >> 8);
    out[o++] = (unsigned char)w;
  }
  size_t rem = data - i;
  if (rem) {
    int a = b64val((unsigned char)s[i], v), b = b64val((unsigned char)s[i + 1], v);
    int c = rem == 3 ? b64val((unsigned char)s[i + 2], v) : 0;
    if ((a | b | c) < 0) return HG_EPARSE;
    /* security: the unused low bits must be zero, or two encodings would decode to
     * the same bytes (VECTORS.md §2.3 T26). */
    if (rem == 2 && (b & 15)) return HG_EPARSE;
    if (rem == 3 && (c & 3)) return HG_EPARSE;
    out[o++] = (unsigned char)(a << 2 | b >> 4);
    if (rem == 3) out[o++] = (unsigned char)((b & 15) << 4 | c >> 2);
  }
  *out_len = o;
  return 0;
}

int hg_base64_encode(hg_buf_t *out, const void *in, size_t n, hg_base64_t v) {
  size_t len = hg_base64_encoded_len(n, v);
  int rc = hg_buf_reserve(out, len);
  if (rc) return rc;
  out->len += hg_base64_encode_to(out->data + out->len, in, n, v);
  return 0;
}

int hg_base64_decode(hg_buf_t *out, const char *s, size_t n, hg_base64_t v) {
  int rc = hg_buf_reserve(out, n / 4 * 3 + 2);
  if (rc) return rc;
  size_t got;
  rc = hg_base64_decode_to((unsigned char *)out->data + out->len, &got, s, n, v);
  if (rc) {
    out->data[out->len] = '\0';
    return rc;
  }
  out->len += got;
  out->data[out->len] = '\0';
  return 0;
}

/* ---- random, compare --------------------------------------------------------------- */

int hg_random(void *buf, size_t n) {
  unsigned char *p = buf;
  while (n) {
    /* getrandom returns at most 32 MiB - 1 per call and may be interrupted */
    ssize_t got = getrandom(p, n, 0);
    if (got < 0) {
      if (errno == EINTR) continue;
      return -errno;
    }
    p += got;
    n -= (size_t)got;
  }
  return 0;
}

int hg_ct_equal(const void *a, size_t an, const void *b, size_t bn) {
  if (an != bn) return 0; /* lengths are public (a MAC's length is fixed by its alg) */
  if (an == 0) return 1;
  return mbedtls_ct_memcmp(a, b, an) == 0;
}
