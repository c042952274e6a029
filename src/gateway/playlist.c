/* playlist.c — rewriting a buffered playlist for one exchange (see exchange.h): the
 * per-class actions of the plan (proxy, presign, absolute, keep, drop, on_uri), signed
 * child URLs, presign time buckets, and publishing the output in the output cache.
 */
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

static int s3_base(hg_buf_t *out, const hg_plan_s3_t *s3);
static int act_presign(exchange_t *x, const hg_hls_uri_t *uri, hg_buf_t *out);
static int proxy_sign(const hg_plan_t *p, const char *url, size_t n, hg_buf_t *out);
static int act_proxy(exchange_t *x, const hg_hls_uri_t *uri, hg_buf_t *out);
static hg_action_t class_action(const hg_plan_t *p, hg_hls_class_t cls);
static int decide(void *ud, const hg_hls_uri_t *uri, hg_buf_t *out);
static void store_output(exchange_t *x, const char *body, size_t len, uint64_t ttl);

/* The time presigned URLs are signed at: rounded down to a bucket (a tenth of the TTL,
 * at most 5 minutes, at least a second) so a hot playlist rewrites to the same bytes for
 * a while (SPEC §7) and its output can be cached until the bucket ends. */
void hg__x_presign_clock(exchange_t *x) {
  int64_t now = (int64_t)time(NULL), b = x->plan.presign_ttl / 10;
  if (b > 300) b = 300;
  if (b < 1) b = 1;
  x->presign_at = now - now % b;
  x->presign_bucket = b;
}

/* Appends the bucket's base URL ("http://host:port/bucket/" or "https://bucket.host/"). */
static int s3_base(hg_buf_t *out, const hg_plan_s3_t *s3) {
  const char *ep = s3->endpoint;
  size_t n = strlen(ep);
  while (n && ep[n - 1] == '/') n--;
  if (s3->path_style) return hg_buf_printf(out, "%.*s/%s/", (int)n, ep, s3->bucket);
  const char *sep = strstr(ep, "://");
  size_t scheme = sep ? (size_t)(sep - ep) + 3 : 0;
  return hg_buf_printf(out, "%.*s%s.%.*s/", (int)scheme, ep, s3->bucket, (int)(n - scheme), ep + scheme);
}

/* presign: the URI must be an object of the plan's bucket (and under presign.prefix);
 * anything else is written as an absolute URL. */
static int act_presign(exchange_t *x, const hg_hls_uri_t *uri, hg_buf_t *out) {
  hg_plan_t *p = &x->plan;
  if (!p->has_s3) return hg_hls_absolute(uri, out);
  hg_buf_clear(&x->tmp);
  if (s3_base(&x->tmp, &p->s3)) return HG_ENOMEM;
  size_t blen = x->tmp.len;
  if (uri->url_len <= blen || strncasecmp(uri->url, x->tmp.data, blen) != 0) return hg_hls_absolute(uri, out);
  size_t klen = strcspn(uri->url + blen, "?#");
  hg_buf_clear(&x->tmp);
  if (hg_url_decode(&x->tmp, uri->url + blen, klen, HG_URL_DEC_NO_NUL) != 0) return hg_hls_absolute(uri, out);
  if (p->presign_prefix && strncmp(x->tmp.data, p->presign_prefix, strlen(p->presign_prefix)) != 0)
    return hg_hls_absolute(uri, out);
  if (x->signer == NULL) {
    hg_sigv4_config_t cfg = {p->s3.access_key, p->s3.secret_key, p->s3.session_token, p->s3.region, "s3"};
    if ((x->signer = hg_sigv4_new(&cfg)) == NULL) return HG_ENOMEM;
  }
  hg_s3_req_t r;
  memset(&r, 0, sizeof(r));
  r.endpoint = p->s3.public_endpoint ? p->s3.public_endpoint : p->s3.endpoint;
  r.bucket = p->s3.bucket;
  r.key = x->tmp.data;
  r.key_len = x->tmp.len;
  r.path_style = p->s3.path_style;
  r.time = x->presign_at;
  r.expires = p->presign_ttl;
  int rc = hg_s3_presign(x->signer, &r, out);
  return rc ? rc : HG_HLS_REPLACE;
}

/* proxy: a gateway URL that carries the plan's params (e.g. the viewer's token). */
/* Appends "exp=E&sig=S&" for `url` (plan.proxy.sign, see plan.h). The signature covers
 * exp, the URL and the value of every proxy param (e.g. the stream's upstream headers):
 * HMAC(exp "\n" url ["\n" value]…). Returns 0 or an error code. */
static int proxy_sign(const hg_plan_t *p, const char *url, size_t n, hg_buf_t *out) {
  uint64_t ttl = p->proxy_sign_ttl;
  uint64_t exp = ((uint64_t)time(NULL) / ttl + 2) * ttl; /* between ttl and 2*ttl from now */
  char e[24], sig[48];
  size_t elen = (size_t)snprintf(e, sizeof(e), "%llu\n", (unsigned long long)exp);
  unsigned char mac[32];
  const void *parts[2 + 2 * 8] = {e, url};
  size_t lens[2 + 2 * 8] = {elen, n}, np = 2;
  for (size_t i = 0; i < p->nproxy_params && i < 8; i++) {
    parts[np] = "\n", lens[np++] = 1;
    parts[np] = p->proxy_params[i].value, lens[np++] = p->proxy_params[i].value_len;
  }
  hg_hmac_key_t k;
  int rc = hg_hmac_key_init(&k, HG_HASH_SHA256, p->proxy_sign_secret, p->proxy_sign_secret_len);
  if (!rc) rc = hg_hmac_key_mac(&k, parts, lens, np, mac);
  hg_hmac_key_wipe(&k);
  if (rc) return rc;
  hg_base64_encode_to(sig, mac, sizeof(mac), HG_BASE64URL); /* 43 characters and a NUL */
  return hg_buf_printf(out, "exp=%.*s&sig=%s&", (int)(elen - 1), e, sig);
}

static int act_proxy(exchange_t *x, const hg_hls_uri_t *uri, hg_buf_t *out) {
  hg_plan_t *p = &x->plan;
  int rc;
  if (p->proxy_prefix) {
    /* "…/proxy?" [exp=E&sig=S&] [name=value&]… "url=" encoded-URL: the params go before
     * the URL so that it still ends with the origin's path (players such as ffmpeg judge
     * a segment by the extension at the end of its URL). A prefix without '?' gets them
     * after. */
    const char *q = strchr(p->proxy_prefix, '?');
    size_t qlen = q ? (size_t)(q - p->proxy_prefix) + 1 : strlen(p->proxy_prefix);
    rc = hg_buf_append(out, p->proxy_prefix, qlen);
    if (!rc && p->proxy_sign_secret) rc = proxy_sign(p, uri->url, uri->url_len, out);
    for (size_t i = 0; q && !rc && i < p->nproxy_params; i++) {
      const hg_header_t *kv = &p->proxy_params[i];
      rc = hg_url_query_add(out, kv->name, kv->name_len, kv->value, kv->value_len);
      if (!rc) rc = hg_buf_putc(out, '&');
    }
    if (!rc) rc = hg_buf_puts(out, p->proxy_prefix + qlen);
    if (!rc) rc = hg_url_encode(out, uri->url, uri->url_len, 0);
    for (size_t i = 0; !q && !rc && i < p->nproxy_params; i++) {
      const hg_header_t *kv = &p->proxy_params[i];
      rc = hg_url_query_add(out, kv->name, kv->name_len, kv->value, kv->value_len);
    }
    return rc ? rc : HG_HLS_REPLACE;
  }
  size_t flen = p->proxy_from ? strlen(p->proxy_from) : 0;
  if (!p->proxy_from || uri->url_len < flen || strncmp(uri->url, p->proxy_from, flen) != 0)
    return hg_hls_absolute(uri, out); /* outside the proxied tree */
  hg_buf_clear(&x->tmp);
  rc = hg_buf_puts(&x->tmp, p->proxy_to);
  if (!rc) rc = hg_buf_append(&x->tmp, uri->url + flen, uri->url_len - flen);
  /* Set each param (replacing one already there: a token is never added twice). */
  for (size_t i = 0; !rc && i < p->nproxy_params; i++) {
    hg_buf_t next = HG_BUF_INIT;
    const hg_header_t *kv = &p->proxy_params[i];
    rc = hg_url_query_set(&next, x->tmp.data, x->tmp.len, kv->name, kv->value);
    hg_buf_free(&x->tmp);
    x->tmp = next;
  }
  if (!rc) rc = hg_buf_append(out, x->tmp.data, x->tmp.len);
  return rc ? rc : HG_HLS_REPLACE;
}

static hg_action_t class_action(const hg_plan_t *p, hg_hls_class_t cls) {
  hg_action_t act = p->actions[cls];
  int parent = hg_hls_class_parent(cls);
  if (act == HG_ACT_UNSET && parent >= 0) act = p->actions[parent];
  return act == HG_ACT_UNSET ? p->default_action : act;
}

/* The rewriter's decision callback: the plan's per-class rule, overridden by its on_uri
 * hook when it has one. */
static int decide(void *ud, const hg_hls_uri_t *uri, hg_buf_t *out) {
  exchange_t *x = ud;
  hg_action_t act = class_action(&x->plan, uri->cls);
  if (x->plan.hook_ref >= 0) {
    int h = hg_policy_uri_hook(x->policy, &x->plan, x->req, uri, out);
    if (h < 0) return h;
    if (h == HG_ACT_HOOK) return HG_HLS_REPLACE;
    if (h != HG_ACT_UNSET) act = (hg_action_t)h;
  }
  /* SPEC §5: a preload hint is fetched by the player before it exists; never presign. */
  if (act == HG_ACT_PRESIGN && uri->cls == HG_HLS_PRELOAD_HINT)
    act = x->plan.proxy_prefix || x->plan.proxy_from ? HG_ACT_PROXY : HG_ACT_ABSOLUTE;
  switch (act) {
  case HG_ACT_DROP: return HG_HLS_DROP;
  case HG_ACT_ABSOLUTE: return hg_hls_absolute(uri, out);
  case HG_ACT_PROXY: x->proxied++; return act_proxy(x, uri, out);
  case HG_ACT_PRESIGN: return act_presign(x, uri, out);
  default: return HG_HLS_KEEP;
  }
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
  if (o && x->proxied == 0 && x->shared_key.len) {
    /* Nothing was proxied, so no viewer's token is in it: every viewer may share it. */
    hg_cache_obj_retain(o);
    hg_cache_put(x->ctx->cache, x->shared_key.data, x->shared_key.len, o, uv_now(x->ctx->loop), ttl);
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
  int64_t left = x->presign_at + x->presign_bucket - (int64_t)time(NULL);
  if (x->plan.has_s3 && left * 1000 < (int64_t)ttl) ttl = left > 0 ? (uint64_t)left * 1000 : 0;
  if (x->out_fill) store_output(x, out.len ? out.data : "", out.len, x->no_store ? 0 : ttl);
  x->out_body = out;
  hg__x_respond_playlist(x, &res, ttl);
}
