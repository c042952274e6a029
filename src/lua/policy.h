/* policy.h — the Lua policy host: loads a policy script into a sandboxed-by-budget Lua
 * state and runs its hooks for requests (SPEC §4).
 *
 * A policy source (the script's bytes, read once per reload) is shared by all workers;
 * each worker compiles it into its own hg_policy_t (one lua_State). A request retains
 * the policy it started with, so a reload never changes a request mid-flight.
 */
#ifndef HG_LUA_POLICY_H
#define HG_LUA_POLICY_H

#include <stddef.h>
#include <stdint.h>

#include "lua/callout.h"
#include "lua/plan.h"
#include "http/message.h"

/* ---- sources: immutable, reference-counted, any thread ---- */

typedef struct hg_policy_src_s hg_policy_src_t;

/* Reads the policy file at `path`. Returns a source with one reference, or NULL with a
 * message in err. Any thread. */
hg_policy_src_t *hg_policy_src_read(const char *path, char *err, size_t errlen);

/* Reference counting (atomic): any thread. The last release frees. */
void hg_policy_src_retain(hg_policy_src_t *src);
void hg_policy_src_release(hg_policy_src_t *src);

/* The source's version: the first 12 hex digits of its SHA-256. Lives as long as src. */
const char *hg_policy_src_version(const hg_policy_src_t *src);
const char *hg_policy_src_path(const hg_policy_src_t *src);

/* ---- compiled policies: one Lua state, owned by one thread ---- */

typedef struct hg_policy_limits_s {
  size_t memory;   /* bytes the Lua state may allocate */
  uint64_t budget; /* VM instructions per hook call (and for loading the chunk); for
                    * on_request, all its resumptions together (waiting is free) */
  unsigned max_calls;   /* callouts per request (0: HG_POLICY_MAX_CALLS) */
  uint64_t max_wait_ms; /* total wait on callouts per request (0: HG_POLICY_MAX_WAIT_MS) */
} hg_policy_limits_t;

#define HG_POLICY_MAX_CALLS 16
#define HG_POLICY_MAX_WAIT_MS 10000

typedef struct hg_policy_s hg_policy_t;

/* Compiles and runs `src` in a new Lua state. The chunk must return a table with an
 * `on_request` function (or return that function). Returns a policy with one reference
 * (it retains src), or NULL with "file:line: message" in err. The calling thread owns
 * the result from then on. */
hg_policy_t *hg_policy_new(hg_policy_src_t *src, const hg_policy_limits_t *lim, char *err,
                           size_t errlen);

/* Reference counting (not atomic: owner thread only). The last release closes the state. */
void hg_policy_retain(hg_policy_t *p);
void hg_policy_release(hg_policy_t *p);
const char *hg_policy_version(const hg_policy_t *p);

/* What on_request decided. */
enum {
  HG_PLAN_NONE = 0,    /* the hook returned nil: the core answers 404/405 */
  HG_PLAN_RESPOND = 1, /* `res` holds a complete response */
  HG_PLAN_FETCH = 2,   /* `plan` says where to fetch from and how to rewrite */
  HG_PLAN_PENDING = 3, /* the hook waits on a callout: the answer comes through `done` */
};

/* Gives the policy the worker's callout port (lua/callout.h), which must outlive it;
 * without one, hg.http.request and hg.redis answer nil, "callouts unavailable". Owner
 * thread only. */
void hg_policy_set_port(hg_policy_t *p, const hg_callout_port_t *port);

/* A request whose on_request is suspended on a callout. */
typedef struct hg_policy_task_s hg_policy_task_t;

/* Called once when a suspended on_request ends: `kind` is what hg_policy_on_request
 * would have returned (never HG_PLAN_PENDING), `res`/`plan` are filled as for it. */
typedef void (*hg_policy_done_cb)(void *ud, int kind);

/* Runs the policy's on_request hook for `req` in a coroutine, within the instruction
 * budget. Returns an HG_PLAN_* value, or HG_EPOLICY (Lua error, invalid return value) /
 * HG_EBUDGET / HG_ENOMEM; errors are logged here with the request id and a traceback.
 * Strings in `res` and `plan` are copied into the request's arena. A FETCH plan may hold
 * a Lua reference (its on_uri hook): release it with hg_policy_plan_done.
 * HG_PLAN_PENDING: the hook yielded on a callout; *task is set, and `done(ud, kind)` runs
 * later from the loop, exactly once, unless hg_policy_task_cancel comes first (with
 * `done` NULL, callouts answer nil, "callouts unavailable" and it never pends). `req`,
 * `res` and `plan` must stay valid until then; the task holds a reference to `p`, so a
 * request suspended across a reload finishes on the policy it started with.
 * Owner thread only. */
int hg_policy_on_request(hg_policy_t *p, hg_request_t *req, hg_response_t *res,
                         hg_plan_t *plan, hg_policy_done_cb done, void *ud,
                         hg_policy_task_t **task);

/* Abandons a suspended request (its client went away): cancels its pending callout,
 * drops its coroutine and its reference to the policy; `done` never runs. Owner thread. */
void hg_policy_task_cancel(hg_policy_task_t *t);

/* Runs the plan's on_uri hook for one playlist URI. Returns the action it named
 * (HG_ACT_KEEP … HG_ACT_PRESIGN; HG_ACT_UNSET for nil: use the class rule), or
 * HG_ACT_HOOK when it returned a URL string, which is appended to `replacement`, or a
 * negative code on a Lua error or bad return value (logged). Owner thread only. */
int hg_policy_uri_hook(hg_policy_t *p, const hg_plan_t *plan, const hg_request_t *req,
                       const hg_hls_uri_t *uri, hg_buf_t *replacement);

/* Releases what the plan holds in the Lua state. Owner thread only. */
void hg_policy_plan_done(hg_policy_t *p, hg_plan_t *plan);

/* The Lua release the host runs ("Lua 5.4.4"). Static string. */
const char *hg_policy_runtime(void);

/* Tells policies loaded from now on where the server listens: `hg.listen` (the
 * addresses as configured) and `hg.listening_beyond_loopback` (true when any of them is
 * not a loopback address), so a recipe can warn about what it exposes. The strings must
 * outlive every policy. Main thread, before the workers start. */
void hg_policy_set_listen(const char *const *addrs, size_t n);

#endif
