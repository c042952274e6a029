/* lmodule.c — assembles the `hlsgate` Lua module from the API areas (see lapi.h). */
#include "lua/lapi.h"

#include <lauxlib.h>
#include <string.h>

#ifndef HG_VERSION
#define HG_VERSION "0.1.0"
#endif

void hg__lua_check_opts(lua_State *L, int idx, const char *const *allowed) {
  lua_pushnil(L);
  while (lua_next(L, idx) != 0) {
    lua_pop(L, 1);
    if (lua_type(L, -1) != LUA_TSTRING) luaL_argerror(L, idx, "option names must be strings");
    const char *k = lua_tostring(L, -1);
    int ok = 0;
    for (const char *const *a = allowed; *a && !ok; a++) ok = strcmp(*a, k) == 0;
    if (!ok) luaL_argerror(L, idx, lua_pushfstring(L, "unknown option '%s'", k));
  }
}

void hg__lua_push_cjson(lua_State *L) {
  lua_getglobal(L, "require");
  lua_pushliteral(L, "cjson");
  if (lua_pcall(L, 1, 1, 0) != LUA_OK) {
    lua_pop(L, 1);
    lua_pushnil(L);
    return;
  }
  lua_getfield(L, -1, "new");
  if (lua_isfunction(L, -1)) {
    lua_call(L, 0, 1);
    lua_remove(L, -2);
  } else {
    lua_pop(L, 1); /* an old cjson without new(): share the module */
  }
}

int hg__lua_open_module(lua_State *L) {
  static const struct {
    const char *name;
    lua_CFunction open;
  } areas[] = {
      {"crypto", hg__lua_open_crypto}, {"jwt", hg__lua_open_jwt},
      {"s3", hg__lua_open_s3},         {"url", hg__lua_open_url},
      {"hls", hg__lua_open_hls},       {"shared", hg__lua_open_shared},
  };
  /* The http area's constructors (response, json, error) live at the top level. */
  hg__lua_open_http(L);
  hg__lua_add_plan(L);
  for (size_t i = 0; i < sizeof(areas) / sizeof(areas[0]); i++) {
    areas[i].open(L);
    lua_setfield(L, -2, areas[i].name);
  }
  lua_pushliteral(L, HG_VERSION);
  lua_setfield(L, -2, "version");
  return 1;
}
