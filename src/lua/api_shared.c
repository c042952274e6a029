/* api_shared.c — hg.shared: the dictionary shared by all workers and kept across policy
 * reloads (src/store/shdict.h). Values are strings, numbers or booleans; TTLs in seconds.
 *
 *   hg.shared.set(key, value [, ttl]) -> true | nil, err
 *   hg.shared.add(key, value [, ttl]) -> true | nil, "exists"
 *   hg.shared.get(key)                -> value | nil
 *   hg.shared.incr(key, delta [, init [, ttl]]) -> number | nil, err
 *   hg.shared.delete(key)             -> boolean (was it there)
 */
#include <lauxlib.h>

#include "base/error.h"
#include "store/shdict.h"
#include "lua/lapi.h"

#define MAX_TTL 31536000.0

static uint64_t opt_ttl(lua_State *L, int idx) {
  lua_Number ttl = luaL_optnumber(L, idx, 0);
  luaL_argcheck(L, ttl >= 0 && ttl <= MAX_TTL, idx, "ttl must be 0..31536000 seconds");
  return (uint64_t)(ttl * 1000);
}

static int push_err(lua_State *L, int rc) {
  lua_pushnil(L);
  lua_pushstring(L, rc == HG_EINVAL ? "exists" : rc == HG_ETOOBIG ? "too large" : "no memory");
  return 2;
}

static int store(lua_State *L, int only_if_absent) {
  size_t kl, sl = 0;
  const char *k = luaL_checklstring(L, 1, &kl);
  int t = lua_type(L, 2);
  luaL_argexpected(L, t == LUA_TSTRING || t == LUA_TNUMBER || t == LUA_TBOOLEAN, 2, "string, number or boolean");
  uint64_t ttl = opt_ttl(L, 3);
  const char *s = t == LUA_TSTRING ? lua_tolstring(L, 2, &sl) : NULL;
  double num = t == LUA_TNUMBER ? lua_tonumber(L, 2) : t == LUA_TBOOLEAN ? lua_toboolean(L, 2) : 0;
  hg_shd_type_t type = t == LUA_TSTRING ? HG_SHD_STRING : t == LUA_TNUMBER ? HG_SHD_NUMBER : HG_SHD_BOOL;
  int rc = hg_shdict_set(hg_shdict_default(), k, kl, type, s, sl, num, ttl, only_if_absent);
  if (rc) return push_err(L, rc);
  lua_pushboolean(L, 1);
  return 1;
}

static int l_set(lua_State *L) { return store(L, 0); }
static int l_add(lua_State *L) { return store(L, 1); }

static int l_get(lua_State *L) {
  size_t kl;
  const char *k = luaL_checklstring(L, 1, &kl);
  hg_buf_t b = HG_BUF_INIT;
  double num = 0;
  switch (hg_shdict_get(hg_shdict_default(), k, kl, &b, &num)) {
  case HG_SHD_STRING: lua_pushlstring(L, b.data ? b.data : "", b.len); break;
  case HG_SHD_NUMBER:
    if (num == (double)(lua_Integer)num) lua_pushinteger(L, (lua_Integer)num);
    else lua_pushnumber(L, num);
    break;
  case HG_SHD_BOOL: lua_pushboolean(L, num != 0); break;
  default: lua_pushnil(L);
  }
  hg_buf_free(&b);
  return 1;
}

static int l_incr(lua_State *L) {
  size_t kl;
  const char *k = luaL_checklstring(L, 1, &kl);
  double delta = luaL_checknumber(L, 2);
  double init = luaL_optnumber(L, 3, 0);
  uint64_t ttl = opt_ttl(L, 4);
  double out;
  int rc = hg_shdict_incr(hg_shdict_default(), k, kl, delta, init, ttl, &out);
  if (rc) {
    lua_pushnil(L);
    lua_pushstring(L, rc == HG_EINVAL ? "not a number" : "no memory");
    return 2;
  }
  if (out == (double)(lua_Integer)out) lua_pushinteger(L, (lua_Integer)out);
  else lua_pushnumber(L, out);
  return 1;
}

static int l_delete(lua_State *L) {
  size_t kl;
  const char *k = luaL_checklstring(L, 1, &kl);
  lua_pushboolean(L, hg_shdict_delete(hg_shdict_default(), k, kl));
  return 1;
}

static const luaL_Reg funcs[] = {
    {"set", l_set}, {"add", l_add}, {"get", l_get}, {"incr", l_incr}, {"delete", l_delete}, {NULL, NULL},
};

int hg__lua_open_shared(lua_State *L) {
  luaL_newlib(L, funcs);
  return 1;
}
