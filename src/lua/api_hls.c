/* api_hls.c — Lua bindings for the hls area (placeholder until the module lands). */
#include <lauxlib.h>

#include "lua/lapi.h"

static const luaL_Reg funcs[] = {{NULL, NULL}};

int hg__lua_open_hls(lua_State *L) {
  luaL_newlib(L, funcs);
  return 1;
}
