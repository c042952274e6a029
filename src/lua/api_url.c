/* api_url.c — Lua bindings for the url area (placeholder until the module lands). */
#include <lauxlib.h>

#include "lua/lapi.h"

static const luaL_Reg funcs[] = {{NULL, NULL}};

int hg__lua_open_url(lua_State *L) {
  luaL_newlib(L, funcs);
  return 1;
}
