/* api_hls.c — Lua bindings for the hls area: hg.hls.* (docs/playlist-rewriting.md).
 *
 *   hg.hls.rewrite(body, base_url, decide) -> out, stats | nil, err
 *   hg.hls.is_playlist(body)               -> boolean
 *   hg.hls.parse_attrs(list)               -> { NAME = value, ... }
 *   hg.hls.classes                         -> { "playlist", "iframe_playlist", ... }
 *
 * Memory: the rewriter's scratch and the output buffer live in a userdata (an upvalue,
 * reused by every call; a nested call from inside a decide function gets a fresh one),
 * marked to-be-closed on the stack, so nothing leaks whatever raises. Errors: a decide
 * function is run under lua_pcall from the C callback, so an error never longjmps over
 * the rewriter's frames; the rewriter unwinds normally and the original error object is
 * re-raised afterwards. Misuse (bad arguments, an unknown action, a class name typo,
 * dropping a key) raises; a body that is not a playlist or a bad base URL returns
 * nil, err.
 */
#include <lauxlib.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>

#include "base/error.h"
#include "hls/hls.h"
#include "lua/lapi.h"

#define STATE_MT "hlsgate.hls.state"
#define OUT_KEEP (1u << 20) /* an output buffer grown past this is freed after use */

typedef struct state_s {
  hg_hls_rewriter_t *rw;
  hg_buf_t out;
  int cached; /* the module's shared state (else a temporary one) */
  int busy;
} state_t;

static void state_release(state_t *s) {
  hg_hls_rewriter_free(s->rw);
  s->rw = NULL;
  hg_buf_free(&s->out);
}

static int state_gc(lua_State *L) {
  state_release(luaL_checkudata(L, 1, STATE_MT));
  return 0;
}

/* End of a call (normal return or error): the shared state becomes free again and
 * keeps its memory unless one huge playlist grew it; a temporary one is released. */
static int state_close(lua_State *L) {
  state_t *s = luaL_checkudata(L, 1, STATE_MT);
  s->busy = 0;
  if (!s->cached || s->out.cap > OUT_KEEP) hg_buf_free(&s->out);
  hg_buf_clear(&s->out);
  if (!s->cached) state_release(s);
  return 0;
}

static state_t *push_state(lua_State *L, int cached) {
  state_t *s = lua_newuserdatauv(L, sizeof(*s), 0);
  memset(s, 0, sizeof(*s));
  s->cached = cached;
  luaL_setmetatable(L, STATE_MT);
  return s;
}

/* ---- Decisions --------------------------------------------------------------------- */

enum { R_KEEP, R_DROP, R_ABSOLUTE, R_FUNC };

typedef struct ctx_s {
  lua_State *L;
  int rule[HG_HLS_CLASS_COUNT]; /* R_* */
  int fidx[HG_HLS_CLASS_COUNT]; /* stack index of the function for R_FUNC */
  const hg_hls_uri_t *uri;      /* the URI being decided (for call_decide) */
  hg_buf_t *repl;
  int result;                   /* call_decide's answer */
  int raised;                   /* an error object is on top of the stack */
} ctx_t;

/* Parses an action string; returns R_KEEP/R_DROP/R_ABSOLUTE or -1. */
static int parse_action(const char *s) {
  if (strcmp(s, "keep") == 0) return R_KEEP;
  if (strcmp(s, "drop") == 0) return R_DROP;
  if (strcmp(s, "absolute") == 0) return R_ABSOLUTE;
  return -1;
}

static int check_drop(lua_State *L, hg_hls_class_t cls) {
  if (cls == HG_HLS_KEY || cls == HG_HLS_MAP)
    return luaL_error(L, "hg.hls.rewrite: a %s cannot be dropped (the playlist would not play)",
                      hg_hls_class_name(cls));
  return HG_HLS_DROP;
}

/* Pushes { NAME = value } for an attribute list (quotes removed; the first of duplicate
 * names wins, as in hg_hls_attr_get). */
static void push_attrs(lua_State *L, const char *s, size_t n) {
  size_t pos = 0;
  hg_hls_attr_t a;
  lua_createtable(L, 0, 4);
  while (hg_hls_attr_next(s, n, &pos, &a)) {
    lua_pushlstring(L, a.name, a.name_len);
    if (lua_rawget(L, -2) == LUA_TNIL) {
      lua_pushlstring(L, a.name, a.name_len);
      lua_pushlstring(L, a.value, a.value_len);
      lua_rawset(L, -4);
    }
    lua_pop(L, 1);
  }
}

/* Pushes the info table of a URI: { class, uri, url, tag, attr, line, byterange, attrs }.
 * Shared with the server's on_uri hook (lapi.h), so both see the same table. */
void hg__lua_push_uri(lua_State *L, const hg_hls_uri_t *u) {
  lua_createtable(L, 0, 8);
  lua_pushstring(L, hg_hls_class_name(u->cls));
  lua_setfield(L, -2, "class");
  lua_pushlstring(L, u->raw, u->raw_len);
  lua_setfield(L, -2, "uri");
  lua_pushlstring(L, u->url, u->url_len);
  lua_setfield(L, -2, "url");
  lua_pushlstring(L, u->tag, u->tag_len);
  lua_setfield(L, -2, "tag");
  if (u->attr != NULL) {
    lua_pushlstring(L, u->attr, u->attr_len);
    lua_setfield(L, -2, "attr");
  }
  lua_pushinteger(L, (lua_Integer)u->line);
  lua_setfield(L, -2, "line");
  lua_pushboolean(L, (u->flags & HG_HLS_URI_BYTERANGE) != 0);
  lua_setfield(L, -2, "byterange");
  if (u->cls != HG_HLS_SEGMENT) { /* EXTINF's value is not an attribute list */
    push_attrs(L, u->attrs, u->attrs_len);
    lua_setfield(L, -2, "attrs");
  }
}

/* Runs under lua_pcall with (ctx, fn): calls fn(url, info) and interprets its answer.
 * Every Lua error (the policy's, a bad answer, out of memory) is caught by the pcall. */
static int call_decide(lua_State *L) {
  ctx_t *c = lua_touserdata(L, 1);
  const hg_hls_uri_t *u = c->uri;
  lua_pushvalue(L, 2);
  lua_pushlstring(L, u->url, u->url_len);
  hg__lua_push_uri(L, u);
  lua_call(L, 2, 1);
  if (lua_isnil(L, -1)) {
    c->result = HG_HLS_KEEP;
    return 0;
  }
  if (lua_type(L, -1) != LUA_TSTRING)
    return luaL_error(L, "hg.hls.rewrite: the decision for a %s returned a %s (expected nil or a string)",
                      hg_hls_class_name(u->cls), luaL_typename(L, -1));
  size_t n;
  const char *s = lua_tolstring(L, -1, &n);
  int action = parse_action(s);
  if (action == R_KEEP) {
    c->result = HG_HLS_KEEP;
  } else if (action == R_DROP) {
    c->result = check_drop(L, u->cls);
  } else if (action == R_ABSOLUTE) {
    c->result = hg_hls_absolute(u, c->repl);
  } else if (n == 0) {
    return luaL_error(L, "hg.hls.rewrite: the decision for a %s returned an empty string",
                      hg_hls_class_name(u->cls));
  } else {
    int rc = hg_buf_append(c->repl, s, n);
    c->result = rc ? rc : HG_HLS_REPLACE;
  }
  return 0;
}

/* Runs under lua_pcall with (ctx): a table rule said "drop" for a key or a map. */
static int call_drop(lua_State *L) {
  ctx_t *c = lua_touserdata(L, 1);
  c->result = check_drop(L, c->uri->cls);
  return 0;
}

/* The rewriter's decision callback. It runs while l_rewrite is the running C function,
 * so absolute stack indices are l_rewrite's. Plain table rules are answered in C;
 * functions (and the error for a forbidden drop) run under lua_pcall. */
static int decide_cb(void *ud, const hg_hls_uri_t *u, hg_buf_t *repl) {
  ctx_t *c = ud;
  lua_State *L = c->L;
  int rule = c->rule[u->cls];
  if (rule == R_KEEP) return HG_HLS_KEEP;
  if (rule == R_ABSOLUTE) return hg_hls_absolute(u, repl);
  if (rule == R_DROP && u->cls != HG_HLS_KEY && u->cls != HG_HLS_MAP) return HG_HLS_DROP;
  if (!lua_checkstack(L, 4)) return HG_ENOMEM;
  c->uri = u;
  c->repl = repl;
  lua_pushcfunction(L, rule == R_FUNC ? call_decide : call_drop);
  lua_pushlightuserdata(L, c);
  int nargs = 1;
  if (rule == R_FUNC) {
    lua_pushvalue(L, c->fidx[u->cls]);
    nargs = 2;
  }
  if (lua_pcall(L, nargs, 0, 0) != LUA_OK) {
    c->raised = 1; /* the error object stays on top until l_rewrite re-raises it */
    return HG_EPOLICY;
  }
  return c->result;
}

/* Reads the per-class rule table at index 3 into c: each class takes its own entry,
 * else its fallback class's (hg_hls_class_parent), else `default`, else "keep".
 * Functions are left on the stack and referenced by index. Raises on an unknown class
 * name or action, so a typo fails loudly instead of silently keeping URIs. */
static void read_rules(lua_State *L, ctx_t *c) {
  lua_pushnil(L);
  while (lua_next(L, 3) != 0) {
    if (lua_type(L, -2) != LUA_TSTRING)
      luaL_error(L, "hg.hls.rewrite: rule keys must be class names (got a %s)", luaL_typename(L, -2));
    size_t kn;
    const char *k = lua_tolstring(L, -2, &kn);
    if (strcmp(k, "default") != 0 && hg_hls_class_parse(k, kn) < 0)
      luaL_error(L, "hg.hls.rewrite: unknown URI class '%s'", k);
    int t = lua_type(L, -1);
    if (t == LUA_TSTRING) {
      if (parse_action(lua_tostring(L, -1)) < 0)
        luaL_error(L, "hg.hls.rewrite: unknown action '%s' for '%s' (use keep, drop, absolute or a function)",
                   lua_tostring(L, -1), k);
    } else if (t != LUA_TFUNCTION) {
      luaL_error(L, "hg.hls.rewrite: the rule for '%s' is a %s (expected a string or a function)", k,
                 luaL_typename(L, -1));
    }
    lua_pop(L, 1);
  }
  for (int cls = 0; cls < HG_HLS_CLASS_COUNT; cls++) {
    int k = cls;
    for (;;) {
      lua_getfield(L, 3, k >= 0 ? hg_hls_class_name((hg_hls_class_t)k) : "default");
      if (!lua_isnil(L, -1) || k < 0) break;
      lua_pop(L, 1);
      k = hg_hls_class_parent((hg_hls_class_t)k);
    }
    if (lua_isfunction(L, -1)) {
      c->rule[cls] = R_FUNC;
      c->fidx[cls] = lua_gettop(L);
    } else {
      c->rule[cls] = lua_isnil(L, -1) ? R_KEEP : parse_action(lua_tostring(L, -1));
      lua_pop(L, 1);
    }
  }
}

void hg__lua_push_stats(lua_State *L, const hg_hls_stats_t *st) {
  lua_createtable(L, 0, 6);
  lua_pushinteger(L, (lua_Integer)st->uris);
  lua_setfield(L, -2, "uris");
  lua_pushinteger(L, (lua_Integer)st->replaced);
  lua_setfield(L, -2, "replaced");
  lua_pushinteger(L, (lua_Integer)st->dropped);
  lua_setfield(L, -2, "dropped");
  lua_pushinteger(L, (lua_Integer)st->foreign);
  lua_setfield(L, -2, "foreign");
  lua_pushinteger(L, (lua_Integer)st->unresolved);
  lua_setfield(L, -2, "unresolved");
  lua_createtable(L, 0, 4);
  for (int k = 0; k < HG_HLS_CLASS_COUNT; k++) {
    if (st->by_class[k] == 0) continue;
    lua_pushinteger(L, (lua_Integer)st->by_class[k]);
    lua_setfield(L, -2, hg_hls_class_name((hg_hls_class_t)k));
  }
  lua_setfield(L, -2, "by_class");
}

/* hg.hls.rewrite(body, base_url, decide) -> out, stats | nil, err
 * decide: function(url, info) -> action, or { [class] = action | function, default = ... }
 * action: nil | "keep" | "drop" | "absolute" | replacement string (functions only). */
static int l_rewrite(lua_State *L) {
  size_t len, blen;
  const char *body = luaL_checklstring(L, 1, &len);
  const char *base = luaL_checklstring(L, 2, &blen);
  int t = lua_type(L, 3);
  luaL_argexpected(L, t == LUA_TTABLE || t == LUA_TFUNCTION, 3, "table or function");
  lua_settop(L, 3);
  luaL_checkstack(L, HG_HLS_CLASS_COUNT + 8, "hg.hls.rewrite");

  ctx_t c;
  memset(&c, 0, sizeof(c));
  c.L = L;
  if (t == LUA_TFUNCTION) {
    for (int k = 0; k < HG_HLS_CLASS_COUNT; k++) c.rule[k] = R_FUNC, c.fidx[k] = 3;
  } else {
    read_rules(L, &c);
  }

  /* From here on every resource is owned by the to-be-closed state. */
  state_t *s = lua_touserdata(L, lua_upvalueindex(1));
  if (s->busy) {
    s = push_state(L, 0); /* a rewrite from inside a decide function */
  } else {
    lua_pushvalue(L, lua_upvalueindex(1));
  }
  s->busy = 1;
  lua_toclose(L, -1);
  if (s->rw == NULL && (s->rw = hg_hls_rewriter_new()) == NULL)
    return luaL_error(L, "hg.hls.rewrite: %s", hg_strerror(HG_ENOMEM));
  hg_buf_clear(&s->out);

  hg_hls_stats_t st;
  int rc = hg_hls_rewrite(s->rw, &s->out, body, len, base, blen, decide_cb, &c, &st);
  if (c.raised) return lua_error(L);
  if (rc) {
    lua_pushnil(L);
    if (rc == HG_EPARSE) lua_pushliteral(L, "not a playlist");
    else if (rc == HG_EINVAL) lua_pushliteral(L, "invalid base URL");
    else lua_pushstring(L, hg_strerror(rc));
    return 2;
  }
  lua_pushlstring(L, s->out.data ? s->out.data : "", s->out.len);
  hg__lua_push_stats(L, &st);
  return 2;
}

/* hg.hls.is_playlist(body) -> boolean */
static int l_is_playlist(lua_State *L) {
  size_t n;
  const char *s = luaL_checklstring(L, 1, &n);
  lua_pushboolean(L, hg_hls_is_playlist(s, n));
  return 1;
}

/* hg.hls.info(body) -> { playlist, media, live, endlist, can_block_reload,
 * target_duration, part_target, reuse } (durations in seconds; reuse: how long the core
 * reuses a copy, SPEC §5, or nil when the playlist sets no limit of its own) */
static int l_info(lua_State *L) {
  size_t n;
  const char *s = luaL_checklstring(L, 1, &n);
  hg_hls_info_t i;
  hg_hls_info(s, n, &i);
  lua_createtable(L, 0, 8);
  lua_pushboolean(L, i.playlist);
  lua_setfield(L, -2, "playlist");
  lua_pushboolean(L, i.media);
  lua_setfield(L, -2, "media");
  lua_pushboolean(L, i.live);
  lua_setfield(L, -2, "live");
  lua_pushboolean(L, i.endlist);
  lua_setfield(L, -2, "endlist");
  lua_pushboolean(L, i.can_block_reload);
  lua_setfield(L, -2, "can_block_reload");
  if (i.target_ms) {
    lua_pushnumber(L, i.target_ms / 1000.0);
    lua_setfield(L, -2, "target_duration");
  }
  if (i.part_target_ms) {
    lua_pushnumber(L, i.part_target_ms / 1000.0);
    lua_setfield(L, -2, "part_target");
  }
  unsigned reuse = hg_hls_reuse_ms(&i);
  if (reuse != UINT32_MAX) {
    lua_pushnumber(L, reuse / 1000.0);
    lua_setfield(L, -2, "reuse");
  }
  return 1;
}

/* hg.hls.parse_attrs(list) -> { NAME = value } (quotes removed; first of duplicates) */
static int l_parse_attrs(lua_State *L) {
  size_t n;
  const char *s = luaL_checklstring(L, 1, &n);
  push_attrs(L, s, n);
  return 1;
}

static const luaL_Reg funcs[] = {
    {"rewrite", l_rewrite},
    {"is_playlist", l_is_playlist},
    {"info", l_info},
    {"parse_attrs", l_parse_attrs},
    {NULL, NULL},
};

int hg__lua_open_hls(lua_State *L) {
  if (luaL_newmetatable(L, STATE_MT)) {
    lua_pushcfunction(L, state_gc);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, state_close);
    lua_setfield(L, -2, "__close");
  }
  lua_pop(L, 1);
  luaL_newlibtable(L, funcs);
  push_state(L, 1);
  luaL_setfuncs(L, funcs, 1);
  lua_createtable(L, HG_HLS_CLASS_COUNT, 0);
  for (int k = 0; k < HG_HLS_CLASS_COUNT; k++) {
    lua_pushstring(L, hg_hls_class_name((hg_hls_class_t)k));
    lua_rawseti(L, -2, k + 1);
  }
  lua_setfield(L, -2, "classes");
  return 1;
}
