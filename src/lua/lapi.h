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
void hg__lua_add_plan(lua_State *L);   /* sets hg.plan and hg.plan_table (frozen plans) in the table on top */

/* Pushes the table a policy sees for one playlist URI: { class, uri (as written), url
 * (absolute), tag, attr, line, byterange, attrs (the tag's attributes, parsed) }. */
struct hg_hls_uri_s;
void hg__lua_push_uri(lua_State *L, const struct hg_hls_uri_s *u);

/* Pushes a rewrite's stats: { uris, replaced, dropped, foreign, unresolved, by_class }. */
struct hg_hls_stats_s;
void hg__lua_push_stats(lua_State *L, const struct hg_hls_stats_s *st);

/* Raises unless every key of the options table at `idx` is one of `allowed` (NULL
 * terminated): a misspelt option must not silently weaken a check. */
void hg__lua_check_opts(lua_State *L, int idx, const char *const *allowed);

/* hg.jwt's readers, shared with hg.plan's reuse.token (api_plan.c). Keys: a string, or
 * a table of secrets (array) and/or kid = secret, at idx into keys[0..HG_LUA_JWT_MAX_KEYS)
 * (pointing into the Lua strings); returns how many. Options: alg (required), leeway,
 * max_age, require_exp — and now when allow_now — at idx into *o (keys and now unset).
 * Both raise on misuse. */
#define HG_LUA_JWT_MAX_KEYS 64
struct hg_jwt_key_s;
struct hg_jwt_verify_opts_s;
size_t hg__lua_jwt_keys(lua_State *L, int idx, struct hg_jwt_key_s *keys);
void hg__lua_jwt_opts(lua_State *L, int idx, struct hg_jwt_verify_opts_s *o, int allow_now);

/* Pushes a private lua-cjson instance (cjson.new(), so a policy changing cjson's
 * settings cannot affect the bindings), or nil when lua-cjson is not installed. */
void hg__lua_push_cjson(lua_State *L);

/* Pushes the `hlsgate` module table (all areas above, plus `version`). Returns 1. */
int hg__lua_open_module(lua_State *L);

/* ---- the sandbox (api_sandbox.c): bounds on the work of C library functions ---- */

#include <stddef.h>
#include <stdint.h>

/* The work a policy may still do in the current hook call, in units of one VM
 * instruction. The count hook and the wrappers below add to `used`; over `budget` (or
 * past the time limit, see hg__lua_meter_start) the call fails and `exceeded` stays
 * set, so pcall cannot resume the work. */
typedef struct hg_lua_meter_s {
  uint64_t used, budget;
  uint64_t deadline_ns, limit_ns, cpu_mark_ns; /* time limit state; deadline 0: none */
  int exceeded;
  const size_t *mem; /* bytes the state holds (collectgarbage's cost), or NULL */
} hg_lua_meter_t;

/* Adds `units` of work named `what` to the meter; raises (and sets exceeded) when it
 * does not fit in what is left, or the deadline has passed. */
void hg__lua_charge(lua_State *L, hg_lua_meter_t *m, double units, const char *what);

/* Starts a hook call: nothing used, and a time limit of 100 ns per budget unit, at
 * least 1 s: half of it wall-clock, the other half CPU time of the calling thread (so
 * a descheduled worker is not cut short). */
void hg__lua_meter_start(hg_lua_meter_t *m);

/* 0 while the meter is within budget and deadline; else sets exceeded and returns -1.
 * Does not raise (for hooks and allocators). */
int hg__lua_meter_check(hg_lua_meter_t *m);

/* Replaces, in the state's libraries (string, table, utf8, base, os, io, debug), every
 * function whose work is not bounded by its output with a wrapper charging an upper
 * bound of that work to `m` first, and removes the ones that block or leak the
 * originals. `m` must outlive the state. Call once, after luaL_openlibs. */
void hg__lua_sandbox(lua_State *L, hg_lua_meter_t *m);

/* Upper bound of Lua's matcher steps for string.find/match/gsub (gmatch = 0) or gmatch
 * (gmatch = 1) of pattern pat[0..m) over subj[0..n). Pure; any thread. */
double hg__lua_pattern_cost(const char *subj, size_t n, const char *pat, size_t m, int gmatch);

/* hg._sandbox(budget) for the busted specs (lib/hlsgate.so only). */
int hg__lua_sandbox_for_tests(lua_State *L);

#endif
