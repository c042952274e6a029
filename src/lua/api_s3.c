/* api_s3.c — Lua bindings for the s3 area (placeholder until the module lands). */
#include <lauxlib.h>

#include "lua/lapi.h"

static const luaL_Reg funcs[] = {{NULL, NULL}};

int hg__lua_open_s3(lua_State *L) {
  luaL_newlib(L, funcs);
  return 1;
}
