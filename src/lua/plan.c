/* plan.c — reading the plan a policy returns into hg_plan_t (lua/plan.h): the origin
 * (file, http, s3), per-class rewrite actions, proxy mapping and signing, presigning,
 * cache and freshness fields, response headers and content types. Every reader takes a
 * default and always writes its output; a field of the wrong type is a policy error
 * naming the field.
 */
#include <lauxlib.h>
#include <string.h>
#include <strings.h>

#include "base/error.h"
#include "base/log.h"
#include "lua/lapi.h"
#include "lua/policy_internal.h"

/* Field readers for the plan table at `t`. Each returns 0 or -1 with an error message
 * pushed; strings are copied into the request's arena. */
typedef struct reader_s {
  lua_State *L;
  hg_arena_t *arena;
  int t; /* absolute index of the table being read */
  const char *where;
} reader_t;

static int rd_fail(reader_t *r, const char *field, const char *want) {
  lua_pushfstring(r->L, "%s.%s: expected %s", r->where, field, want);
  return -1;
}

static int rd_str(reader_t *r, const char *field, const char **out) {
  hg__lua_rawfield(r->L, r->t, field);
  int type = lua_type(r->L, -1);
  if (type == LUA_TNIL) {
    lua_pop(r->L, 1);
    return 0;
  }
  if (type != LUA_TSTRING && type != LUA_TNUMBER) return rd_fail(r, field, "a string");
  size_t n;
  const char *s = lua_tolstring(r->L, -1, &n);
  *out = hg_arena_strndup(r->arena, s, n);
  lua_pop(r->L, 1);
  return *out ? 0 : rd_fail(r, field, "memory");
}

/* Reads an integer field in [lo, hi]; *out is always written: `def` when the field is
 * absent (a reader that left it untouched let an uninitialised value through, #12). */
static int rd_int(reader_t *r, const char *field, lua_Integer lo, lua_Integer hi, lua_Integer def,
                  lua_Integer *out) {
  *out = def;
  hg__lua_rawfield(r->L, r->t, field);
  if (lua_isnil(r->L, -1)) {
    lua_pop(r->L, 1);
    return 0;
  }
  int ok;
  lua_Integer v = lua_tointegerx(r->L, -1, &ok);
  lua_pop(r->L, 1);
  if (!ok || v < lo || v > hi) return rd_fail(r, field, "an integer in range");
  *out = v;
  return 0;
}

static int rd_bool(reader_t *r, const char *field, int *out) {
  hg__lua_rawfield(r->L, r->t, field);
  int type = lua_type(r->L, -1);
  if (type != LUA_TNIL && type != LUA_TBOOLEAN) {
    lua_pop(r->L, 1);
    return rd_fail(r, field, "a boolean");
  }
  if (type == LUA_TBOOLEAN) *out = lua_toboolean(r->L, -1);
  lua_pop(r->L, 1);
  return 0;
}

/* Pushes field `field` of the table if it is a table (returns 1), nothing for nil
 * (returns 0), or fails (-1). */
static int rd_table(reader_t *r, const char *field) {
  hg__lua_rawfield(r->L, r->t, field);
  if (lua_istable(r->L, -1)) return 1;
  int isnil = lua_isnil(r->L, -1);
  lua_pop(r->L, 1);
  return isnil ? 0 : rd_fail(r, field, "a table");
}

/* Reads a { name = value } table of header-like pairs into out[0..*n) (cap entries),
 * rejecting CR/LF injection. */
static int rd_pairs(reader_t *r, const char *field, hg_header_t *out, size_t cap, size_t *n) {
  int has = rd_table(r, field);
  if (has <= 0) return has;
  lua_State *L = r->L;
  lua_pushnil(L);
  while (lua_next(L, -2) != 0) {
    size_t nl, vl;
    const char *name = lua_type(L, -2) == LUA_TSTRING ? lua_tolstring(L, -2, &nl) : NULL;
    int vt = lua_type(L, -1);
    const char *value = vt == LUA_TSTRING || vt == LUA_TNUMBER ? lua_tolstring(L, -1, &vl) : NULL;
    if (name == NULL || value == NULL || !hg__lua_valid_header(name, nl, value, vl) || *n == cap) {
      lua_pop(L, 3);
      return rd_fail(r, field, "string pairs without CR/LF (at most 16)");
    }
    /* Kept sorted by name: a table's traversal order differs between Lua states (each
     * worker's seeds its string hashes), and the pairs shape URLs and cache keys, which
     * must not depend on the worker a request lands on. */
    size_t at = *n;
    while (at > 0 && (out[at - 1].name_len > nl ||
                      (out[at - 1].name_len == nl && memcmp(out[at - 1].name, name, nl) > 0))) {
      out[at] = out[at - 1];
      at--;
    }
    (*n)++;
    hg_header_t *h = &out[at];
    h->name = hg_arena_strndup(r->arena, name, nl);
    h->name_len = nl;
    h->value = hg_arena_strndup(r->arena, value, vl);
    h->value_len = vl;
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  return 0;
}

/* origin.allow_private: true (every address class), false/nil (public addresses only),
 * or a list of classes: "loopback", "private", "linklocal", "unspecified", "other". */
static int rd_allow(reader_t *r, int *mask) {
  static const char *const names[] = {"loopback", "private", "linklocal", "unspecified", "other", NULL};
  lua_State *L = r->L;
  hg__lua_rawfield(L, r->t, "allow_private");
  *mask = 0;
  if (lua_isboolean(L, -1)) {
    *mask = lua_toboolean(L, -1) ? -1 : 0;
  } else if (lua_istable(L, -1)) {
    for (lua_Integer i = 1; lua_rawgeti(L, -1, i) != LUA_TNIL; i++) {
      const char *s = lua_tostring(L, -1);
      int bit = -1;
      for (int k = 0; s && names[k]; k++)
        if (strcmp(s, names[k]) == 0) bit = k;
      lua_pop(L, 1);
      if (bit < 0) {
        lua_pop(L, 1);
        return rd_fail(r, "allow_private", "true or a list of loopback, private, linklocal, unspecified, other");
      }
      *mask |= 1 << bit; /* the HG_ADDR_* bit order */
    }
    lua_pop(L, 1); /* the nil */
  } else if (!lua_isnil(L, -1)) {
    lua_pop(L, 1);
    return rd_fail(r, "allow_private", "a boolean or a list of address classes");
  }
  lua_pop(L, 1);
  return 0;
}

int hg__lua_parse_action(lua_State *L, int idx) {
  static const char *const names[] = {"keep", "drop", "absolute", "proxy", "presign", NULL};
  const char *s = lua_tostring(L, idx);
  for (int i = 0; s && names[i]; i++)
    if (strcmp(s, names[i]) == 0) return HG_ACT_KEEP + i;
  return -1;
}

/* proxy.sign = { secret = "…" (at least 16 bytes), ttl = seconds (default 3600) }: signed
 * child URLs (plan.h). The secret is copied with its length (it may hold any byte). */
static int rd_sign(reader_t *r, hg_plan_t *plan) {
  int has = rd_table(r, "sign");
  if (has <= 0) return has;
  reader_t sg = {r->L, r->arena, lua_gettop(r->L), "proxy.sign"};
  hg__lua_rawfield(r->L, sg.t, "secret");
  size_t n = 0;
  const char *s = lua_type(r->L, -1) == LUA_TSTRING ? lua_tolstring(r->L, -1, &n) : NULL;
  if (s == NULL || n < 16) return rd_fail(&sg, "secret", "a string of at least 16 bytes");
  plan->proxy_sign_secret = hg_arena_strndup(r->arena, s, n);
  plan->proxy_sign_secret_len = n;
  lua_pop(r->L, 1);
  if (plan->proxy_sign_secret == NULL) return rd_fail(&sg, "secret", "memory");
  lua_Integer ttl;
  if (rd_int(&sg, "ttl", 1, 604800, 3600, &ttl)) return -1;
  plan->proxy_sign_ttl = (uint32_t)ttl;
  if (!plan->proxy_prefix || !strchr(plan->proxy_prefix, '?'))
    return rd_fail(&sg, "prefix", "proxy.prefix with a '?' (signing is for query-style proxies)");
  lua_pop(r->L, 1);
  return 0;
}

static int rd_s3(reader_t *r, hg_plan_s3_t *s3) {
  s3->path_style = 1;
  if (rd_str(r, "endpoint", &s3->endpoint) || rd_str(r, "public_endpoint", &s3->public_endpoint) ||
      rd_str(r, "region", &s3->region) || rd_str(r, "bucket", &s3->bucket) ||
      rd_str(r, "access_key", &s3->access_key) || rd_str(r, "secret_key", &s3->secret_key) ||
      rd_str(r, "session_token", &s3->session_token) || rd_bool(r, "path_style", &s3->path_style))
    return -1;
  if (!s3->endpoint || !s3->bucket || !s3->access_key || !s3->secret_key) {
    lua_pushfstring(r->L, "%s: endpoint, bucket, access_key and secret_key are required", r->where);
    return -1;
  }
  if (!s3->region) s3->region = "us-east-1";
  return 0;
}

/* content_types = { allow = {"text/css", "font/<any>"}, otherwise = "attachment" or "refuse" } */
static int rd_content_types(reader_t *r, hg_plan_t *plan) {
  int has = rd_table(r, "content_types");
  if (has <= 0) return has;
  lua_State *L = r->L;
  reader_t ct = {L, r->arena, lua_gettop(L), "content_types"};
  const char *otherwise = NULL;
  if (rd_str(&ct, "otherwise", &otherwise)) return -1;
  if (otherwise && strcmp(otherwise, "refuse") != 0 && strcmp(otherwise, "attachment") != 0)
    return rd_fail(&ct, "otherwise", "\"attachment\" or \"refuse\"");
  plan->ct_refuse = otherwise && strcmp(otherwise, "refuse") == 0;
  hg__lua_rawfield(L, ct.t, "allow");
  if (lua_istable(L, -1)) {
    size_t n = lua_rawlen(L, -1);
    if (n > 32) return rd_fail(&ct, "allow", "at most 32 types");
    plan->ct_allow = hg_arena_alloc(r->arena, (n ? n : 1) * sizeof(char *));
    if (plan->ct_allow == NULL) return rd_fail(&ct, "allow", "memory");
    for (size_t i = 1; i <= n; i++) {
      size_t len;
      const char *t = lua_rawgeti(L, -1, (lua_Integer)i) == LUA_TSTRING ? lua_tolstring(L, -1, &len) : NULL;
      if (t == NULL || len == 0 || strchr(t, '/') == NULL) return rd_fail(&ct, "allow", "a list of \"type/subtype\"");
      plan->ct_allow[plan->nct_allow++] = hg_arena_strndup(r->arena, t, len);
      lua_pop(L, 1);
    }
  } else if (!lua_isnil(L, -1)) {
    return rd_fail(&ct, "allow", "a list of \"type/subtype\"");
  }
  lua_pop(L, 2); /* allow, content_types */
  return 0;
}

int hg__lua_to_plan(lua_State *L, int t, hg_arena_t *arena, hg_plan_t *plan) {
  reader_t r = {L, arena, t, "plan"};
  lua_Integer v;
  plan->hook_ref = LUA_NOREF;
  plan->max_redirects = HG_PLAN_MAX_REDIRECTS;
  /* origin */
  int has = rd_table(&r, "origin");
  if (has == 0) lua_pushliteral(L, "plan.origin: expected a table");
  if (has != 1) return -1;
  reader_t o = {L, arena, lua_gettop(L), "origin"};
  const char *type = NULL;
  if (rd_str(&o, "type", &type)) return -1;
  if (type && strcmp(type, "file") == 0) {
    plan->origin = HG_ORIGIN_FILE;
    if (rd_str(&o, "root", &plan->file_root) || rd_str(&o, "path", &plan->file_path)) return -1;
    if (!plan->file_root || !plan->file_path) {
      lua_pushliteral(L, "origin: a file origin needs root and path");
      return -1;
    }
  } else if (type && strcmp(type, "http") == 0) {
    plan->origin = HG_ORIGIN_HTTP;
    if (rd_str(&o, "url", &plan->url) || rd_allow(&o, &plan->allow_private) ||
        rd_pairs(&o, "headers", plan->req_headers, 16, &plan->nreq_headers))
      return -1;
    if (rd_int(&o, "max_redirects", 0, 20, HG_PLAN_MAX_REDIRECTS, &v)) return -1;
    plan->max_redirects = (int)v;
    int hosts = rd_table(&o, "allow_hosts");
    if (hosts < 0) return -1;
    if (hosts) {
      size_t n = (size_t)(lua_Integer)lua_rawlen(L, -1);
      plan->allow_hosts = hg_arena_alloc(arena, (n + 1) * sizeof(char *));
      for (size_t i = 0; plan->allow_hosts && i < n; i++) {
        lua_rawgeti(L, -1, (lua_Integer)i + 1);
        size_t len;
        const char *h = lua_tolstring(L, -1, &len);
        if (h == NULL) {
          lua_pushliteral(L, "origin.allow_hosts: expected strings");
          return -1;
        }
        plan->allow_hosts[plan->nallow_hosts++] = hg_arena_strndup(arena, h, len);
        lua_pop(L, 1);
      }
      lua_pop(L, 1);
    }
    if (!plan->url) {
      lua_pushliteral(L, "origin: an http origin needs url");
      return -1;
    }
  } else if (type && strcmp(type, "s3") == 0) {
    plan->origin = HG_ORIGIN_S3;
    if (rd_str(&o, "key", &plan->s3_key) || rd_s3(&o, &plan->s3)) return -1;
    if (!plan->s3_key) {
      lua_pushliteral(L, "origin: an s3 origin needs key");
      return -1;
    }
    plan->has_s3 = 1;
  } else {
    lua_pushliteral(L, "origin.type: expected \"file\", \"http\" or \"s3\"");
    return -1;
  }
  lua_pop(L, 1); /* origin */
  /* response */
  if (rd_pairs(&r, "headers", plan->headers, 16, &plan->nheaders) ||
      rd_str(&r, "content_type", &plan->content_type) ||
      rd_str(&r, "filename", &plan->disposition_name))
    return -1;
  if (rd_int(&r, "cache_ttl", 0, 31536000, 0, &v)) return -1;
  plan->cache_ttl = (uint64_t)v;
  if (rd_int(&r, "timeout", 0, 3600, 0, &v)) return -1;
  plan->timeout_ms = (uint64_t)v * 1000;
  /* Freshness overrides (SPEC §5, docs/live.md): by default the content and the origin
   * decide how long a live playlist is reused. */
  plan->live_ttl_ms = -1;
  hg__lua_rawfield(L, r.t, "live_ttl");
  if (!lua_isnil(L, -1)) {
    int isnum;
    lua_Number lt = lua_tonumberx(L, -1, &isnum);
    lua_pop(L, 1);
    if (!isnum || !(lt >= 0 && lt <= 3600)) return rd_fail(&r, "live_ttl", "seconds in 0..3600");
    plan->live_ttl_ms = (int64_t)(lt * 1000);
  } else {
    lua_pop(L, 1);
  }
  if (rd_bool(&r, "ignore_origin_cache", &plan->ignore_origin_cache)) return -1;
  /* rewrite rules */
  plan->default_action = HG_ACT_KEEP;
  has = rd_table(&r, "rewrite");
  if (has < 0) return -1;
  if (has) {
    lua_pushnil(L);
    while (lua_next(L, -2) != 0) {
      size_t kl;
      const char *k = lua_type(L, -2) == LUA_TSTRING ? lua_tolstring(L, -2, &kl) : NULL;
      int act = hg__lua_parse_action(L, -1);
      int cls = k ? hg_hls_class_parse(k, kl) : -1;
      if (act < 0 || (cls < 0 && (k == NULL || strcmp(k, "default") != 0))) {
        lua_pushfstring(L, "plan.rewrite: bad rule %s (classes: playlist, segment, key, …; "
                        "actions: keep, drop, absolute, proxy, presign)", k ? k : "?");
        return -1;
      }
      if (cls < 0) plan->default_action = (hg_action_t)act;
      else plan->actions[cls] = (hg_action_t)act;
      lua_pop(L, 1);
    }
    lua_pop(L, 1);
  }
  has = rd_table(&r, "proxy");
  if (has < 0) return -1;
  if (has) {
    reader_t px = {L, arena, lua_gettop(L), "proxy"};
    if (rd_str(&px, "from", &plan->proxy_from) || rd_str(&px, "to", &plan->proxy_to) ||
        rd_str(&px, "prefix", &plan->proxy_prefix) ||
        rd_pairs(&px, "params", plan->proxy_params, 8, &plan->nproxy_params))
      return -1;
    if (!plan->proxy_prefix && !(plan->proxy_from && plan->proxy_to)) {
      lua_pushliteral(L, "plan.proxy: give prefix, or from and to");
      return -1;
    }
    if (rd_sign(&px, plan)) return -1;
    lua_pop(L, 1);
  }
  has = rd_table(&r, "presign");
  if (has < 0) return -1;
  plan->presign_ttl = 3600;
  if (has) {
    reader_t ps = {L, arena, lua_gettop(L), "presign"};
    if (rd_int(&ps, "ttl", 1, 604800, 3600, &v) || rd_str(&ps, "prefix", &plan->presign_prefix)) return -1;
    plan->presign_ttl = (uint32_t)v;
    lua_pop(L, 1);
  }
  has = rd_table(&r, "s3");
  if (has < 0) return -1;
  if (has) {
    /* `plan.s3 = plan.origin` (the private bucket's way): read once, not twice */
    hg__lua_rawfield(L, t, "origin");
    int same = plan->origin == HG_ORIGIN_S3 && lua_rawequal(L, -1, -2);
    lua_pop(L, 1);
    reader_t s3 = {L, arena, lua_gettop(L), "s3"};
    if (!same && rd_s3(&s3, &plan->s3)) return -1;
    plan->has_s3 = 1;
    lua_pop(L, 1);
  }
  if (rd_bool(&r, "private", &plan->carries_token)) return -1;
  if (rd_content_types(&r, plan)) return -1;
  hg__lua_rawfield(L, t, "on_uri");
  if (lua_isfunction(L, -1)) {
    plan->hook_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  } else if (!lua_isnil(L, -1)) {
    lua_pushliteral(L, "plan.on_uri: expected a function");
    return -1;
  } else {
    lua_pop(L, 1);
  }
  return 0;
}

int hg__lua_uri_result(lua_State *L, hg_buf_t *replacement, const char *req_id) {
  int act;
  size_t n;
  const char *s = lua_tolstring(L, -1, &n);
  if (lua_isnil(L, -1)) {
    act = HG_ACT_UNSET;
  } else if (s && (act = hg__lua_parse_action(L, -1)) >= 0) {
    /* an action name */
  } else if (s && n > 0 && hg__lua_valid_header("x", 1, s, n) && strpbrk(s, "\" \t") == NULL) {
    act = hg_buf_append(replacement, s, n) ? HG_ENOMEM : HG_ACT_HOOK;
  } else {
    hg_log(HG_LOG_ERROR, "request %s: policy error: on_uri returned %s (expected an action, a URL or nil)",
           req_id, luaL_typename(L, -1));
    act = HG_EPOLICY;
  }
  return act;
}
