/* cached.c — the exchange and the shared caches (see exchange.h): cache keys (raw
 * objects, directed LL-HLS requests, rewritten output), waiting on another request's fill
 * (woken on this worker's loop), and feeding a cached object through the same path as a
 * fetched one, in pieces, with backpressure.
 */
#include <stdarg.h>
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

static void cache_key(exchange_t *x, hg_buf_t *k);

/* Appends the NULL-terminated list of strings (the keys are built on every request:
 * no printf). A NULL inside the list cannot be told from the end, so callers pass "" for
 * an absent value (see S). */
#define S(v) ((v) ? (v) : "")
static void put_strs(hg_buf_t *k, const char *s, ...) {
  va_list ap;
  va_start(ap, s);
  for (; s; s = va_arg(ap, const char *)) hg_buf_puts(k, s);
  va_end(ap);
}

/* Feeds a cached object through the same path as a fetched one (hg__x_sniff → rewrite or
 * relay). Uses the exchange's source reference; releases `o`. */
void hg__x_serve_obj(exchange_t *x, hg_cache_obj_t *o) {
  x->nup = 0;
  x->cenc = NULL; /* cached bodies are identity (a failed fetch may have named one) */
  hg_buf_clear(&x->body); /* a failed fetch may have left part of an error body */
  x->ctype = o->content_type ? hg_arena_strndup(x->req->arena, o->content_type, strlen(o->content_type)) : NULL;
  if (o->etag) hg__x_keep_header(x, "ETag", 4, o->etag, strlen(o->etag));
  if (o->last_modified) hg__x_keep_header(x, "Last-Modified", 13, o->last_modified, strlen(o->last_modified));
  if (o->final_url) x->final_url = hg_arena_strndup(x->req->arena, o->final_url, strlen(o->final_url));
  x->raw_id = o->id;
  uint64_t now = uv_now(x->ctx->loop);
  x->obj_left_ms = o->expires_ms > now ? (int64_t)(o->expires_ms - now) : 0;
  x->up_cc = x->up_expires = x->up_date = x->up_age = NULL; /* a failed fetch's, if any */
  hg__x_src_head(x, 200, (int64_t)o->len);
  x->req->log_upstream_status = 0;
  x->cobj = o;
  x->coff = 0;
  hg__x_feed_obj(x);
}

static void release_obj(void *o) { hg_cache_obj_release(o); }

/* Feeds the cached object through sniffing in 64 KiB pieces; once it is being relayed,
 * the rest goes to the server by reference (Memory: a viewer that stops reading a cached
 * 32 MiB object holds a reference to it, not a copy). Ends with hg__x_src_done, which
 * drops the source reference. */
void hg__x_feed_obj(exchange_t *x) {
  x->feeding++; /* what it feeds may end the exchange: not under this loop */
  while (x->cobj && !x->paused && x->mode != M_DONE && x->coff < x->cobj->len) {
    /* Sniffing needs the first bytes only (SNIFF_MAX): a big object is copied no more
     * than that before it is relayed by reference. */
    size_t piece = x->mode == M_SNIFF && x->cobj->len >= HG_CACHE_FILE_MIN ? 4096 : 65536;
    size_t n = x->cobj->len - x->coff < piece ? x->cobj->len - x->coff : piece;
    if (x->mode == M_RELAY && !x->fill) {
      /* Relaying: the rest is written from the object itself, no copy per viewer (the
       * server holds a reference until it is written). */
      n = x->cobj->len - x->coff;
      hg_cache_obj_retain(x->cobj);
      hg_http_stream_write_file(x->txn, x->cobj->body + x->coff, n, x->cobj->fd, (int64_t)x->coff,
                                release_obj, x->cobj);
      x->coff += n;
      continue;
    }
    char *p = malloc(n);
    if (p == NULL) break;
    memcpy(p, x->cobj->body + x->coff, n);
    x->coff += n;
    hg__x_src_data(x, p, n);
  }
  if (x->cobj && (x->coff == x->cobj->len || x->mode == M_DONE || !x->paused)) {
    int err = x->coff == x->cobj->len || x->mode == M_DONE ? 0 : UV_ENOMEM;
    hg_cache_obj_release(x->cobj);
    x->cobj = NULL;
    hg__x_src_done(x, err, err ? "out of memory" : NULL);
  }
  x->feeding--;
  hg__x_release(x, 0);
}

/* Another worker's fill ended: runs on that worker's thread, so only queue ourselves. */
void hg__x_on_cache_notify(hg_cache_waiter_t *w) {
  exchange_t *x = (exchange_t *)((char *)w - offsetof(exchange_t, waiter));
  hg_pipeline_ctx_t *ctx = x->ctx;
  uv_mutex_lock(&ctx->wake_lock);
  x->wnext = ctx->woken;
  ctx->woken = x;
  uv_mutex_unlock(&ctx->wake_lock);
  uv_async_send(&ctx->wake);
}

void hg__x_on_wake(uv_async_t *a) {
  hg_pipeline_ctx_t *ctx = a->data;
  uv_mutex_lock(&ctx->wake_lock);
  exchange_t *list = ctx->woken;
  ctx->woken = NULL;
  uv_mutex_unlock(&ctx->wake_lock);
  while (list) {
    exchange_t *x = list;
    list = x->wnext;
    if (x->waiting_output) {
      x->waiting_output = 0;
      if (x->waiter.obj) hg__x_serve_output(x, x->waiter.obj);
      else hg__x_fetch_raw(x); /* that rewrite did not happen: do our own */
    } else if (x->waiter.obj) {
      x->req->log_cache = "hit";
      hg__x_serve_obj(x, x->waiter.obj);
    } else { /* the fill failed: fetch by ourselves */
      hg__x_start_source(x);
    }
  }
}

/* The cache key: the object's identity plus the request headers that vary it. Empty
 * when this request must bypass the cache: ranges (a 206 is never stored under the
 * plain key) and LL-HLS directed or delta requests. */
static void cache_key(exchange_t *x, hg_buf_t *k) {
  hg_plan_t *p = &x->plan;
  if (hg_request_header(x->req, "Range")) return;
  if (p->origin == HG_ORIGIN_S3) {
    put_strs(k, "s3\n", S(p->s3.endpoint), "\n", S(p->s3.bucket), "\n", S(p->s3_key), NULL);
  } else if (p->origin == HG_ORIGIN_HTTP) {
    put_strs(k, "http\n", S(p->url), NULL);
    for (size_t i = 0; i < p->nreq_headers; i++)
      put_strs(k, "\n", S(p->req_headers[i].name), ":", S(p->req_headers[i].value), NULL);
  } else {
    return;
  }
  /* SPEC §5: a directed or delta reply has its own key, never the plain URL's; equal
   * directed requests share it, so they wait on one upstream request. */
  if (x->dir.n) put_strs(k, "\n?", S(x->dir.query), NULL);
  if (hg_buf_error(k)) hg_buf_clear(k); /* a half-built key would merge objects: no caching */
}

/* The part of the output keys that follows from the plan and the request alone, into k:
 * the raw object's key and everything in the plan that shapes the rewritten bytes but
 * the presign time bucket and the proxy params. Empty when the output is not to be kept
 * (no raw key, not a playlist's path). */
static void key_stem(exchange_t *x, hg_buf_t *k) {
  hg_plan_t *p = &x->plan;
  cache_key(x, k);
  const char *path = p->origin == HG_ORIGIN_S3 ? p->s3_key : p->url;
  size_t n = strcspn(path, "?#");
  int playlist = (n >= 5 && strncasecmp(path + n - 5, ".m3u8", 5) == 0) ||
                 (n >= 4 && strncasecmp(path + n - 4, ".m3u", 4) == 0);
  if (k->len == 0 || !playlist) {
    hg_buf_clear(k);
    return;
  }
  hg_buf_puts(k, "\nrewritten\n");
  for (int i = 0; i < HG_HLS_CLASS_COUNT; i++) hg_buf_putc(k, (char)('0' + p->actions[i]));
  hg_buf_put_u64(k, (unsigned)p->default_action);
  put_strs(k, "\n", S(p->proxy_from), "\n", S(p->proxy_to), "\n", S(p->proxy_prefix), "\n", NULL);
  if (p->has_s3)
    hg_buf_printf(k, "%s\n%s\n%s\n%s\n%d\n", p->s3.public_endpoint ? p->s3.public_endpoint : p->s3.endpoint,
                  p->s3.bucket, p->s3.access_key, p->s3.region, p->s3.path_style);
  hg_buf_put_u64(k, p->presign_ttl);
  put_strs(k, "\n", S(p->presign_prefix), "\n", NULL);
  if (hg_buf_error(k)) hg_buf_clear(k);
}

/* Both output keys from a stem: the presign time bucket, then "\nshared" (the
 * viewer-independent key) or the proxy params (this viewer's). Security: a key cut short
 * by a failed append could be another viewer's (their token is in the proxy params): any
 * failure means no output caching at all. */
static void finish_keys(exchange_t *x, const char *stem, size_t n) {
  hg_plan_t *p = &x->plan;
  hg_buf_t *k = &x->keybuf, *sk = &x->skeybuf;
  hg_buf_clear(k);
  hg_buf_clear(sk);
  hg_buf_append(k, stem, n);
  /* The presign time bucket only when URIs may be presigned: otherwise it would make a
   * new key (a new copy of the output) every second. */
  hg_buf_put_u64(k, p->has_s3 && x->act.presign_at > 0 ? (unsigned long long)x->act.presign_at : 0ULL);
  hg_buf_append(sk, k->data, k->len);
  hg_buf_puts(sk, "\nshared");
  for (size_t i = 0; i < p->nproxy_params; i++)
    put_strs(k, "\n", S(p->proxy_params[i].name), "=", S(p->proxy_params[i].value), NULL);
  if (hg_buf_error(k) || hg_buf_error(sk)) {
    hg_buf_clear(k);
    hg_buf_clear(sk);
  }
}

/* The output cache keys: the raw object's key, everything in the plan that shapes the
 * rewritten bytes (rules, proxy mapping and params — so the viewer's token — presign
 * settings and time bucket). Empty when the output must not be cached: no raw caching,
 * an on_uri hook (it may depend on the viewer), or a path that is not a playlist's.
 * A frozen plan keeps the stem when it follows from the plan alone (no Range, no LL-HLS
 * directive): the next request, whoever's token it carries, only finishes it. */
void hg__x_output_key(exchange_t *x) {
  hg_plan_t *p = &x->plan;
  hg_plan_frozen_t *fz = p->frozen;
  x->okey = x->skey = NULL;
  x->okey_len = x->skey_len = 0;
  if (p->cache_ttl == 0 || p->hook_ref >= 0) return;
  int plan_only = fz && x->dir.n == 0 && !hg_request_header(x->req, "Range");
  if (plan_only && fz->key_stem) {
    finish_keys(x, fz->key_stem, fz->key_stem_len);
  } else {
    hg_buf_t stem = HG_BUF_INIT;
    key_stem(x, &stem);
    if (stem.len) finish_keys(x, stem.data, stem.len);
    if (plan_only && stem.len) /* kept for the next request (memory: the plan's arena) */
      if ((fz->key_stem = hg_arena_strndup(fz->arena, stem.data, stem.len))) fz->key_stem_len = stem.len;
    hg_buf_free(&stem);
  }
  if (x->keybuf.len == 0) return;
  x->okey = x->keybuf.data, x->okey_len = x->keybuf.len;
  x->skey = x->skeybuf.data, x->skey_len = x->skeybuf.len;
}

/* Answers from a cached rewritten playlist; releases `o`. No source runs. */
void hg__x_serve_output(exchange_t *x, hg_cache_obj_t *o) {
  hg_response_t res;
  memset(&res, 0, sizeof(res));
  res.status = 200;
  /* Written from the cached object itself (no copy per viewer); the server releases it. */
  res.body = o->body;
  res.body_len = o->len;
  res.body_release = release_obj;
  res.body_ref = o;
  uint64_t now = uv_now(x->ctx->loop);
  uint64_t left = o->expires_ms > now ? o->expires_ms - now : 0;
  x->live &= ~(unsigned)X_SOURCE; /* no source will run */
  x->req->log_cache = "hit";
  hg__x_respond_playlist(x, &res, left);
}

/* The raw object: from the cache, from another request's fill, or from the origin. */
void hg__x_fetch_raw(exchange_t *x) {
  hg_pipeline_ctx_t *ctx = x->ctx;
  if (ctx->cache && (x->plan.cache_ttl > 0 || x->dir.n)) {
    hg_buf_t key = HG_BUF_INIT;
    cache_key(x, &key);
    if (key.len) {
      hg_cache_obj_t *o = NULL;
      x->waiter.notify = hg__x_on_cache_notify;
      int rc = hg_cache_lookup(ctx->cache, key.data, key.len, uv_now(ctx->loop), &x->waiter, &o, &x->fill);
      hg_buf_free(&key);
      x->req->log_cache = rc == HG_CACHE_HIT ? "hit" : rc == HG_CACHE_WAIT ? "wait" : "miss";
      if (rc == HG_CACHE_HIT) {
        hg__x_serve_obj(x, o);
        return;
      }
      if (rc == HG_CACHE_WAIT) return; /* hg__x_on_wake continues */
    }
    hg_buf_free(&key);
  }
  hg__x_start_source(x);
}
