/* api_plan.c — hg.plan(t): a frozen plan (lua/plan.h, docs/policy-api.md).
 *
 * A recipe that answers a hot URL with the same plan every time (the open proxy's memo)
 * freezes it once: the table is read into C here, and a request that returns the frozen
 * plan costs a reference instead of reading ~15 fields, copying every string and
 * validating every header again. The frozen plan is immutable, so what a request
 * executes is what was checked; the table it came from can change freely afterwards.
 */
#include <lauxlib.h>
#include <string.h>

#include "base/arena.h"
#include "crypto/jwt.h"
#include "lua/lapi.h"
#include "lua/policy_internal.h"

static const char MT[] = "hlsgate.plan";

static void frozen_free(hg_plan_frozen_t *fz) { hg_arena_free(fz->arena); /* fz is in it */ }

/* The userdata holds a pointer: requests may outlive it (a recipe's memo dropped the plan
 * while they run), so the struct lives in its arena and goes with the last holder. */
static int frozen_gc(lua_State *L) {
  hg_plan_frozen_t **ud = lua_touserdata(L, 1);
  hg_plan_frozen_t *fz = *ud;
  *ud = NULL;
  if (fz == NULL) return 0;
  fz->collected = 1;
  if (fz->refs == 0) frozen_free(fz);
  return 0;
}

void hg__lua_frozen_retain(hg_plan_frozen_t *fz) { fz->refs++; }

void hg__lua_frozen_release(hg_plan_frozen_t *fz) {
  if (--fz->refs == 0 && fz->collected) frozen_free(fz);
}

/* Misuse raises: a frozen plan has no fields (a wrapper that edits a recipe's answer asks
 * for a table, docs/policy-api.md). Loud on purpose: a wrapper written for tables must
 * not appear to work while its edits go nowhere. */
static int frozen_index(lua_State *L) {
  return luaL_error(L, "a frozen plan (hg.plan) has no fields to read or set: hg.plan_table(plan) "
                    "gives a table to edit and return");
}

static int frozen_tostring(lua_State *L) {
  hg_plan_frozen_t *fz = *(hg_plan_frozen_t **)lua_touserdata(L, 1);
  const hg_plan_t *p = fz ? &fz->plan : NULL;
  const char *what = !p ? "?" : p->url ? p->url : p->s3_key ? p->s3_key : p->file_path ? p->file_path : "?";
  lua_pushfstring(L, "hlsgate.plan (%s)", what);
  return 1;
}

/* Pushes a copy of the table at idx, its tables copied too, `depth` levels deep (plans
 * nest three); raises on deeper ones (a cycle, or not a plan). */
static void deep_copy(lua_State *L, int idx, int depth) {
  if (depth > 4) luaL_error(L, "hg.plan: tables nested too deep for a plan");
  idx = lua_absindex(L, idx);
  luaL_checkstack(L, 4, "hg.plan");
  lua_newtable(L);
  lua_pushnil(L);
  while (lua_next(L, idx) != 0) {
    if (lua_istable(L, -1)) {
      deep_copy(L, -1, depth + 1);
      lua_remove(L, -2);
    }
    lua_pushvalue(L, -2);
    lua_insert(L, -2);
    lua_rawset(L, -4);
  }
}

static void *need(lua_State *L, void *p) {
  if (p == NULL) luaL_error(L, "out of memory");
  return p;
}

static const char *arena_str(lua_State *L, hg_arena_t *a, const char *s, size_t n) {
  return need(L, hg_arena_strndup(a, s, n));
}

/* Reads the list of strings at the top (at most max) into the arena; raises with `what`. */
static const char **read_names(lua_State *L, hg_arena_t *a, size_t max, const char *what, size_t *n) {
  luaL_argcheck(L, lua_istable(L, -1), 2, what);
  *n = lua_rawlen(L, -1);
  luaL_argcheck(L, *n <= max, 2, what);
  const char **v = need(L, hg_arena_alloc(a, (*n ? *n : 1) * sizeof(char *)));
  for (size_t i = 0; i < *n; i++) {
    size_t len = 0;
    luaL_argcheck(L, lua_rawgeti(L, -1, (lua_Integer)i + 1) == LUA_TSTRING, 2, what);
    const char *name = lua_tolstring(L, -1, &len);
    luaL_argcheck(L, len > 0 && len <= 64 && strlen(name) == len, 2, what);
    v[i] = arena_str(L, a, name, len);
    lua_pop(L, 1);
  }
  return v;
}

/* Reads reuse.token (the table on top): { param = "token", keys = secret or { … },
 * verify = { alg = …, leeway, max_age, require_exp }, claims = { names } }. Raises on
 * misuse. Security: the keys are copied into the plan's arena, never logged. */
static void read_token(lua_State *L, hg_plan_frozen_t *fz) {
  static const char *const allowed[] = {"param", "keys", "verify", "claims", NULL};
  int t = lua_gettop(L);
  luaL_argcheck(L, lua_istable(L, t), 2, "reuse.token must be a table");
  hg__lua_check_opts(L, t, allowed);
  hg_reuse_token_t *tk = need(L, hg_arena_alloc(fz->arena, sizeof(*tk)));
  memset(tk, 0, sizeof(*tk));
  size_t n = 0;
  const char *param = lua_getfield(L, t, "param") == LUA_TSTRING ? lua_tolstring(L, -1, &n) : NULL;
  luaL_argcheck(L, param && n > 0 && n <= 64 && strlen(param) == n, 2, "reuse.token.param must be a query parameter name");
  tk->param = arena_str(L, fz->arena, param, n);
  lua_pop(L, 1);
  luaL_argcheck(L, lua_getfield(L, t, "verify") == LUA_TTABLE, 2, "reuse.token.verify must be hg.jwt.verify's options");
  hg__lua_jwt_opts(L, lua_gettop(L), &tk->verify, 0);
  lua_pop(L, 1);
  int kt = lua_getfield(L, t, "keys");
  luaL_argcheck(L, kt == LUA_TSTRING || kt == LUA_TTABLE, 2, "reuse.token.keys must be hg.jwt.verify's keys");
  hg_jwt_key_t keys[HG_LUA_JWT_MAX_KEYS];
  size_t nk = hg__lua_jwt_keys(L, lua_gettop(L), keys);
  luaL_argcheck(L, nk > 0, 2, "reuse.token.keys: no key");
  hg_jwt_key_t *kept = need(L, hg_arena_alloc(fz->arena, nk * sizeof(*kept)));
  for (size_t i = 0; i < nk; i++) {
    kept[i].kid = keys[i].kid ? arena_str(L, fz->arena, keys[i].kid, strlen(keys[i].kid)) : NULL;
    kept[i].secret = arena_str(L, fz->arena, keys[i].secret, keys[i].secret_len);
    kept[i].secret_len = keys[i].secret_len;
  }
  tk->verify.keys = kept;
  tk->verify.nkeys = nk;
  lua_pop(L, 1);
  if (lua_getfield(L, t, "claims") != LUA_TNIL)
    tk->claims = read_names(L, fz->arena, 8, "reuse.token.claims must be a list of at most 8 claim names", &tk->nclaims);
  lua_pop(L, 1);
  fz->token = tk;
}

/* Reads hg.plan's reuse rule at index 2: { vary = { header names }, ttl = seconds (60),
 * expires = unix seconds, token = { … } }. Raises on misuse. */
static void read_reuse(lua_State *L, hg_plan_frozen_t *fz) {
  static const char *const allowed[] = {"vary", "ttl", "expires", "token", NULL};
  hg__lua_check_opts(L, 2, allowed);
  lua_Integer ttl = 60;
  if (lua_getfield(L, 2, "ttl") != LUA_TNIL) {
    int ok;
    ttl = lua_tointegerx(L, -1, &ok);
    luaL_argcheck(L, ok && ttl >= 1 && ttl <= 3600, 2, "reuse.ttl must be 1..3600 seconds");
  }
  lua_pop(L, 1);
  if (lua_getfield(L, 2, "expires") != LUA_TNIL) {
    int ok;
    fz->reuse_until = (int64_t)lua_tointegerx(L, -1, &ok);
    luaL_argcheck(L, ok && fz->reuse_until > 0, 2, "reuse.expires must be a unix time");
  }
  lua_pop(L, 1);
  if (lua_getfield(L, 2, "vary") != LUA_TNIL) {
    luaL_argcheck(L, lua_istable(L, -1), 2, "reuse.vary must be a list of header names");
    size_t n = lua_rawlen(L, -1);
    luaL_argcheck(L, n <= 8, 2, "reuse.vary: at most 8 headers");
    fz->vary = hg_arena_alloc(fz->arena, (n ? n : 1) * sizeof(char *));
    if (fz->vary == NULL) {
      luaL_error(L, "out of memory");
      return; /* not reached */
    }
    for (size_t i = 1; i <= n; i++) {
      size_t len = 0;
      const char *name = lua_rawgeti(L, -1, (lua_Integer)i) == LUA_TSTRING ? lua_tolstring(L, -1, &len) : NULL;
      if (name == NULL || !hg__lua_valid_header(name, len, "", 0)) {
        luaL_argerror(L, 2, "reuse.vary must be a list of header names");
        return; /* not reached */
      }
      char *low = hg_arena_strndup(fz->arena, name, len);
      if (low == NULL) {
        luaL_error(L, "out of memory");
        return; /* not reached */
      }
      for (char *c = low; *c; c++) *c = (char)(*c >= 'A' && *c <= 'Z' ? *c | 0x20 : *c);
      fz->vary[fz->nvary++] = low;
      lua_pop(L, 1);
    }
  }
  lua_pop(L, 1);
  if (lua_getfield(L, 2, "token") != LUA_TNIL) read_token(L, fz);
  lua_pop(L, 1);
  fz->reuse_ttl_ms = (uint64_t)ttl * 1000;
}

/* hg.plan(t [, reuse]) -> frozen plan. Raises on an invalid plan (the message the server
 * would log for the table), on one with on_uri (a hook is per request) and on a bad reuse
 * rule; nil, "out of memory". */
static int freeze(lua_State *L, int keep_source);

static int l_plan(lua_State *L) { return freeze(L, 1); }

/* hg.plan's work; keep_source: keep a copy of the table for hg.plan_table (a plan the
 * core freezes itself is never seen by Lua: no copy). */
static int freeze(lua_State *L, int keep_source) {
  luaL_checktype(L, 1, LUA_TTABLE);
  if (!lua_isnoneornil(L, 2)) luaL_checktype(L, 2, LUA_TTABLE);
  lua_settop(L, 2);
  hg_plan_frozen_t **ud = lua_newuserdatauv(L, sizeof(hg_plan_frozen_t *), 1); /* at 3 */
  *ud = NULL;
  if (luaL_newmetatable(L, MT)) {
    static const luaL_Reg mt[] = {{"__gc", frozen_gc},
                                  {"__index", frozen_index},
                                  {"__newindex", frozen_index},
                                  {"__tostring", frozen_tostring},
                                  {NULL, NULL}};
    luaL_setfuncs(L, mt, 0);
    /* Security: the metatable stays ours (no swapping __gc for a double free). */
    lua_pushstring(L, MT);
    lua_setfield(L, -2, "__metatable");
  }
  lua_setmetatable(L, 3);
  void *aud;
  lua_Alloc f = lua_getallocf(L, &aud);
  /* Memory: the plan counts against the state's cap like the table it came from. */
  hg_arena_t *arena = hg_arena_new_with(sizeof(hg_plan_frozen_t) + 1024, (hg_arena_allocf)f, aud);
  if (arena == NULL) { /* the allocator, called directly, skips Lua's emergency collection */
    lua_gc(L, LUA_GCCOLLECT);
    arena = hg_arena_new_with(sizeof(hg_plan_frozen_t) + 1024, (hg_arena_allocf)f, aud);
  }
  hg_plan_frozen_t *fz = arena ? hg_arena_alloc(arena, sizeof(*fz)) : NULL;
  if (fz == NULL) {
    hg_arena_free(arena);
    lua_pushnil(L);
    lua_pushliteral(L, "out of memory");
    return 2;
  }
  memset(fz, 0, sizeof(*fz));
  fz->arena = arena;
  *ud = fz; /* from here on the collector frees it */
  if (lua_istable(L, 2)) read_reuse(L, fz);
  hg_plan_t *p = &fz->plan;
  if (hg__lua_to_plan(L, 1, arena, p) != 0) return luaL_error(L, "hg.plan: %s", lua_tostring(L, -1));
  if (p->hook_ref != LUA_NOREF) {
    luaL_unref(L, LUA_REGISTRYINDEX, p->hook_ref);
    p->hook_ref = LUA_NOREF;
    return luaL_error(L, "hg.plan: a frozen plan cannot have on_uri (a hook belongs to one request: return the table)");
  }
  if (lua_getfield(L, 1, "route") == LUA_TSTRING) {
    size_t n;
    const char *r = lua_tolstring(L, -1, &n);
    fz->route = hg_arena_strndup(arena, r, n);
    if (fz->route == NULL) {
      lua_pushnil(L);
      lua_pushliteral(L, "out of memory");
      return 2;
    }
  }
  lua_settop(L, 3);
  if (keep_source) { /* the table as it was frozen, for hg.plan_table (later changes unseen) */
    deep_copy(L, 1, 1);
    lua_setiuservalue(L, 3, 1);
  }
  p->frozen = fz;
  return 1;
}

/* hg.plan_table(v) -> a table: for a frozen plan, a new copy of the table it was made
 * from (to edit and return: a request's own plan); any other value as it is. */
static int l_plan_table(lua_State *L) {
  luaL_checkany(L, 1);
  if (luaL_testudata(L, 1, MT) == NULL) {
    lua_settop(L, 1);
    return 1;
  }
  if (lua_getiuservalue(L, 1, 1) != LUA_TTABLE) return luaL_error(L, "hg.plan_table: no table kept for this plan");
  deep_copy(L, -1, 1);
  return 1;
}

/* (protected) hg.plan(t, t.reuse) for the plan table at 1: leaves the frozen plan. */
static int freeze_reusable(lua_State *L) {
  lua_settop(L, 1);
  hg__lua_rawfield(L, 1, "reuse");
  return freeze(L, 0);
}

hg_plan_frozen_t *hg__lua_freeze_reusable(lua_State *L, int idx) {
  idx = lua_absindex(L, idx);
  if (hg__lua_rawfield(L, idx, "reuse") != LUA_TTABLE) {
    lua_pop(L, 1);
    return NULL;
  }
  lua_pop(L, 1);
  lua_pushcfunction(L, freeze_reusable);
  lua_pushvalue(L, idx);
  if (lua_pcall(L, 1, 1, 0) != LUA_OK) return NULL; /* the message is left for the caller */
  hg_plan_frozen_t *fz = hg__lua_test_frozen(L, -1);
  if (fz) lua_replace(L, idx); /* else nil is left: no memory for it (the table stays) */
  return fz;
}

hg_plan_frozen_t *hg__lua_test_frozen(lua_State *L, int idx) {
  hg_plan_frozen_t **ud = luaL_testudata(L, idx, MT);
  return ud ? *ud : NULL;
}

void hg__lua_add_plan(lua_State *L) {
  lua_pushcfunction(L, l_plan);
  lua_setfield(L, -2, "plan");
  lua_pushcfunction(L, l_plan_table);
  lua_setfield(L, -2, "plan_table");
}
