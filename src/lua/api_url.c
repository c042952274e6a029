/* api_url.c — Lua bindings for the url area: hg.url.* (docs/lua-api-url.md).
 *
 * Thin wrappers over src/url/url.h. Every function works in one scratch hg_buf_t per
 * module table (a userdata upvalue with __gc), so a call allocates nothing in C once the
 * scratch has grown, and a Lua error raised mid-call (out of memory while pushing) cannot
 * leak it. Misuse (wrong argument types, bad mode names) raises; runtime failures (an
 * unparsable URL, a traversal attempt) return nil, err [, code].
 */
#include <lauxlib.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "lua/lapi.h"
#include "url/url.h"

#define SCRATCH_MT "hlsgate.url.scratch"
#define SCRATCH_KEEP (256u * 1024u) /* a scratch grown past this is freed after use */

static int scratch_gc(lua_State *L) {
  hg_buf_free(luaL_checkudata(L, 1, SCRATCH_MT));
  return 0;
}

/* The module's scratch buffer, emptied. */
static hg_buf_t *scratch(lua_State *L) {
  hg_buf_t *b = lua_touserdata(L, lua_upvalueindex(1));
  if (b->cap > SCRATCH_KEEP) hg_buf_free(b); /* one huge URL must not pin memory */
  hg_buf_clear(b);
  return b;
}

static int push_err(lua_State *L, int rc) {
  lua_pushnil(L);
  lua_pushstring(L, hg_strerror(rc));
  return 2;
}

/* Pushes the scratch contents (rc == 0) or nil, err. */
static int push_result(lua_State *L, hg_buf_t *b, int rc) {
  if (rc) return push_err(L, rc);
  lua_pushlstring(L, b->data ? b->data : "", b->len);
  return 1;
}

static void set_span(lua_State *L, const char *field, const char *p, size_t n, int present) {
  if (!present) return;
  lua_pushlstring(L, n ? p : "", n);
  lua_setfield(L, -2, field);
}

/* hg.url.parse(s) -> { scheme, authority, userinfo, host, port, path, query, fragment }
 * | nil, err. Absent components are nil; present-but-empty ones "". port is an integer
 * (nil when absent or empty). host has no [] for IPv6 (ipv6 = true then). */
static int l_parse(lua_State *L) {
  size_t n;
  const char *s = luaL_checklstring(L, 1, &n);
  hg_url_t u;
  int rc = hg_url_parse(s, n, &u);
  if (rc) return push_err(L, rc);
  lua_createtable(L, 0, 9);
  set_span(L, "scheme", u.scheme, u.scheme_len, u.has_scheme);
  set_span(L, "authority", u.authority, u.authority_len, u.has_authority);
  set_span(L, "userinfo", u.userinfo, u.userinfo_len, u.has_userinfo);
  set_span(L, "host", u.host, u.host_len, u.has_authority);
  if (u.has_port && u.port_len > 0) {
    lua_pushinteger(L, (lua_Integer)strtol(u.port, NULL, 10)); /* digits, <= 65535 */
    lua_setfield(L, -2, "port");
  }
  set_span(L, "path", u.path, u.path_len, 1);
  set_span(L, "query", u.query, u.query_len, u.has_query);
  set_span(L, "fragment", u.fragment, u.fragment_len, u.has_fragment);
  if (u.host_literal) {
    lua_pushboolean(L, 1);
    lua_setfield(L, -2, "ipv6");
  }
  return 1;
}

/* hg.url.resolve(base, ref) -> absolute URL | nil, err */
static int l_resolve(lua_State *L) {
  size_t bn, rn;
  const char *base = luaL_checklstring(L, 1, &bn);
  const char *ref = luaL_checklstring(L, 2, &rn);
  hg_buf_t *b = scratch(L);
  return push_result(L, b, hg_url_resolve(b, base, bn, ref, rn));
}

/* hg.url.encode(s [, mode]) -> string; mode "component" (default: unreserved kept),
 * "path" (also '/'), "form" (space as '+'), "uri" (only bytes invalid in a URI). */
static int l_encode(lua_State *L) {
  static const char *const modes[] = {"component", "path", "form", "uri", NULL};
  size_t n;
  const char *s = luaL_checklstring(L, 1, &n);
  int mode = luaL_checkoption(L, 2, "component", modes);
  hg_buf_t *b = scratch(L);
  int rc;
  switch (mode) {
  case 1: rc = hg_url_encode(b, s, n, HG_URL_ENC_KEEP_SLASH); break;
  case 2: rc = hg_url_encode(b, s, n, HG_URL_ENC_SPACE_PLUS); break;
  case 3: rc = hg_url_escape_invalid(b, s, n); break;
  default: rc = hg_url_encode(b, s, n, 0); break;
  }
  if (rc) return luaL_error(L, "hg.url.encode: %s", hg_strerror(rc));
  return push_result(L, b, 0);
}

/* hg.url.decode(s [, mode [, reject_nul]]) -> string | nil, err; mode "component"
 * (default) or "form" ('+' is a space). */
static int l_decode(lua_State *L) {
  static const char *const modes[] = {"component", "form", NULL};
  size_t n;
  const char *s = luaL_checklstring(L, 1, &n);
  unsigned flags = luaL_checkoption(L, 2, "component", modes) == 1 ? HG_URL_DEC_PLUS : 0;
  if (lua_toboolean(L, 3)) flags |= HG_URL_DEC_NO_NUL;
  hg_buf_t *b = scratch(L);
  return push_result(L, b, hg_url_decode(b, s, n, flags));
}

/* Decodes span into the scratch and pushes it; returns rc. */
static int push_decoded(lua_State *L, hg_buf_t *b, const char *p, size_t n, unsigned flags) {
  hg_buf_clear(b);
  int rc = hg_url_decode(b, p, n, flags);
  if (rc == 0) lua_pushlstring(L, b->data ? b->data : "", b->len);
  return rc;
}

/* hg.url.query_parse(q [, plus]) -> table | nil, err. q has no leading '?'. Values are
 * decoded ('+' as space unless plus == false); a bare name maps to true; a repeated name
 * maps to an array of its values in order (as OpenResty's get_uri_args). */
static int l_query_parse(lua_State *L) {
  size_t n;
  const char *q = luaL_checklstring(L, 1, &n);
  unsigned flags = lua_isnoneornil(L, 2) || lua_toboolean(L, 2) ? HG_URL_DEC_PLUS : 0;
  hg_buf_t *b = scratch(L);
  lua_newtable(L);
  int t = lua_gettop(L);
  hg_url_query_iter_t it;
  hg_url_param_t p;
  hg_url_query_iter(&it, q, n);
  while (hg_url_query_next(&it, &p)) {
    int rc = push_decoded(L, b, p.name, p.name_len, flags); /* key */
    if (rc) return push_err(L, rc);
    if (p.has_value) {
      rc = push_decoded(L, b, p.value, p.value_len, flags);
      if (rc) return push_err(L, rc);
    } else {
      lua_pushboolean(L, 1);
    }
    lua_pushvalue(L, -2);
    int prev = lua_rawget(L, t); /* key value old */
    if (prev == LUA_TNIL) {
      lua_pop(L, 1);
      lua_rawset(L, t);
    } else if (prev == LUA_TTABLE) {
      lua_insert(L, -2); /* key old value */
      lua_rawseti(L, -2, (lua_Integer)lua_rawlen(L, -2) + 1);
      lua_pop(L, 2);
    } else {
      lua_createtable(L, 2, 0); /* key value old arr */
      lua_insert(L, -2);
      lua_rawseti(L, -2, 1);
      lua_insert(L, -2);
      lua_rawseti(L, -2, 2);
      lua_rawset(L, t);
    }
  }
  return 1;
}

typedef struct {
  const char *s;
  size_t n;
} kspan_t;

static int kspan_cmp(const void *a, const void *b) {
  const kspan_t *x = a, *y = b;
  int c = memcmp(x->s, y->s, x->n < y->n ? x->n : y->n);
  return c ? c : (x->n > y->n) - (x->n < y->n);
}

/* Appends name=value (or the bare name for true; nothing for false) for the value at
 * the top of the stack; raises on other types. */
static void build_one(lua_State *L, hg_buf_t *b, const kspan_t *k) {
  int rc = 0;
  switch (lua_type(L, -1)) {
  case LUA_TBOOLEAN:
    if (lua_toboolean(L, -1)) rc = hg_url_query_add(b, k->s, k->n, NULL, 0);
    break;
  case LUA_TSTRING:
  case LUA_TNUMBER: {
    size_t vn;
    const char *v = lua_tolstring(L, -1, &vn);
    rc = hg_url_query_add(b, k->s, k->n, v, vn);
    break;
  }
  default:
    luaL_error(L, "hg.url.query_build: bad value for '%s' (%s)", k->s, luaL_typename(L, -1));
  }
  if (rc) luaL_error(L, "hg.url.query_build: %s", hg_strerror(rc));
}

/* hg.url.query_build(t) -> "a=1&b=x%20y": keys sorted (byte order) for determinism;
 * values are strings, numbers, true (bare name), false (left out) or arrays of those
 * (repeated name, in array order). Encoded with the unreserved set. */
static int l_query_build(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_settop(L, 1);
  size_t count = 0;
  lua_pushnil(L);
  while (lua_next(L, 1) != 0) {
    if (lua_type(L, -2) != LUA_TSTRING)
      luaL_error(L, "hg.url.query_build: keys must be strings (got %s)", luaL_typename(L, -2));
    count++;
    lua_pop(L, 1);
  }
  /* GC-owned array of key spans (the keys are anchored in the table). */
  kspan_t *keys = lua_newuserdatauv(L, (count ? count : 1) * sizeof(kspan_t), 0);
  size_t i = 0;
  lua_pushnil(L);
  while (lua_next(L, 1) != 0 && i < count) {
    keys[i].s = lua_tolstring(L, -2, &keys[i].n);
    i++;
    lua_pop(L, 1);
  }
  qsort(keys, count, sizeof(kspan_t), kspan_cmp);
  hg_buf_t *b = scratch(L);
  for (i = 0; i < count; i++) {
    lua_pushlstring(L, keys[i].s, keys[i].n);
    lua_rawget(L, 1);
    if (lua_type(L, -1) == LUA_TTABLE) {
      lua_Integer len = (lua_Integer)lua_rawlen(L, -1);
      for (lua_Integer j = 1; j <= len; j++) {
        lua_rawgeti(L, -1, j);
        build_one(L, b, &keys[i]);
        lua_pop(L, 1);
      }
    } else {
      build_one(L, b, &keys[i]);
    }
    lua_pop(L, 1);
  }
  return push_result(L, b, 0);
}

/* hg.url.query_set(url, name, value) -> url with ?name=value set once (url.h). */
static int l_query_set(lua_State *L) {
  size_t n, nn, vn;
  const char *url = luaL_checklstring(L, 1, &n);
  const char *name = luaL_checklstring(L, 2, &nn);
  const char *value = luaL_checklstring(L, 3, &vn);
  luaL_argcheck(L, strlen(name) == nn, 2, "contains a NUL byte");
  luaL_argcheck(L, strlen(value) == vn, 3, "contains a NUL byte");
  hg_buf_t *b = scratch(L);
  return push_result(L, b, hg_url_query_set(b, url, n, name, value));
}

/* nil, err, code for the key functions: code tells the policy which status to send. */
static int push_key_err(lua_State *L, int rc) {
  const char *code = "invalid";
  switch (rc) {
  case HG_EESCAPE: code = "traversal"; break; /* SPEC §9: 400 */
  case HG_EDENIED: code = "scope"; break;     /* SPEC §9: 403 */
  case HG_EINVAL: code = "prefix"; break;     /* the token's prefix itself is unsafe */
  default: break;                             /* HG_EPARSE: malformed path, 400 */
  }
  lua_pushnil(L);
  lua_pushstring(L, hg_strerror(rc));
  lua_pushstring(L, code);
  return 3;
}

/* hg.url.join_key(prefix, path) -> key | nil, err, code */
static int l_join_key(lua_State *L) {
  size_t pn, n;
  const char *prefix = luaL_checklstring(L, 1, &pn);
  const char *path = luaL_checklstring(L, 2, &n);
  hg_buf_t *b = scratch(L);
  int rc = hg_url_join_key(b, prefix, pn, path, n);
  return rc ? push_key_err(L, rc) : push_result(L, b, 0);
}

/* hg.url.in_scope(prefix, path) -> key | nil, err, code (path is the full key path) */
static int l_in_scope(lua_State *L) {
  size_t pn, n;
  const char *prefix = luaL_checklstring(L, 1, &pn);
  const char *path = luaL_checklstring(L, 2, &n);
  hg_buf_t *b = scratch(L);
  int rc = hg_url_key_in_scope(b, prefix, pn, path, n);
  return rc ? push_key_err(L, rc) : push_result(L, b, 0);
}

/* hg.url.origin(url) -> { scheme, host, port, ipv6, explicit_port } | nil, err:
 * the destination of an absolute http(s) URL (scheme and host lowercased). */
static int l_origin(lua_State *L) {
  size_t n;
  const char *s = luaL_checklstring(L, 1, &n);
  hg_url_t u;
  hg_url_origin_t o;
  int rc = hg_url_parse(s, n, &u);
  if (rc == 0) rc = hg_url_origin(&u, &o);
  if (rc == HG_EINVAL) {
    lua_pushnil(L);
    lua_pushliteral(L, "not an http(s) URL");
    return 2;
  }
  if (rc) return push_err(L, rc);
  lua_createtable(L, 0, 5);
  lua_pushstring(L, o.https ? "https" : "http");
  lua_setfield(L, -2, "scheme");
  lua_pushlstring(L, o.host, o.host_len);
  lua_setfield(L, -2, "host");
  lua_pushinteger(L, (lua_Integer)o.port);
  lua_setfield(L, -2, "port");
  lua_pushboolean(L, o.ipv6);
  lua_setfield(L, -2, "ipv6");
  lua_pushboolean(L, o.explicit_port);
  lua_setfield(L, -2, "explicit_port");
  return 1;
}

static const luaL_Reg funcs[] = {
    {"parse", l_parse},           {"resolve", l_resolve},
    {"encode", l_encode},         {"decode", l_decode},
    {"query_parse", l_query_parse}, {"query_build", l_query_build},
    {"query_set", l_query_set},   {"join_key", l_join_key},
    {"in_scope", l_in_scope},     {"origin", l_origin},
    {NULL, NULL},
};

int hg__lua_open_url(lua_State *L) {
  luaL_newlibtable(L, funcs);
  hg_buf_t *b = lua_newuserdatauv(L, sizeof(hg_buf_t), 0);
  *b = (hg_buf_t)HG_BUF_INIT;
  if (luaL_newmetatable(L, SCRATCH_MT)) {
    lua_pushcfunction(L, scratch_gc);
    lua_setfield(L, -2, "__gc");
  }
  lua_setmetatable(L, -2);
  luaL_setfuncs(L, funcs, 1);
  return 1;
}
