/* api_jwt.c — hg.jwt: sign and verify HS256/HS384/HS512 tokens (binds src/crypto/jwt.h).
 *
 *   hg.jwt.sign(claims, key_or_keys [, {alg=, kid=}]) -> token | nil, err
 *   hg.jwt.verify(token, keys, {alg=, leeway=, now=, require_exp=, max_age=})
 *       -> claims | nil, reason
 *
 * Claims are encoded/decoded with a private lua-cjson instance (kept as an upvalue); the
 * token's JSON is checked by the strict C reader before cjson ever sees it. Misuse (bad
 * types, unknown options, a missing `alg` in verify) raises; a bad token returns nil and
 * the precise reason. Reference: docs/lua-api-crypto.md.
 */
#include <lauxlib.h>
#include <math.h>
#include <string.h>
#include <time.h>

#include "base/buf.h"
#include "base/error.h"
#include "crypto/jwt.h"
#include "lua/lapi.h"



static hg_jwt_alg_t opt_alg(lua_State *L, int idx, int required) {
  lua_getfield(L, idx, "alg");
  if (lua_isnil(L, -1)) {
    lua_pop(L, 1);
    if (required) luaL_argerror(L, idx, "opts.alg is required (the algorithm is pinned by the caller)");
    return HG_JWT_HS256;
  }
  if (lua_type(L, -1) != LUA_TSTRING) luaL_argerror(L, idx, "opts.alg must be a string");
  size_t n;
  const char *s = lua_tolstring(L, -1, &n);
  hg_jwt_alg_t alg = hg_jwt_alg_from_name(s, n);
  if (alg == 0) luaL_argerror(L, idx, "opts.alg must be HS256, HS384 or HS512");
  lua_pop(L, 1);
  return alg;
}

static double opt_number(lua_State *L, int idx, const char *name, double dflt) {
  lua_getfield(L, idx, name);
  double v = dflt;
  if (!lua_isnil(L, -1)) {
    if (lua_type(L, -1) != LUA_TNUMBER)
      luaL_argerror(L, idx, lua_pushfstring(L, "opts.%s must be a number", name));
    v = lua_tonumber(L, -1);
  }
  lua_pop(L, 1);
  return v;
}

/* Pushes cjson.<fn> from the upvalue; raises when lua-cjson is missing. */
static void push_cjson(lua_State *L, const char *fn) {
  lua_pushvalue(L, lua_upvalueindex(1));
  if (lua_isnil(L, -1)) luaL_error(L, "lua-cjson is not available");
  lua_getfield(L, -1, fn);
  lua_remove(L, -2);
}

static int push_fail(lua_State *L, const char *why) {
  lua_pushnil(L);
  lua_pushstring(L, why);
  return 2;
}

/* hg.jwt.sign(claims, key_or_keys [, opts]) */
static int l_sign(lua_State *L) {
  int t = lua_type(L, 1);
  luaL_argexpected(L, t == LUA_TTABLE || t == LUA_TSTRING, 1, "table or JSON string");
  int kt = lua_type(L, 2);
  luaL_argexpected(L, kt == LUA_TSTRING || kt == LUA_TTABLE, 2, "key string or table of keys");
  if (!lua_isnoneornil(L, 3)) luaL_checktype(L, 3, LUA_TTABLE);
  lua_settop(L, 3);
  const char *kid = NULL;
  hg_jwt_alg_t alg = HG_JWT_HS256;
  if (!lua_isnil(L, 3)) {
    static const char *const allowed[] = {"alg", "kid", NULL};
    hg__lua_check_opts(L, 3, allowed);
    alg = opt_alg(L, 3, 0);
    lua_getfield(L, 3, "kid");
    if (!lua_isnil(L, -1) && lua_type(L, -1) != LUA_TSTRING)
      luaL_argerror(L, 3, "opts.kid must be a string");
    kid = lua_tostring(L, -1); /* stays referenced by opts */
    lua_pop(L, 1);
  }
  /* The secret: a string, or the entry of the key table named by opts.kid (else keys[1]). */
  size_t sn;
  const char *secret;
  if (kt == LUA_TSTRING) {
    secret = lua_tolstring(L, 2, &sn);
  } else {
    if (kid) lua_getfield(L, 2, kid);
    else lua_rawgeti(L, 2, 1);
    if (lua_type(L, -1) != LUA_TSTRING)
      return luaL_argerror(L, 2, kid ? "no string key for opts.kid in the key table"
                                     : "key table needs opts.kid or a key at [1]");
    secret = lua_tolstring(L, -1, &sn);
    lua_replace(L, 2); /* keep it referenced */
  }
  luaL_argcheck(L, sn > 0, 2, "empty key");
  /* Claims JSON */
  if (t == LUA_TTABLE) {
    push_cjson(L, "encode");
    lua_pushvalue(L, 1);
    lua_call(L, 1, 1); /* raises on values JSON cannot hold */
    lua_replace(L, 1);
  }
  size_t cn;
  const char *claims = lua_tolstring(L, 1, &cn);
  hg_buf_t out = HG_BUF_INIT;
  const char *why = NULL;
  int rc = hg_jwt_sign(&out, alg, kid, secret, sn, claims, cn, &why);
  if (rc) {
    hg_buf_free(&out);
    if (rc == HG_ENOMEM) return luaL_error(L, "out of memory");
    return push_fail(L, why ? why : hg_strerror(rc));
  }
  lua_pushlstring(L, out.data, out.len);
  hg_buf_free(&out);
  return 1;
}

/* Collects keys from a string or a table: array entries are kid-less secrets (tried for
 * every token, in order), string-keyed entries map kid -> secret. The key strings stay
 * referenced by the table at idx for the duration of the call. */
size_t hg__lua_jwt_keys(lua_State *L, int idx, hg_jwt_key_t *keys) {
  size_t n = 0;
  if (lua_type(L, idx) == LUA_TSTRING) {
    keys[0].kid = NULL;
    keys[0].secret = lua_tolstring(L, idx, &keys[0].secret_len);
    return 1;
  }
  lua_Integer len = (lua_Integer)lua_rawlen(L, idx);
  for (lua_Integer i = 1; i <= len; i++) {
    lua_rawgeti(L, idx, i);
    if (lua_type(L, -1) != LUA_TSTRING) luaL_argerror(L, idx, "keys must be strings");
    if (n == HG_LUA_JWT_MAX_KEYS) luaL_argerror(L, idx, "too many keys (max 64)");
    keys[n].kid = NULL;
    keys[n].secret = lua_tolstring(L, -1, &keys[n].secret_len);
    n++;
    lua_pop(L, 1);
  }
  lua_pushnil(L);
  while (lua_next(L, idx) != 0) {
    if (lua_type(L, -2) == LUA_TSTRING) {
      if (lua_type(L, -1) != LUA_TSTRING) luaL_argerror(L, idx, "keys must be strings");
      if (n == HG_LUA_JWT_MAX_KEYS) luaL_argerror(L, idx, "too many keys (max 64)");
      keys[n].kid = lua_tostring(L, -2);
      keys[n].secret = lua_tolstring(L, -1, &keys[n].secret_len);
      n++;
    } else if (!lua_isinteger(L, -2) || lua_tointeger(L, -2) < 1 ||
               lua_tointeger(L, -2) > len) {
      luaL_argerror(L, idx, "key table: use an array of secrets and/or kid = secret");
    }
    lua_pop(L, 1);
  }
  return n;
}

static double now_seconds(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* cjson decodes every number as a float; NumericDates and counters read better (and
 * print as "1300819380", not "1300819380.0") as integers, so integral values within
 * 2^53 become integers, recursively (depth is bounded by the strict reader). */
static void integerize(lua_State *L, int idx, int depth) {
  if (depth > 40) return;
  lua_pushnil(L);
  while (lua_next(L, idx) != 0) {
    if (lua_type(L, -1) == LUA_TNUMBER && !lua_isinteger(L, -1)) {
      double d = lua_tonumber(L, -1);
      if (d == floor(d) && fabs(d) <= 9007199254740992.0) {
        lua_pushvalue(L, -2);
        lua_pushinteger(L, (lua_Integer)d);
        lua_rawset(L, idx); /* assigning an existing field during lua_next is allowed */
      }
    } else if (lua_type(L, -1) == LUA_TTABLE) {
      integerize(L, lua_gettop(L), depth + 1);
    }
    lua_pop(L, 1);
  }
}

void hg__lua_jwt_opts(lua_State *L, int idx, hg_jwt_verify_opts_t *o, int allow_now) {
  static const char *const allowed[] = {"alg", "leeway", "now", "require_exp", "max_age", NULL};
  hg__lua_check_opts(L, idx, allowed);
  if (!allow_now) { /* the core verifies at each request's time */
    if (lua_getfield(L, idx, "now") != LUA_TNIL) luaL_argerror(L, idx, "opts.now is not allowed here");
    lua_pop(L, 1);
  }
  memset(o, 0, sizeof(*o));
  o->alg = opt_alg(L, idx, 1);
  o->leeway = opt_number(L, idx, "leeway", 0);
  luaL_argcheck(L, o->leeway >= 0, idx, "opts.leeway must be >= 0");
  o->max_age = opt_number(L, idx, "max_age", 0);
  luaL_argcheck(L, o->max_age >= 0, idx, "opts.max_age must be >= 0");
  lua_getfield(L, idx, "require_exp");
  if (!lua_isnil(L, -1) && !lua_isboolean(L, -1))
    luaL_argerror(L, idx, "opts.require_exp must be a boolean");
  o->flags = lua_isnil(L, -1) || lua_toboolean(L, -1) ? HG_JWT_REQUIRE_EXP : 0;
  lua_pop(L, 1);
}

/* hg.jwt.verify(token, keys, opts) */
static int l_verify(lua_State *L) {
  size_t tn;
  const char *tok = luaL_checklstring(L, 1, &tn);
  int kt = lua_type(L, 2);
  luaL_argexpected(L, kt == LUA_TSTRING || kt == LUA_TTABLE, 2, "key string or table of keys");
  luaL_checktype(L, 3, LUA_TTABLE);
  lua_settop(L, 3);
  hg_jwt_verify_opts_t o;
  hg__lua_jwt_opts(L, 3, &o, 1);
  lua_getfield(L, 3, "now");
  int has_now = !lua_isnil(L, -1);
  lua_pop(L, 1);
  o.now = has_now ? opt_number(L, 3, "now", 0) : now_seconds(); /* tests pin the clock */

  hg_jwt_key_t keys[HG_LUA_JWT_MAX_KEYS];
  o.keys = keys;
  o.nkeys = hg__lua_jwt_keys(L, 2, keys);

  hg_buf_t claims = HG_BUF_INIT;
  const char *why = NULL;
  int rc = hg_jwt_verify(tok, tn, &o, &claims, &why);
  if (rc) {
    hg_buf_free(&claims);
    if (rc == HG_ENOMEM) return luaL_error(L, "out of memory");
    return push_fail(L, why ? why : hg_strerror(rc));
  }
  push_cjson(L, "decode");
  lua_pushlstring(L, claims.data, claims.len);
  hg_buf_free(&claims);
  if (lua_pcall(L, 1, 1, 0) != LUA_OK) return push_fail(L, "claims cannot be decoded");
  integerize(L, lua_gettop(L), 0);
  return 1;
}

static const luaL_Reg funcs[] = {
    {"sign", l_sign},
    {"verify", l_verify},
    {NULL, NULL},
};

int hg__lua_open_jwt(lua_State *L) {
  luaL_newlibtable(L, funcs);
  hg__lua_push_cjson(L); /* upvalue of every function */
  luaL_setfuncs(L, funcs, 1);
  return 1;
}
