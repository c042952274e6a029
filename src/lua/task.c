/* task.c — on_request in a coroutine, suspended on callouts (policy.h, docs/callouts.md).
 *
 * Every request gets a Lua thread (lua_newthread, anchored in the registry while it
 * lives). The hook runs in it with lua_resume; a callout binding starts its call through
 * the port and yields; the port's answer (callout.c) pushes the results onto the thread
 * and resumes it. While a request waits, the state runs other requests: each has its
 * own thread, and the instruction meter is saved per request across resumptions, so
 * waiting costs no budget but the work before and after a call adds up. A suspended
 * request holds a reference to its policy: a reload swaps the worker's current policy,
 * and the old state lives until its last suspended request ends.
 */
#include <lauxlib.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/error.h"
#include "base/log.h"
#include "lua/policy_internal.h"

struct hg_policy_task_s {
  hg_policy_t *p;
  lua_State *co;
  int co_ref;
  int req_ref;        /* the lazy `req` table (message.c), ended when the task ends */
  hg_request_t *req;
  hg_response_t *res;
  hg_plan_t *plan;
  hg_policy_done_cb done;
  void *ud;
  uint64_t used;      /* instructions spent so far, across resumptions */
  unsigned calls;     /* callouts made */
  uint64_t waited_ns; /* time spent waiting on them */
  int pending;        /* `call` is in flight */
  hg_callout_t call;
};

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void hg_policy_set_port(hg_policy_t *p, const hg_callout_port_t *port) { p->port = port; }

/* Cuts the request table loose from the request (which is about to go) and recycles the
 * thread. Allocates nothing (hg__lua_request_end), so it needs no protection. */
static void task_free(hg_policy_task_t *t) {
  hg_policy_t *p = t->p;
  lua_State *L = p->L;
  lua_rawgeti(L, LUA_REGISTRYINDEX, t->req_ref);
  hg__lua_request_end(L, -1);
  lua_pop(L, 1);
  luaL_unref(L, LUA_REGISTRYINDEX, t->req_ref);
  /* A thread whose hook returned is as good as new: kept for the next request (creating
   * one per request is measurable on the hot path). A failed or suspended one is dropped. */
  if (lua_status(t->co) == LUA_OK && p->nidle < HG_POLICY_IDLE_THREADS) {
    lua_settop(t->co, 0);
    p->idle[p->nidle++] = t->co_ref;
  } else {
    luaL_unref(L, LUA_REGISTRYINDEX, t->co_ref); /* the thread is garbage from now on */
  }
  hg_policy_release(p);
  free(t);
}

/* Whether the table on top is a plan with a reuse rule and without an on_uri hook (a hook
 * runs per request: such a plan is not reused, whatever its rule says); the rule's token
 * parameter, if it names one, into param (cap bytes; "" for none). */
static int reusable_table(lua_State *L, char *param, size_t cap) {
  int t = lua_gettop(L);
  int ok = hg__lua_rawfield(L, t, "origin") != LUA_TNIL && hg__lua_rawfield(L, t, "on_uri") == LUA_TNIL &&
           hg__lua_rawfield(L, t, "reuse") == LUA_TTABLE; /* when ok, the rule is on top */
  param[0] = '\0';
  if (ok && hg__lua_rawfield(L, -1, "token") == LUA_TTABLE && hg__lua_rawfield(L, -1, "param") == LUA_TSTRING) {
    size_t n;
    const char *s = lua_tolstring(L, -1, &n);
    if (n < cap) memcpy(param, s, n + 1); /* else freezing refuses it */
  }
  lua_settop(L, t);
  return ok;
}

/* Reads what the finished hook returned (the first of nres values on co). Runs protected
 * (finish): reading allocates. */
static int read_result(hg_policy_task_t *t, int nres) {
  lua_State *L = t->co;
  hg_request_t *req = t->req;
  if (nres == 0) lua_pushnil(L);
  else lua_settop(L, lua_gettop(L) - nres + 1);
  int result, is_plan = 0;
  hg_plan_frozen_t *fz = hg__lua_test_frozen(L, -1);
  if (fz == NULL && lua_istable(L, -1) && lua_getmetatable(L, -1)) {
    /* Plans and responses are plain tables, read raw (hg__lua_rawfield): a metatable's
     * defaults would be ignored, so it is refused, loudly. */
    hg_log(HG_LOG_ERROR, "request %s: policy error: on_request returned a table with a metatable "
           "(plans and responses are read as plain tables)", req->id);
    lua_settop(L, 0);
    return HG_EPOLICY;
  }
  char param[65];
  int reuse = t->p->reuse_plans && (fz ? fz->reuse_ttl_ms > 0 : lua_istable(L, -1) && reusable_table(L, param, sizeof(param)));
  if (reuse) {
    const char *tp = fz ? (fz->token ? fz->token->param : NULL) : param[0] ? param : NULL;
    reuse = hg__reuse_admit(t->p, req, tp);
  }
  if (fz == NULL && reuse) {
    /* A plan table with a reuse rule (and no hook): frozen here, then as below. */
    int top = lua_gettop(L);
    fz = hg__lua_freeze_reusable(L, top);
    if (fz == NULL && lua_type(L, -1) == LUA_TSTRING) { /* an invalid plan */
      hg_log(HG_LOG_ERROR, "request %s: policy error: %s", req->id, lua_tostring(L, -1));
      lua_settop(L, 0);
      return HG_EPOLICY;
    }
    if (fz == NULL) { /* no memory for a frozen copy: this request reads the table, unkept */
      lua_settop(L, top);
      reuse = 0;
    }
  }
  if (fz) {
    /* A frozen plan: copied as it is, anchored until the request is done with it. */
    *t->plan = fz->plan;
    hg__lua_frozen_retain(fz);
    if (reuse) hg__reuse_put(t->p, req, fz);
    /* the label outlives the exchange (the access log and metrics come last) */
    if (fz->route) req->route = hg_arena_strndup(req->arena, fz->route, strlen(fz->route));
    lua_settop(L, 0);
    return HG_PLAN_FETCH;
  }
  if (lua_istable(L, -1)) {
    is_plan = hg__lua_rawfield(L, -1, "origin") != LUA_TNIL; /* a plan, not a response */
    lua_pop(L, 1);
    if (hg__lua_rawfield(L, -1, "route") == LUA_TSTRING) { /* the metrics label */
      size_t n;
      const char *r = lua_tolstring(L, -1, &n);
      req->route = hg_arena_strndup(req->arena, r, n);
    }
    lua_pop(L, 1);
  }
  if (lua_isnil(L, -1)) {
    result = HG_PLAN_NONE;
  } else if (is_plan) {
    memset(t->plan, 0, sizeof(*t->plan));
    result = hg__lua_to_plan(L, lua_gettop(L), req->arena, t->plan) == 0 ? HG_PLAN_FETCH : HG_EPOLICY;
    if (result != HG_PLAN_FETCH) hg_policy_plan_done(t->p, t->plan);
  } else {
    result = hg__lua_to_response(L, req, t->res) == 0 ? HG_PLAN_RESPOND : HG_EPOLICY;
    if (result != HG_PLAN_RESPOND) {
      t->res->nheaders = 0;
      t->res->body = NULL;
    }
  }
  if (result == HG_EPOLICY) hg_log(HG_LOG_ERROR, "request %s: policy error: %s", req->id, lua_tostring(L, -1));
  lua_settop(L, 0);
  return result;
}

/* After on_request: everything below allocates (Lua strings, registry references, error
 * messages, the request table's remaining fields) in a state that may be at its memory
 * cap, so it runs protected. Security: an error raised outside a protected call is a Lua
 * panic, the end of the whole process — a policy hoarding memory must cost only its own
 * requests. */
typedef struct finish_s {
  hg_policy_task_t *t;
  int nres;
  int result;
} finish_t;

/* Runs under lua_pcall on co with (finish_t *, the hook's nres results). */
static int finish_k(lua_State *co) {
  finish_t *f = lua_touserdata(co, 1);
  lua_remove(co, 1);
  hg_policy_task_t *t = f->t;
  f->result = read_result(t, f->nres);
  if (f->result == HG_PLAN_FETCH && t->plan->hook_ref >= 0) {
    /* The plan has an on_uri hook (called during this request's rewrite, maybe a closure
     * over req), which sees the table whole; otherwise the table stops reading the
     * request, which is about to go (task_free). */
    lua_rawgeti(co, LUA_REGISTRYINDEX, t->req_ref);
    hg__lua_request_materialize(co, -1);
    lua_pop(co, 1);
  }
  return 0;
}

static int finish(hg_policy_task_t *t, int nres) {
  lua_State *co = t->co;
  finish_t f = {t, nres, HG_EPOLICY};
  int rc = LUA_ERRMEM;
  if (lua_checkstack(co, 2)) {
    lua_pushcfunction(co, finish_k);
    lua_pushlightuserdata(co, &f);
    lua_rotate(co, -(nres + 2), 2);
    rc = lua_pcall(co, nres + 1, 0, 0);
  }
  if (rc == LUA_OK) return f.result;
  hg_log(HG_LOG_ERROR, "request %s: policy error: reading what on_request returned: %s", t->req->id,
         rc == LUA_ERRMEM ? "not enough memory"
                          : lua_type(co, -1) == LUA_TSTRING ? lua_tostring(co, -1) : "error");
  /* whatever the plan or response holds so far is let go (both are safe to clear twice) */
  hg_policy_plan_done(t->p, t->plan);
  t->res->nheaders = 0;
  t->res->body = NULL;
  lua_settop(co, 0);
  if (rc == LUA_ERRMEM) lua_gc(t->p->L, LUA_GCCOLLECT);
  return rc == LUA_ERRMEM ? HG_ENOMEM : HG_EPOLICY;
}

/* Runs under lua_pcall with (thread, message): the message with the thread's traceback. */
static int traceback(lua_State *L) {
  luaL_traceback(L, lua_touserdata(L, 1), lua_touserdata(L, 2), 0);
  return 1;
}

/* Runs the coroutine with the nargs values on its stack until it ends or yields on a
 * callout. Returns HG_PLAN_PENDING, or the request's outcome (the task is then freed). */
static int step(hg_policy_task_t *t, int nargs) {
  hg_policy_t *p = t->p;
  hg_policy_task_t *outer = p->cur; /* NULL: answers never arrive inside a resume */
  p->cur = t;
  hg__policy_meter_start(p);
  p->meter.used = t->used;
  int nres = 0;
  int rc = lua_resume(t->co, p->L, nargs, &nres);
  p->in_call = 0;
  p->cur = outer;
  t->used = p->meter.used;
  int exceeded = p->meter.exceeded;
  const char *yielded = NULL; /* not pushed: at the memory cap that would be a panic */
  if (rc == LUA_YIELD && !exceeded) {
    if (t->pending) return HG_PLAN_PENDING;
    yielded = "on_request yielded outside a callout (coroutine.yield at its top level?)";
    rc = LUA_ERRRUN;
  }
  int result;
  if (rc == LUA_OK && !exceeded) {
    result = finish(t, nres);
  } else {
    if (t->pending) { /* a yield over budget: the call is not wanted any more */
      p->port->cancel(p->port->ud, &t->call);
      t->pending = 0;
    }
    /* only a string is read as it is: converting a number would allocate */
    const char *msg = yielded ? yielded
                      : rc != LUA_OK && rc != LUA_YIELD && lua_type(t->co, -1) == LUA_TSTRING
                          ? lua_tostring(t->co, -1) : NULL;
    if (exceeded && rc == LUA_ERRMEM) msg = "instruction budget exceeded (allocations count too)";
    int top = lua_gettop(p->L);
    if (msg && rc != LUA_ERRMEM && lua_checkstack(p->L, 3)) {
      lua_pushcfunction(p->L, traceback);
      lua_pushlightuserdata(p->L, t->co);
      lua_pushlightuserdata(p->L, (void *)msg);
      if (lua_pcall(p->L, 2, 1, 0) == LUA_OK) msg = lua_tostring(p->L, -1); /* else: without one */
    }
    hg_log(HG_LOG_ERROR, "request %s: policy error: %s", t->req->id,
           msg ? msg : (exceeded ? "instruction budget exceeded (error was caught)" : "non-string error"));
    lua_settop(p->L, top);
    if (rc == LUA_ERRMEM) lua_gc(p->L, LUA_GCCOLLECT);
    result = exceeded ? HG_EBUDGET : rc == LUA_ERRMEM ? HG_ENOMEM : HG_EPOLICY;
  }
  task_free(t);
  return result;
}

typedef struct setup_s {
  hg_policy_t *p;
  hg_request_t *req;
  lua_State *co;
  int co_ref, req_ref;
} setup_t;

/* Readies a thread (an idle one, or a new one) with on_request and the request table,
 * both anchored in the registry. Runs protected: everything here may allocate. */
static int setup_thread(lua_State *L) {
  setup_t *s = lua_touserdata(L, 1);
  hg_policy_t *p = s->p;
  if (p->nidle > 0) {
    s->co_ref = p->idle[--p->nidle];
    lua_rawgeti(L, LUA_REGISTRYINDEX, s->co_ref);
    s->co = lua_tothread(L, -1);
    lua_pop(L, 1);
  } else {
    s->co = lua_newthread(L);
    s->co_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  }
  if (!lua_checkstack(s->co, 4)) luaL_error(L, "cannot grow a thread's stack");
  hg__lua_push_request(L, s->req);
  lua_pushvalue(L, -1);
  s->req_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_rawgeti(s->co, LUA_REGISTRYINDEX, p->on_request);
  lua_xmove(L, s->co, 1);
  return 0;
}

int hg_policy_on_request(hg_policy_t *p, hg_request_t *req, hg_response_t *res,
                         hg_plan_t *plan, hg_policy_done_cb done, void *ud,
                         hg_policy_task_t **task) {
  lua_State *L = p->L;
  *task = NULL;
  if (p->reuse_plans && hg__reuse_get(p, req, plan)) return HG_PLAN_FETCH; /* reuse.c */
  hg_policy_task_t *t = calloc(1, sizeof(*t));
  if (t == NULL) return HG_ENOMEM;
  lua_settop(L, 0);
  if (!lua_checkstack(L, 4)) {
    free(t);
    return HG_ENOMEM;
  }
  /* Security: the state's memory cap covers the thread and the request table; building
   * them may raise, so it runs protected. */
  setup_t su = {p, req, NULL, LUA_NOREF, LUA_NOREF};
  lua_pushcfunction(L, setup_thread);
  lua_pushlightuserdata(L, &su);
  if (lua_pcall(L, 1, 0, 0) != LUA_OK) {
    hg_log(HG_LOG_ERROR, "request %s: policy error: %s", req->id, lua_tostring(L, -1));
    lua_settop(L, 0);
    luaL_unref(L, LUA_REGISTRYINDEX, su.co_ref);
    luaL_unref(L, LUA_REGISTRYINDEX, su.req_ref);
    free(t);
    return HG_ENOMEM;
  }
  t->req_ref = su.req_ref;
  t->co_ref = su.co_ref;
  t->co = su.co;
  t->p = p;
  hg_policy_retain(p);
  t->req = req;
  t->res = res;
  t->plan = plan;
  t->done = done;
  t->ud = ud;
  t->call.task = t;
  int rc = step(t, 1);
  if (rc == HG_PLAN_PENDING) *task = t;
  return rc;
}

void hg_policy_task_cancel(hg_policy_task_t *t) {
  if (t == NULL) return;
  if (t->pending) t->p->port->cancel(t->p->port->ud, &t->call);
  t->pending = 0;
  task_free(t);
}

/* ---- for the bindings (callout.c) ---- */

hg_callout_t *hg__policy_callout_begin(lua_State *L, const char *what, uint64_t *timeout_ms,
                                       const hg_callout_port_t **port) {
  hg_policy_t *p = hg__policy_self(L);
  hg_policy_task_t *t = p->cur;
  /* Misuse raises: only on_request's own coroutine may wait, and only where Lua can
   * yield (not inside table.sort's comparator, gsub's callback, a metamethod …). */
  if (t == NULL) {
    luaL_error(L, "%s: callouts may only be made from on_request (this hook or the policy's "
               "loading runs synchronously and cannot wait)", what);
    return NULL; /* not reached: luaL_error does not return */
  }
  if (L != t->co)
    luaL_error(L, "%s: callouts may not be made from a coroutine the policy created", what);
  if (!lua_isyieldable(L))
    luaL_error(L, "%s: cannot wait here (inside a C function such as table.sort, "
               "string.gsub or a metamethod)", what);
  if (p->port == NULL || t->done == NULL) { /* no port, or a caller that cannot wait */
    lua_pushliteral(L, "callouts unavailable");
    return NULL;
  }
  if (t->calls >= p->max_calls) {
    lua_pushfstring(L, "too many callouts for one request (limit %d)", (int)p->max_calls);
    return NULL;
  }
  uint64_t spent_ms = t->waited_ns / 1000000u;
  if (spent_ms >= p->max_wait_ms) {
    lua_pushfstring(L, "callout wait limit for one request exhausted (%d ms)", (int)p->max_wait_ms);
    return NULL;
  }
  if (*timeout_ms > p->max_wait_ms - spent_ms) *timeout_ms = p->max_wait_ms - spent_ms;
  *port = p->port;
  t->call.handle = NULL;
  t->call.start_ns = now_ns();
  return &t->call;
}

int hg__policy_callout_yield(lua_State *L, hg_callout_t *call) {
  hg_policy_task_t *t = call->task;
  t->calls++;
  t->pending = 1;
  return lua_yield(L, 0); /* the answer's values become this function's results */
}

lua_State *hg__policy_callout_thread(hg_callout_t *call) {
  return ((hg_policy_task_t *)call->task)->co;
}

lua_State *hg__policy_callout_main(hg_callout_t *call) {
  return ((hg_policy_task_t *)call->task)->p->L;
}

void hg__policy_callout_resume(hg_callout_t *call, int nres) {
  hg_policy_task_t *t = call->task;
  t->pending = 0;
  t->waited_ns += now_ns() - call->start_ns;
  hg_policy_done_cb done = t->done;
  void *ud = t->ud;
  int rc = step(t, nres);
  if (rc != HG_PLAN_PENDING) done(ud, rc); /* t is freed: the outcome goes to its owner */
}
