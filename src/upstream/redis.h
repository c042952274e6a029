/* redis.h — a small non-blocking Redis/Valkey client on a libuv loop: a pool of a few
 * connections per worker, commands pipelined on them (replies come back in order),
 * AUTH and SELECT on connect, reconnects with backoff, a wall-clock timeout per call.
 * hiredis (Debian's libhiredis) encodes commands and parses replies; the sockets are
 * ours. TLS (rediss://) is not supported: hiredis 0.14 has none (docs/callouts.md).
 *
 * One hg_redis_t per worker loop; everything here runs on that loop's thread, except
 * hg_redis_parse_url (pure, any thread).
 */
#ifndef HG_UPSTREAM_REDIS_H
#define HG_UPSTREAM_REDIS_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#define HG_REDIS_MAX_POOL 16

typedef struct hg_redis_config_s {
  char host[256];
  int port;               /* default 6379 */
  char user[128];         /* AUTH user (Redis 6 ACLs), or "" */
  char password[256];     /* AUTH password, or "" */
  int db;                 /* SELECT db when not 0 */
  size_t pool;            /* connections (default 2) */
  uint64_t timeout_ms;    /* per call, unless the caller gives less (default 1000) */
  uint64_t connect_timeout_ms; /* default 1000 */
} hg_redis_config_t;

/* Parses redis://[[user]:password@]host[:port][/db] (host may be [v6]) into cfg, keeping
 * cfg's other fields. Returns 0, or HG_EINVAL with a message in err (rediss:// is refused:
 * no TLS). Pure; any thread. */
int hg_redis_parse_url(const char *url, hg_redis_config_t *cfg, char *err, size_t errlen);

typedef struct hg_redis_s hg_redis_t;
typedef struct hg_redis_call_s hg_redis_call_t;

/* A call's answer: `replies[0..n)` (hiredis redisReply *, freed after the callback
 * returns), or replies NULL with err < 0 (HG_ETIMEOUT, a UV_E* connection error,
 * HG_EUPSTREAM: a protocol error or a refused AUTH/SELECT) and a message. */
typedef void (*hg_redis_cb)(void *ud, void **replies, size_t n, int err, const char *msg);

/* Returns a client for `loop` (no connection is made until the first call), or NULL on
 * OOM. cfg is copied. hg_redis_close it before closing the loop. Loop thread. */
hg_redis_t *hg_redis_new(uv_loop_t *loop, const hg_redis_config_t *cfg);

/* Every call not yet answered is answered with UV_ECANCELED; connections close (the
 * loop must run once more). Loop thread. */
void hg_redis_close(hg_redis_t *r);

/* Sends `ncmds` commands together (command i: argc[i] strings from argv/lens, in order)
 * and calls cb once with their replies, or with an error — never from inside this call.
 * `timeout_ms` 0 means the configured timeout; more than it is lowered to it. Returns the
 * call, or NULL (OOM) with nothing started. Loop thread. */
hg_redis_call_t *hg_redis_send(hg_redis_t *r, size_t ncmds, const int *argc,
                               const char *const *argv, const size_t *lens, uint64_t timeout_ms,
                               hg_redis_cb cb, void *ud);

/* Abandons a call: its callback never runs (its replies are read and dropped). */
void hg_redis_cancel(hg_redis_call_t *c);

/* Connections open now, and connection/protocol errors so far. */
size_t hg_redis_connections(const hg_redis_t *r);
uint64_t hg_redis_errors(const hg_redis_t *r);

#endif
