/* lhost.c — `hg._host`, the server's own request tables, plan reader and playlist
 * actions for the specs (only in lib/hlsgate.so, never in the server's module): busted
 * then tests the shipped policies against the C code the gateway runs, not a copy.
 *   request(method, target [, opts]) -> req       (message.c push_request)
 *   to_plan(plan) -> what C read | nil, err       (plan.c, the error the server logs)
 *   apply(plan, body, base_url [, now]) -> out, stats, decisions | nil, err
 *                                                 (hls rewriter + actions.c)
 */
#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/arena.h"
#include "base/error.h"
#include "lua/actions.h"
#include "lua/lapi.h"
#include "lua/policy_internal.h"

int hg__lua_open_host(lua_State *L);

/* What one call holds; freed by __close (and __gc), also when a Lua error unwinds. */
typedef struct host_s {
  lua_State *L;
  hg_arena_t *arena;
  hg_hls_rewriter_t *rw;
  hg_actions_t act;
  hg_buf_t out;
  int hook_ref;
  hg_request_t req;
  hg_plan_t plan;
  int decisions; /* stack index of the decisions list (apply) */
  size_t ndecisions;
  char err[256];
} host_t;

static int host_close(lua_State *L) {
  host_t *h = lua_touserdata(L, 1);
  if (h->hook_ref != LUA_NOREF) luaL_unref(L, LUA_REGISTRYINDEX, h->hook_ref);
  h->hook_ref = LUA_NOREF;
  hg_hls_rewriter_free(h->rw);
  h->rw = NULL;
  hg_actions_free(&h->act);
  hg_buf_free(&h->out);
  hg_arena_free(h->arena);
  h->arena = NULL;
  return 0;
}

/* Pushes a host_t (to-be-closed) with an arena and a request in it. */
static host_t *push_host(lua_State *L) {
  host_t *h = lua_newuserdatauv(L, sizeof(*h), 0);
  memset(h, 0, sizeof(*h));
  h->L = L;
  h->hook_ref = LUA_NOREF;
  h->plan.hook_ref = LUA_NOREF;
  if (luaL_newmetatable(L, "hlsgate.host")) {
    lua_pushcfunction(L, host_close);
    lua_setfield(L, -2, "__close");
    lua_pushcfunction(L, host_close);
    lua_setfield(L, -2, "__gc");
  }
  lua_setmetatable(L, -2);
  lua_toclose(L, -1);
  if ((h->arena = hg_arena_new(4096)) == NULL) luaL_error(L, "out of memory");
  h->req.arena = h->arena;
  h->req.method = "GET";
  h->req.target = "/";
  h->req.target_len = h->req.path_len = 1;
  h->req.http_major = h->req.http_minor = 1;
  snprintf(h->req.id, sizeof(h->req.id), "%s", "test-request-1");
  snprintf(h->req.client, sizeof(h->req.client), "%s", "127.0.0.1");
  return h;
}

static const char *dup_check(lua_State *L, host_t *h, int idx, size_t *n) {
  size_t len;
  const char *s = luaL_checklstring(L, idx, &len);
  char *d = hg_arena_strndup(h->arena, s, len);
  if (d == NULL) luaL_error(L, "out of memory");
  if (n) *n = len;
  return d;
}

static int cmp_str(const void *a, const void *b) {
  return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* opts.headers: { Name = value } (sent in name order) or a list of { name, value }
 * (sent in list order, so repeated headers can be tested). */
static void read_headers(lua_State *L, host_t *h, int t) {
  size_t cap = 0;
  lua_pushnil(L);
  while (lua_next(L, t) != 0) cap++, lua_pop(L, 1);
  hg_header_t *hs = hg_arena_alloc(h->arena, (cap ? cap : 1) * sizeof(*hs));
  const char **names = hg_arena_alloc(h->arena, (cap ? cap : 1) * sizeof(*names));
  if (hs == NULL || names == NULL) {
    luaL_error(L, "out of memory"); /* does not return (longjmp) */
    return;
  }
  size_t n = 0;
  if (lua_rawlen(L, t) > 0) {
    for (lua_Integer i = 1; i <= (lua_Integer)cap; i++) {
      lua_rawgeti(L, t, i);
      luaL_checktype(L, -1, LUA_TTABLE);
      int e = lua_gettop(L);
      lua_rawgeti(L, e, 1);
      lua_rawgeti(L, e, 2);
      hs[n].name = dup_check(L, h, -2, &hs[n].name_len);
      hs[n].value = dup_check(L, h, -1, &hs[n].value_len);
      n++;
      lua_settop(L, e - 1);
    }
  } else {
    lua_pushnil(L);
    while (lua_next(L, t) != 0) {
      names[n++] = dup_check(L, h, -2, NULL);
      lua_pop(L, 1);
    }
    qsort(names, n, sizeof(*names), cmp_str);
    for (size_t i = 0; i < n; i++) {
      lua_getfield(L, t, names[i]);
      hs[i].name = names[i];
      hs[i].name_len = strlen(names[i]);
      hs[i].value = dup_check(L, h, -1, &hs[i].value_len);
      lua_pop(L, 1);
    }
  }
  h->req.headers = hs;
  h->req.nheaders = n;
}

/* request(method, target [, { headers, body, client, id }]) -> the `req` table the
 * server gives on_request for this request. */
static int l_request(lua_State *L) {
  luaL_checkstring(L, 1);
  luaL_checkstring(L, 2);
  if (!lua_isnoneornil(L, 3)) luaL_checktype(L, 3, LUA_TTABLE);
  lua_settop(L, 3);
  host_t *h = push_host(L);
  hg_request_t *req = &h->req;
  req->method = dup_check(L, h, 1, NULL);
  req->target = dup_check(L, h, 2, &req->target_len);
  req->path_len = strcspn(req->target, "?"); /* as http/request.c */
  if (lua_istable(L, 3)) {
    if (lua_getfield(L, 3, "headers") == LUA_TTABLE) read_headers(L, h, lua_gettop(L));
    lua_pop(L, 1);
    if (lua_getfield(L, 3, "body") != LUA_TNIL) req->body = dup_check(L, h, -1, &req->body_len);
    lua_pop(L, 1);
    if (lua_getfield(L, 3, "client") != LUA_TNIL) snprintf(req->client, sizeof(req->client), "%s", luaL_checkstring(L, -1));
    lua_pop(L, 1);
    if (lua_getfield(L, 3, "id") != LUA_TNIL) snprintf(req->id, sizeof(req->id), "%s", luaL_checkstring(L, -1));
    lua_pop(L, 1);
  }
  hg__lua_push_request(L, req);
  hg__lua_request_materialize(L, -1); /* the table outlives this call's host */
  hg__lua_request_end(L, -1);
  return 1;
}

static const char *const ACT_NAMES[] = {"unset", "keep", "drop", "absolute", "proxy", "presign", "hook"};

static void set_str(lua_State *L, const char *k, const char *v) {
  if (v == NULL) return;
  lua_pushstring(L, v);
  lua_setfield(L, -2, k);
}

static void set_int(lua_State *L, const char *k, lua_Integer v) {
  lua_pushinteger(L, v);
  lua_setfield(L, -2, k);
}

static void set_bool(lua_State *L, const char *k, int v) {
  lua_pushboolean(L, v);
  lua_setfield(L, -2, k);
}

static void set_pairs(lua_State *L, const char *k, const hg_header_t *hs, size_t n) {
  if (n == 0) return;
  lua_createtable(L, 0, (int)n);
  for (size_t i = 0; i < n; i++) {
    lua_pushlstring(L, hs[i].value, hs[i].value_len);
    lua_setfield(L, -2, hs[i].name);
  }
  lua_setfield(L, -2, k);
}

static void set_list(lua_State *L, const char *k, const char **v, size_t n) {
  if (v == NULL) return;
  lua_createtable(L, (int)n, 0);
  for (size_t i = 0; i < n; i++) {
    lua_pushstring(L, v[i]);
    lua_rawseti(L, -2, (lua_Integer)i + 1);
  }
  lua_setfield(L, -2, k);
}

/* Pushes what the C reader took from a plan: the fields of hg_plan_t under the names
 * the plan table uses (absent when unset). */
static void push_plan(lua_State *L, const hg_plan_t *p) {
  static const char *const origins[] = {"?", "file", "http", "s3"};
  lua_newtable(L);
  lua_newtable(L);
  lua_pushstring(L, origins[p->origin]);
  lua_setfield(L, -2, "type");
  set_str(L, "root", p->file_root);
  set_str(L, "path", p->file_path);
  set_str(L, "url", p->url);
  set_str(L, "key", p->s3_key);
  if (p->origin == HG_ORIGIN_HTTP) {
    set_pairs(L, "headers", p->req_headers, p->nreq_headers);
    set_int(L, "allow_private", p->allow_private); /* HG_ADDR_* mask, -1: all */
    set_list(L, "allow_hosts", p->allow_hosts, p->nallow_hosts);
    set_int(L, "max_redirects", p->max_redirects);
  }
  lua_setfield(L, -2, "origin");
  if (p->has_s3) {
    lua_newtable(L);
    set_str(L, "endpoint", p->s3.endpoint);
    set_str(L, "public_endpoint", p->s3.public_endpoint);
    set_str(L, "region", p->s3.region);
    set_str(L, "bucket", p->s3.bucket);
    set_str(L, "access_key", p->s3.access_key);
    set_str(L, "secret_key", p->s3.secret_key);
    set_str(L, "session_token", p->s3.session_token);
    set_bool(L, "path_style", p->s3.path_style);
    lua_setfield(L, -2, "s3");
  }
  set_pairs(L, "headers", p->headers, p->nheaders);
  set_str(L, "content_type", p->content_type);
  set_str(L, "filename", p->disposition_name);
  set_int(L, "cache_ttl", (lua_Integer)p->cache_ttl);
  set_int(L, "live_ttl_ms", p->live_ttl_ms);
  set_bool(L, "ignore_origin_cache", p->ignore_origin_cache);
  set_int(L, "timeout_ms", (lua_Integer)p->timeout_ms);
  lua_newtable(L);
  for (int c = 0; c < HG_HLS_CLASS_COUNT; c++) {
    if (p->actions[c] == HG_ACT_UNSET) continue;
    lua_pushstring(L, ACT_NAMES[p->actions[c]]);
    lua_setfield(L, -2, hg_hls_class_name((hg_hls_class_t)c));
  }
  lua_pushstring(L, ACT_NAMES[p->default_action]);
  lua_setfield(L, -2, "default");
  lua_setfield(L, -2, "rewrite");
  if (p->proxy_prefix || p->proxy_from) {
    lua_newtable(L);
    set_str(L, "prefix", p->proxy_prefix);
    set_str(L, "from", p->proxy_from);
    set_str(L, "to", p->proxy_to);
    set_pairs(L, "params", p->proxy_params, p->nproxy_params);
    if (p->proxy_sign_secret) set_int(L, "sign_ttl", p->proxy_sign_ttl);
    lua_setfield(L, -2, "proxy");
  }
  lua_newtable(L);
  set_int(L, "ttl", p->presign_ttl);
  set_str(L, "prefix", p->presign_prefix);
  lua_setfield(L, -2, "presign");
  set_bool(L, "private", p->carries_token);
  if (p->ct_allow || p->ct_refuse) {
    lua_newtable(L);
    set_list(L, "allow", p->ct_allow, p->nct_allow);
    lua_pushstring(L, p->ct_refuse ? "refuse" : "attachment");
    lua_setfield(L, -2, "otherwise");
    lua_setfield(L, -2, "content_types");
  }
  set_bool(L, "on_uri", p->hook_ref != LUA_NOREF);
}

/* Reads the plan at index 1 into h->plan as the server does; 0, or -1 with nil, err
 * pushed (the message the server logs as "policy error: …"). */
static int read_plan(lua_State *L, host_t *h) {
  hg_plan_frozen_t *fz = hg__lua_test_frozen(L, 1);
  if (fz) { /* as the server: a copy (the argument keeps it alive for the call) */
    h->plan = fz->plan;
    h->plan.frozen = NULL;
    return 0;
  }
  luaL_checktype(L, 1, LUA_TTABLE); /* a plan table or a frozen plan */
  int top = lua_gettop(L);
  if (hg__lua_to_plan(L, 1, h->req.arena, &h->plan) != 0) {
    h->hook_ref = h->plan.hook_ref;
    lua_pushnil(L);
    lua_insert(L, -2);
    return -1;
  }
  h->hook_ref = h->plan.hook_ref;
  lua_settop(L, top);
  return 0;
}

static int l_to_plan(lua_State *L) {
  lua_settop(L, 1);
  host_t *h = push_host(L);
  if (read_plan(L, h)) return 2;
  push_plan(L, &h->plan);
  return 1;
}

/* The decide callback of apply: as the gateway's (src/gateway/playlist.c), with the
 * hook called without the budget of the server. Records { class, action } per URI. */
static int decide(void *ud, const hg_hls_uri_t *uri, hg_buf_t *out) {
  host_t *h = ud;
  lua_State *L = h->L;
  hg_action_t act = hg_actions_for_class(&h->plan, uri->cls);
  if (h->plan.hook_ref >= 0) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, h->plan.hook_ref);
    hg__lua_push_uri(L, uri);
    if (lua_pcall(L, 1, 1, 0) != LUA_OK) {
      snprintf(h->err, sizeof(h->err), "policy error: %s", lua_tostring(L, -1));
      lua_pop(L, 1);
      return HG_EPOLICY;
    }
    int r = hg__lua_uri_result(L, out, h->req.id);
    if (r == HG_EPOLICY)
      snprintf(h->err, sizeof(h->err), "policy error: on_uri returned %s", luaL_typename(L, -1));
    lua_pop(L, 1);
    if (r < 0) return r;
    if (r != HG_ACT_UNSET) act = (hg_action_t)r;
  }
  if (act != HG_ACT_HOOK) act = hg_actions_resolve(&h->plan, act, uri->cls);
  lua_createtable(L, 2, 0);
  lua_pushstring(L, hg_hls_class_name(uri->cls));
  lua_rawseti(L, -2, 1);
  lua_pushstring(L, ACT_NAMES[act]);
  lua_rawseti(L, -2, 2);
  lua_rawseti(L, h->decisions, (lua_Integer)++h->ndecisions);
  return act == HG_ACT_HOOK ? HG_HLS_REPLACE : hg_actions_do(&h->act, &h->plan, act, uri, out);
}

/* apply(plan, body, base_url [, now]) -> out, stats, decisions | nil, err
 * now: the clock of presigned URLs (bucketed as the gateway does) and of proxy.sign. */
static int l_apply(lua_State *L) {
  size_t len, blen;
  if (hg__lua_test_frozen(L, 1) == NULL) luaL_checktype(L, 1, LUA_TTABLE);
  const char *body = luaL_checklstring(L, 2, &len);
  const char *base = luaL_checklstring(L, 3, &blen);
  int64_t now = luaL_optinteger(L, 4, (lua_Integer)time(NULL));
  lua_settop(L, 4);
  host_t *h = push_host(L);
  if (read_plan(L, h)) return 2;
  hg_actions_clock(&h->act, &h->plan, now);
  h->act.sign_now = now;
  lua_newtable(L);
  h->decisions = lua_gettop(L);
  if ((h->rw = hg_hls_rewriter_new()) == NULL) return luaL_error(L, "out of memory");
  hg_hls_stats_t st;
  int rc = hg_hls_rewrite(h->rw, &h->out, body, len, base, blen, decide, h, &st);
  if (rc != 0) {
    lua_pushnil(L);
    lua_pushstring(L, h->err[0] ? h->err : hg_strerror(rc));
    return 2;
  }
  lua_pushlstring(L, h->out.data ? h->out.data : "", h->out.len);
  hg__lua_push_stats(L, &st);
  lua_pushinteger(L, (lua_Integer)h->act.proxied);
  lua_setfield(L, -2, "proxied");
  lua_pushvalue(L, h->decisions);
  return 3;
}

int hg__lua_open_host(lua_State *L) {
  static const luaL_Reg fns[] = {
      {"request", l_request}, {"to_plan", l_to_plan}, {"apply", l_apply}, {NULL, NULL}};
  luaL_newlib(L, fns);
  return 1;
}
