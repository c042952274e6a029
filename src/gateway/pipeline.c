/* pipeline.c — one request's walk from origin to client (see pipeline.h): the exchange's
 * lifetime, its responses (errors, upstream failures, Cache-Control), the source events
 * (head → data* → done) that drive sniffing, buffering and relaying, and the entry point.
 * The other parts: origin.c (the sources), relay.c (sniffing, relaying, content types,
 * gzip), playlist.c (rewriting and the per-URI actions), cached.c (the caches). The
 * struct they share is in exchange.h.
 *
 * A source (file, upstream fetch or cached object) reports head → data* → done. The first
 * bytes decide the mode: a body that starts like a playlist (SPEC §5) is buffered whole
 * (bounded) and rewritten; anything else is relayed as it arrives, with backpressure.
 * Error bodies are kept (bounded) to name the upstream's error.
 *
 * Lifetime: two things refer to an exchange, named in x->live: the response (X_RESPONSE,
 * until it has been handed to the server) and the source (X_SOURCE, until it can call
 * back no more); hg__x_release ends one and frees the exchange when neither is left
 * (and no feed_obj loop is running, x->feeding).
 */
#include "gateway/pipeline.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "base/buf.h"
#include "base/error.h"
#include "base/log.h"
#include "crypto/hash.h"
#include "crypto/sigv4.h"
#include "gateway/exchange.h"
#include "gateway/live.h"
#include "upstream/file.h"
#include "url/url.h"

#include <zlib.h>

/* Playlist bytes buffered by all exchanges of the process (every worker). */
static size_t g_held;

static void respond_upstream_status(exchange_t *x);

/* Counts `n` more buffered playlist bytes against the process-wide budget. Returns 0, or
 * HG_ETOOBIG (nothing counted) when the budget would be exceeded. Any thread. */
int hg__x_hold(exchange_t *x, size_t n) {
  size_t cap = x->ctx->max_playlist * HELD_MULT;
  if (__atomic_add_fetch(&g_held, n, __ATOMIC_RELAXED) > cap) {
    __atomic_sub_fetch(&g_held, n, __ATOMIC_RELAXED);
    return HG_ETOOBIG;
  }
  x->held += n;
  return 0;
}

void hg__x_unhold(exchange_t *x) {
  if (x->held) __atomic_sub_fetch(&g_held, x->held, __ATOMIC_RELAXED);
  x->held = 0;
}

/* Ends `what` (X_RESPONSE: the response is the server's now; X_SOURCE: the source calls
 * back no more; 0: only re-check) and frees the exchange once nothing refers to it. Not
 * inlined: GCC's -Wuse-after-free cannot see that an exchange survives the first of its
 * two releases, and flags every use after it. */
__attribute__((noinline)) void hg__x_release(exchange_t *x, unsigned what) {
  x->live &= ~what;
  if (x->live || x->feeding) return;
  if (x->out_fill) /* not a playlist after all, or failed: waiters rewrite by themselves */
    hg_cache_obj_release(hg_cache_fill_end(x->ctx->cache, x->out_fill, NULL, uv_now(x->ctx->loop), 0, 0));
  hg_policy_plan_done(x->policy, &x->plan);
  hg_policy_release(x->policy);
  hg__x_unhold(x);
  if (x->gz) {
    inflateEnd(x->gz);
    free(x->gz);
  }
  hg_buf_free(&x->body);
  hg_buf_free(&x->out_body);
  hg_buf_free(&x->tmp);
  hg_buf_free(&x->tee);
  hg_buf_free(&x->keybuf);
  hg_buf_free(&x->skeybuf);
  hg_actions_free(&x->act);
  free(x);
}

/* Adds the plan's headers (CORS, Cache-Control, …) to a response. */
void hg__x_add_plan_headers(exchange_t *x, hg_response_t *res) {
  for (size_t i = 0; i < x->plan.nheaders; i++) {
    const hg_header_t *h = &x->plan.headers[i];
    hg_response_add_header(res, h->name, h->name_len, h->value, h->value_len);
  }
}

/* Hands a complete response to the server; the exchange's response reference ends. */
void hg__x_respond(exchange_t *x, hg_response_t *res) {
  /* Security: no browser second-guesses our types (a JSON error or a playlist that
   * happens to look like HTML stays inert). */
  hg_response_add_header(res, "X-Content-Type-Options", 22, "nosniff", 7);
  x->mode = M_DONE;
  if (x->out_body.len) { /* Memory: the rewritten playlist is handed over, never copied */
    char *p = hg_buf_steal(&x->out_body, &res->body_len);
    res->body = p;
    res->body_release = free;
    res->body_ref = p;
  }
  hg_http_respond(x->txn, res);
  hg__x_release(x, X_RESPONSE);
}

void hg__x_respond_error(exchange_t *x, int status, const char *msg) {
  hg_response_t res;
  memset(&res, 0, sizeof(res));
  if (hg_response_error(&res, x->req->arena, status, msg, x->req->id) != 0) {
    res.status = 500;
    res.nheaders = 0;
  }
  hg__x_add_plan_headers(x, &res); /* errors are never cached: the server adds no-store */
  hg__x_respond(x, &res);
}

/* What the playlist buffered in `body` says of itself, or NULL when the body is not a
 * playlist (relayed bodies never are). Scanned once. */
const hg_hls_info_t *hg__x_body_info(exchange_t *x) {
  if (x->mode != M_SNIFF && x->mode != M_BUFFER) return NULL;
  if (!x->info_done) hg_hls_info(x->body.data ? x->body.data : "", x->body.len, &x->info);
  x->info_done = 1;
  return x->info.playlist ? &x->info : NULL;
}

/* How long this answer may be reused (SPEC §5, §7): the policy's TTL, half the target
 * duration for a live playlist, never more than the origin allows nor than what is left
 * of the cached object it comes from. */
uint64_t hg__x_answer_ttl(exchange_t *x, const hg_hls_info_t *info) {
  hg_freshness_t f;
  hg_freshness_parse(x->up_cc, x->up_expires, x->up_date, x->up_age, (int64_t)time(NULL), &f);
  if (x->plan.ignore_origin_cache) memset(&f, 0, sizeof(f));
  x->no_store = f.no_store;
  uint64_t ttl = hg_live_ttl_ms(x->plan.cache_ttl * 1000, x->plan.live_ttl_ms, info, &f);
  if (x->obj_left_ms >= 0 && (uint64_t)x->obj_left_ms < ttl) ttl = (uint64_t)x->obj_left_ms;
  return ttl;
}

/* Whether the plan sets response header `name` itself. */
int hg__x_plan_has_header(const exchange_t *x, const char *name) {
  for (size_t i = 0; i < x->plan.nheaders; i++)
    if (strcasecmp(x->plan.headers[i].name, name) == 0) return 1;
  return 0;
}

/* Adds the Cache-Control of SPEC §7 unless the policy set its own (a plan header). */
void hg__x_add_cache_control(exchange_t *x, hg_response_t *res, uint64_t ttl_ms) {
  if (hg__x_plan_has_header(x, "Cache-Control")) return;
  char cc[48];
  hg_live_cache_control(cc, sizeof(cc), ttl_ms, x->plan.carries_token, x->no_store);
  const char *v = hg_arena_strndup(x->req->arena, cc, strlen(cc));
  if (v) hg_response_add_header(res, "Cache-Control", 13, v, strlen(v));
}

/* THE place where upstream failures become statuses: timeouts → 504, SSRF or
 * allowlist refusals → 403, every other failure (refused, reset, TLS, malformed,
 * redirect loops, oversized playlists) → 502. The message names the origin and the
 * reason, never a credential. */
void hg__x_respond_upstream_error(exchange_t *x, int err, const char *msg) {
  int status = err == HG_ETIMEOUT ? 504 : err == HG_EDENIED ? 403 : 502;
  hg_buf_clear(&x->tmp);
  hg_buf_printf(&x->tmp, "upstream %s: %s", x->origin_name, msg && *msg ? msg : hg_strerror(err));
  /* Say which knob allows a refused address or host (the operator reads this in the log
   * and a developer in the answer). */
  if (err == HG_EDENIED && msg && strstr(msg, "which is not allowed"))
    hg_buf_puts(&x->tmp, " (HLSGATE_ALLOW_PRIVATE or origin.allow_private allows it)");
  else if (err == HG_EDENIED && msg && strstr(msg, "not in the allowed hosts"))
    hg_buf_puts(&x->tmp, " (see HLSGATE_ALLOW_HOSTS or origin.allow_hosts)");
  char *text = hg_arena_strndup(x->req->arena, x->tmp.data, x->tmp.len);
  hg_log(HG_LOG_WARN, "request %s: %d %s", x->req->id, status, text ? text : "");
  x->req->log_upstream_status = x->status;
  /* Security: an s3 origin is the operator's (bucket names, S3 error codes, endpoints are
   * internal): the viewer gets the status and the request id, the log has the rest. An
   * http origin's name is the URL the viewer or the policy chose, and stays. */
  if (x->plan.origin == HG_ORIGIN_S3 || text == NULL)
    hg__x_respond_error(x, status, status == 504 ? "upstream timed out" : "upstream error");
  else
    hg__x_respond_error(x, status, text);
}

/* An origin answered with an error status: 404/410 → 404, 416 passes through, anything
 * else → 502 naming the status (and S3's <Code> when there is one). */
static void respond_upstream_status(exchange_t *x) {
  if (x->status == 404 || x->status == 410) {
    hg__x_respond_error(x, 404, "no such object");
    return;
  }
  if (x->status == 416) {
    hg_response_t res;
    memset(&res, 0, sizeof(res));
    hg_response_error(&res, x->req->arena, 416, "range not satisfiable", x->req->id);
    for (size_t i = 0; i < x->nup; i++)
      if (strcasecmp(x->up_headers[i].name, "Content-Range") == 0)
        hg_response_add_header(&res, "Content-Range", 13, x->up_headers[i].value,
                               x->up_headers[i].value_len);
    hg__x_add_plan_headers(x, &res);
    hg__x_respond(x, &res);
    return;
  }
  char code[96] = "";
  const char *b = x->body.data, *open = b ? strstr(b, "<Code>") : NULL;
  const char *close = open ? strstr(open, "</Code>") : NULL;
  if (close && close - open - 6 < (long)sizeof(code)) snprintf(code, sizeof(code), " %.*s", (int)(close - open - 6), open + 6);
  char msg[160];
  snprintf(msg, sizeof(msg), "returned %d%s", x->status, code);
  hg__x_respond_upstream_error(x, HG_EUPSTREAM, msg);
}

void hg__x_src_head(exchange_t *x, int status, int64_t clen) {
  x->status = status;
  x->clen = clen;
  x->req->log_upstream_status = status;
  x->req->log_upstream_ms = (double)(uv_hrtime() - x->up_start) / 1e6;
  if (status == 200 || status == 206) x->mode = M_SNIFF;
  else x->mode = M_ERRBODY;
  /* Security (slow drip): the read timeout restarts with every byte, so a body we buffer
   * (sniffed bytes, a playlist) must also be complete within the timeout from its head. */
  x->buffer_until = uv_now(x->ctx->loop) + (x->plan.timeout_ms ? x->plan.timeout_ms : 10000);
  /* Not storable (known too big, or not a 200): do not even start copying it. */
  if (x->fill && (status != 200 || (clen >= 0 && (uint64_t)clen > hg_cache_max_object(x->ctx->cache))))
    x->tee_failed = 1;
}

/* Keeps the upstream headers worth relaying (arena copies). */
void hg__x_keep_header(exchange_t *x, const char *name, size_t nlen, const char *value, size_t vlen) {
  static const char *keep[] = {"ETag", "Last-Modified", "Content-Range", "Accept-Ranges"};
  /* The origin's freshness headers bound reuse (hg__x_answer_ttl); the gateway sends its own. */
  static const char *fresh[] = {"Cache-Control", "Expires", "Date", "Age"};
  const char **slot[] = {&x->up_cc, &x->up_expires, &x->up_date, &x->up_age};
  if (nlen == 12 && strncasecmp(name, "Content-Type", 12) == 0) {
    x->ctype = hg_arena_strndup(x->req->arena, value, vlen);
    return;
  }
  if (nlen == 16 && strncasecmp(name, "Content-Encoding", 16) == 0) { /* relayed as is */
    if (!(vlen == 8 && strncasecmp(value, "identity", 8) == 0)) x->cenc = hg_arena_strndup(x->req->arena, value, vlen);
    return;
  }
  for (size_t i = 0; i < sizeof(fresh) / sizeof(fresh[0]); i++) {
    if (strlen(fresh[i]) != nlen || strncasecmp(name, fresh[i], nlen) != 0) continue;
    if (*slot[i] == NULL) *slot[i] = hg_arena_strndup(x->req->arena, value, vlen);
    return;
  }
  for (size_t i = 0; i < sizeof(keep) / sizeof(keep[0]) && x->nup < 8; i++) {
    if (strlen(keep[i]) != nlen || strncasecmp(name, keep[i], nlen) != 0) continue;
    hg_header_t *h = &x->up_headers[x->nup++];
    h->name = keep[i];
    h->name_len = nlen;
    h->value = hg_arena_strndup(x->req->arena, value, vlen);
    h->value_len = vlen;
    return;
  }
}

void hg__x_src_data(exchange_t *x, char *data, size_t len) {
  if (x->fill && !x->tee_failed) {
    if (x->status != 200 || x->tee.len + len > hg_cache_max_object(x->ctx->cache) ||
        hg_buf_append(&x->tee, data, len) != 0) {
      x->tee_failed = 1;
      hg_buf_free(&x->tee);
    }
  }
  if ((x->mode == M_SNIFF || x->mode == M_BUFFER) && uv_now(x->ctx->loop) > x->buffer_until) {
    free(data);
    hg__x_buffer_failed(x, HG_ETIMEOUT, 0);
    return;
  }
  switch (x->mode) {
  case M_SNIFF:
    if (hg_buf_append(&x->body, data, len) != 0) { /* a playlist is never judged on part of it */
      free(data);
      hg__x_buffer_failed(x, HG_ENOMEM, 0);
      return;
    }
    free(data);
    hg__x_sniff(x, 0);
    return;
  case M_BUFFER:
    if (x->gz) {
      int rc = hg__x_gz_body(x, data, len);
      free(data);
      if (rc) hg__x_buffer_failed(x, rc, 0);
      return;
    }
    if (x->body.len + len > x->ctx->max_playlist) {
      free(data);
      hg__x_source_abort(x);
      hg__x_respond_upstream_error(x, HG_ETOOBIG, "playlist larger than the limit");
      return;
    }
    if (hg__x_hold(x, len) != 0) {
      free(data);
      hg__x_buffer_failed(x, HG_EBUDGET, 0);
      return;
    }
    if (hg_buf_append(&x->body, data, len) != 0) { /* never rewrite a truncated playlist */
      free(data);
      hg__x_buffer_failed(x, HG_ENOMEM, 0);
      return;
    }
    free(data);
    return;
  case M_RELAY:
    hg_http_stream_write(x->txn, data, len);
    if (hg_http_stream_queued(x->txn) >= RELAY_HIGH) hg__x_source_pause(x);
    return;
  case M_ERRBODY:
    if (x->body.len < ERRBODY_MAX) hg_buf_append(&x->body, data, len < ERRBODY_MAX ? len : ERRBODY_MAX);
    free(data);
    return;
  default:
    free(data);
  }
}

/* Publishes (or abandons) our cache fill. Returns a retained stale copy when the fetch
 * failed and one exists (stale-if-error), else NULL. */
hg_cache_obj_t *hg__x_end_fill(exchange_t *x, int ok) {
  if (x->fill == NULL) return NULL;
  hg_cache_fill_t *fill = x->fill;
  x->fill = NULL;
  hg_cache_obj_t *o = NULL;
  if (ok && !x->tee_failed && x->status == 200) {
    size_t n;
    char *body = hg_buf_steal(&x->tee, &n);
    if (body == NULL) body = calloc(1, 1);
    o = hg_cache_obj_new(body, n, x->ctype, NULL, NULL, x->final_url);
    x->raw_id = o ? o->id : 0; /* the bytes being rewritten are this object's */
    for (size_t i = 0; o && i < x->nup; i++) { /* validators travel with the object */
      if (strcmp(x->up_headers[i].name, "ETag") == 0) o->etag = strdup(x->up_headers[i].value);
      else if (strcmp(x->up_headers[i].name, "Last-Modified") == 0)
        o->last_modified = strdup(x->up_headers[i].value);
    }
  }
  uint64_t ttl = hg__x_answer_ttl(x, hg__x_body_info(x));
  /* Keep an expired object as long again (at least a minute) to serve if the origin
   * fails; never one the origin said not to store. */
  uint64_t stale = x->no_store ? 0 : ttl > 60000 ? ttl : 60000;
  if (o && x->no_store) ttl = 0; /* this fill's waiters still get it */
  return hg_cache_fill_end(x->ctx->cache, fill, o, uv_now(x->ctx->loop), ttl, stale);
}

/* The source ended (err 0: the whole body arrived). Drops the source reference. */
void hg__x_src_done(exchange_t *x, int err, const char *msg) {
  int failed = err != 0 || (x->mode == M_ERRBODY && x->status >= 500);
  hg_cache_obj_t *stale = hg__x_end_fill(x, !failed);
  if (stale && failed && x->mode != M_RELAY && x->mode != M_DONE) {
    hg_log(HG_LOG_WARN, "request %s: upstream %s failed (%s); serving a stale copy", x->req->id,
           x->origin_name, msg ? msg : "error status");
    x->req->log_cache = "stale";
    x->fetch = NULL;
    hg__x_serve_obj(x, stale); /* takes over the source reference */
    return;
  }
  hg_cache_obj_release(stale);
  switch (x->mode) {
  case M_DONE:
    break;
  case M_RELAY:
    x->mode = M_DONE;
    if (err) hg_log(HG_LOG_WARN, "request %s: upstream %s failed mid-body: %s", x->req->id,
                    x->origin_name, msg ? msg : hg_strerror(err));
    hg_http_stream_end(x->txn, err == 0);
    hg__x_release(x, X_RESPONSE);
    break;
  default:
    if (err) hg__x_respond_upstream_error(x, err, msg);
    else if (x->mode == M_ERRBODY) respond_upstream_status(x);
    else if (x->mode == M_BUFFER && x->gz && !x->gz_end) hg__x_buffer_failed(x, HG_EUPSTREAM, 1);
    else if (x->mode == M_BUFFER) hg__x_rewrite_and_respond(x);
    else hg__x_sniff(x, 1);
    /* The source still refers to x (X_SOURCE), so the releases above never free it; the
     * analyzer cannot see the flags. */
    if (x->mode == M_RELAY) { /* NOLINT(clang-analyzer-unix.Malloc): a short body relayed in one go */
      x->mode = M_DONE;
      hg_http_stream_end(x->txn, 1);
      hg__x_release(x, X_RESPONSE);
    }
  }
  x->fetch = NULL; // NOLINT(clang-analyzer-unix.Malloc): X_SOURCE still holds x here
  x->file = NULL;
  hg__x_release(x, X_SOURCE);
}

int hg_pipeline_ctx_init(hg_pipeline_ctx_t *ctx, uv_loop_t *loop, hg_cache_t *cache,
                         const char *ca_file, size_t max_playlist, char *err, size_t errlen) {
  memset(ctx, 0, sizeof(*ctx));
  ctx->loop = loop;
  ctx->cache = cache;
  ctx->max_playlist = max_playlist;
  hg_upstream_config_t ucfg = {.ca_file = ca_file};
  ctx->upstream = hg_upstream_new(loop, &ucfg, err, errlen);
  ctx->rewriter = hg_hls_rewriter_new();
  if (ctx->upstream == NULL || ctx->rewriter == NULL) {
    if (ctx->upstream) hg_upstream_close(ctx->upstream);
    hg_hls_rewriter_free(ctx->rewriter);
    if (ctx->rewriter == NULL) snprintf(err, errlen, "out of memory");
    return HG_ENOMEM;
  }
  uv_mutex_init(&ctx->wake_lock);
  uv_async_init(loop, &ctx->wake, hg__x_on_wake);
  ctx->wake.data = ctx;
  return 0;
}

void hg_pipeline_ctx_close(hg_pipeline_ctx_t *ctx) {
  hg_upstream_close(ctx->upstream);
  hg_hls_rewriter_free(ctx->rewriter);
  uv_close((uv_handle_t *)&ctx->wake, NULL);
  uv_mutex_destroy(&ctx->wake_lock);
}

void hg_pipeline_run(hg_pipeline_ctx_t *ctx, hg_http_txn_t *txn, hg_request_t *req,
                     hg_policy_t *policy, const hg_plan_t *plan) {
  exchange_t *x = calloc(1, sizeof(*x));
  if (x == NULL) {
    hg_plan_t p = *plan;
    hg_policy_plan_done(policy, &p);
    hg_response_t res;
    memset(&res, 0, sizeof(res));
    hg_response_error(&res, req->arena, 500, "out of memory", req->id);
    hg_http_respond(txn, &res);
    return;
  }
  x->ctx = ctx;
  x->txn = txn;
  x->req = req;
  x->policy = policy;
  hg_policy_retain(policy);
  x->plan = *plan;
  x->live = X_RESPONSE | X_SOURCE;
  x->head_only = strcmp(req->method, "HEAD") == 0;
  x->up_start = uv_hrtime();
  x->origin_name = "origin";
  x->obj_left_ms = -1;
  hg_actions_clock(&x->act, &x->plan, (int64_t)time(NULL));
  if (plan->origin != HG_ORIGIN_FILE && hg_directives_read(req, &x->dir) != 0) {
    x->live &= ~(unsigned)X_SOURCE; /* no source will run */
    hg__x_respond_error(x, 500, "out of memory");
    return;
  }
  if (plan->origin == HG_ORIGIN_FILE) {
    x->origin_name = "file";
    const char *p = plan->file_path;
    /* Playlists from files resolve against http://file.invalid/<path>: an http base, so
     * relative URIs are rewritten like any other, on a reserved name (RFC 2606) that can
     * never be fetched by accident. */
    hg_buf_clear(&x->tmp);
    hg_buf_puts(&x->tmp, HG_FILE_BASE_URL);
    hg_url_encode(&x->tmp, p, strlen(p), HG_URL_ENC_KEEP_SLASH);
    x->final_url = hg_arena_strndup(req->arena, x->tmp.data ? x->tmp.data : "", x->tmp.len);
    if (x->final_url == NULL) x->final_url = HG_FILE_BASE_URL;
    /* Security: refuse traversal before touching the file system (the realpath check
     * catches symlinks). */
    int bad = p[0] == '/' || strcmp(p, "..") == 0 || strncmp(p, "../", 3) == 0 ||
              strstr(p, "/../") != NULL || (strlen(p) >= 3 && strcmp(p + strlen(p) - 3, "/..") == 0);
    if (bad) {
      x->live &= ~(unsigned)X_SOURCE; /* no source will run */
      hg__x_respond_error(x, 400, "bad path");
      return;
    }
    hg__x_start_source(x);
    return;
  }
  /* A hot playlist: its rewritten bytes may already be cached (or being made). */
  if (ctx->cache) {
    hg__x_output_key(x);
    hg_cache_obj_t *o = NULL;
    if (x->okey_len && x->skey_len && hg_cache_peek(ctx->cache, x->skey, x->skey_len, uv_now(ctx->loop), &o)) {
      hg__x_serve_output(x, o); /* rewritten for another viewer, identical for this one */
      return;
    }
    if (x->okey_len) {
      x->waiter.notify = hg__x_on_cache_notify;
      x->waiting_output = 1;
      int rc = hg_cache_lookup(ctx->cache, x->okey, x->okey_len, uv_now(ctx->loop), &x->waiter, &o, &x->out_fill);
      if (rc == HG_CACHE_WAIT) return; /* hg__x_on_wake continues */
      x->waiting_output = 0;
      if (rc == HG_CACHE_HIT) {
        hg__x_serve_output(x, o);
        return;
      }
    }
  }
  hg__x_fetch_raw(x);
}
