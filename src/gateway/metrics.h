/* metrics.h — Prometheus metrics (SPEC §10): requests by route and status, request and
 * upstream latency histograms, connections, cache counters, policy reloads and version.
 *
 * Each worker owns one hg_metrics_t and is its only writer; counters are updated with
 * relaxed atomics so /metrics, served by any worker, can sum them without locks.
 */
#ifndef HG_GATEWAY_METRICS_H
#define HG_GATEWAY_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "base/buf.h"
#include "store/cache.h"

#define HG_METRICS_ROUTES 16 /* distinct route labels; later ones count as "other" */
#define HG_METRICS_STATUSES 24
#define HG_METRICS_BUCKETS 14
#define HG_METRICS_OUTCOMES 4
enum { HG_OUTCOME_OK, HG_OUTCOME_ERROR, HG_OUTCOME_TIMEOUT, HG_OUTCOME_CANCELLED };

typedef struct hg_histogram_s {
  uint64_t buckets[HG_METRICS_BUCKETS]; /* cumulative at export, per-bucket here */
  uint64_t count;
  uint64_t sum_us;
} hg_histogram_t;

typedef struct hg_metrics_s {
  uint64_t requests[HG_METRICS_ROUTES][HG_METRICS_STATUSES];
  uint64_t bytes_out;
  hg_histogram_t latency;
  hg_histogram_t upstream;
  int64_t connections; /* open client connections of this worker */
  /* policy callouts (docs/callouts.md): target (http, redis) × outcome */
  uint64_t callouts[2][HG_METRICS_OUTCOMES];
  hg_histogram_t callout_http, callout_redis;
  int64_t redis_conns;   /* open Redis connections of this worker (a gauge) */
  uint64_t redis_errors; /* Redis connection and protocol errors of this worker */
} hg_metrics_t;

/* Records one finished callout: kind HG_CALLOUT_HTTP / HG_CALLOUT_REDIS (lua/callout.h),
 * outcome HG_OUTCOME_*, its wall-clock duration. Owner thread of `m`. */
void hg_metrics_callout(hg_metrics_t *m, int kind, int outcome, uint64_t us);
/* Publishes the worker's Redis pool state. Owner thread of `m`. */
void hg_metrics_redis(hg_metrics_t *m, size_t conns, uint64_t errors);

/* Process-wide state set by the main thread. */
void hg_metrics_start(void);                    /* records the start time; main thread, once */
void hg_metrics_reload(int ok);                 /* counts a reload attempt; any thread */
void hg_metrics_set_version(const char *version); /* current policy version; any thread */

/* Maps a route name (set by the policy, or a built-in endpoint's) to a label index. At
 * most HG_METRICS_ROUTES distinct names per process; later ones, NULL and names with
 * characters outside [A-Za-z0-9_.-] count as "other". Any thread. */
int hg_metrics_route(const char *name);

/* Records one finished request. Owner thread of `m`. */
void hg_metrics_request(hg_metrics_t *m, int route, int status, size_t bytes,
                        uint64_t duration_us, uint64_t upstream_us);

/* Connection gauge: delta +1/-1. Owner thread of `m`. */
void hg_metrics_connections(hg_metrics_t *m, int delta);

/* Appends the Prometheus text exposition of the sum of `workers` plus the cache and
 * process-wide values. Returns 0 or HG_ENOMEM. Any thread. */
int hg_metrics_render(hg_buf_t *out, hg_metrics_t *const *workers, size_t n, hg_cache_t *cache);

#endif
