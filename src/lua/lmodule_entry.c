/* lmodule_entry.c — entry point of lib/hlsgate.so, the Lua module busted loads. */
#include <lua.h>

#include "lua/lapi.h"

LUAMOD_API int luaopen_hlsgate(lua_State *L);
int hg__lua_open_host(lua_State *L); /* lhost.c */

/* Adds `_sandbox` (api_sandbox.c's wrappers over a fresh meter) and `_host` (lhost.c:
 * the server's request tables, plan reader and playlist actions) for the specs. They
 * are never in the server's module: a policy could use `_sandbox` to get a meter of its
 * own. */
LUAMOD_API int luaopen_hlsgate(lua_State *L) {
  hg__lua_open_module(L);
  lua_pushcfunction(L, hg__lua_sandbox_for_tests);
  lua_setfield(L, -2, "_sandbox");
  hg__lua_open_host(L);
  lua_setfield(L, -2, "_host");
  return 1;
}
