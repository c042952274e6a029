/* callouts.c — the callout port's implementation (see callouts.h, lua/callout.h).
 *
 * An HTTP callout is an upstream fetch whose body is collected (up to the call's limit)
 * and handed to the policy whole; a Redis callout is a call on the worker's pool. Both
 * answer only from the loop (the upstream client and the Redis client never call back
 * from inside a start), as the port requires.
 */
#include "gateway/callouts.h"

#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/error.h"

static uint64_t since_us(const hg_callout_t *call) { return (uv_hrtime() - call->start_ns) / 1000; }

static int outcome(int err) {
  return err == 0 ? HG_OUTCOME_OK : err == HG_ETIMEOUT ? HG_OUTCOME_TIMEOUT : HG_OUTCOME_ERROR;
}

/* ---- HTTP ---- */

typedef struct http_op_s {
  hg_callouts_t *cs;
  hg_callout_t *call;
  hg_fetch_t *f;
  int status;
  size_t max_body;
  int too_big;
  hg_buf_t body;
  hg_buf_t hdrs; /* the response head's fields: name NUL value NUL … */
  size_t nhdrs;
} http_op_t;

static void http_op_free(http_op_t *op) {
  hg_buf_free(&op->body);
  hg_buf_free(&op->hdrs);
  free(op);
}

static int http_on_head(void *ud, hg_fetch_t *f, const hg_fetch_head_t *head) {
  (void)f;
  http_op_t *op = ud;
  op->status = head->status;
  if (head->content_length > (int64_t)op->max_body) return HG_ETOOBIG;
  for (size_t i = 0; i < head->nheaders && i < 64; i++) {
    const hg_header_t *h = &head->headers[i];
    if (hg_buf_append(&op->hdrs, h->name, h->name_len) || hg_buf_append(&op->hdrs, "", 1) ||
        hg_buf_append(&op->hdrs, h->value, h->value_len) || hg_buf_append(&op->hdrs, "", 1))
      return HG_ENOMEM;
    op->nhdrs++;
  }
  return 0;
}

static void http_on_data(void *ud, hg_fetch_t *f, char *data, size_t len) {
  (void)f;
  http_op_t *op = ud;
  /* Memory: past the limit the rest is read and dropped (the call fails at the end; the
   * call's total timeout bounds how long that takes). */
  if (!op->too_big && op->body.len + len <= op->max_body) {
    if (hg_buf_append(&op->body, data, len) != 0) op->too_big = 1;
  } else {
    op->too_big = 1;
  }
  free(data);
}

static void http_on_done(void *ud, hg_fetch_t *f, int err, const char *msg) {
  (void)f;
  http_op_t *op = ud;
  hg_callout_t *call = op->call;
  if (err == 0 && op->too_big) err = HG_ETOOBIG, msg = "response body too large";
  if (err == HG_ETOOBIG && (msg == NULL || *msg == '\0' || strstr(msg, "large") == NULL))
    msg = "response body too large";
  hg_metrics_callout(op->cs->metrics, HG_CALLOUT_HTTP, outcome(err), since_us(call));
  hg_header_t hs[64];
  size_t n = 0;
  const char *p = op->hdrs.data;
  for (size_t i = 0; i < op->nhdrs; i++) {
    hs[n].name = p;
    hs[n].name_len = strlen(p);
    p += hs[n].name_len + 1;
    hs[n].value = p;
    hs[n].value_len = strlen(p);
    p += hs[n].value_len + 1;
    n++;
  }
  char m[256];
  if (err) snprintf(m, sizeof(m), "%s", msg && *msg ? msg : hg_strerror(err));
  hg_callout_http_done(call, err, err ? m : NULL, op->status, hs, n, op->body.data, op->body.len);
  http_op_free(op);
}

static int port_http(void *ud, const hg_callout_http_t *req, hg_callout_t *call) {
  hg_callouts_t *cs = ud;
  if (cs->upstream == NULL) return HG_EINVAL;
  http_op_t *op = calloc(1, sizeof(*op));
  if (op == NULL) return HG_ENOMEM;
  op->cs = cs;
  op->call = call;
  op->max_body = req->max_body;
  hg_fetch_opts_t o;
  memset(&o, 0, sizeof(o));
  o.method = req->method;
  o.url = req->url;
  o.headers = req->headers;
  o.nheaders = req->nheaders;
  /* Security: public addresses only, unless the policy opted in to loopback and private
   * ranges for an internal service; link-local (cloud metadata) stays out of reach. */
  o.allow = req->allow_private ? HG_ADDR_LOOPBACK | HG_ADDR_PRIVATE : 0;
  o.max_redirects = 0; /* a redirect is an answer (auth_request semantics) */
  o.accept_gzip = HG_FETCH_GZIP_DECODE;
  o.connect_timeout_ms = req->timeout_ms;
  o.read_timeout_ms = req->timeout_ms;
  o.total_timeout_ms = req->timeout_ms;
  hg_fetch_cbs_t cbs = {http_on_head, http_on_data, http_on_done};
  op->f = hg_fetch_start(cs->upstream, &o, &cbs, op);
  if (op->f == NULL) {
    http_op_free(op);
    return HG_EINVAL;
  }
  call->handle = op;
  return 0;
}

/* ---- Redis ---- */

typedef struct redis_op_s {
  hg_callouts_t *cs;
  hg_callout_t *call;
  hg_redis_call_t *rc;
} redis_op_t;

static void conv_free(hg_callout_reply_t *r) {
  if (r->type == HG_REPLY_ARRAY && r->elements) {
    hg_callout_reply_t *e = (hg_callout_reply_t *)r->elements;
    for (size_t i = 0; i < r->nelements; i++) conv_free(&e[i]);
    free(e);
  }
}

/* hiredis's reply tree → the port's plain data (arrays nested deeper than 8 become nil). */
static void conv(const redisReply *in, hg_callout_reply_t *out, int depth) {
  memset(out, 0, sizeof(*out));
  switch (in->type) {
  case REDIS_REPLY_STRING: out->type = HG_REPLY_STRING; break;
  case REDIS_REPLY_STATUS: out->type = HG_REPLY_STATUS; break;
  case REDIS_REPLY_ERROR: out->type = HG_REPLY_ERROR; break;
  case REDIS_REPLY_INTEGER: out->type = HG_REPLY_INTEGER; out->integer = in->integer; return;
  case REDIS_REPLY_ARRAY: {
    hg_callout_reply_t *e = depth < 8 && in->elements ? calloc(in->elements, sizeof(*e)) : NULL;
    if (e == NULL) {
      out->type = in->elements ? HG_REPLY_NIL : HG_REPLY_ARRAY;
      return;
    }
    for (size_t i = 0; i < in->elements; i++) conv(in->element[i], &e[i], depth + 1);
    out->type = HG_REPLY_ARRAY;
    out->elements = e;
    out->nelements = in->elements;
    return;
  }
  default: out->type = HG_REPLY_NIL; return;
  }
  out->str = in->str;
  out->len = in->len;
}

static void redis_answer(void *ud, void **replies, size_t n, int err, const char *msg) {
  redis_op_t *op = ud;
  hg_callouts_t *cs = op->cs;
  hg_callout_t *call = op->call;
  free(op);
  hg_metrics_callout(cs->metrics, HG_CALLOUT_REDIS, outcome(err), since_us(call));
  hg_metrics_redis(cs->metrics, hg_redis_connections(cs->redis), hg_redis_errors(cs->redis));
  if (replies == NULL) {
    char m[200];
    snprintf(m, sizeof(m), "redis: %s", msg && *msg ? msg : hg_strerror(err));
    hg_callout_redis_done(call, NULL, 0, m);
    return;
  }
  hg_callout_reply_t conv_small[8];
  hg_callout_reply_t *rs = n <= 8 ? conv_small : calloc(n, sizeof(*rs));
  if (rs == NULL) {
    hg_callout_redis_done(call, NULL, 0, "redis: out of memory");
    return;
  }
  for (size_t i = 0; i < n; i++) conv(replies[i], &rs[i], 0);
  hg_callout_redis_done(call, rs, n, NULL);
  for (size_t i = 0; i < n; i++) conv_free(&rs[i]);
  if (rs != conv_small) free(rs);
}

static int port_redis(void *ud, size_t ncmds, const int *argc, const char *const *argv,
                      const size_t *lens, uint64_t timeout_ms, hg_callout_t *call) {
  hg_callouts_t *cs = ud;
  if (cs->redis == NULL) return HG_EINVAL;
  redis_op_t *op = calloc(1, sizeof(*op));
  if (op == NULL) return HG_ENOMEM;
  op->cs = cs;
  op->call = call;
  op->rc = hg_redis_send(cs->redis, ncmds, argc, argv, lens, timeout_ms, redis_answer, op);
  if (op->rc == NULL) {
    free(op);
    return HG_ENOMEM;
  }
  call->handle = op;
  return 0;
}

static void port_cancel(void *ud, hg_callout_t *call) {
  hg_callouts_t *cs = ud;
  hg_metrics_callout(cs->metrics, call->kind, HG_OUTCOME_CANCELLED, since_us(call));
  if (call->kind == HG_CALLOUT_HTTP) {
    http_op_t *op = call->handle;
    hg_fetch_abort(op->f);
    http_op_free(op);
  } else {
    redis_op_t *op = call->handle;
    hg_redis_cancel(op->rc);
    free(op);
  }
}

/* ---- setup ---- */

int hg_callouts_redis_config(hg_redis_config_t *cfg, char *err, size_t errlen) {
  memset(cfg, 0, sizeof(*cfg));
  const char *url = getenv("HLSGATE_REDIS_URL");
  if (url == NULL || *url == '\0') return 0;
  if (hg_redis_parse_url(url, cfg, err, errlen) != 0) return HG_EINVAL;
  const char *pool = getenv("HLSGATE_REDIS_POOL");
  const char *tmo = getenv("HLSGATE_REDIS_TIMEOUT_MS");
  char *end;
  if (pool && *pool) {
    long v = strtol(pool, &end, 10);
    if (*end || v < 1 || v > HG_REDIS_MAX_POOL) {
      snprintf(err, errlen, "HLSGATE_REDIS_POOL must be 1..%d", HG_REDIS_MAX_POOL);
      return HG_EINVAL;
    }
    cfg->pool = (size_t)v;
  }
  if (tmo && *tmo) {
    long v = strtol(tmo, &end, 10);
    if (*end || v < 1 || v > 60000) {
      snprintf(err, errlen, "HLSGATE_REDIS_TIMEOUT_MS must be 1..60000");
      return HG_EINVAL;
    }
    cfg->timeout_ms = (uint64_t)v;
    cfg->connect_timeout_ms = (uint64_t)v;
  }
  return 1;
}

int hg_callouts_init(hg_callouts_t *c, uv_loop_t *loop, hg_upstream_t *upstream,
                     hg_metrics_t *metrics, char *err, size_t errlen) {
  memset(c, 0, sizeof(*c));
  c->loop = loop;
  c->upstream = upstream;
  c->metrics = metrics;
  c->port = (hg_callout_port_t){c, port_http, port_redis, port_cancel};
  hg_redis_config_t cfg;
  int rc = hg_callouts_redis_config(&cfg, err, errlen);
  if (rc < 0) return rc;
  if (rc == 1 && (c->redis = hg_redis_new(loop, &cfg)) == NULL) {
    snprintf(err, errlen, "out of memory");
    return HG_ENOMEM;
  }
  return 0;
}

void hg_callouts_close(hg_callouts_t *c) {
  hg_redis_close(c->redis);
  c->redis = NULL;
}
