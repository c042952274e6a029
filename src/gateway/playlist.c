/* playlist.c — rewriting a buffered playlist for one exchange (see exchange.h): the
 * plan's per-URI actions (lua/actions.h), overridden by its on_uri hook, publishing the
 * output in the output cache, and the templates that spare a private plan's viewers a
 * rewrite each.
 */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <uv.h>

#include "base/buf.h"
#include "base/error.h"
#include "base/log.h"
#include "crypto/hash.h"
#include "gateway/exchange.h"
#include "gateway/live.h"
#include "lua/actions.h"
#include "url/url.h"

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

/* A cache object holding a copy of body[0..len), or NULL (out of memory). */
static hg_cache_obj_t *obj_copy(const char *body, size_t len) {
  char *copy = malloc(len ? len : 1);
  if (copy == NULL) return NULL;
  memcpy(copy, body, len);
  return hg_cache_obj_new(copy, len, NULL, NULL, NULL, NULL); /* frees copy when it fails */
}

/* Publishes a rewritten playlist in the output cache until its presign bucket ends (and no
 * longer than the raw object may be cached): under the viewer-independent key when nothing
 * was proxied; under its own key when its proxy params are not a viewer's (plan not
 * `private`); a per-viewer one goes to the fill's waiters only. */
static void store_output(exchange_t *x, const char *body, size_t len, uint64_t ttl) {
  hg_cache_obj_t *o = obj_copy(body, len);
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

/* ---- one rewrite for every viewer ---- */

/* A private plan's output differs from viewer to viewer only where its proxy params (the
 * viewer's token) are written, each time as the percent-encoded value (lua/actions.c:
 * act_proxy). So the playlist is rewritten once with a stand-in for each value, and each
 * viewer's output is that template with their encoded values spliced in: a copy instead
 * of a rewrite, for every one of the viewers a live event brings at once. The template
 * is kept in the output cache under the viewer-independent key (everything that shapes
 * the output but the params) plus "template", the params' names and the number of the
 * cached raw object it was made from (else a digest of the body and base URL: a raw
 * object fetched again must not meet the template of its previous version). Security:
 * the stand-in is random per process, made of characters the encoding leaves alone, and
 * never leaves the process (only spliced outputs do), so an origin cannot plant one in a
 * playlist: the holes in a template are exactly the ones the rewrite made. */
#define TPL_PARAMS 4 /* params a template can stand in for */
#define TPL_MARK 32  /* random hex characters, then 'g' + the param's index */

static char tpl_mark[TPL_MARK + 1];
static int tpl_ok; /* 1 once tpl_mark is random */
static uv_once_t tpl_once = UV_ONCE_INIT;

static void tpl_init(void) {
  unsigned char r[TPL_MARK / 2];
  if (hg_random(r, sizeof(r)) != 0) return; /* no templates: every viewer is rewritten */
  hg_hex(r, sizeof(r), tpl_mark);
  tpl_ok = 1;
}

/* Whether this exchange's output may come from a template: per-viewer params (a private
 * plan), no hook (it may do anything per viewer), no signature over the URL (it covers
 * the params), output caching on (the viewer-independent key), values without NUL (the
 * rewrite reads them as C strings). */
static int tpl_usable(const exchange_t *x) {
  const hg_plan_t *p = &x->plan;
  if (!p->carries_token || p->nproxy_params == 0 || p->nproxy_params > TPL_PARAMS || p->hook_ref >= 0 ||
      p->proxy_sign_secret || x->skey_len == 0 || x->no_store)
    return 0;
  for (size_t i = 0; i < p->nproxy_params; i++)
    if (strlen(p->proxy_params[i].value) != p->proxy_params[i].value_len) return 0;
  uv_once(&tpl_once, tpl_init);
  return tpl_ok;
}

/* The template's cache key (see above). */
static void tpl_key(const exchange_t *x, hg_buf_t *k) {
  hg_buf_append(k, x->skey, x->skey_len);
  hg_buf_puts(k, "\ntemplate"); /* and the params' names, in order: the holes' meaning */
  for (size_t i = 0; i < x->plan.nproxy_params; i++) {
    hg_buf_putc(k, '\n');
    hg_buf_append(k, x->plan.proxy_params[i].name, x->plan.proxy_params[i].name_len);
  }
  hg_buf_putc(k, '\n');
  if (x->raw_id) { /* the cached object the body is: its number says it all */
    hg_buf_put_u64(k, (unsigned long long)x->raw_id);
    return;
  }
  hg_sha256_t h;
  unsigned char d[32];
  char hex[65];
  hg_sha256_init(&h);
  hg_sha256_update(&h, x->final_url, strlen(x->final_url) + 1);
  hg_sha256_update(&h, x->body.data ? x->body.data : "", x->body.len);
  hg_sha256_final(&h, d);
  hg_hex(d, sizeof(d), hex);
  hg_buf_append(k, hex, 64);
}

/* The next stand-in in t[0..end), or NULL: memchr for its first character, then a
 * compare (memmem's general search costs more for a needle this long). */
static const char *find_mark(const char *t, const char *end) {
  while ((size_t)(end - t) >= TPL_MARK) {
    const char *c = memchr(t, tpl_mark[0], (size_t)(end - t) - TPL_MARK + 1);
    if (c == NULL || memcmp(c, tpl_mark, TPL_MARK) == 0) return c;
    t = c + 1;
  }
  return NULL;
}

/* Appends to out the template t[0..n) with each stand-in replaced by its param's value,
 * encoded as act_proxy encodes it (once per param: a token is spliced into every URI).
 * Returns 0, HG_ETOOBIG past lim, or HG_ENOMEM. */
static int tpl_splice(const exchange_t *x, const char *t, size_t n, hg_buf_t *out, size_t lim) {
  const char *end = t + n;
  hg_buf_t enc = HG_BUF_INIT;
  size_t at[TPL_PARAMS + 1] = {0};
  int rc = 0;
  for (size_t i = 0; i < x->plan.nproxy_params; i++) {
    const hg_header_t *kv = &x->plan.proxy_params[i];
    if (hg_url_encode(&enc, kv->value, kv->value_len, 0)) rc = HG_ENOMEM;
    at[i + 1] = enc.len;
  }
  while (rc == 0 && t < end) {
    const char *m = find_mark(t, end);
    size_t k = m ? (size_t)(m - t) : (size_t)(end - t);
    if (hg_buf_append(out, t, k)) rc = HG_ENOMEM;
    if (rc || m == NULL) break;
    unsigned i = m + TPL_MARK < end ? (unsigned)(m[TPL_MARK] - 'g') : TPL_PARAMS;
    if (i >= x->plan.nproxy_params) rc = HG_EINVAL; /* not ours: cannot happen (see above) */
    else if (hg_buf_append(out, enc.data ? enc.data + at[i] : "", at[i + 1] - at[i])) rc = HG_ENOMEM;
    else if (out->len > lim) rc = HG_ETOOBIG;
    t = m + TPL_MARK + 1;
  }
  hg_buf_free(&enc);
  return rc ? rc : out->len > lim ? HG_ETOOBIG : 0;
}

/* The rewrite of x->body, with the plan as it is now. */
static int rewrite_body(exchange_t *x, hg_buf_t *out) {
  return hg_hls_rewrite(x->ctx->rewriter, out, x->body.data ? x->body.data : "", x->body.len, x->final_url,
                        strlen(x->final_url), decide, x, NULL);
}

/* Rewrites with a stand-in for each param value (the values are put back after). */
static int rewrite_with_stand_ins(exchange_t *x, hg_buf_t *out) {
  hg_plan_t *p = &x->plan;
  hg_header_t real[TPL_PARAMS];
  char stand[TPL_PARAMS][TPL_MARK + 2];
  for (size_t i = 0; i < p->nproxy_params; i++) {
    real[i] = p->proxy_params[i];
    memcpy(stand[i], tpl_mark, TPL_MARK);
    stand[i][TPL_MARK] = (char)('g' + i);
    stand[i][TPL_MARK + 1] = '\0';
    p->proxy_params[i].value = stand[i];
    p->proxy_params[i].value_len = TPL_MARK + 1;
  }
  int rc = rewrite_body(x, out);
  for (size_t i = 0; i < p->nproxy_params; i++) p->proxy_params[i] = real[i];
  return rc;
}

/* Rewrites x->body into out (limited to lim bytes): from the template when there is
 * one, else by a rewrite — with stand-ins when a template can be made, which is then
 * kept for ttl and spliced. */
static int rewrite(exchange_t *x, hg_buf_t *out, size_t lim, uint64_t ttl) {
  hg_pipeline_ctx_t *ctx = x->ctx;
  hg_hls_rewriter_limit(ctx->rewriter, lim);
  if (!tpl_usable(x)) return rewrite_body(x, out);
  uint64_t now = uv_now(ctx->loop);
  hg_buf_t key = HG_BUF_INIT, tpl = HG_BUF_INIT;
  tpl_key(x, &key);
  hg_cache_obj_t *t = NULL;
  int rc;
  if (!hg_buf_error(&key) && hg_cache_peek(ctx->cache, key.data, key.len, now, &t)) {
    rc = tpl_splice(x, t->body, t->len, out, lim);
    x->act.proxied = 1; /* a template has holes: the output is this viewer's */
    x->req->log_cache = "template";
    hg_cache_obj_release(t);
  } else if ((rc = rewrite_with_stand_ins(x, &tpl)) == HG_ETOOBIG) {
    rc = rewrite_body(x, out); /* the stand-ins may be longer than the values: this decides */
  } else if (rc == 0 && x->act.proxied == 0) {
    hg_buf_t swap = *out; /* no holes: this is everyone's output as it is */
    *out = tpl;
    tpl = swap;
  } else if (rc == 0 && (rc = tpl_splice(x, tpl.data, tpl.len, out, lim)) == 0 && ttl > 0 &&
             !hg_buf_error(&key)) {
    hg_cache_obj_t *o = obj_copy(tpl.data ? tpl.data : "", tpl.len);
    if (o) hg_cache_put(ctx->cache, key.data, key.len, o, now, ttl);
  }
  hg_buf_free(&tpl);
  hg_buf_free(&key);
  return rc;
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
  size_t in = x->body.len, lim = OUT_MAX_MULT * x->ctx->max_playlist;
  if (in < (lim - OUT_SLACK) / OUT_RATIO) lim = in * OUT_RATIO + OUT_SLACK;
  /* The output never outlives its input, nor the time bucket its presigned URLs were
   * signed in (SPEC §7). */
  uint64_t ttl = hg__x_answer_ttl(x, hg__x_body_info(x));
  int64_t left = x->act.presign_at + x->act.presign_bucket - (int64_t)time(NULL);
  if (x->plan.has_s3 && left * 1000 < (int64_t)ttl) ttl = left > 0 ? (uint64_t)left * 1000 : 0;
  int rc = rewrite(x, &out, lim, ttl);
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
  if (x->out_fill) store_output(x, out.len ? out.data : "", out.len, x->no_store ? 0 : ttl);
  x->out_body = out;
  hg__x_respond_playlist(x, &res, ttl);
}
