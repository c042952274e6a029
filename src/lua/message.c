/* message.c — the request and response as the policy sees them: hg_request_t pushed as
 * the `req` table (method, path, decoded query, headers, client, id) and a response table
 * (status, headers, body, or an hg.error) read back into hg_response_t within the limits
 * of docs/policy-api.md.
 */
#include <lauxlib.h>
#include <string.h>
#include <strings.h>

#include "base/error.h"
#include "base/log.h"
#include "lua/lapi.h"
#include "lua/policy_internal.h"
#include "url/url.h"


/* Pushes the decoded query as { name = value }: the one query decoder of the project
 * (url/url_codec.c), lenient about invalid escapes (kept as written) and '+' as a space;
 * the first of repeated names wins, a bare name is "" (docs/policy-api.md). */
static void push_query(lua_State *L, const char *q, size_t n) {
  lua_newtable(L);
  hg_url_query_iter_t it;
  hg_url_param_t prm;
  hg_buf_t b = HG_BUF_INIT;
  hg_url_query_iter(&it, q, n);
  while (hg_url_query_next(&it, &prm)) {
    hg_buf_clear(&b);
    if (hg_url_decode(&b, prm.name, prm.name_len, HG_URL_DEC_PLUS | HG_URL_DEC_LENIENT) != 0) continue;
    lua_pushlstring(L, b.data ? b.data : "", b.len);
    if (lua_rawget(L, -2) != LUA_TNIL) { /* the first one wins */
      lua_pop(L, 1);
      continue;
    }
    lua_pop(L, 1);
    lua_pushlstring(L, b.data ? b.data : "", b.len);
    hg_buf_clear(&b);
    if (hg_url_decode(&b, prm.value, prm.value_len, HG_URL_DEC_PLUS | HG_URL_DEC_LENIENT) != 0) {
      lua_pop(L, 1);
      continue;
    }
    lua_pushlstring(L, b.data ? b.data : "", b.len);
    lua_rawset(L, -3);
  }
  hg_buf_free(&b);
}

/* The request table is lazy: `method` and `path` are set at once (every policy routes
 * on them); the other fields (query, raw_query, headers, body, client, id, http_version,
 * scheme, target) are made on first use by __index and kept in the table, so a policy
 * that never reads the headers never pays for them (docs/policy-api.md lists the fields;
 * pairs sees them all). `headers` is lazy in turn: a name is looked up when asked for. The table points at the C request through a light userdata under a key
 * Lua code cannot name; hg__lua_request_end clears it when the request is done with
 * Lua, so a table a policy kept answers nil for what it had not read, never stale memory. */
static const char REQ_KEY = 'r';  /* its address: the key of the C request pointer */
static const char REQ_META = 'm'; /* its address: the registry key of the metatable */

static const char *const LAZY[] = {"query", "raw_query", "headers", "body", "client", "id", "http_version", "scheme", "target"};
#define NLAZY (sizeof(LAZY) / sizeof(LAZY[0]))

void hg__lua_push_headers(lua_State *L, const hg_header_t *hs, size_t n) {
  /* headers: lower-case names; repeated headers joined with ", " (RFC 9110 §5.3). */
  lua_createtable(L, 0, (int)n);
  for (size_t i = 0; i < n; i++) {
    const hg_header_t *h = &hs[i];
    char small[64];
    luaL_Buffer b;
    if (h->name_len <= sizeof(small)) {
      for (size_t k = 0; k < h->name_len; k++) {
        char c = h->name[k];
        small[k] = (c >= 'A' && c <= 'Z') ? (char)(c | 0x20) : c;
      }
      lua_pushlstring(L, small, h->name_len);
    } else {
      luaL_buffinit(L, &b);
      for (size_t k = 0; k < h->name_len; k++) {
        char c = h->name[k];
        luaL_addchar(&b, (c >= 'A' && c <= 'Z') ? (char)(c | 0x20) : c);
      }
      luaL_pushresult(&b);
    }
    lua_pushvalue(L, -1);
    if (lua_rawget(L, -3) == LUA_TSTRING) {
      lua_pushliteral(L, ", ");
      lua_pushlstring(L, h->value, h->value_len);
      lua_concat(L, 3);
    } else {
      lua_pop(L, 1);
      lua_pushlstring(L, h->value, h->value_len);
    }
    lua_rawset(L, -3);
  }
}

/* ---- req.headers: looked up by name on first use ----
 * A browser sends a dozen headers and a policy reads two or three: __index finds the
 * asked-for name in the C request (case-insensitively; the table's names are lower-case,
 * so "Host" is nil as in a plain table), joins repeated ones with ", " and keeps the
 * answer. pairs, and the end of the request when the plan keeps a hook, fill in the rest
 * (a value the policy set stays). The C pointer is cleared when the request is done
 * with Lua, as for the request table. */
static const char HDR_META = 'h'; /* its address: the registry key of the metatable */

static const hg_request_t *req_of(lua_State *L, int t);
static int req_next(lua_State *L);

static int hdr_index(lua_State *L) {
  const hg_request_t *req = req_of(L, 1);
  if (req == NULL || lua_type(L, 2) != LUA_TSTRING) return 0;
  size_t kl;
  const char *k = lua_tolstring(L, 2, &kl);
  for (size_t i = 0; i < kl; i++)
    if (k[i] >= 'A' && k[i] <= 'Z') return 0;
  int found = 0;
  for (size_t i = 0; i < req->nheaders; i++) {
    const hg_header_t *h = &req->headers[i];
    if (h->name_len != kl || strncasecmp(h->name, k, kl) != 0) continue;
    if (found) lua_pushliteral(L, ", ");
    lua_pushlstring(L, h->value, h->value_len);
    if (found) lua_concat(L, 3);
    found = 1;
  }
  if (!found) return 0;
  lua_pushvalue(L, 2);
  lua_pushvalue(L, -2);
  lua_rawset(L, 1);
  return 1;
}

/* Sets every header not set yet, and drops the pointer (the table is whole). */
static void hdr_fill(lua_State *L, int t) {
  const hg_request_t *req = req_of(L, t);
  if (req == NULL) return;
  lua_pushnil(L);
  lua_rawsetp(L, t, &REQ_KEY);
  hg__lua_push_headers(L, req->headers, req->nheaders);
  lua_pushnil(L);
  while (lua_next(L, -2) != 0) {
    lua_pushvalue(L, -2);
    if (lua_rawget(L, t) == LUA_TNIL) {
      lua_pushvalue(L, -3);
      lua_pushvalue(L, -3);
      lua_rawset(L, t);
    }
    lua_pop(L, 2);
  }
  lua_pop(L, 1);
}

static int hdr_pairs(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  hdr_fill(L, 1);
  lua_pushcfunction(L, req_next);
  lua_pushvalue(L, 1);
  lua_pushnil(L);
  return 3;
}

/* Sets the metatable of the lazy table on top, made once per state under registry key
 * `key`: { __index = index, __pairs = pairs, __metatable = name }. Security: the
 * metatable stays ours (getmetatable/setmetatable cannot reach it). */
static void set_lazy_meta(lua_State *L, const char *key, lua_CFunction index, lua_CFunction pairs,
                          const char *name) {
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, key) != LUA_TTABLE) {
    lua_pop(L, 1);
    lua_createtable(L, 0, 3);
    lua_pushcfunction(L, index);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, pairs);
    lua_setfield(L, -2, "__pairs");
    lua_pushstring(L, name);
    lua_setfield(L, -2, "__metatable");
    lua_pushvalue(L, -1);
    lua_rawsetp(L, LUA_REGISTRYINDEX, key);
  }
  lua_setmetatable(L, -2);
}

static void push_lazy_headers(lua_State *L, const hg_request_t *req) {
  lua_createtable(L, 0, 4);
  lua_pushlightuserdata(L, (void *)req);
  lua_rawsetp(L, -2, &REQ_KEY);
  set_lazy_meta(L, &HDR_META, hdr_index, hdr_pairs, "headers");
}

/* Calls fn on the request table's `headers` when it is a lazy one still reading the
 * request (a table the policy put there instead is left alone). Allocates nothing when
 * fn does not (hg__lua_request_end runs unprotected): without the metatable there is no
 * lazy table, and with it the string "headers" exists (its __metatable), so pushing it
 * only finds it. */
static void with_lazy_headers(lua_State *L, int t, void (*fn)(lua_State *, int)) {
  int meta = lua_rawgetp(L, LUA_REGISTRYINDEX, &HDR_META) == LUA_TTABLE;
  lua_pop(L, 1);
  if (!meta) return;
  lua_pushliteral(L, "headers");
  if (lua_rawget(L, t) == LUA_TTABLE && lua_getmetatable(L, -1)) {
    int ours = lua_rawgetp(L, LUA_REGISTRYINDEX, &HDR_META) == LUA_TTABLE && lua_rawequal(L, -1, -2);
    lua_pop(L, 2);
    if (ours) fn(L, lua_gettop(L));
  }
  lua_pop(L, 1);
}

static void hdr_end(lua_State *L, int t) {
  lua_pushnil(L);
  lua_rawsetp(L, t, &REQ_KEY);
}

/* Pushes the value of lazy field `i` of `req` (nil when it has none). */
static void push_lazy(lua_State *L, const hg_request_t *req, size_t i) {
  const char *q = req->target + req->path_len;
  size_t qlen = req->target_len - req->path_len;
  if (qlen > 0) q++, qlen--; /* skip '?' */
  switch (i) {
  case 0: push_query(L, q, qlen); break;
  case 1: lua_pushlstring(L, q, qlen); break;
  case 2: push_lazy_headers(L, req); break;
  case 3:
    if (req->body) lua_pushlstring(L, req->body, req->body_len);
    else lua_pushnil(L);
    break;
  case 4: lua_pushstring(L, req->client); break;
  case 5: lua_pushstring(L, req->id); break;
  case 6: {
    char v[8] = {(char)('0' + req->http_major % 10), '.', (char)('0' + req->http_minor % 10), 0};
    lua_pushstring(L, v);
    break;
  }
  case 7: /* scheme: of the URLs made for this client (docs/tls.md) */
    lua_pushstring(L, req->tls ? "https" : "http");
    break;
  default:
    lua_pushlstring(L, req->target, req->target_len);
    break;
  }
}

static const hg_request_t *req_of(lua_State *L, int t) {
  lua_rawgetp(L, t, &REQ_KEY);
  const hg_request_t *req = lua_touserdata(L, -1);
  lua_pop(L, 1);
  return req;
}

/* Sets every lazy field not set yet (a field the policy assigned stays as it is). */
static void materialize(lua_State *L, int t, const hg_request_t *req) {
  for (size_t i = 0; i < NLAZY; i++) {
    lua_pushstring(L, LAZY[i]);
    if (lua_rawget(L, t) != LUA_TNIL) {
      lua_pop(L, 1);
      continue;
    }
    lua_pop(L, 1);
    push_lazy(L, req, i);
    lua_setfield(L, t, LAZY[i]);
  }
}

/* __index(t, k): a lazy field, made once and kept. */
static int req_index(lua_State *L) {
  const hg_request_t *req = req_of(L, 1);
  const char *k = lua_type(L, 2) == LUA_TSTRING ? lua_tostring(L, 2) : NULL;
  if (req == NULL || k == NULL) return 0;
  for (size_t i = 0; i < NLAZY; i++) {
    if (strcmp(k, LAZY[i]) != 0) continue;
    push_lazy(L, req, i);
    lua_pushvalue(L, -1);
    lua_setfield(L, 1, k); /* rawset in effect: the metatable has no __newindex */
    return 1;
  }
  return 0;
}

static int req_next(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_settop(L, 2);
  return lua_next(L, 1) ? 2 : (lua_pushnil(L), 1);
}

/* __pairs(t): every field, as an eager table would have them (the hidden pointer is
 * dropped first: pairs is for reading, the request is materialized). */
static int req_pairs(lua_State *L) {
  const hg_request_t *req = req_of(L, 1);
  if (req) materialize(L, 1, req);
  lua_pushnil(L);
  lua_rawsetp(L, 1, &REQ_KEY);
  lua_pushcfunction(L, req_next);
  lua_pushvalue(L, 1);
  lua_pushnil(L);
  return 3;
}

/* Pushes the request table given to on_request. */
void hg__lua_push_request(lua_State *L, const hg_request_t *req) {
  lua_createtable(L, 0, 3 + (int)NLAZY);
  lua_pushstring(L, req->method);
  lua_setfield(L, -2, "method");
  lua_pushlstring(L, req->target, req->path_len);
  lua_setfield(L, -2, "path");
  lua_pushlightuserdata(L, (void *)req);
  lua_rawsetp(L, -2, &REQ_KEY);
  set_lazy_meta(L, &REQ_META, req_index, req_pairs, "request");
}

void hg__lua_request_materialize(lua_State *L, int t) {
  t = lua_absindex(L, t);
  const hg_request_t *req = req_of(L, t);
  if (req) materialize(L, t, req);
  with_lazy_headers(L, t, hdr_fill);
}

void hg__lua_request_end(lua_State *L, int t) {
  t = lua_absindex(L, t);
  with_lazy_headers(L, t, hdr_end);
  lua_pushnil(L);
  lua_rawsetp(L, t, &REQ_KEY);
}

/* Security: a header name must be a token and a value must not contain CR/LF/NUL, or a
 * policy could inject headers or split the response. */
int hg__lua_valid_header(const char *name, size_t nlen, const char *value, size_t vlen) {
  if (nlen == 0) return 0;
  for (size_t i = 0; i < nlen; i++) {
    unsigned char c = (unsigned char)name[i];
    if (c <= 32 || c >= 127 || strchr("()<>@,;:\\\"/[]?={}", c)) return 0;
  }
  for (size_t i = 0; i < vlen; i++) {
    unsigned char c = (unsigned char)value[i];
    if (c == '\r' || c == '\n' || c == '\0') return 0;
  }
  return 1;
}

/* Converts the value at the top of the stack into `res`. Returns 0, or -1 with a
 * message pushed. */
int hg__lua_to_response(lua_State *L, hg_request_t *req, hg_response_t *res) {
  int t = lua_gettop(L);
  if (lua_type(L, t) == LUA_TSTRING) { /* `return "text"` → 200 text/plain */
    size_t n;
    const char *s = lua_tolstring(L, t, &n);
    res->status = 200;
    res->body = hg_arena_strndup(req->arena, s, n);
    res->body_len = n;
    hg_response_add_header(res, "Content-Type", 12, "text/plain; charset=utf-8", 25);
    return res->body ? 0 : (lua_pushliteral(L, "out of memory"), -1);
  }
  if (!lua_istable(L, t)) {
    lua_pushfstring(L, "on_request returned a %s (expected a response table or nil)",
                    luaL_typename(L, t));
    return -1;
  }
  hg__lua_rawfield(L, t, "status");
  int isnum;
  lua_Integer status = lua_tointegerx(L, -1, &isnum);
  if (lua_isnil(L, -1)) status = 200, isnum = 1;
  lua_pop(L, 1);
  if (!isnum || status < 100 || status > 599) {
    lua_pushliteral(L, "response status must be an integer 100..599");
    return -1;
  }
  res->status = (int)status;
  hg__lua_rawfield(L, t, "headers");
  size_t hbytes = 0; /* policy headers in all: capped like a request's (SPEC §8) */
  if (lua_istable(L, -1)) {
    lua_pushnil(L);
    while (lua_next(L, -2) != 0) {
      size_t nlen, vlen;
      const char *name = lua_type(L, -2) == LUA_TSTRING ? lua_tolstring(L, -2, &nlen) : NULL;
      int multi = lua_istable(L, -1);
      lua_Integer count = multi ? (lua_Integer)lua_rawlen(L, -1) : 1;
      for (lua_Integer i = 1; i <= count; i++) {
        if (multi) lua_rawgeti(L, -1, i);
        const char *value = lua_type(L, -1) == LUA_TSTRING || lua_type(L, -1) == LUA_TNUMBER
                                ? lua_tolstring(L, -1, &vlen) : NULL;
        if (name == NULL || value == NULL || !hg__lua_valid_header(name, nlen, value, vlen)) {
          lua_pushfstring(L, "invalid response header %s", name ? name : "(non-string name)");
          return -1;
        }
        hbytes += nlen + vlen + 4;
        if (hbytes > HG_POLICY_MAX_HEADER_BYTES) {
          /* clients and proxies refuse heads this large (nginx: 4-8 KiB per line) */
          lua_pushliteral(L, "response headers larger than 16 KiB");
          return -1;
        }
        char *n = hg_arena_strndup(req->arena, name, nlen);
        char *v = hg_arena_strndup(req->arena, value, vlen);
        if (n == NULL || v == NULL || hg_response_add_header(res, n, nlen, v, vlen) != 0) {
          lua_pushliteral(L, "too many response headers");
          return -1;
        }
        if (multi) lua_pop(L, 1);
      }
      lua_pop(L, 1);
    }
  } else if (!lua_isnil(L, -1)) {
    lua_pushliteral(L, "response headers must be a table");
    return -1;
  }
  lua_pop(L, 1);
  hg__lua_rawfield(L, t, "body");
  if (!lua_isnil(L, -1)) {
    size_t n;
    const char *s = lua_type(L, -1) == LUA_TSTRING ? lua_tolstring(L, -1, &n) : NULL;
    if (s == NULL) {
      lua_pushliteral(L, "response body must be a string");
      return -1;
    }
    res->body = hg_arena_strndup(req->arena, s, n);
    res->body_len = n;
    if (res->body == NULL) {
      lua_pushliteral(L, "out of memory");
      return -1;
    }
  }
  lua_pop(L, 1);
  /* An hg.error response: the body is the core's own error JSON, with the request id, in
   * the same key order as every other error (SPEC §8). */
  hg__lua_rawfield(L, t, "error");
  if (lua_type(L, -1) == LUA_TSTRING &&
      hg_error_json(req->arena, res->status, lua_tostring(L, -1), req->id, &res->body, &res->body_len) != 0) {
    lua_pushliteral(L, "out of memory");
    return -1;
  }
  lua_pop(L, 1);
  return 0;
}
