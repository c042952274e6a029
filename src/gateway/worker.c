/* worker.c — worker threads and the request pipeline (see worker.h).
 *
 * A request walks: HTTP server → built-in endpoints or the policy's on_request → the
 * response. Control messages from the main thread (reload, stop) arrive through one
 * uv_async_t and a mutex-protected mailbox.
 */
#include "gateway/worker.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include "base/error.h"
#include "base/log.h"
#include "gateway/callouts.h"
#include "gateway/pipeline.h"
#include "http/server.h"

struct hg_worker_s {
  int id;
  char name[16];
  const hg_config_t *cfg;
  const hg_worker_shared_t *shared;
  hg_metrics_t *metrics; /* ours, in shared->metrics */
  int fds[HG_MAX_LISTEN];
  size_t nfds;
  int admin_fds[HG_MAX_LISTEN];
  size_t nadmin;
  uv_thread_t thread;
  uv_loop_t loop;
  uv_async_t async;
  uv_timer_t log_timer;
  hg_http_server_t *http;
  hg_http_server_t *admin;
  int servers_open;
  hg_policy_t *policy; /* current; requests retain the one they started with */
  hg_pipeline_ctx_t pipeline;
  int pipeline_ok; /* initialized and not yet closed */
  hg_callouts_t callouts; /* the port policies reach the network through */
  int callouts_ok;
  int draining;
  /* startup handshake */
  uv_sem_t started;
  int start_rc;
  hg_policy_src_t *initial;
  /* mailbox (main → worker) */
  uv_mutex_t lock;
  hg_policy_src_t *pending; /* newest source to switch to */
  int tls_reload;           /* reload the listeners' certificates */
  int stop;                 /* 1: drain (hg_worker_stop), 2: and end it now */
  int exited;               /* the thread is done (atomic) */
  int async_open;           /* w->async may be sent to (under lock) */
};

static const char json_ok[] = "{\"status\":\"ok\"}\n";
static const char json_draining[] = "{\"status\":\"draining\"}\n";

static void respond_static(hg_http_txn_t *txn, int status, const char *body) {
  hg_response_t res;
  memset(&res, 0, sizeof(res));
  res.status = status;
  res.body = body;
  res.body_len = strlen(body);
  hg_response_add_header(&res, "Content-Type", 12, "application/json", 16);
  hg_response_add_header(&res, "Cache-Control", 13, "no-store", 8);
  hg_http_respond(txn, &res);
}

static void respond_error(hg_http_txn_t *txn, hg_request_t *req, int status, const char *msg) {
  hg_response_t res;
  memset(&res, 0, sizeof(res));
  if (hg_response_error(&res, req->arena, status, msg, req->id) != 0) {
    respond_static(txn, 500, "{\"error\":\"out of memory\",\"status\":500}\n");
    return;
  }
  if (status == 405) hg_response_add_header(&res, "Allow", 5, "GET, HEAD, OPTIONS", 18);
  hg_http_respond(txn, &res);
}

/* /metrics: the Prometheus text exposition of every worker's counters. */
static void respond_metrics(hg_worker_t *w, hg_http_txn_t *txn, hg_request_t *req) {
  hg_buf_t b = HG_BUF_INIT;
  hg_metrics_t *all[1024];
  size_t n = w->shared->nworkers < 1024 ? w->shared->nworkers : 1024;
  for (size_t i = 0; i < n; i++) all[i] = &w->shared->metrics[i];
  hg_metrics_render(&b, all, n, w->shared->cache);
  hg_response_t res;
  memset(&res, 0, sizeof(res));
  res.status = 200;
  res.body = hg_arena_strndup(req->arena, b.data ? b.data : "", b.len);
  res.body_len = res.body ? b.len : 0;
  hg_buf_free(&b);
  hg_response_add_header(&res, "Content-Type", 12, "text/plain; version=0.0.4; charset=utf-8", 40);
  hg_response_add_header(&res, "Cache-Control", 13, "no-store", 8);
  hg_http_respond(txn, &res);
}

static void on_request_done(void *ud, const hg_request_t *req, int status, size_t bytes) {
  hg_worker_t *w = ud;
  uint64_t us = (uv_hrtime() - req->start_ns) / 1000;
  hg_metrics_request(w->metrics, hg_metrics_route(req->route ? req->route : "policy"), status, bytes, us,
                     (uint64_t)(req->log_upstream_ms * 1000));
}

static void on_connection(void *ud, int delta) {
  hg_worker_t *w = ud;
  hg_metrics_connections(w->metrics, delta);
}

static int path_is(const hg_request_t *req, const char *path) {
  size_t n = strlen(path);
  return req->path_len == n && memcmp(req->target, path, n) == 0;
}

/* Built-in endpoints, answered without the policy so health checks work even when a
 * policy misbehaves. /metrics is on the main listeners unless an admin listener exists.
 * Returns 1 if it answered. */
static int builtin(hg_worker_t *w, hg_http_txn_t *txn, hg_request_t *req, int admin) {
  int metrics = path_is(req, "/metrics") && (admin || w->cfg->admin_listen == NULL);
  if ((metrics || path_is(req, "/healthz") || path_is(req, "/readyz")) &&
      strcmp(req->method, "GET") != 0 && strcmp(req->method, "HEAD") != 0) {
    req->route = metrics ? "metrics" : req->target[1] == 'h' ? "healthz" : "readyz";
    hg_response_t res;
    memset(&res, 0, sizeof(res));
    if (hg_response_error(&res, req->arena, 405, "method not allowed", req->id) == 0)
      hg_response_add_header(&res, "Allow", 5, "GET, HEAD", 9);
    else
      res.status = 500;
    hg_http_respond(txn, &res);
    return 1;
  }
  if (metrics) {
    req->route = "metrics";
    respond_metrics(w, txn, req);
    return 1;
  }
  if (path_is(req, "/healthz")) {
    req->route = "healthz";
    respond_static(txn, 200, json_ok);
    return 1;
  }
  if (path_is(req, "/readyz")) {
    req->route = "readyz";
    respond_static(txn, w->draining ? 503 : 200, w->draining ? json_draining : json_ok);
    return 1;
  }
  return 0;
}

static void on_admin_request(void *ud, hg_http_txn_t *txn, hg_request_t *req) {
  if (!builtin(ud, txn, req, 1)) respond_error(txn, req, 404, "not found");
}

/* A request on its way through the policy: lives in the request's arena. */
typedef struct policy_req_s {
  hg_worker_t *w;
  hg_http_txn_t *txn;
  hg_request_t *req;
  hg_policy_t *policy; /* retained until the policy step ends */
  hg_policy_task_t *task; /* while on_request waits on a callout */
  hg_response_t res;
  hg_plan_t plan;
} policy_req_t;

/* The policy step ended (now, or after callouts): answer or start the pipeline. */
static void policy_answer(policy_req_t *pr, int kind) {
  hg_worker_t *w = pr->w;
  hg_http_txn_t *txn = pr->txn;
  hg_request_t *req = pr->req;
  hg_response_t *res = &pr->res;
  /* Released last: req->log_policy points into it, and the access log reads it when the
   * response is written (after a reload this may be the last reference). pr lives in
   * the request's arena, gone once the response is sent. */
  hg_policy_t *policy = pr->policy;
  if (kind == HG_PLAN_FETCH) hg_pipeline_run(&w->pipeline, txn, req, policy, &pr->plan);
  switch (kind) {
  case HG_PLAN_FETCH:
    break;
  case HG_PLAN_RESPOND:
    hg_http_respond(txn, res);
    break;
  case HG_PLAN_NONE: {
    /* No route: 404 for reads, an Allow list for OPTIONS, 405 for other methods. */
    const char *m = req->method;
    if (strcmp(m, "GET") == 0 || strcmp(m, "HEAD") == 0) {
      respond_error(txn, req, 404, "not found");
    } else if (strcmp(m, "OPTIONS") == 0) {
      res->status = 204;
      hg_response_add_header(res, "Allow", 5, "GET, HEAD, OPTIONS", 18);
      hg_http_respond(txn, res);
    } else {
      respond_error(txn, req, 405, "method not allowed");
    }
    break;
  }
  case HG_EBUDGET:
    respond_error(txn, req, 500, "policy error: instruction budget exceeded");
    break;
  default:
    respond_error(txn, req, 500, "policy error");
    break;
  }
  hg_policy_release(policy);
}

static void on_policy_done(void *ud, int kind) {
  policy_req_t *pr = ud;
  pr->task = NULL;
  hg_http_txn_on_gone(pr->txn, NULL, NULL);
  policy_answer(pr, kind);
}

/* The client left while on_request waited: drop the coroutine and its pending call. */
static void on_client_gone(void *ud) {
  policy_req_t *pr = ud;
  hg_policy_t *policy = pr->policy;
  hg_policy_task_cancel(pr->task);
  pr->task = NULL;
  respond_error(pr->txn, pr->req, 499, "client closed the request"); /* logged, not sent */
  hg_policy_release(policy);
}

static void on_request(void *ud, hg_http_txn_t *txn, hg_request_t *req) {
  hg_worker_t *w = ud;
  if (builtin(w, txn, req, 0)) return;
  policy_req_t *pr = hg_arena_alloc(req->arena, sizeof(*pr));
  if (pr == NULL) {
    respond_static(txn, 500, "{\"error\":\"out of memory\",\"status\":500}\n");
    return;
  }
  memset(pr, 0, sizeof(*pr));
  pr->w = w;
  pr->txn = txn;
  pr->req = req;
  pr->policy = w->policy;
  hg_policy_retain(pr->policy);
  req->log_policy = hg_policy_version(pr->policy);
  int kind = hg_policy_on_request(pr->policy, req, &pr->res, &pr->plan, on_policy_done, pr, &pr->task);
  if (kind == HG_PLAN_PENDING) {
    hg_http_txn_on_gone(txn, on_client_gone, pr);
    return;
  }
  policy_answer(pr, kind);
}

/* ---- control ---- */

/* Every server drained: close the worker's own handles so its loop ends. */
static void on_server_drained(void *ud) {
  hg_worker_t *w = ud;
  if (--w->servers_open > 0) return;
  uv_mutex_lock(&w->lock);
  w->async_open = 0;
  uv_mutex_unlock(&w->lock);
  uv_close((uv_handle_t *)&w->async, NULL);
  if (w->callouts_ok) hg_callouts_close(&w->callouts);
  w->callouts_ok = 0;
  if (w->pipeline_ok) hg_pipeline_ctx_close(&w->pipeline);
  w->pipeline_ok = 0;
}

static void switch_policy(hg_worker_t *w, hg_policy_src_t *src) {
  char err[512];
  hg_policy_limits_t lim = {w->cfg->lua_memory, w->cfg->lua_budget, 0, 0};
  hg_policy_t *p = hg_policy_new(src, &lim, err, sizeof(err));
  hg_policy_src_release(src);
  if (p == NULL) {
    hg_log(HG_LOG_ERROR, "reload failed, keeping policy %s: %s", hg_policy_version(w->policy), err);
    return;
  }
  hg_policy_set_port(p, w->callouts_ok ? &w->callouts.port : NULL);
  hg_policy_release(w->policy); /* requests suspended on it keep it alive until they end */
  w->policy = p;
  if (w->id == 1) hg_metrics_set_version(hg_policy_version(p));
  hg_log(HG_LOG_DEBUG, "policy %s active", hg_policy_version(p));
}

static void on_async(uv_async_t *a) {
  hg_worker_t *w = a->data;
  uv_mutex_lock(&w->lock);
  hg_policy_src_t *src = w->pending;
  int stop = w->stop, tls = w->tls_reload;
  w->pending = NULL;
  w->tls_reload = 0;
  uv_mutex_unlock(&w->lock);
  if (src) switch_policy(w, src);
  if (tls && w->http && !w->draining) {
    char err[512];
    /* New handshakes get the new certificates; open connections keep theirs. */
    if (hg_http_server_reload_tls(w->http, err, sizeof(err)) != 0)
      hg_log(HG_LOG_ERROR, "TLS reload failed, keeping the current certificates: %s", err);
  }
  if (stop && !w->draining) {
    w->draining = 1;
    w->servers_open = 1 + (w->admin != NULL);
    hg_http_server_drain(w->http, w->cfg->drain_timeout_ms, on_server_drained, w);
    if (w->admin) hg_http_server_drain(w->admin, w->cfg->drain_timeout_ms, on_server_drained, w);
  }
  if (stop == 2) { /* hg_worker_stop_now */
    hg_http_server_drain_now(w->http);
    hg_http_server_drain_now(w->admin);
  }
}

static int listen_all(hg_worker_t *w, hg_http_server_t *srv, int *fds, size_t n, int admin) {
  int rc = 0;
  for (size_t i = 0; i < n; i++) {
    const hg_config_tls_t *t = admin ? NULL : &w->cfg->tls[i];
    hg_http_tls_t *tls = NULL;
    if (t && t->n > 0) {
      char err[512];
      tls = hg_http_tls_new(t->cert, t->key, t->n, err, sizeof(err));
      if (tls == NULL) {
        hg_log(HG_LOG_ERROR, "%s", err);
        close(fds[i]);
        fds[i] = -1;
        if (!rc) rc = HG_EINVAL;
        continue;
      }
    }
    int r = tls ? hg_http_server_listen_tls(srv, fds[i], tls) : hg_http_server_listen_fd(srv, fds[i]);
    fds[i] = -1; /* owned by the server now, even on failure */
    if (r && !rc) rc = r;
  }
  return rc;
}

static void on_log_timer(uv_timer_t *t) {
  (void)t;
  hg_log_access_flush();
}

static void worker_main(void *arg) {
  hg_worker_t *w = arg;
  hg_log_set_thread(w->name);
  char err[512];
  hg_policy_limits_t lim = {w->cfg->lua_memory, w->cfg->lua_budget, 0, 0};
  w->policy = hg_policy_new(w->initial, &lim, err, sizeof(err));
  if (w->policy == NULL) {
    hg_log(HG_LOG_ERROR, "%s", err);
    w->start_rc = HG_EPOLICY;
    __atomic_store_n(&w->exited, 1, __ATOMIC_RELEASE);
    uv_sem_post(&w->started);
    return;
  }
  uv_loop_init(&w->loop);
  uv_async_init(&w->loop, &w->async, on_async);
  w->async.data = w;
  uv_mutex_lock(&w->lock);
  w->async_open = 1;
  uv_mutex_unlock(&w->lock);
  hg_http_limits_t limits = {
      .max_headers = 16 * 1024,
      .max_uri = 8 * 1024,
      .max_body = 64 * 1024,
      .header_timeout_ms = w->cfg->header_timeout_ms,
      .keepalive_timeout_ms = w->cfg->keepalive_timeout_ms,
      .send_timeout_ms = 60000,
  };
  char perr[256] = "";
  int prc = hg_pipeline_ctx_init(&w->pipeline, &w->loop, w->shared->cache, w->cfg->ca_file,
                                 w->cfg->max_playlist, perr, sizeof(perr));
  if (prc) hg_log(HG_LOG_ERROR, "upstream client: %s", perr);
  w->pipeline_ok = prc == 0;
  if (prc == 0) {
    prc = hg_callouts_init(&w->callouts, &w->loop, w->pipeline.upstream, w->metrics, perr, sizeof(perr));
    if (prc) hg_log(HG_LOG_ERROR, "callouts: %s", perr);
    w->callouts_ok = prc == 0;
    if (w->callouts_ok) hg_policy_set_port(w->policy, &w->callouts.port);
  }
  w->http = hg_http_server_new(&w->loop, &limits, on_request, w);
  if (w->nadmin) w->admin = hg_http_server_new(&w->loop, &limits, on_admin_request, w);
  int rc = prc ? prc : w->http == NULL || (w->nadmin && w->admin == NULL) ? UV_ENOMEM : 0;
  hg_http_observer_t obs = {on_request_done, on_connection, w};
  if (w->http) hg_http_server_observe(w->http, &obs);
  if (w->admin) hg_http_server_observe(w->admin, &obs);
  if (!rc) rc = listen_all(w, w->http, w->fds, w->nfds, 0);
  if (!rc && w->admin) rc = listen_all(w, w->admin, w->admin_fds, w->nadmin, 1);
  w->start_rc = rc;
  uv_sem_post(&w->started);
  if (rc) {
    hg_log(HG_LOG_ERROR, prc ? "cannot start: %s" : "cannot listen: %s", hg_strerror(rc));
    hg_worker_stop(w);
  }
  /* Buffered access-log lines wait at most a second (base/log.c). */
  uv_timer_init(&w->loop, &w->log_timer);
  uv_timer_start(&w->log_timer, on_log_timer, 1000, 1000);
  uv_unref((uv_handle_t *)&w->log_timer); /* it never keeps the loop alive */
  uv_run(&w->loop, UV_RUN_DEFAULT);
  uv_close((uv_handle_t *)&w->log_timer, NULL);
  hg_http_server_free(w->http);
  hg_http_server_free(w->admin);
  if (w->callouts_ok) hg_callouts_close(&w->callouts);
  w->callouts_ok = 0;
  if (w->pipeline_ok) hg_pipeline_ctx_close(&w->pipeline);
  uv_run(&w->loop, UV_RUN_DEFAULT); /* let the servers' close callbacks run */
  if (uv_loop_close(&w->loop) != 0) hg_log(HG_LOG_WARN, "loop closed with handles open");
  hg_policy_release(w->policy);
  w->policy = NULL;
  hg_log_access_end(); /* the last lines, then the buffer */
  __atomic_store_n(&w->exited, 1, __ATOMIC_RELEASE);
}

hg_worker_t *hg_worker_new(int id, const hg_config_t *cfg, const hg_worker_shared_t *shared,
                           const int *fds, size_t nfds, const int *admin_fds, size_t nadmin) {
  hg_worker_t *w = calloc(1, sizeof(*w));
  if (w == NULL) return NULL;
  w->id = id;
  snprintf(w->name, sizeof(w->name), "w%d", id);
  w->cfg = cfg;
  w->shared = shared;
  w->metrics = &shared->metrics[id - 1];
  memcpy(w->fds, fds, nfds * sizeof(int));
  w->nfds = nfds;
  if (nadmin) memcpy(w->admin_fds, admin_fds, nadmin * sizeof(int));
  w->nadmin = nadmin;
  uv_mutex_init(&w->lock);
  uv_sem_init(&w->started, 0);
  return w;
}

int hg_worker_start(hg_worker_t *w, hg_policy_src_t *src) {
  w->initial = src;
  int rc = uv_thread_create(&w->thread, worker_main, w);
  if (rc) return rc;
  uv_sem_wait(&w->started);
  w->initial = NULL;
  if (w->start_rc == HG_EPOLICY) {
    uv_thread_join(&w->thread);
    w->thread = 0;
  }
  return w->start_rc;
}

void hg_worker_reload(hg_worker_t *w, hg_policy_src_t *src) {
  hg_policy_src_retain(src);
  uv_mutex_lock(&w->lock);
  hg_policy_src_t *old = w->pending; /* superseded before the worker saw it */
  w->pending = src;
  if (w->async_open) uv_async_send(&w->async);
  uv_mutex_unlock(&w->lock);
  if (old) hg_policy_src_release(old);
}

void hg_worker_reload_tls(hg_worker_t *w) {
  uv_mutex_lock(&w->lock);
  w->tls_reload = 1;
  if (w->async_open) uv_async_send(&w->async);
  uv_mutex_unlock(&w->lock);
}

static void ask_stop(hg_worker_t *w, int level) {
  uv_mutex_lock(&w->lock);
  if (w->stop < level) w->stop = level;
  if (w->async_open) uv_async_send(&w->async);
  uv_mutex_unlock(&w->lock);
}

void hg_worker_stop(hg_worker_t *w) { ask_stop(w, 1); }

void hg_worker_stop_now(hg_worker_t *w) { ask_stop(w, 2); }

int hg_worker_exited(hg_worker_t *w) { return __atomic_load_n(&w->exited, __ATOMIC_ACQUIRE); }

void hg_worker_join_free(hg_worker_t *w) {
  if (w == NULL) return;
  if (w->thread) uv_thread_join(&w->thread);
  if (w->pending) hg_policy_src_release(w->pending);
  for (size_t i = 0; i < w->nfds; i++)
    if (w->fds[i] >= 0) close(w->fds[i]);
  for (size_t i = 0; i < w->nadmin; i++)
    if (w->admin_fds[i] >= 0) close(w->admin_fds[i]);
  uv_mutex_destroy(&w->lock);
  uv_sem_destroy(&w->started);
  free(w);
}
