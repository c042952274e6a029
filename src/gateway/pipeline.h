/* pipeline.h — executes a policy's fetch plan for one request: origin → (playlist?
 * rewrite : relay) → response. Upstream failures become 502/504 here and nowhere else.
 */
#ifndef HG_GATEWAY_PIPELINE_H
#define HG_GATEWAY_PIPELINE_H

#include <uv.h>

#include "lua/plan.h"
#include "http/server.h"
#include "lua/policy.h"
#include "upstream/client.h"

#include "store/cache.h"

/* Per-worker resources the pipeline uses. Owned by the worker; loop thread only. */
typedef struct hg_pipeline_ctx_s {
  uv_loop_t *loop;
  hg_upstream_t *upstream;   /* upstream client of this worker */
  hg_hls_rewriter_t *rewriter;
  hg_cache_t *cache;         /* shared by all workers, or NULL */
  size_t max_playlist;       /* bytes; a bigger playlist is a 502 */
  /* cache waiters woken by other threads, handed back to this loop */
  uv_async_t wake;
  uv_mutex_t wake_lock;
  struct hg_exchange_s *woken;
} hg_pipeline_ctx_t;

/* Initializes `ctx` on `loop` (creates the upstream client and the rewriter; `cache` is
 * shared, not owned). Returns 0 or an error with a message in err. Loop thread. */
int hg_pipeline_ctx_init(hg_pipeline_ctx_t *ctx, uv_loop_t *loop, hg_cache_t *cache,
                         const char *ca_file, size_t max_playlist, char *err, size_t errlen);

/* Closes what init created; the loop must run once more for close callbacks. Call once
 * no request is in flight. Loop thread. */
void hg_pipeline_ctx_close(hg_pipeline_ctx_t *ctx);

/* Runs `plan` for `req` and answers `txn` (now or later). Takes over the plan (copied)
 * and a reference to `policy` (retained until the response ends, so a reload never
 * changes a request mid-flight). Loop thread. */
void hg_pipeline_run(hg_pipeline_ctx_t *ctx, hg_http_txn_t *txn, hg_request_t *req,
                     hg_policy_t *policy, const hg_plan_t *plan);

#endif
