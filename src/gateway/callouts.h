/* callouts.h — the gateway's side of the callout port (lua/callout.h): hg.http.request
 * through the worker's upstream client, hg.redis through a per-worker Redis pool
 * (upstream/redis.h), each counted in the metrics. docs/callouts.md.
 */
#ifndef HG_GATEWAY_CALLOUTS_H
#define HG_GATEWAY_CALLOUTS_H

#include <uv.h>

#include "gateway/metrics.h"
#include "lua/callout.h"
#include "upstream/client.h"
#include "upstream/redis.h"

typedef struct hg_callouts_s {
  uv_loop_t *loop;
  hg_upstream_t *upstream; /* the worker's (not owned) */
  hg_redis_t *redis;       /* owned; NULL without HLSGATE_REDIS_URL */
  hg_metrics_t *metrics;   /* the worker's */
  hg_callout_port_t port;  /* what policies get (hg_policy_set_port) */
} hg_callouts_t;

/* Reads the Redis settings from the environment (HLSGATE_REDIS_URL, HLSGATE_REDIS_POOL,
 * HLSGATE_REDIS_TIMEOUT_MS) into cfg. Returns 1 when Redis is configured, 0 when not, or
 * HG_EINVAL with a message in err. Any thread. */
int hg_callouts_redis_config(hg_redis_config_t *cfg, char *err, size_t errlen);

/* Sets up the port on `loop`. Returns 0, or an error with a message in err (a bad
 * HLSGATE_REDIS_URL). Loop thread. */
int hg_callouts_init(hg_callouts_t *c, uv_loop_t *loop, hg_upstream_t *upstream,
                     hg_metrics_t *metrics, char *err, size_t errlen);

/* Closes the Redis pool (pending calls end with an error); the loop must run once more.
 * Loop thread. */
void hg_callouts_close(hg_callouts_t *c);

#endif
