/* lmodule_entry.c — entry point of lib/hlsgate.so, the Lua module busted loads. */
#include <lua.h>

#include "lua/lapi.h"

LUAMOD_API int luaopen_hlsgate(lua_State *L);

LUAMOD_API int luaopen_hlsgate(lua_State *L) { return hg__lua_open_module(L); }
