/* worker.h — a worker thread: its own libuv loop, HTTP server and Lua policy state.
 *
 * The main thread creates workers, hands them listening sockets and policy sources,
 * and tells them to reload or stop; a worker never touches another worker's state.
 */
#ifndef HG_GATEWAY_WORKER_H
#define HG_GATEWAY_WORKER_H

#include <stddef.h>

#include "store/cache.h"
#include "gateway/config.h"
#include "gateway/metrics.h"
#include "lua/policy.h"

typedef struct hg_worker_s hg_worker_t;

/* What all workers share; owned by the main thread, outlives the workers. */
typedef struct hg_worker_shared_s {
  hg_cache_t *cache;       /* or NULL */
  hg_metrics_t *metrics;   /* one per worker, indexed by worker id - 1 */
  size_t nworkers;
} hg_worker_shared_t;

/* Returns worker `id` (1-based, not yet running) that will serve `fds` (its listening
 * sockets; it takes ownership) and, if nadmin > 0, `admin_fds` with only the built-in
 * endpoints. `cfg` and `shared` must outlive the worker. NULL on OOM. Main thread. */
hg_worker_t *hg_worker_new(int id, const hg_config_t *cfg, const hg_worker_shared_t *shared,
                           const int *fds, size_t nfds, const int *admin_fds, size_t nadmin);

/* Starts the thread, which compiles `src` and starts accepting. Blocks until the worker
 * is serving. Returns 0, or HG_EPOLICY / a UV_E* code when it could not start (the
 * thread has then exited; call hg_worker_free). Main thread. */
int hg_worker_start(hg_worker_t *w, hg_policy_src_t *src);

/* Hands the worker a new policy source to compile and switch to (the worker retains
 * it). Returns at once; the switch happens on the worker's thread between requests.
 * Any thread. */
void hg_worker_reload(hg_worker_t *w, hg_policy_src_t *src);

/* Asks the worker to reload its TLS listeners' certificates from their files (a failure
 * is logged and the worker keeps the previous ones). Returns at once. Any thread. */
void hg_worker_reload_tls(hg_worker_t *w);

/* Asks the worker to drain and exit (graceful: in-flight requests complete within the
 * drain timeout). Returns at once. Any thread. */
void hg_worker_stop(hg_worker_t *w);

/* Ends the drain now: connections still open are closed as at the drain timeout (a
 * second SIGTERM). Starts the drain first if need be. Returns at once. Any thread. */
void hg_worker_stop_now(hg_worker_t *w);

/* 1 once the worker's thread has finished (hg_worker_join_free will not wait), else 0.
 * Any thread. */
int hg_worker_exited(hg_worker_t *w);

/* Waits for the thread to exit, then frees the worker. Main thread. */
void hg_worker_join_free(hg_worker_t *w);

#endif
