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
#include "base/slab.h"
#include "base/log.h"
#include "lua/lapi.h"
#include "lua/policy_internal.h"

#define HOOK_STEP 1000 /* instructions between budget checks */

struct hg_policy_src_s {
  atomic_int refs;
  char *path;
  char *bytes;
  size_t len;
  char version[13];
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


/* Allocator with a cap. `osize` is a type tag when ptr is NULL, so only count it for
 * real blocks. */
static void *lalloc(void *ud, void *ptr, size_t osize, size_t nsize) {
  hg_policy_t *p = ud;
  size_t old = ptr ? osize : 0;
  if (nsize == 0) {
    hg_slab_realloc(&p->slab, ptr, old, 0);
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
  /* Small blocks from free lists: glibc's malloc/free were a tenth of a cached playlist
   * answer's instructions (bench/RESULTS.md). */
  void *n = hg_slab_realloc(&p->slab, ptr, old, nsize);
  if (n == NULL) return NULL;
  p->mem = p->mem - old + nsize;
  return n;
}

static void count_hook(lua_State *L, lua_Debug *ar) {
  (void)ar;
  hg_policy_t *p = hg__policy_self(L);
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
void hg__policy_meter_start(hg_policy_t *p) {
  hg__lua_meter_start(&p->meter);
  p->in_call = 1;
}

/* Message handler: appends a traceback to string errors. */
int hg__policy_msgh(lua_State *L) {
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
  hg__lua_open_callouts(L); /* hg.http, hg.redis, hg.null */
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
  lua_pushcfunction(L, hg__policy_msgh);
  int rc = luaL_loadbufferx(L, p->src->bytes, p->src->len, lua_pushfstring(L, "@%s", p->src->path), "t");
  lua_remove(L, -2); /* the chunk name */
  if (rc == LUA_OK) {
    hg__policy_meter_start(p);
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
  if (lua_istable(L, -1)) {
    /* `reuse = true`: the policy's frozen plans may answer again without it (reuse.c) */
    lua_getfield(L, -1, "reuse");
    p->reuse_plans = lua_toboolean(L, -1);
    lua_pop(L, 1);
    lua_getfield(L, -1, "on_request");
  } else {
    lua_pushvalue(L, -1);
  }
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
  p->max_calls = lim->max_calls ? lim->max_calls : HG_POLICY_MAX_CALLS;
  p->max_wait_ms = lim->max_wait_ms ? lim->max_wait_ms : HG_POLICY_MAX_WAIT_MS;
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
  /* Generational GC: a request leaves short-lived tables and strings behind; the
   * generational mode collects them young, for fewer instructions per request than the
   * incremental one (bench/RESULTS.md). */
  lua_gc(p->L, LUA_GCGEN, 0, 0);
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
  hg__reuse_clear(p); /* its plans live in the state */
  if (p->L) lua_close(p->L);
  hg_slab_free(&p->slab); /* after lua_close: its last frees land in the slab */
  hg_policy_src_release(p->src);
  free(p);
}

const char *hg_policy_version(const hg_policy_t *p) { return p->src->version; }

/* Calls the function at the top of the stack with `nargs` arguments below it under the
 * budget; logs failures with the request id. Returns 0 with one result on the stack, or
 * a negative code with the stack restored to `base`. */
int hg__policy_call_hook(hg_policy_t *p, const hg_request_t *req, int nargs, int base) {
  lua_State *L = p->L;
  hg__policy_meter_start(p);
  int rc = lua_pcall(L, nargs, 1, base + 1);
  p->in_call = 0;
  int exceeded = p->meter.exceeded;
  if (rc == LUA_OK && !exceeded) return 0;
  /* only a string is read as it is: converting a number would allocate, unprotected */
  const char *msg = rc != LUA_OK && lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
  if (exceeded && rc == LUA_ERRMEM) msg = "instruction budget exceeded (allocations count too)";
  hg_log(HG_LOG_ERROR, "request %s: policy error: %s", req->id,
         msg ? msg : (exceeded ? "instruction budget exceeded (error was caught)"
                               : "non-string error"));
  if (rc == LUA_ERRMEM) lua_gc(L, LUA_GCCOLLECT);
  lua_settop(L, base);
  return exceeded ? HG_EBUDGET : rc == LUA_ERRMEM ? HG_ENOMEM : HG_EPOLICY;
}

typedef struct uri_call_s {
  const hg_hls_uri_t *uri;
  hg_buf_t *out;
  const char *req_id;
  int act;
} uri_call_t;

/* Runs under the budget's pcall with (uri_call_t *, hook): the hook's argument is built and
 * its answer read in there, since both allocate (a state at its memory cap raises). */
static int uri_call(lua_State *L) {
  uri_call_t *c = lua_touserdata(L, 1);
  hg__lua_push_uri(L, c->uri);
  lua_call(L, 1, 1);
  c->act = hg__lua_uri_result(L, c->out, c->req_id);
  return 0;
}

int hg_policy_uri_hook(hg_policy_t *p, const hg_plan_t *plan, const hg_request_t *req,
                       const hg_hls_uri_t *uri, hg_buf_t *replacement) {
  lua_State *L = p->L;
  int base = lua_gettop(L);
  if (!lua_checkstack(L, 4)) return HG_ENOMEM;
  uri_call_t c = {uri, replacement, req->id, HG_EPOLICY};
  lua_pushcfunction(L, hg__policy_msgh);
  lua_pushcfunction(L, uri_call);
  lua_pushlightuserdata(L, &c);
  lua_rawgeti(L, LUA_REGISTRYINDEX, plan->hook_ref);
  int rc = hg__policy_call_hook(p, req, 2, base);
  if (rc < 0) return rc;
  lua_settop(L, base);
  return c.act;
}

void hg_policy_plan_done(hg_policy_t *p, hg_plan_t *plan) {
  if (plan->hook_ref != LUA_NOREF && plan->hook_ref != 0) luaL_unref(p->L, LUA_REGISTRYINDEX, plan->hook_ref);
  plan->hook_ref = LUA_NOREF;
  if (plan->frozen) hg__lua_frozen_release(plan->frozen);
  plan->frozen = NULL;
}

const char *hg_policy_runtime(void) { return LUA_RELEASE; }
