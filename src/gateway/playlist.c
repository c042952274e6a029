/* playlist.c — rewriting a buffered playlist for one exchange (see exchange.h): the
 * plan's per-URI actions (lua/actions.h), overridden by its on_uri hook, and publishing
 * the output in the output cache.
 */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/buf.h"
#include "base/error.h"
#include "base/log.h"
#include "gateway/exchange.h"
#include "gateway/live.h"
#include "lua/actions.h"

static int decide(void *ud, const hg_hls_uri_t *uri, hg_buf_t *out);
static void store_output(exchange_t *x, const char *body, size_t len, uint64_t ttl);

/* The rewriter's decision callback: the plan's per-class rule, overridden by its on_uri
 * hook when it has one. */
static int decide(void *ud, const hg_hls_uri_t *uri, hg_buf_t *out) {
  exchange_t *x = ud;
  hg_action_t act = hg_actions_for_class(&x->plan, uri->cls);
  if (x->plan.hook_ref >= 0) {
    int h = hg_policy_uri_hook(x->policy, &x->plan, x->req, uri, out);
    if (h < 0) return h;
    if (h == HG_ACT_HOOK) return HG_HLS_REPLACE;
    if (h != HG_ACT_UNSET) act = (hg_action_t)h;
  }
  return hg_actions_do(&x->act, &x->plan, hg_actions_resolve(&x->plan, act, uri->cls), uri, out);
}

/* Sends a rewritten playlist (res has status and body) that may be reused for ttl_ms. */
void hg__x_respond_playlist(exchange_t *x, hg_response_t *res, uint64_t ttl_ms) {
  hg_response_add_header(res, "Content-Type", 12, "application/vnd.apple.mpegurl", 29);
  /* SPEC §7: output that carries a viewer's token is `private` (carries_token). */
  hg__x_add_cache_control(x, res, ttl_ms);
  hg__x_add_plan_headers(x, res);
  hg__x_respond(x, res);
}

/* Publishes a rewritten playlist in the output cache until its presign bucket ends (and no
 * longer than the raw object may be cached): under the viewer-independent key when nothing
 * was proxied; under its own key when its proxy params are not a viewer's (plan not
 * `private`); a per-viewer one goes to the fill's waiters only. */
static void store_output(exchange_t *x, const char *body, size_t len, uint64_t ttl) {
  char *copy = malloc(len ? len : 1);
  if (copy) memcpy(copy, body, len);
  hg_cache_obj_t *o = copy ? hg_cache_obj_new(copy, len, NULL, NULL, NULL, NULL) : NULL;
  hg_cache_fill_t *fill = x->out_fill;
  x->out_fill = NULL;
  if (o && x->act.proxied == 0 && x->skey_len) {
    /* Nothing was proxied, so no viewer's token is in it: every viewer may share it. */
    hg_cache_obj_retain(o);
    hg_cache_put(x->ctx->cache, x->skey, x->skey_len, o, uv_now(x->ctx->loop), ttl);
  } else if (x->plan.carries_token) {
    /* It carries this viewer's token: kept, it would be one entry per viewer flooding the
     * cache. Concurrent identical requests (the fill's waiters) still get it. */
    ttl = 0;
  } /* else the proxy params are the same for everyone (an open proxy's key): keep it */
  hg_cache_obj_release(hg_cache_fill_end(x->ctx->cache, fill, o, uv_now(x->ctx->loop), ttl, 0));
}

/* Too many playlists buffered at once (HELD_MULT): the client may retry shortly. */
void hg__x_respond_busy(exchange_t *x) {
  hg_response_t res;
  memset(&res, 0, sizeof(res));
  if (hg_response_error(&res, x->req->arena, 503, "too many playlists in flight", x->req->id) != 0) {
    res.status = 500;
    res.nheaders = 0;
  }
  hg_response_add_header(&res, "Retry-After", 11, "1", 1);
  hg__x_add_plan_headers(x, &res);
  hg_log(HG_LOG_WARN, "request %s: 503: playlist memory budget (%zu bytes) exhausted", x->req->id,
         x->ctx->max_playlist * HELD_MULT);
  hg__x_respond(x, &res);
}

void hg__x_rewrite_and_respond(exchange_t *x) {
  /* What the playlist says of itself (live, target) decides its freshness: read it now,
   * its bytes are given back before the answer goes out. */
  (void)hg__x_body_info(x);
  hg_buf_t out = HG_BUF_INIT;
  const char *base = x->final_url;
  size_t in = x->body.len, lim = OUT_MAX_MULT * x->ctx->max_playlist;
  if (in < (lim - OUT_SLACK) / OUT_RATIO) lim = in * OUT_RATIO + OUT_SLACK;
  hg_hls_rewriter_limit(x->ctx->rewriter, lim);
  int rc = hg_hls_rewrite(x->ctx->rewriter, &out, x->body.data ? x->body.data : "", x->body.len,
                          base, strlen(base), decide, x, NULL);
  /* The input is done with: give it back before the output is copied to the server. */
  hg_buf_free(&x->body);
  hg__x_unhold(x);
  if (rc == HG_ETOOBIG) {
    hg_buf_free(&out);
    hg__x_respond_upstream_error(x, HG_ETOOBIG, "rewritten playlist larger than the limit");
    return;
  }
  if (rc == HG_EPOLICY || rc == HG_EBUDGET) {
    hg_buf_free(&out);
    hg__x_respond_error(x, 500, "policy error");
    return;
  }
  if (rc != 0) {
    hg_buf_free(&out);
    hg_log(HG_LOG_ERROR, "request %s: rewrite failed: %s", x->req->id, hg_strerror(rc));
    hg__x_respond_error(x, rc == HG_ENOMEM ? 500 : 502, "cannot rewrite the playlist");
    return;
  }
  hg_response_t res;
  memset(&res, 0, sizeof(res));
  res.status = 200;
  res.body = ""; /* the body goes in x->out_body: hg__x_respond hands it over without a copy */
  /* The output never outlives its input, nor the time bucket its presigned URLs were
   * signed in (SPEC §7). */
  uint64_t ttl = hg__x_answer_ttl(x, hg__x_body_info(x));
  int64_t left = x->act.presign_at + x->act.presign_bucket - (int64_t)time(NULL);
  if (x->plan.has_s3 && left * 1000 < (int64_t)ttl) ttl = left > 0 ? (uint64_t)left * 1000 : 0;
  if (x->out_fill) store_output(x, out.len ? out.data : "", out.len, x->no_store ? 0 : ttl);
  x->out_body = out;
  hg__x_respond_playlist(x, &res, ttl);
}
