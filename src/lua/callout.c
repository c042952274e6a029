/* callout.c — the callout bindings: hg.http.request, hg.redis.call, hg.redis.pipeline
 * and hg.null (docs/callouts.md). They check their arguments, start the call through the
 * worker's port (lua/callout.h) and yield the request's coroutine (task.c); the port's
 * answer is turned into Lua values here and resumes it. Misuse raises; a failed call
 * returns nil, err.
 */
#include "lua/callout.h"

#include <lauxlib.h>
#include <string.h>

#include "base/error.h"
#include "lua/policy_internal.h"

#define HTTP_DEFAULT_TIMEOUT_MS 5000
#define HTTP_MAX_TIMEOUT_MS 60000
#define HTTP_DEFAULT_MAX_BODY (1024 * 1024)
#define HTTP_MAX_MAX_BODY (8 * 1024 * 1024)
#define HTTP_MAX_HEADERS 32
#define REDIS_MAX_ARGS 4096 /* arguments in one call or pipeline, all commands together */

/* ---- hg.http.request ---- */

static uint64_t timeout_opt(lua_State *L, int idx, const char *field, uint64_t def, uint64_t max) {
  lua_getfield(L, idx, field);
  uint64_t ms = def;
  if (!lua_isnil(L, -1)) {
    lua_Number s = luaL_checknumber(L, -1);
    if (!(s > 0) || s * 1000 > (lua_Number)max)
      luaL_error(L, "%s must be > 0 and at most %d seconds", field, (int)(max / 1000));
    ms = (uint64_t)(s * 1000);
    if (ms == 0) ms = 1;
  }
  lua_pop(L, 1);
  return ms;
}

/* hg.http.request{ url = U, method = "GET"|"HEAD", headers = {name = value}, timeout = s,
 *                  max_body = bytes, allow_private = bool } -> res | nil, err */
static int l_http_request(lua_State *L) {
  static const char *const allowed[] = {"url", "method", "headers", "timeout", "max_body",
                                        "allow_private", NULL};
  luaL_checktype(L, 1, LUA_TTABLE);
  hg__lua_check_opts(L, 1, allowed);
  hg_callout_http_t req;
  memset(&req, 0, sizeof(req));
  lua_getfield(L, 1, "url");
  req.url = luaL_checkstring(L, -1);
  if (strncmp(req.url, "http://", 7) != 0 && strncmp(req.url, "https://", 8) != 0)
    luaL_argerror(L, 1, "url must be an absolute http:// or https:// URL");
  lua_getfield(L, 1, "method");
  req.method = luaL_optstring(L, -1, "GET");
  if (strcmp(req.method, "GET") != 0 && strcmp(req.method, "HEAD") != 0)
    luaL_argerror(L, 1, "method must be GET or HEAD");
  req.timeout_ms = timeout_opt(L, 1, "timeout", HTTP_DEFAULT_TIMEOUT_MS, HTTP_MAX_TIMEOUT_MS);
  lua_getfield(L, 1, "max_body");
  lua_Integer mb = luaL_optinteger(L, -1, HTTP_DEFAULT_MAX_BODY);
  if (mb < 0 || mb > HTTP_MAX_MAX_BODY) luaL_argerror(L, 1, "max_body must be 0..8388608");
  req.max_body = (size_t)mb;
  lua_getfield(L, 1, "allow_private");
  req.allow_private = lua_toboolean(L, -1);
  lua_pop(L, 1);
  hg_header_t hdrs[HTTP_MAX_HEADERS];
  lua_getfield(L, 1, "headers");
  if (!lua_isnil(L, -1)) {
    luaL_checktype(L, -1, LUA_TTABLE);
    int ht = lua_gettop(L);
    lua_pushnil(L);
    while (lua_next(L, ht) != 0) {
      if (lua_type(L, -2) != LUA_TSTRING || lua_type(L, -1) != LUA_TSTRING)
        luaL_argerror(L, 1, "headers must map names to string values");
      if (req.nheaders == HTTP_MAX_HEADERS) luaL_argerror(L, 1, "too many headers (32 at most)");
      hg_header_t *h = &hdrs[req.nheaders++];
      h->name = lua_tolstring(L, -2, &h->name_len);
      h->value = lua_tolstring(L, -1, &h->value_len); /* kept alive by the headers table */
      lua_pop(L, 1);
    }
  }
  req.headers = hdrs;
  const hg_callout_port_t *port;
  hg_callout_t *call = hg__policy_callout_begin(L, "hg.http.request", &req.timeout_ms, &port);
  if (call == NULL) {
    lua_pushnil(L);
    lua_insert(L, -2);
    return 2;
  }
  call->kind = HG_CALLOUT_HTTP;
  int rc = port->http(port->ud, &req, call);
  if (rc < 0) {
    lua_pushnil(L);
    lua_pushfstring(L, "cannot start the request: %s", hg_strerror(rc));
    return 2;
  }
  return hg__policy_callout_yield(L, call);
}

/* The answer's Lua values are built on the main thread inside a pcall, then moved to the
 * suspended coroutine: a state at its memory cap gets nil, "not enough memory" as the
 * call's result (its error, not a crash). */
static void resume_with(hg_callout_t *call, lua_CFunction build, void *ud) {
  lua_State *L = hg__policy_callout_main(call);
  lua_State *co = hg__policy_callout_thread(call);
  int base = lua_gettop(L);
  lua_pushcfunction(L, build);
  lua_pushlightuserdata(L, ud);
  if (lua_pcall(L, 1, LUA_MULTRET, 0) != LUA_OK) { /* the error object is on top */
    lua_pushnil(L);
    lua_insert(L, -2);
  }
  int nres = lua_gettop(L) - base;
  if (lua_checkstack(co, nres + 1)) {
    lua_xmove(L, co, nres);
  } else {
    lua_settop(L, base);
    nres = 0;
  }
  hg__policy_callout_resume(call, nres);
}

typedef struct http_answer_s {
  int err;
  const char *msg;
  int status;
  const hg_header_t *headers;
  size_t nheaders;
  const char *body;
  size_t len;
} http_answer_t;

static int build_http(lua_State *L) {
  const http_answer_t *a = lua_touserdata(L, 1);
  if (a->err != 0) {
    lua_pushnil(L);
    lua_pushstring(L, a->msg && *a->msg ? a->msg : hg_strerror(a->err));
    return 2;
  }
  lua_createtable(L, 0, 3);
  lua_pushinteger(L, a->status);
  lua_setfield(L, -2, "status");
  hg__lua_push_headers(L, a->headers, a->nheaders); /* as req.headers */
  lua_setfield(L, -2, "headers");
  lua_pushlstring(L, a->body ? a->body : "", a->len);
  lua_setfield(L, -2, "body");
  return 1;
}

void hg_callout_http_done(hg_callout_t *call, int err, const char *msg, int status,
                          const hg_header_t *headers, size_t nheaders, const char *body,
                          size_t len) {
  http_answer_t a = {err, msg, status, headers, nheaders, body, len};
  resume_with(call, build_http, &a);
}

/* ---- hg.redis ---- */

/* Collects the strings of one command (a table at idx, or the arguments from idx on when
 * `args`) on the stack's tail. Returns how many. */
static int push_command(lua_State *L, int idx, int args, const char **argv, size_t *lens,
                        int *nargs) {
  int n = args ? lua_gettop(L) - idx + 1 : (int)luaL_len(L, idx);
  if (n < 1) luaL_error(L, "hg.redis: a command needs at least its name");
  if (*nargs + n > REDIS_MAX_ARGS) luaL_error(L, "hg.redis: too many arguments (%d at most)", REDIS_MAX_ARGS);
  luaL_checkstack(L, n + 4, "hg.redis: too many arguments");
  for (int i = 0; i < n; i++) { /* each string stays on the stack until the port copied it */
    if (args) lua_pushvalue(L, idx + i);
    else lua_rawgeti(L, idx, i + 1);
    int ty = lua_type(L, -1);
    if (ty != LUA_TSTRING && ty != LUA_TNUMBER)
      luaL_error(L, "hg.redis: argument %d of a command is a %s (strings and numbers only)", i + 1,
                 luaL_typename(L, -1));
    argv[*nargs] = lua_tolstring(L, -1, &lens[*nargs]); /* converts numbers in place */
    (*nargs)++;
  }
  return n;
}

static int start_redis(lua_State *L, size_t ncmds, const int *argc, const char **argv,
                       const size_t *lens, int pipeline) {
  uint64_t timeout = UINT64_MAX;
  const hg_callout_port_t *port;
  hg_callout_t *call = hg__policy_callout_begin(L, pipeline ? "hg.redis.pipeline" : "hg.redis.call",
                                                &timeout, &port);
  if (call == NULL) {
    lua_pushnil(L);
    lua_insert(L, -2);
    return 2;
  }
  call->kind = HG_CALLOUT_REDIS;
  call->multi = pipeline;
  int rc = port->redis(port->ud, ncmds, argc, argv, lens, timeout, call);
  if (rc < 0) {
    lua_pushnil(L);
    lua_pushstring(L, rc == HG_EINVAL ? "redis not configured (HLSGATE_REDIS_URL)" : hg_strerror(rc));
    return 2;
  }
  return hg__policy_callout_yield(L, call);
}

/* hg.redis.call(name, arg…) -> reply | nil, err */
static int l_redis_call(lua_State *L) {
  luaL_checkstring(L, 1);
  const char *argv[REDIS_MAX_ARGS];
  size_t lens[REDIS_MAX_ARGS];
  int nargs = 0;
  int argc = push_command(L, 1, 1, argv, lens, &nargs);
  return start_redis(L, 1, &argc, argv, lens, 0);
}

/* hg.redis.pipeline{ {name, arg…}, … } -> { reply, … } | nil, err */
static int l_redis_pipeline(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_Integer n = luaL_len(L, 1);
  if (n < 1 || n > 256) luaL_argerror(L, 1, "1 to 256 commands");
  const char *argv[REDIS_MAX_ARGS];
  size_t lens[REDIS_MAX_ARGS];
  int argc[256];
  int nargs = 0;
  for (lua_Integer i = 1; i <= n; i++) {
    if (lua_rawgeti(L, 1, i) != LUA_TTABLE) luaL_argerror(L, 1, "each command must be a table {name, arg…}");
    argc[i - 1] = push_command(L, lua_gettop(L), 0, argv, lens, &nargs); /* table stays too */
  }
  return start_redis(L, (size_t)n, argc, argv, lens, 1);
}

static void push_reply(lua_State *L, const hg_callout_reply_t *r, int depth) {
  switch (r->type) {
  case HG_REPLY_STRING:
  case HG_REPLY_STATUS:
    lua_pushlstring(L, r->str, r->len);
    break;
  case HG_REPLY_INTEGER:
    lua_pushinteger(L, (lua_Integer)r->integer);
    break;
  case HG_REPLY_ERROR: /* inside arrays and pipelines: { err = "…" } */
    lua_createtable(L, 0, 1);
    lua_pushlstring(L, r->str, r->len);
    lua_setfield(L, -2, "err");
    break;
  case HG_REPLY_ARRAY:
    if (depth > 8 || !lua_checkstack(L, 4)) {
      lua_pushlightuserdata(L, NULL);
      break;
    }
    lua_createtable(L, (int)r->nelements, 0);
    for (size_t i = 0; i < r->nelements; i++) {
      push_reply(L, &r->elements[i], depth + 1);
      lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    break;
  default:
    lua_pushlightuserdata(L, NULL); /* hg.null */
    break;
  }
}

typedef struct redis_answer_s {
  const hg_callout_reply_t *replies;
  size_t n;
  const char *err;
  int pipeline;
} redis_answer_t;

static int build_redis(lua_State *L) {
  const redis_answer_t *a = lua_touserdata(L, 1);
  if (a->replies == NULL) {
    lua_pushnil(L);
    lua_pushstring(L, a->err && *a->err ? a->err : "redis failed");
    return 2;
  }
  if (a->pipeline) {
    lua_createtable(L, (int)a->n, 0);
    for (size_t i = 0; i < a->n; i++) {
      push_reply(L, &a->replies[i], 0);
      lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    return 1;
  }
  const hg_callout_reply_t *r = &a->replies[0];
  if (r->type == HG_REPLY_NIL) {
    lua_pushnil(L);
    return 1;
  }
  if (r->type == HG_REPLY_ERROR) {
    lua_pushnil(L);
    lua_pushlstring(L, r->str, r->len);
    return 2;
  }
  push_reply(L, r, 0);
  return 1;
}

void hg_callout_redis_done(hg_callout_t *call, const hg_callout_reply_t *replies, size_t n,
                           const char *err) {
  redis_answer_t a = {replies, n, err, call->multi};
  resume_with(call, build_redis, &a);
}

void hg__lua_open_callouts(lua_State *L) {
  lua_createtable(L, 0, 1);
  lua_pushcfunction(L, l_http_request);
  lua_setfield(L, -2, "request");
  lua_setfield(L, -2, "http");
  lua_createtable(L, 0, 2);
  lua_pushcfunction(L, l_redis_call);
  lua_setfield(L, -2, "call");
  lua_pushcfunction(L, l_redis_pipeline);
  lua_setfield(L, -2, "pipeline");
  lua_setfield(L, -2, "redis");
  lua_pushlightuserdata(L, NULL);
  lua_setfield(L, -2, "null");
}
