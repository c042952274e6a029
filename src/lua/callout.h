/* callout.h — the callout port: how a policy's non-blocking calls (hg.http.request,
 * hg.redis) reach the network without the lua layer knowing the gateway, the upstream
 * client or Redis (docs/callouts.md, docs/architecture.md).
 *
 * The lua layer defines this small interface; the gateway fills one hg_callout_port_t per
 * worker with functions that start an HTTP fetch or a Redis command on the worker's loop
 * and hands it to every policy it compiles (hg_policy_set_port). A binding starts a call
 * through the port and yields the request's coroutine; the port answers later, exactly
 * once, with hg_callout_http_done / hg_callout_redis_done, which resume the coroutine.
 * Everything here runs on the worker's loop thread.
 */
#ifndef HG_LUA_CALLOUT_H
#define HG_LUA_CALLOUT_H

#include <stddef.h>
#include <stdint.h>

#include "base/header.h"

enum { HG_CALLOUT_HTTP = 0, HG_CALLOUT_REDIS = 1 };

/* One pending call. Owned by the lua layer (it lives in the suspended request); the port
 * keeps `handle` for itself (to cancel) and must not touch the call after answering it
 * or after `cancel` returns. */
typedef struct hg_callout_s {
  void *handle;       /* the port's: what it needs to cancel */
  int kind;           /* HG_CALLOUT_* */
  uint64_t start_ns;  /* uv_hrtime-compatible clock at the start (set by the lua layer) */
  void *task;         /* the lua layer's: the suspended request */
  int multi;          /* the lua layer's: a pipeline (a table of replies) */
} hg_callout_t;

/* An HTTP callout's request (strings valid during the start call only: copy them). */
typedef struct hg_callout_http_s {
  const char *method;  /* "GET" or "HEAD" (the upstream client's methods) */
  const char *url;     /* absolute http(s) URL */
  const hg_header_t *headers;
  size_t nheaders;
  uint64_t timeout_ms; /* the whole exchange, wall clock */
  size_t max_body;     /* a longer body fails the call */
  int allow_private;   /* the policy allows loopback and private addresses (never
                        * link-local: cloud metadata stays out of reach) */
} hg_callout_http_t;

/* A Redis reply as plain data (what the port's client parsed), valid during the done
 * call only. */
enum { HG_REPLY_NIL, HG_REPLY_STRING, HG_REPLY_STATUS, HG_REPLY_ERROR, HG_REPLY_INTEGER,
       HG_REPLY_ARRAY };
typedef struct hg_callout_reply_s {
  int type;                                 /* HG_REPLY_* */
  long long integer;                        /* INTEGER */
  const char *str;                          /* STRING, STATUS, ERROR */
  size_t len;
  const struct hg_callout_reply_s *elements; /* ARRAY */
  size_t nelements;
} hg_callout_reply_t;

typedef struct hg_callout_port_s {
  void *ud;
  /* Start an HTTP call. Return 0 and answer later with hg_callout_http_done (never from
   * inside this call), or a negative code with nothing started (no answer comes). */
  int (*http)(void *ud, const hg_callout_http_t *req, hg_callout_t *call);
  /* Start `ncmds` Redis commands sent together (a pipeline); command i has argc[i]
   * arguments, its strings are argv[..] / lens[..] in order. Return 0 and answer later
   * with hg_callout_redis_done, or a negative code (HG_EINVAL: Redis not configured)
   * with nothing started. */
  int (*redis)(void *ud, size_t ncmds, const int *argc, const char *const *argv,
               const size_t *lens, uint64_t timeout_ms, hg_callout_t *call);
  /* Abandon a started call: no answer comes after this returns. */
  void (*cancel)(void *ud, hg_callout_t *call);
} hg_callout_port_t;

/* The port answers an HTTP call: err 0 with the response (body[0..len)), or a negative
 * code with `msg` (no secret in it). Resumes the request's Lua code. */
void hg_callout_http_done(hg_callout_t *call, int err, const char *msg, int status,
                          const hg_header_t *headers, size_t nheaders, const char *body,
                          size_t len);

/* The port answers a Redis call: `replies[0..n)` (one per command), or NULL with `err`
 * (connection failure, timeout). Resumes the request's Lua code. */
void hg_callout_redis_done(hg_callout_t *call, const hg_callout_reply_t *replies, size_t n,
                           const char *err);

#endif
