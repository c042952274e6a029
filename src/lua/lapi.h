/* lapi.h — the Lua API areas: one file src/lua/api_<area>.c per area.
 *
 * Each opener pushes one table of functions (built with luaL_newlib from a luaL_Reg
 * array) and returns 1. lmodule.c assembles them into the `hlsgate` module that
 * policies `require` in the server and that busted loads as lib/hlsgate.so.
 * Binding rules: luaL_check* every argument first; misuse raises; runtime failures
 * return nil, err. Call only from the thread that owns the lua_State.
 */
#ifndef HG_LUA_LAPI_H
#define HG_LUA_LAPI_H

#include <lua.h>

int hg__lua_open_http(lua_State *L);   /* response/json/error constructors */
int hg__lua_open_crypto(lua_State *L); /* sha, hmac, base64, random, constant-time compare */
int hg__lua_open_jwt(lua_State *L);    /* JWT sign/verify */
int hg__lua_open_s3(lua_State *L);     /* SigV4 header signing and presigning */
int hg__lua_open_url(lua_State *L);    /* RFC 3986 parse/resolve/encode, queries, paths */
int hg__lua_open_hls(lua_State *L);    /* playlist rewriter */
int hg__lua_open_shared(lua_State *L); /* dictionary shared by workers, kept across reloads */

/* Pushes the table a policy sees for one playlist URI: { class, uri (as written), url
 * (absolute), tag, attr, line, byterange, attrs (the tag's attributes, parsed) }. */
struct hg_hls_uri_s;
void hg__lua_push_uri(lua_State *L, const struct hg_hls_uri_s *u);

/* Raises unless every key of the options table at `idx` is one of `allowed` (NULL
 * terminated): a misspelt option must not silently weaken a check. */
void hg__lua_check_opts(lua_State *L, int idx, const char *const *allowed);

/* Pushes a private lua-cjson instance (cjson.new(), so a policy changing cjson's
 * settings cannot affect the bindings), or nil when lua-cjson is not installed. */
void hg__lua_push_cjson(lua_State *L);

/* Pushes the `hlsgate` module table (all areas above, plus `version`). Returns 1. */
int hg__lua_open_module(lua_State *L);

#endif
