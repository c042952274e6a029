/* api_s3.c — hg.s3: S3 SigV4 presigned URLs and header-signed requests for policies
 * (binds src/crypto/sigv4.h).
 *
 *   hg.s3.presign(opts)      -> url | nil, err
 *   hg.s3.sign_headers(opts) -> headers, url | nil, err
 *
 * Every call takes the whole option table (credentials included), so policies stay
 * stateless. To keep a 1,000-segment playlist cheap, signers (which cache the derived
 * key per date) are kept in a small per-lua_State LRU keyed by the credentials and
 * scope, together with reusable output buffers: after warm-up a presign costs one
 * SHA-256 + one HMAC and no C allocation. A lua_State belongs to one thread, so the
 * signers it caches are never shared between threads (sigv4.h's rule).
 * Reference: docs/lua-api-crypto.md.
 */
#include <lauxlib.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <mbedtls/platform_util.h>

#include "base/buf.h"
#include "base/error.h"
#include "crypto/sigv4.h"
#include "lua/lapi.h"

#define SIGNERS 8 /* distinct credential sets cached per lua_State */
#define CACHE_MT "hlsgate.s3.cache"

typedef struct {
  hg_sigv4_t *s;
  char *id; /* ak \0 sk \0 token \0 region \0 service: what the signer was built from */
  size_t id_len;
  unsigned stamp;
} slot_t;

typedef struct {
  slot_t slot[SIGNERS];
  unsigned tick;
  hg_buf_t url, host, authz, id; /* reused across calls */
} cache_t;

static void slot_clear(slot_t *sl) {
  hg_sigv4_free(sl->s);
  if (sl->id) mbedtls_platform_zeroize(sl->id, sl->id_len); /* security: holds the secret */
  free(sl->id);
  memset(sl, 0, sizeof(*sl));
}

static int cache_gc(lua_State *L) {
  cache_t *c = luaL_checkudata(L, 1, CACHE_MT);
  for (int i = 0; i < SIGNERS; i++) slot_clear(&c->slot[i]);
  hg_buf_free(&c->url);
  hg_buf_free(&c->host);
  hg_buf_free(&c->authz);
  if (c->id.data) mbedtls_platform_zeroize(c->id.data, c->id.cap);
  hg_buf_free(&c->id);
  return 0;
}

/* Options, as read from the table (strings stay referenced by it during the call). */
typedef struct {
  const char *endpoint, *public_endpoint, *region, *service, *bucket, *key, *ak, *sk,
      *token, *method, *payload_hash;
  size_t key_len;
  int path_style;
  lua_Integer expires;
  int64_t time;
  hg_sigv4_kv_t query[HG_SIGV4_MAX_PARAMS], headers[HG_SIGV4_MAX_HEADERS];
  size_t nquery, nheaders;
} s3opts_t;

static const char *const allowed_opts[] = {
    "endpoint", "public_endpoint", "region", "service", "bucket", "key", "access_key",
    "secret_key", "session_token", "path_style", "expires", "method", "time", "query",
    "headers", "payload_hash", NULL};


/* opts[name] as a string, `dflt` when absent; raises on another type or (if required)
 * absence. */
static const char *opt_str(lua_State *L, const char *name, const char *dflt, int required,
                           size_t *len) {
  lua_getfield(L, 1, name);
  const char *s = dflt;
  if (lua_isnil(L, -1)) {
    if (required) luaL_error(L, "bad argument #1 (opts.%s is required)", name);
    if (len) *len = dflt ? strlen(dflt) : 0;
  } else {
    if (lua_type(L, -1) != LUA_TSTRING)
      luaL_error(L, "bad argument #1 (opts.%s must be a string)", name);
    s = lua_tolstring(L, -1, len);
  }
  lua_pop(L, 1); /* the string is still referenced by opts */
  return s;
}

/* Reads a {name = value} table of strings into kv[]. */
static size_t opt_pairs(lua_State *L, const char *name, hg_sigv4_kv_t *kv, size_t max) {
  lua_getfield(L, 1, name);
  size_t n = 0;
  if (!lua_isnil(L, -1)) {
    if (!lua_istable(L, -1)) luaL_error(L, "bad argument #1 (opts.%s must be a table)", name);
    int t = lua_gettop(L);
    lua_pushnil(L);
    while (lua_next(L, t) != 0) {
      if (lua_type(L, -2) != LUA_TSTRING || lua_type(L, -1) != LUA_TSTRING)
        luaL_error(L, "bad argument #1 (opts.%s: names and values must be strings)", name);
      if (n == max) luaL_error(L, "bad argument #1 (opts.%s: too many entries)", name);
      kv[n].name = lua_tolstring(L, -2, &kv[n].name_len);
      kv[n].value = lua_tolstring(L, -1, &kv[n].value_len);
      n++;
      lua_pop(L, 1);
    }
  }
  lua_pop(L, 1);
  return n;
}

static void read_opts(lua_State *L, s3opts_t *o, int presign) {
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_settop(L, 1);
  hg__lua_check_opts(L, 1, allowed_opts);
  o->endpoint = opt_str(L, "endpoint", NULL, 1, NULL);
  o->public_endpoint = opt_str(L, "public_endpoint", NULL, 0, NULL);
  o->region = opt_str(L, "region", "us-east-1", 0, NULL);
  o->service = opt_str(L, "service", "s3", 0, NULL);
  o->bucket = opt_str(L, "bucket", NULL, 1, NULL);
  o->key = opt_str(L, "key", "", 0, &o->key_len);
  o->ak = opt_str(L, "access_key", NULL, 1, NULL);
  o->sk = opt_str(L, "secret_key", NULL, 1, NULL);
  o->token = opt_str(L, "session_token", "", 0, NULL);
  o->payload_hash = opt_str(L, "payload_hash", NULL, 0, NULL);
  o->method = opt_str(L, "method", "GET", 0, NULL);
  if (strcmp(o->method, "GET") != 0 && strcmp(o->method, "HEAD") != 0)
    luaL_error(L, "bad argument #1 (opts.method must be GET or HEAD)");

  lua_getfield(L, 1, "path_style");
  if (!lua_isnil(L, -1) && !lua_isboolean(L, -1))
    luaL_error(L, "bad argument #1 (opts.path_style must be a boolean)");
  o->path_style = lua_isnil(L, -1) || lua_toboolean(L, -1); /* SPEC §9: default true */
  lua_pop(L, 1);

  lua_getfield(L, 1, "expires");
  o->expires = 3600;
  if (!lua_isnil(L, -1)) {
    int isint;
    o->expires = lua_tointegerx(L, -1, &isint);
    if (!isint || lua_type(L, -1) != LUA_TNUMBER)
      luaL_error(L, "bad argument #1 (opts.expires must be an integer)");
  }
  if (o->expires < 1 || o->expires > HG_SIGV4_MAX_EXPIRES)
    luaL_error(L, "bad argument #1 (opts.expires must be 1..604800)");
  lua_pop(L, 1);

  lua_getfield(L, 1, "time");
  if (lua_isnil(L, -1)) {
    o->time = (int64_t)time(NULL);
  } else if (lua_type(L, -1) == LUA_TNUMBER) {
    double t = lua_tonumber(L, -1);
    if (!(t >= 0 && t < 253402300800.0)) luaL_error(L, "bad argument #1 (opts.time out of range)");
    o->time = (int64_t)floor(t);
  } else if (lua_type(L, -1) == LUA_TSTRING) {
    size_t n;
    const char *s = lua_tolstring(L, -1, &n);
    if (hg_sigv4_parse_time(s, n, &o->time))
      luaL_error(L, "bad argument #1 (opts.time must be unix seconds, "
                    "YYYYMMDDTHHMMSSZ or YYYY-MM-DDTHH:MM:SSZ)");
  } else {
    luaL_error(L, "bad argument #1 (opts.time must be a number or a string)");
  }
  lua_pop(L, 1);

  o->nquery = opt_pairs(L, "query", o->query, HG_SIGV4_MAX_PARAMS);
  o->nheaders = opt_pairs(L, "headers", o->headers, HG_SIGV4_MAX_HEADERS);
  if (presign && o->nheaders)
    luaL_error(L, "bad argument #1 (opts.headers: a presigned URL signs the host only)");
}

/* Finds or creates the signer for these credentials and scope (LRU of SIGNERS). */
static hg_sigv4_t *get_signer(lua_State *L, cache_t *c, const s3opts_t *o) {
  hg_buf_t *id = &c->id;
  if (id->data) mbedtls_platform_zeroize(id->data, id->len);
  hg_buf_clear(id);
  const char *parts[5] = {o->ak, o->sk, o->token, o->region, o->service};
  for (int i = 0; i < 5; i++)
    if (hg_buf_append(id, parts[i], strlen(parts[i]) + 1)) luaL_error(L, "out of memory");
  unsigned tick = ++c->tick;
  int victim = 0;
  for (int i = 0; i < SIGNERS; i++) {
    slot_t *sl = &c->slot[i];
    if (sl->s && sl->id_len == id->len && memcmp(sl->id, id->data, id->len) == 0) {
      sl->stamp = tick;
      return sl->s;
    }
    if (!sl->s) {
      victim = i;
      break;
    }
    if (sl->stamp < c->slot[victim].stamp) victim = i;
  }
  hg_sigv4_config_t cfg = {o->ak, o->sk, o->token[0] ? o->token : NULL, o->region, o->service};
  hg_sigv4_t *s = hg_sigv4_new(&cfg);
  if (s == NULL)
    luaL_error(L, "bad argument #1 (invalid credentials, region or service)");
  char *copy = malloc(id->len);
  if (copy == NULL) {
    hg_sigv4_free(s);
    luaL_error(L, "out of memory");
  }
  memcpy(copy, id->data, id->len);
  slot_clear(&c->slot[victim]);
  c->slot[victim].s = s;
  c->slot[victim].id = copy;
  c->slot[victim].id_len = id->len;
  c->slot[victim].stamp = tick;
  return s;
}

static void fill_req(const s3opts_t *o, hg_s3_req_t *r, const char *endpoint) {
  memset(r, 0, sizeof(*r));
  r->endpoint = endpoint;
  r->bucket = o->bucket;
  r->key = o->key;
  r->key_len = o->key_len;
  r->path_style = o->path_style;
  r->method = o->method;
  r->query = o->query;
  r->nquery = o->nquery;
  r->headers = o->headers;
  r->nheaders = o->nheaders;
  r->payload_hash = o->payload_hash;
  r->time = o->time;
  r->expires = (uint32_t)o->expires;
}

static int push_fail(lua_State *L, int rc) {
  lua_pushnil(L);
  if (rc == HG_EINVAL)
    lua_pushliteral(L, "invalid S3 request (endpoint, bucket, key, query or headers)");
  else
    lua_pushstring(L, hg_strerror(rc));
  return 2;
}

/* hg.s3.presign(opts) -> url | nil, err */
static int l_presign(lua_State *L) {
  cache_t *c = luaL_checkudata(L, lua_upvalueindex(1), CACHE_MT);
  s3opts_t o;
  read_opts(L, &o, 1);
  hg_sigv4_t *s = get_signer(L, c, &o);
  hg_s3_req_t r;
  /* the player fetches the URL itself: sign for the public name when there is one */
  fill_req(&o, &r, o.public_endpoint ? o.public_endpoint : o.endpoint);
  hg_buf_clear(&c->url);
  int rc = hg_s3_presign(s, &r, &c->url);
  if (rc) return push_fail(L, rc);
  lua_pushlstring(L, c->url.data, c->url.len);
  return 1;
}

/* hg.s3.sign_headers(opts) -> headers, url | nil, err */
static int l_sign_headers(lua_State *L) {
  cache_t *c = luaL_checkudata(L, lua_upvalueindex(1), CACHE_MT);
  s3opts_t o;
  read_opts(L, &o, 0);
  hg_sigv4_t *s = get_signer(L, c, &o);
  hg_s3_req_t r;
  fill_req(&o, &r, o.endpoint); /* the gateway itself fetches: internal endpoint */
  hg_sigv4_auth_t out;
  hg_buf_clear(&c->url);
  hg_buf_clear(&c->host);
  hg_buf_clear(&c->authz);
  int rc = hg_s3_sign(s, &r, &c->url, &c->host, &c->authz, &out);
  if (rc) return push_fail(L, rc);
  lua_createtable(L, 0, 5 + (int)o.nheaders);
  for (size_t i = 0; i < o.nheaders; i++) {
    lua_pushlstring(L, o.headers[i].name, o.headers[i].name_len);
    lua_pushlstring(L, o.headers[i].value, o.headers[i].value_len);
    lua_rawset(L, -3);
  }
  lua_pushlstring(L, c->host.data, c->host.len);
  lua_setfield(L, -2, "host");
  hg_header_t auth[4];
  size_t na = hg_sigv4_auth_headers(&out, &c->authz, auth); /* the gateway's own builder */
  for (size_t i = 0; i < na; i++) {
    lua_pushlstring(L, auth[i].name, auth[i].name_len);
    lua_pushlstring(L, auth[i].value, auth[i].value_len);
    lua_rawset(L, -3);
  }
  lua_pushlstring(L, c->url.data, c->url.len);
  return 2;
}

static const luaL_Reg funcs[] = {
    {"presign", l_presign},
    {"sign_headers", l_sign_headers},
    {NULL, NULL},
};

int hg__lua_open_s3(lua_State *L) {
  luaL_newlibtable(L, funcs);
  cache_t *c = lua_newuserdatauv(L, sizeof(cache_t), 0);
  memset(c, 0, sizeof(*c));
  if (luaL_newmetatable(L, CACHE_MT)) {
    lua_pushcfunction(L, cache_gc);
    lua_setfield(L, -2, "__gc");
    lua_pushliteral(L, "private");
    lua_setfield(L, -2, "__metatable");
  }
  lua_setmetatable(L, -2);
  luaL_setfuncs(L, funcs, 1); /* the cache is every function's upvalue */
  return 1;
}
