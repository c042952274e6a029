/* api_crypto.c — hg.crypto: hashes, HMAC, hex, base64/base64url, random bytes and
 * constant-time comparison for policies (binds src/crypto/hash.h).
 *
 * Byte strings in and out are Lua strings (binary-safe). Misuse (wrong types, unknown
 * algorithm names, bad sizes) raises; a string that is not valid base64 returns nil, err.
 * Reference: docs/lua-api-crypto.md.
 */
#include <lauxlib.h>
#include <string.h>

#include <mbedtls/platform_util.h>

#include "base/buf.h"
#include "base/error.h"
#include "crypto/hash.h"
#include "lua/lapi.h"

#define RANDOM_MAX (1 << 20) /* hg.crypto.random(n): n <= 1 MiB */

static hg_hash_alg_t check_alg(lua_State *L, int idx) {
  size_t n;
  const char *name = luaL_checklstring(L, idx, &n);
  hg_hash_alg_t alg = hg_hash_from_name(name, n);
  if (alg == 0) luaL_argerror(L, idx, "unknown hash (sha256, sha384 or sha512)");
  return alg;
}

static void push_hex(lua_State *L, const unsigned char *d, size_t n) {
  char hex[2 * HG_HASH_MAX + 1];
  hg_hex(d, n, hex);
  lua_pushlstring(L, hex, 2 * n);
}

/* hg.crypto.sha256(msg) -> 32 raw bytes ; sha256_hex(msg) -> 64 hex digits */
static int l_sha256(lua_State *L) {
  size_t n;
  const char *m = luaL_checklstring(L, 1, &n);
  unsigned char d[32];
  hg_sha256(m, n, d);
  lua_pushlstring(L, (const char *)d, 32);
  return 1;
}

static int l_sha256_hex(lua_State *L) {
  size_t n;
  const char *m = luaL_checklstring(L, 1, &n);
  unsigned char d[32];
  hg_sha256(m, n, d);
  push_hex(L, d, 32);
  return 1;
}

/* hg.crypto.hash(alg, msg) -> raw digest */
static int l_hash(lua_State *L) {
  hg_hash_alg_t alg = check_alg(L, 1);
  size_t n;
  const char *m = luaL_checklstring(L, 2, &n);
  unsigned char d[HG_HASH_MAX];
  hg_hash(alg, m, n, d);
  lua_pushlstring(L, (const char *)d, hg_hash_size(alg));
  return 1;
}

/* Shared by hmac and hmac_hex: computes HMAC(alg, key, msg) into d. */
static size_t do_hmac(lua_State *L, unsigned char *d) {
  hg_hash_alg_t alg = check_alg(L, 1);
  size_t kn, mn;
  const char *k = luaL_checklstring(L, 2, &kn);
  const char *m = luaL_checklstring(L, 3, &mn);
  hg_hmac(alg, k, kn, m, mn, d);
  return hg_hash_size(alg);
}

/* hg.crypto.hmac(alg, key, msg) -> raw MAC ; hmac_hex(alg, key, msg) -> hex */
static int l_hmac(lua_State *L) {
  unsigned char d[HG_HASH_MAX];
  size_t n = do_hmac(L, d);
  lua_pushlstring(L, (const char *)d, n);
  mbedtls_platform_zeroize(d, sizeof(d));
  return 1;
}

static int l_hmac_hex(lua_State *L) {
  unsigned char d[HG_HASH_MAX];
  size_t n = do_hmac(L, d);
  push_hex(L, d, n);
  mbedtls_platform_zeroize(d, sizeof(d));
  return 1;
}

/* hg.crypto.hex(bytes) -> lowercase hex */
static int l_hex(lua_State *L) {
  size_t n;
  const char *s = luaL_checklstring(L, 1, &n);
  luaL_Buffer b;
  char *out = luaL_buffinitsize(L, &b, 2 * n + 1);
  hg_hex(s, n, out);
  luaL_pushresultsize(&b, 2 * n);
  return 1;
}

static int b64_encode(lua_State *L, hg_base64_t v) {
  size_t n;
  const char *s = luaL_checklstring(L, 1, &n);
  size_t len = hg_base64_encoded_len(n, v);
  luaL_Buffer b;
  char *out = luaL_buffinitsize(L, &b, len + 1);
  hg_base64_encode_to(out, s, n, v);
  luaL_pushresultsize(&b, len);
  return 1;
}

static int b64_decode(lua_State *L, hg_base64_t v) {
  size_t n, got;
  const char *s = luaL_checklstring(L, 1, &n);
  luaL_Buffer b;
  unsigned char *out = (unsigned char *)luaL_buffinitsize(L, &b, n / 4 * 3 + 2);
  if (hg_base64_decode_to(out, &got, s, n, v) != 0) {
    luaL_pushresultsize(&b, 0);
    lua_pop(L, 1);
    lua_pushnil(L);
    lua_pushstring(L, v == HG_BASE64URL ? "invalid base64url" : "invalid base64");
    return 2;
  }
  luaL_pushresultsize(&b, got);
  return 1;
}

/* hg.crypto.base64_encode(s) / base64_decode(s) (RFC 4648 §4, padded, strict) and
 * base64url_encode(s) / base64url_decode(s) (§5, unpadded, strict). */
static int l_b64e(lua_State *L) { return b64_encode(L, HG_BASE64); }
static int l_b64d(lua_State *L) { return b64_decode(L, HG_BASE64); }
static int l_b64ue(lua_State *L) { return b64_encode(L, HG_BASE64URL); }
static int l_b64ud(lua_State *L) { return b64_decode(L, HG_BASE64URL); }

/* hg.crypto.random(n) -> n bytes from the kernel CSPRNG */
static int l_random(lua_State *L) {
  lua_Integer n = luaL_checkinteger(L, 1);
  luaL_argcheck(L, n >= 0 && n <= RANDOM_MAX, 1, "size must be 0..1048576");
  luaL_Buffer b;
  char *out = luaL_buffinitsize(L, &b, (size_t)n);
  int rc = hg_random(out, (size_t)n);
  if (rc) return luaL_error(L, "random: %s", hg_strerror(rc)); /* never expected */
  luaL_pushresultsize(&b, (size_t)n);
  return 1;
}

/* hg.crypto.equals(a, b) -> boolean, in time independent of the contents */
static int l_equals(lua_State *L) {
  size_t an, bn;
  const char *a = luaL_checklstring(L, 1, &an);
  const char *b = luaL_checklstring(L, 2, &bn);
  lua_pushboolean(L, hg_ct_equal(a, an, b, bn));
  return 1;
}

static const luaL_Reg funcs[] = {
    {"sha256", l_sha256},
    {"sha256_hex", l_sha256_hex},
    {"hash", l_hash},
    {"hmac", l_hmac},
    {"hmac_hex", l_hmac_hex},
    {"hex", l_hex},
    {"base64_encode", l_b64e},
    {"base64_decode", l_b64d},
    {"base64url_encode", l_b64ue},
    {"base64url_decode", l_b64ud},
    {"random", l_random},
    {"equals", l_equals},
    {NULL, NULL},
};

int hg__lua_open_crypto(lua_State *L) {
  luaL_newlib(L, funcs);
  return 1;
}
