/* policy.c — the Lua policy host (see policy.h).
 *
 * Each hg_policy_t is one lua_State with:
 *  - an allocator that enforces the memory cap (allocation beyond it fails, which Lua
 *    turns into a catchable "not enough memory" error);
 *  - a count hook that enforces the instruction budget of the current hook call. Once
 *    the budget is spent the hook raises on every step, so a policy that catches the
 *    error with pcall cannot keep running; the call is answered 500 either way;
 *  - `require "hlsgate"` preloaded with the C API plus host-only functions (log).
 * This is the only place, with src/lua/api_*.c, that includes the Lua headers.
 */
#include "lua/policy.h"

#include <lauxlib.h>
#include <lualib.h>
#include <errno.h>
#include <mbedtls/sha256.h>
#include <stdatomic.h>
#include <stdio.h>
#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <unistd.h>
#include <sys/stat.h>

#include "base/error.h"
#include "base/log.h"
#include "lua/lapi.h"

#define HOOK_STEP 1000 /* instructions between budget checks */
#define HG_PLAN_MAX_REDIRECTS 5 /* origin.max_redirects when absent (docs/policy-api.md) */
#define HG_POLICY_MAX_HEADER_BYTES 16384 /* a policy response's headers, names and values */

struct hg_policy_src_s {
  atomic_int refs;
  char *path;
  char *bytes;
  size_t len;
  char version[13];
};

struct hg_policy_s {
  int refs;
  lua_State *L;
  hg_policy_src_t *src;
  int on_request; /* registry ref */
  size_t mem, mem_limit;
  hg_lua_meter_t meter; /* the budget of the current hook call (lapi.h) */
  int in_call;          /* allocations are charged to the meter */
};

/* ---- sources ---- */

hg_policy_src_t *hg_policy_src_read(const char *path, char *err, size_t errlen) {
  struct stat st;
  if (stat(path, &st) == 0 && !S_ISREG(st.st_mode)) {
    snprintf(err, errlen, "%s: is %s, expected a Lua file", path, S_ISDIR(st.st_mode) ? "a directory" : "not a regular file");
    return NULL;
  }
  FILE *f = fopen(path, "rb");
  if (f == NULL) {
    snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
    return NULL;
  }
  hg_policy_src_t *src = calloc(1, sizeof(*src));
  hg_buf_t b = HG_BUF_INIT;
  char chunk[8192];
  size_t n;
  int rc = 0;
  while (rc == 0 && (n = fread(chunk, 1, sizeof(chunk), f)) > 0) rc = hg_buf_append(&b, chunk, n);
  int ioerr = ferror(f);
  fclose(f);
  if (src == NULL || rc || ioerr || (src->path = strdup(path)) == NULL) {
    snprintf(err, errlen, "%s: cannot read: %s", path, ioerr ? "I/O error" : "out of memory");
    hg_buf_free(&b);
    if (src) free(src->path);
    free(src);
    return NULL;
  }
  if (b.data == NULL) hg_buf_reserve(&b, 0);
  src->bytes = hg_buf_steal(&b, &src->len);
  atomic_init(&src->refs, 1);
  unsigned char digest[32];
  mbedtls_sha256_ret((const unsigned char *)src->bytes, src->len, digest, 0);
  for (int i = 0; i < 6; i++) snprintf(src->version + 2 * i, 3, "%02x", digest[i]);
  return src;
}

void hg_policy_src_retain(hg_policy_src_t *src) { atomic_fetch_add(&src->refs, 1); }

void hg_policy_src_release(hg_policy_src_t *src) {
  if (src == NULL || atomic_fetch_sub(&src->refs, 1) != 1) return;
  free(src->path);
  free(src->bytes);
  free(src);
}

const char *hg_policy_src_version(const hg_policy_src_t *src) { return src->version; }
const char *hg_policy_src_path(const hg_policy_src_t *src) { return src->path; }

/* ---- Lua state plumbing ---- */

static hg_policy_t *self(lua_State *L) { return *(hg_policy_t **)lua_getextraspace(L); }

/* Allocator with a cap. `osize` is a type tag when ptr is NULL, so only count it for
 * real blocks. */
static void *lalloc(void *ud, void *ptr, size_t osize, size_t nsize) {
  hg_policy_t *p = ud;
  size_t old = ptr ? osize : 0;
  if (nsize == 0) {
    free(ptr);
    p->mem -= old;
    return NULL;
  }
  if (nsize > old && p->mem + (nsize - old) > p->mem_limit) return NULL;
  /* Allocation is work: building a string or table costs time in proportion to its
   * bytes, inside C functions (format, sub, gsub, `..`) the count hook does not see.
   * One unit per 64 bytes; past the budget the allocation fails (a memory error that
   * call_hook reports as a budget overrun, since the meter stays exceeded).
   * Security: without this a loop of `s = big .. "x"` runs 1 instruction per megabyte. */
  if (p->in_call && nsize > old) {
    size_t grow = nsize - old;
    if (!p->meter.exceeded) p->meter.used += 1 + grow / 64;
    if (p->meter.used > p->meter.budget) p->meter.exceeded = 1; /* no clock here: hot path */
    /* Small blocks stay allowed so the error and its traceback can still be built. */
    if (p->meter.exceeded && grow > 4096) return NULL;
  }
  void *n = realloc(ptr, nsize);
  if (n == NULL) return NULL;
  p->mem = p->mem - old + nsize;
  return n;
}

static void count_hook(lua_State *L, lua_Debug *ar) {
  (void)ar;
  hg_policy_t *p = self(L);
  p->meter.used += HOOK_STEP;
  if (hg__lua_meter_check(&p->meter) != 0) {
    if (p->meter.used <= p->meter.budget) luaL_error(L, "policy time limit exceeded");
    luaL_error(L, "instruction budget exceeded (%I instructions)", (lua_Integer)p->meter.budget);
  }
}

/* Starts the meter for one hook call (or the chunk). Its time limit (lapi.h) is a
 * backstop for work that is charged per instruction but is not constant per instruction
 * (`a == b` on two long strings), checked whenever the hook fires or a C function is
 * charged. */
static void meter_start(hg_policy_t *p) {
  hg__lua_meter_start(&p->meter);
  p->in_call = 1;
}

/* Message handler: appends a traceback to string errors. */
static int msgh(lua_State *L) {
  const char *msg = lua_tostring(L, 1);
  if (msg == NULL) msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
  luaL_traceback(L, L, msg, 1);
  return 1;
}

/* hg.log(level, ...) — level is "debug", "info", "warn" or "error"; the other arguments
 * are converted with tostring and joined by spaces. */
static int l_log(lua_State *L) {
  static const char *const levels[] = {"debug", "info", "warn", "error", NULL};
  int level = luaL_checkoption(L, 1, NULL, levels);
  int n = lua_gettop(L); /* before luaL_buffinit pushes its placeholder */
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  for (int i = 2; i <= n; i++) {
    if (i > 2) luaL_addchar(&b, ' ');
    luaL_tolstring(L, i, NULL);
    luaL_addvalue(&b);
  }
  luaL_pushresult(&b);
  lua_Debug ar;
  const char *where = "?";
  int line = 0;
  if (lua_getstack(L, 1, &ar) && lua_getinfo(L, "Sl", &ar)) where = ar.short_src, line = ar.currentline;
  hg_log((hg_log_level_t)level, "policy %s:%d: %s", where, line, lua_tostring(L, -1));
  return 0;
}

/* Where the server listens (hg_policy_set_listen): set once before any worker starts,
 * read-only afterwards. */
static const char *const *g_listen;
static size_t g_nlisten;

void hg_policy_set_listen(const char *const *addrs, size_t n) {
  g_listen = addrs;
  g_nlisten = n;
}

/* 1 unless "host:port" is on 127.0.0.0/8 or ::1 (a wildcard or unparsable host counts as
 * reachable from elsewhere). */
static int beyond_loopback(const char *hostport) {
  const char *colon = strrchr(hostport, ':');
  char host[64];
  size_t n = colon ? (size_t)(colon - hostport) : strlen(hostport);
  if (n >= 2 && hostport[0] == '[' && hostport[n - 1] == ']') hostport++, n -= 2;
  if (n >= sizeof(host)) return 1;
  memcpy(host, hostport, n);
  host[n] = '\0';
  unsigned char a[16];
  if (inet_pton(AF_INET, host, a) == 1) return a[0] != 127;
  static const unsigned char one[16] = {[15] = 1};
  if (inet_pton(AF_INET6, host, a) == 1) return memcmp(a, one, 16) != 0;
  return 1;
}


/* print(...): to the operational log at info level, like hg.log. stdout carries the
 * access log; a policy's print must not corrupt or forge its lines. */
static int l_print(lua_State *L) {
  lua_pushliteral(L, "info");
  lua_insert(L, 1);
  return l_log(L);
}


/* package.preload.hlsgate: the C API plus host-only functions and facts. */
static int open_hlsgate(lua_State *L) {
  hg__lua_open_module(L);
  lua_pushcfunction(L, l_log);
  lua_setfield(L, -2, "log");
  if (g_nlisten) {
    int beyond = 0;
    lua_createtable(L, (int)g_nlisten, 0);
    for (size_t i = 0; i < g_nlisten; i++) {
      lua_pushstring(L, g_listen[i]);
      lua_rawseti(L, -2, (lua_Integer)i + 1);
      beyond |= beyond_loopback(g_listen[i]);
    }
    lua_setfield(L, -2, "listen");
    lua_pushboolean(L, beyond);
    lua_setfield(L, -2, "listening_beyond_loopback");
  }
  return 1;
}

/* The Lua library installed next to this binary (<bin>/../share/hlsgate/lua), so an
 * installed tree works wherever it was installed; "" when there is none. Found once. */
static char installed_dir[4096];
static pthread_once_t installed_once = PTHREAD_ONCE_INIT;

static void find_installed_dir(void) {
  char exe[3800];
  ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
  if (n <= 0) return;
  exe[n] = '\0';
  char *slash = strrchr(exe, '/');
  if (slash) *slash = '\0';
  struct stat st;
  snprintf(installed_dir, sizeof(installed_dir), "%s/../share/hlsgate/lua", exe);
  if (stat(installed_dir, &st) != 0 || !S_ISDIR(st.st_mode)) installed_dir[0] = '\0';
}

static const char *installed_lua_dir(void) {
  pthread_once(&installed_once, find_installed_dir);
  return installed_dir;
}

/* Prepends the policy's directory and the Lua library directories (installed next to the
 * binary, then the source tree, then the configured prefix) to package.path, and
 * preloads `hlsgate`. */
static void set_paths(lua_State *L, const char *policy_path) {
  const char *slash = strrchr(policy_path, '/');
  lua_getglobal(L, "package");
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  if (slash) luaL_addlstring(&b, policy_path, (size_t)(slash - policy_path));
  else luaL_addchar(&b, '.');
  luaL_addstring(&b, "/?.lua;");
  const char *inst = installed_lua_dir();
  if (*inst) {
    luaL_addstring(&b, inst);
    luaL_addstring(&b, "/?.lua;");
    luaL_addstring(&b, inst);
    luaL_addstring(&b, "/?/init.lua;");
  }
  luaL_addstring(&b, HG_SOURCE_LUA_DIR "/?.lua;" HG_SOURCE_LUA_DIR "/?/init.lua;"
                 HG_LUA_DIR "/?.lua;" HG_LUA_DIR "/?/init.lua;");
  lua_getfield(L, -2, "path");
  luaL_addvalue(&b);
  luaL_pushresult(&b);
  lua_setfield(L, -2, "path");
  lua_pop(L, 1);
  lua_getfield(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
  lua_pushcfunction(L, open_hlsgate);
  lua_setfield(L, -2, "hlsgate");
  lua_pop(L, 1);
}

/* Runs the chunk and finds on_request; leaves nothing on the stack. Returns 0 or -1
 * with err filled as "file:line: message". */
static int load_chunk(hg_policy_t *p, char *err, size_t errlen) {
  lua_State *L = p->L;
  lua_pushcfunction(L, msgh);
  int rc = luaL_loadbufferx(L, p->src->bytes, p->src->len, lua_pushfstring(L, "@%s", p->src->path), "t");
  lua_remove(L, -2); /* the chunk name */
  if (rc == LUA_OK) {
    meter_start(p);
    rc = lua_pcall(L, 0, 1, -2);
    p->in_call = 0;
  }
  if (rc != LUA_OK) {
    const char *msg = lua_tostring(L, -1);
    /* The traceback follows the first line; keep "file:line: message" only. */
    size_t n = msg ? strcspn(msg, "\n") : 0;
    snprintf(err, errlen, "%.*s", (int)n, msg ? msg : "policy error");
    lua_settop(L, 0);
    return -1;
  }
  if (lua_istable(L, -1)) lua_getfield(L, -1, "on_request");
  else lua_pushvalue(L, -1);
  if (!lua_isfunction(L, -1)) {
    snprintf(err, errlen, "%s: the policy must return a table with an on_request function",
             p->src->path);
    lua_settop(L, 0);
    return -1;
  }
  p->on_request = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_settop(L, 0);
  return 0;
}

hg_policy_t *hg_policy_new(hg_policy_src_t *src, const hg_policy_limits_t *lim, char *err,
                           size_t errlen) {
  hg_policy_t *p = calloc(1, sizeof(*p));
  if (p == NULL) {
    snprintf(err, errlen, "out of memory");
    return NULL;
  }
  p->refs = 1;
  p->mem_limit = lim->memory;
  p->meter.budget = lim->budget;
  p->meter.mem = &p->mem;
  p->src = src;
  hg_policy_src_retain(src);
  p->L = lua_newstate(lalloc, p);
  if (p->L == NULL) {
    snprintf(err, errlen, "%s: cannot create a Lua state", src->path);
    hg_policy_release(p);
    return NULL;
  }
  *(hg_policy_t **)lua_getextraspace(p->L) = p;
  luaL_openlibs(p->L);
  hg__lua_sandbox(p->L, &p->meter);
  lua_register(p->L, "print", l_print);
  lua_sethook(p->L, count_hook, LUA_MASKCOUNT, HOOK_STEP);
  set_paths(p->L, src->path);
  if (load_chunk(p, err, errlen) != 0) {
    hg_policy_release(p);
    return NULL;
  }
  return p;
}

void hg_policy_retain(hg_policy_t *p) { p->refs++; }

void hg_policy_release(hg_policy_t *p) {
  if (p == NULL || --p->refs > 0) return;
  if (p->L) lua_close(p->L);
  hg_policy_src_release(p->src);
  free(p);
}

const char *hg_policy_version(const hg_policy_t *p) { return p->src->version; }

/* ---- requests ---- */

static int hexval(int c) {
  if (c >= '0' && c <= '9') return c - '0';
  c |= 0x20;
  return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* Pushes s[0..n) percent-decoded ('+' as space, as in forms); invalid escapes are kept
 * literally rather than failing the whole query. */
static void push_decoded(lua_State *L, const char *s, size_t n) {
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  for (size_t i = 0; i < n; i++) {
    int hi, lo;
    if (s[i] == '%' && i + 2 < n && (hi = hexval((unsigned char)s[i + 1])) >= 0 &&
        (lo = hexval((unsigned char)s[i + 2])) >= 0) {
      luaL_addchar(&b, (char)(hi * 16 + lo));
      i += 2;
    } else {
      luaL_addchar(&b, s[i] == '+' ? ' ' : s[i]);
    }
  }
  luaL_pushresult(&b);
}

/* Pushes the decoded query as { name = value } (the first of repeated names wins). */
static void push_query(lua_State *L, const char *q, size_t n) {
  lua_newtable(L);
  const char *p = q, *end = q + n;
  while (p < end) {
    const char *amp = memchr(p, '&', (size_t)(end - p));
    const char *pe = amp ? amp : end;
    if (pe > p) {
      const char *eq = memchr(p, '=', (size_t)(pe - p));
      const char *ke = eq ? eq : pe;
      push_decoded(L, p, (size_t)(ke - p));
      if (lua_rawget(L, -2) == LUA_TNIL) {
        lua_pop(L, 1);
        push_decoded(L, p, (size_t)(ke - p));
        if (eq) push_decoded(L, eq + 1, (size_t)(pe - eq - 1));
        else lua_pushliteral(L, "");
        lua_rawset(L, -3);
      } else {
        lua_pop(L, 1);
      }
    }
    p = amp ? amp + 1 : end;
  }
}

/* Pushes the request table given to on_request. */
static void push_request(lua_State *L, const hg_request_t *req) {
  lua_createtable(L, 0, 12);
  lua_pushstring(L, req->method);
  lua_setfield(L, -2, "method");
  lua_pushlstring(L, req->target, req->target_len);
  lua_setfield(L, -2, "target");
  lua_pushlstring(L, req->target, req->path_len);
  lua_setfield(L, -2, "path");
  const char *q = req->target + req->path_len;
  size_t qlen = req->target_len - req->path_len;
  if (qlen > 0) q++, qlen--; /* skip '?' */
  lua_pushlstring(L, q, qlen);
  lua_setfield(L, -2, "raw_query");
  push_query(L, q, qlen);
  lua_setfield(L, -2, "query");
  /* headers: lower-case names; repeated headers joined with ", " (RFC 9110 §5.3). */
  lua_createtable(L, 0, (int)req->nheaders);
  for (size_t i = 0; i < req->nheaders; i++) {
    const hg_header_t *h = &req->headers[i];
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    for (size_t k = 0; k < h->name_len; k++) {
      char c = h->name[k];
      luaL_addchar(&b, (c >= 'A' && c <= 'Z') ? (char)(c | 0x20) : c);
    }
    luaL_pushresult(&b);
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
  lua_setfield(L, -2, "headers");
  if (req->body) {
    lua_pushlstring(L, req->body, req->body_len);
    lua_setfield(L, -2, "body");
  }
  lua_pushstring(L, req->client);
  lua_setfield(L, -2, "client");
  lua_pushstring(L, req->id);
  lua_setfield(L, -2, "id");
  lua_pushfstring(L, "%d.%d", req->http_major, req->http_minor);
  lua_setfield(L, -2, "http_version");
}

/* Security: a header name must be a token and a value must not contain CR/LF/NUL, or a
 * policy could inject headers or split the response. */
static int valid_header(const char *name, size_t nlen, const char *value, size_t vlen) {
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
static int to_response(lua_State *L, hg_request_t *req, hg_response_t *res) {
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
  lua_getfield(L, t, "status");
  int isnum;
  lua_Integer status = lua_tointegerx(L, -1, &isnum);
  if (lua_isnil(L, -1)) status = 200, isnum = 1;
  lua_pop(L, 1);
  if (!isnum || status < 100 || status > 599) {
    lua_pushliteral(L, "response status must be an integer 100..599");
    return -1;
  }
  res->status = (int)status;
  lua_getfield(L, t, "headers");
  size_t hbytes = 0; /* policy headers in all: capped like a request's (SPEC §8) */
  if (lua_istable(L, -1)) {
    lua_pushnil(L);
    while (lua_next(L, -2) != 0) {
      size_t nlen, vlen;
      const char *name = lua_type(L, -2) == LUA_TSTRING ? lua_tolstring(L, -2, &nlen) : NULL;
      int multi = lua_istable(L, -1);
      lua_Integer count = multi ? luaL_len(L, -1) : 1;
      for (lua_Integer i = 1; i <= count; i++) {
        if (multi) lua_rawgeti(L, -1, i);
        const char *value = lua_type(L, -1) == LUA_TSTRING || lua_type(L, -1) == LUA_TNUMBER
                                ? lua_tolstring(L, -1, &vlen) : NULL;
        if (name == NULL || value == NULL || !valid_header(name, nlen, value, vlen)) {
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
  lua_getfield(L, t, "body");
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
  lua_getfield(L, t, "error");
  if (lua_type(L, -1) == LUA_TSTRING &&
      hg_error_json(req->arena, res->status, lua_tostring(L, -1), req->id, &res->body, &res->body_len) != 0) {
    lua_pushliteral(L, "out of memory");
    return -1;
  }
  lua_pop(L, 1);
  return 0;
}

/* ---- plans ---- */

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
  lua_getfield(r->L, r->t, field);
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
  lua_getfield(r->L, r->t, field);
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
  lua_getfield(r->L, r->t, field);
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
  lua_getfield(r->L, r->t, field);
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
    if (name == NULL || value == NULL || !valid_header(name, nl, value, vl) || *n == cap) {
      lua_pop(L, 3);
      return rd_fail(r, field, "string pairs without CR/LF (at most 16)");
    }
    hg_header_t *h = &out[(*n)++];
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
  lua_getfield(L, r->t, "allow_private");
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

static int parse_action(lua_State *L, int idx) {
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
  lua_getfield(r->L, sg.t, "secret");
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

/* Converts the plan table at index t into `plan`. Returns 0 or -1 with a message pushed. */
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
  lua_getfield(L, ct.t, "allow");
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

static int to_plan(lua_State *L, int t, hg_request_t *req, hg_plan_t *plan) {
  reader_t r = {L, req->arena, t, "plan"};
  lua_Integer v;
  plan->hook_ref = LUA_NOREF;
  plan->max_redirects = HG_PLAN_MAX_REDIRECTS;
  /* origin */
  int has = rd_table(&r, "origin");
  if (has == 0) lua_pushliteral(L, "plan.origin: expected a table");
  if (has != 1) return -1;
  reader_t o = {L, req->arena, lua_gettop(L), "origin"};
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
      size_t n = (size_t)luaL_len(L, -1);
      plan->allow_hosts = hg_arena_alloc(req->arena, (n + 1) * sizeof(char *));
      for (size_t i = 0; plan->allow_hosts && i < n; i++) {
        lua_rawgeti(L, -1, (lua_Integer)i + 1);
        size_t len;
        const char *h = lua_tolstring(L, -1, &len);
        if (h == NULL) {
          lua_pushliteral(L, "origin.allow_hosts: expected strings");
          return -1;
        }
        plan->allow_hosts[plan->nallow_hosts++] = hg_arena_strndup(req->arena, h, len);
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
  lua_getfield(L, r.t, "live_ttl");
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
      int act = parse_action(L, -1);
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
    reader_t px = {L, req->arena, lua_gettop(L), "proxy"};
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
    reader_t ps = {L, req->arena, lua_gettop(L), "presign"};
    if (rd_int(&ps, "ttl", 1, 604800, 3600, &v) || rd_str(&ps, "prefix", &plan->presign_prefix)) return -1;
    plan->presign_ttl = (uint32_t)v;
    lua_pop(L, 1);
  }
  has = rd_table(&r, "s3");
  if (has < 0) return -1;
  if (has) {
    reader_t s3 = {L, req->arena, lua_gettop(L), "s3"};
    if (rd_s3(&s3, &plan->s3)) return -1;
    plan->has_s3 = 1;
    lua_pop(L, 1);
  }
  if (rd_bool(&r, "private", &plan->carries_token)) return -1;
  if (rd_content_types(&r, plan)) return -1;
  lua_getfield(L, t, "on_uri");
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

/* Calls the function at the top of the stack with `nargs` arguments below it under the
 * budget; logs failures with the request id. Returns 0 with one result on the stack, or
 * a negative code with the stack restored to `base`. */
static int call_hook(hg_policy_t *p, const hg_request_t *req, int nargs, int base) {
  lua_State *L = p->L;
  meter_start(p);
  int rc = lua_pcall(L, nargs, 1, base + 1);
  p->in_call = 0;
  int exceeded = p->meter.exceeded;
  if (rc == LUA_OK && !exceeded) return 0;
  const char *msg = rc != LUA_OK ? lua_tostring(L, -1) : NULL;
  if (exceeded && rc == LUA_ERRMEM) msg = "instruction budget exceeded (allocations count too)";
  hg_log(HG_LOG_ERROR, "request %s: policy error: %s", req->id,
         msg ? msg : (exceeded ? "instruction budget exceeded (error was caught)"
                               : "non-string error"));
  if (rc == LUA_ERRMEM) lua_gc(L, LUA_GCCOLLECT);
  lua_settop(L, base);
  return exceeded ? HG_EBUDGET : rc == LUA_ERRMEM ? HG_ENOMEM : HG_EPOLICY;
}

int hg_policy_on_request(hg_policy_t *p, hg_request_t *req, hg_response_t *res, hg_plan_t *plan) {
  lua_State *L = p->L;
  lua_settop(L, 0);
  lua_pushcfunction(L, msgh);
  lua_rawgeti(L, LUA_REGISTRYINDEX, p->on_request);
  push_request(L, req);
  int rc = call_hook(p, req, 1, 0);
  if (rc < 0) return rc;
  int result, is_plan = 0;
  if (lua_istable(L, -1)) {
    is_plan = lua_getfield(L, -1, "origin") != LUA_TNIL; /* a plan, not a response */
    lua_pop(L, 1);
    if (lua_getfield(L, -1, "route") == LUA_TSTRING) { /* the metrics label */
      size_t n;
      const char *r = lua_tolstring(L, -1, &n);
      req->route = hg_arena_strndup(req->arena, r, n);
    }
    lua_pop(L, 1);
  }
  if (lua_isnil(L, -1)) {
    result = HG_PLAN_NONE;
  } else if (is_plan) {
    memset(plan, 0, sizeof(*plan));
    result = to_plan(L, lua_gettop(L), req, plan) == 0 ? HG_PLAN_FETCH : HG_EPOLICY;
    if (result != HG_PLAN_FETCH) hg_policy_plan_done(p, plan);
  } else {
    result = to_response(L, req, res) == 0 ? HG_PLAN_RESPOND : HG_EPOLICY;
    if (result != HG_PLAN_RESPOND) {
      res->nheaders = 0;
      res->body = NULL;
    }
  }
  if (result == HG_EPOLICY) hg_log(HG_LOG_ERROR, "request %s: policy error: %s", req->id, lua_tostring(L, -1));
  lua_settop(L, 0);
  return result;
}

int hg_policy_uri_hook(hg_policy_t *p, const hg_plan_t *plan, const hg_request_t *req,
                       const hg_hls_uri_t *uri, hg_buf_t *replacement) {
  lua_State *L = p->L;
  int base = lua_gettop(L);
  lua_pushcfunction(L, msgh);
  lua_rawgeti(L, LUA_REGISTRYINDEX, plan->hook_ref);
  hg__lua_push_uri(L, uri);
  int rc = call_hook(p, req, 1, base);
  if (rc < 0) return rc;
  int act;
  size_t n;
  const char *s = lua_tolstring(L, -1, &n);
  if (lua_isnil(L, -1)) {
    act = HG_ACT_UNSET;
  } else if (s && (act = parse_action(L, -1)) >= 0) {
    /* an action name */
  } else if (s && n > 0 && valid_header("x", 1, s, n) && strpbrk(s, "\" \t") == NULL) {
    act = hg_buf_append(replacement, s, n) ? HG_ENOMEM : HG_ACT_HOOK;
  } else {
    hg_log(HG_LOG_ERROR, "request %s: policy error: on_uri returned %s (expected an action, a URL or nil)",
           req->id, luaL_typename(L, -1));
    act = HG_EPOLICY;
  }
  lua_settop(L, base);
  return act;
}

void hg_policy_plan_done(hg_policy_t *p, hg_plan_t *plan) {
  if (plan->hook_ref != LUA_NOREF && plan->hook_ref != 0) luaL_unref(p->L, LUA_REGISTRYINDEX, plan->hook_ref);
  plan->hook_ref = LUA_NOREF;
}

const char *hg_policy_runtime(void) { return LUA_RELEASE; }
