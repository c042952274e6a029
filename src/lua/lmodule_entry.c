/* lmodule_entry.c — entry point of lib/hlsgate.so, the Lua module busted loads. */
#include <lua.h>

#include "lua/lapi.h"

LUAMOD_API int luaopen_hlsgate(lua_State *L);

/* Adds `_sandbox` (api_sandbox.c's wrappers over a fresh meter) for the specs. It is
 * never in the server's module: a policy could use it to get a meter of its own. */
LUAMOD_API int luaopen_hlsgate(lua_State *L) {
  hg__lua_open_module(L);
  lua_pushcfunction(L, hg__lua_sandbox_for_tests);
  lua_setfield(L, -2, "_sandbox");
  return 1;
}
