/* policy_internal.h — what the files of the policy host share (not an API): policy.c
 * (states, hooks, budgets, reload), message.c (the request and response tables), plan.c
 * (reading plans). The caller holds the policy's Lua state; loop thread of its worker.
 */
#ifndef HG_LUA_POLICY_INTERNAL_H
#define HG_LUA_POLICY_INTERNAL_H

#include <lua.h>

#include "base/buf.h"
#include "base/lru.h"
#include "base/slab.h"
#include "http/message.h"
#include "lua/plan.h"
#include "lua/policy.h"

#include "lua/lapi.h"

#define HG_POLICY_IDLE_THREADS 16

/* One compiled policy (policy.h). policy.c builds it; task.c runs on_request in
 * coroutines on it. */
#define HG_REUSE_TOKEN_PARAMS 4 /* distinct reuse.token parameters a policy's plans may use */

struct hg_policy_s {
  int refs;
  lua_State *L;
  hg_policy_src_t *src;
  int on_request; /* registry ref */
  size_t mem, mem_limit;
  hg_lua_meter_t meter; /* the budget of the current hook call (lapi.h) */
  int in_call;          /* allocations are charged to the meter */
  hg_slab_t slab;       /* small blocks: what Lua allocates most (base/slab.h) */
  const hg_callout_port_t *port; /* the worker's, or NULL */
  struct hg_policy_task_s *cur;  /* the request whose coroutine runs now, or NULL */
  unsigned max_calls;
  uint64_t max_wait_ms;
  int idle[HG_POLICY_IDLE_THREADS]; /* registry refs of finished threads, for reuse */
  int nidle;
  int reuse_plans;      /* the policy table says `reuse = true` (reuse.c) */
  hg_lru_t reuse;       /* requests answered by a reusable frozen plan */
  uint64_t *reuse_seen; /* hashes of requests seen lately (admission), or NULL */
  char *token_params[HG_REUSE_TOKEN_PARAMS]; /* query parameters of kept token rules */
  size_t ntoken_params;
};

/* t[k] without metamethods, pushed; returns its type. What on_request returned is read
 * with it (plan.c, message.c, task.c): outside any protected call and any budget, a
 * policy's __index could otherwise raise (a Lua panic: the process aborts) or loop. */
static inline int hg__lua_rawfield(lua_State *L, int t, const char *k) {
  t = lua_absindex(L, t);
  lua_pushstring(L, k);
  return lua_rawget(L, t);
}

static inline hg_policy_t *hg__policy_self(lua_State *L) { return *(hg_policy_t **)lua_getextraspace(L); }

/* policy.c */
void hg__policy_meter_start(hg_policy_t *p);
int hg__policy_msgh(lua_State *L); /* appends a traceback to string errors */
int hg__policy_call_hook(hg_policy_t *p, const hg_request_t *req, int nargs, int base);

/* reuse.c: plans on_request gave, for the same requests again. get: 1 with *plan filled
 * (a reference held, as for a returned frozen plan) or 0; put: remembers fz for req when
 * its rule allows; clear: forgets all (before the state closes). Owner thread. */
int hg__reuse_get(hg_policy_t *p, hg_request_t *req, hg_plan_t *plan);
/* admit: 1 when req was seen before (keep its plan); param: a token rule's parameter, or NULL */
int hg__reuse_admit(hg_policy_t *p, const hg_request_t *req, const char *param);
void hg__reuse_put(hg_policy_t *p, const hg_request_t *req, hg_plan_frozen_t *fz);
void hg__reuse_clear(hg_policy_t *p);

/* callout.c: sets hg.http, hg.redis and hg.null in the module table at the top. */
void hg__lua_open_callouts(lua_State *L);

/* task.c, for the bindings: the call to start for the running request. Raises (misuse)
 * unless L is the coroutine of an on_request that may yield here. Returns the call, or
 * NULL with an error message pushed (a runtime failure: calls or wait exhausted, no
 * port); *timeout_ms is lowered to the wait left. */
hg_callout_t *hg__policy_callout_begin(lua_State *L, const char *what, uint64_t *timeout_ms,
                                       const hg_callout_port_t **port);
/* Marks the call started and yields (`return hg__policy_callout_yield(L, call);`). */
int hg__policy_callout_yield(lua_State *L, hg_callout_t *call);
/* The suspended coroutine of a call (push its results there), then resume it with the
 * `nres` values pushed. */
lua_State *hg__policy_callout_thread(hg_callout_t *call);
lua_State *hg__policy_callout_main(hg_callout_t *call); /* the state's main thread */
void hg__policy_callout_resume(hg_callout_t *call, int nres);

#define HG_PLAN_MAX_REDIRECTS 5 /* origin.max_redirects when absent (docs/policy-api.md) */
#define HG_POLICY_MAX_HEADER_BYTES 16384 /* a policy response's headers, names and values */

/* Pushes the lazy `req` table of `req` (message.c): it reads `req` until
 * hg__lua_request_end(L, t), which the host calls once Lua is done with the request;
 * hg__lua_request_materialize(L, t) sets every field at once (a table that outlives the
 * request, e.g. the busted host's). */
void hg__lua_push_request(lua_State *L, const hg_request_t *req);
/* Pushes { lower-case name = value } of hs[0..n), repeated names joined with ", " (the
 * `req.headers` table, also a callout's answer headers). */
void hg__lua_push_headers(lua_State *L, const hg_header_t *hs, size_t n);
void hg__lua_request_materialize(lua_State *L, int t);
void hg__lua_request_end(lua_State *L, int t);
int hg__lua_to_response(lua_State *L, hg_request_t *req, hg_response_t *res);
int hg__lua_valid_header(const char *name, size_t nlen, const char *value, size_t vlen);
/* Converts the plan table at index t into `plan`, strings copied into `arena`. Returns 0
 * or -1 with a message pushed. */
int hg__lua_to_plan(lua_State *L, int t, hg_arena_t *arena, hg_plan_t *plan);
/* The frozen plan (hg.plan) at idx, or NULL when the value is something else. A request
 * that executes it holds a reference (retain/release: api_plan.c). */
hg_plan_frozen_t *hg__lua_test_frozen(lua_State *L, int idx);
void hg__lua_frozen_retain(hg_plan_frozen_t *fz);
/* For a plan table at idx with a `reuse` rule: freezes it (protected) and puts the frozen
 * plan in its place. Returns it, or NULL: no rule (nothing changed), an invalid plan or
 * rule (the error message pushed on top), or no memory for the copy (nil pushed, the
 * table left at idx). */
hg_plan_frozen_t *hg__lua_freeze_reusable(lua_State *L, int idx);
void hg__lua_frozen_release(hg_plan_frozen_t *fz);
int hg__lua_parse_action(lua_State *L, int idx);
/* Reads what on_uri returned (the value at the top of the stack, left there):
 * HG_ACT_UNSET for nil, an action, HG_ACT_HOOK after appending the URL it returned to
 * `replacement`, HG_ENOMEM, or HG_EPOLICY (logged with the request id). */
int hg__lua_uri_result(lua_State *L, hg_buf_t *replacement, const char *req_id);

#endif
