/* api_http.c — response constructors for policies.
 *
 * A response is a plain table { status = N, headers = { name = value }, body = "..." };
 * these helpers build one, so policies read as `return hg.json(200, {ok = true})`.
 * JSON encoding uses lua-cjson (required once, kept as an upvalue).
 */
#include <lauxlib.h>
#include <strings.h>

#include "base/buf.h"
#include "lua/lapi.h"

static int check_status(lua_State *L, int idx) {
  lua_Integer status = luaL_checkinteger(L, idx);
  luaL_argcheck(L, status >= 100 && status <= 599, idx, "status must be 100..599");
  return (int)status;
}

/* Builds { status, headers = copy of the table at headers_idx (or {}), body } and leaves
 * it on the stack. `default_type` becomes Content-Type unless the caller set one. */
static void push_response(lua_State *L, int status, int body_idx, int headers_idx,
                          const char *default_type) {
  lua_createtable(L, 0, 3);
  lua_pushinteger(L, status);
  lua_setfield(L, -2, "status");
  lua_newtable(L);
  int has_type = 0;
  if (!lua_isnoneornil(L, headers_idx)) {
    lua_pushnil(L);
    while (lua_next(L, headers_idx) != 0) {
      if (lua_type(L, -2) == LUA_TSTRING && strcasecmp(lua_tostring(L, -2), "content-type") == 0)
        has_type = 1;
      lua_pushvalue(L, -2); /* key */
      lua_insert(L, -2);    /* key key value */
      lua_settable(L, -4);
    }
  }
  if (!has_type) {
    lua_pushstring(L, default_type);
    lua_setfield(L, -2, "Content-Type");
  }
  lua_setfield(L, -2, "headers");
  lua_pushvalue(L, body_idx);
  lua_setfield(L, -2, "body");
}

/* hg.response(status [, body [, headers]]) -> response */
static int l_response(lua_State *L) {
  int status = check_status(L, 1);
  luaL_optlstring(L, 2, "", NULL);
  if (!lua_isnoneornil(L, 3)) luaL_checktype(L, 3, LUA_TTABLE);
  lua_settop(L, 3);
  if (lua_isnil(L, 2)) {
    lua_pushliteral(L, "");
    lua_replace(L, 2);
  } else {
    lua_tostring(L, 2); /* numbers become strings in place */
  }
  push_response(L, status, 2, 3, "text/plain; charset=utf-8");
  return 1;
}

/* Calls cjson.encode(value at idx) and leaves the string on the stack; raises on
 * values cjson cannot encode. */
static void json_encode(lua_State *L, int idx) {
  lua_pushvalue(L, lua_upvalueindex(1));
  if (lua_isnil(L, -1)) luaL_error(L, "lua-cjson is not available");
  lua_getfield(L, -1, "encode");
  lua_remove(L, -2);
  lua_pushvalue(L, idx);
  lua_call(L, 1, 1);
}

/* hg.json(status, value [, headers]) -> response with a JSON body */
static int l_json(lua_State *L) {
  int status = check_status(L, 1);
  luaL_checkany(L, 2);
  if (!lua_isnoneornil(L, 3)) luaL_checktype(L, 3, LUA_TTABLE);
  lua_settop(L, 3);
  json_encode(L, 2);
  lua_replace(L, 2);
  push_response(L, status, 2, 3, "application/json");
  return 1;
}

/* hg.error(status, message [, headers]) -> response with {"error": message, "status": N} */
static int l_error(lua_State *L) {
  int status = check_status(L, 1);
  luaL_checkstring(L, 2);
  if (!lua_isnoneornil(L, 3)) luaL_checktype(L, 3, LUA_TTABLE);
  lua_settop(L, 3);
  /* {"error": …, "status": N} in that order; the gateway adds "request_id" (the host
   * rebuilds the body from `error`, see to_response in policy.c). */
  lua_pushvalue(L, 2); /* 4: the message, kept alive for the `error` field */
  size_t n;
  const char *msg = lua_tolstring(L, 4, &n);
  hg_buf_t b = HG_BUF_INIT;
  int rc = hg_buf_puts(&b, "{\"error\":\"");
  if (!rc) rc = hg_buf_json_escape(&b, msg, n);
  if (!rc) rc = hg_buf_printf(&b, "\",\"status\":%d}\n", status);
  if (rc) {
    hg_buf_free(&b);
    return luaL_error(L, "out of memory");
  }
  lua_pushlstring(L, b.data, b.len);
  hg_buf_free(&b);
  lua_replace(L, 2);
  push_response(L, status, 2, 3, "application/json");
  lua_pushvalue(L, 4);
  lua_setfield(L, -2, "error");
  return 1;
}

/* hg.json_encode(value) -> string ; hg.json_decode(string) -> value | nil, err */
static int l_json_encode(lua_State *L) {
  luaL_checkany(L, 1);
  json_encode(L, 1);
  return 1;
}

static int l_json_decode(lua_State *L) {
  luaL_checkstring(L, 1);
  lua_pushvalue(L, lua_upvalueindex(1));
  if (lua_isnil(L, -1)) luaL_error(L, "lua-cjson is not available");
  lua_getfield(L, -1, "decode");
  lua_pushvalue(L, 1);
  if (lua_pcall(L, 1, 1, 0) != LUA_OK) {
    lua_pushnil(L);
    lua_insert(L, -2);
    return 2;
  }
  return 1;
}

static const luaL_Reg funcs[] = {
    {"response", l_response},       {"json", l_json},
    {"error", l_error},             {"json_encode", l_json_encode},
    {"json_decode", l_json_decode}, {NULL, NULL},
};

int hg__lua_open_http(lua_State *L) {
  luaL_newlibtable(L, funcs);
  hg__lua_push_cjson(L); /* upvalue of every function */
  luaL_setfuncs(L, funcs, 1);
  return 1;
}
