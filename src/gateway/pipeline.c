/* pipeline.c — one request's walk from origin to client (see pipeline.h).
 *
 * A source (file or upstream fetch) reports head → data* → done. The first bytes decide
 * the mode: a body that starts like a playlist (SPEC §5) is buffered whole (bounded) and
 * rewritten; anything else is relayed as it arrives, with backpressure: the source is
 * paused while more than RELAY_HIGH bytes wait for the client. Error bodies are kept
 * (bounded) to name the upstream's error.
 *
 * Lifetime: two things refer to an exchange, named in x->live: the response (X_RESPONSE,
 * until it has been handed to the server) and the source (X_SOURCE, until it can call
 * back no more); x_release ends one and frees the exchange when neither is left (and no
 * feed_obj loop is running, x->feeding).
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
#include "gateway/live.h"
#include "crypto/sigv4.h"
#include "upstream/file.h"
#include "url/url.h"

#include <zlib.h>

#define SNIFF_MAX 1024        /* bytes that decide playlist or not */
/* Pause the source once this much waits for the client: what a viewer that stops reading
 * costs in memory (plus at most one source chunk, 64 KiB; nginx keeps ~64 KiB too). The
 * kernel's socket buffers keep the pipe full for a fast viewer. */
#define RELAY_HIGH (64 << 10)
#define ERRBODY_MAX 8192
/* Security (amplification): a rewrite may write at most OUT_RATIO bytes per input byte
 * plus OUT_SLACK, and never more than OUT_MAX_MULT × --max-playlist. Legitimate rewrites
 * stay far below: a 29-byte "#EXTINF:4,\nseg_000001.ts\n" entry proxied with a 400-byte
 * token or presigned (~450 bytes) grows ~16×; tiny relative URIs under a 6 KB base URL
 * grow ~450× and are refused (502) after a few MB instead of 121 MB. */
#define OUT_RATIO 32
#define OUT_SLACK (64u << 10)
#define OUT_MAX_MULT 4
/* Bytes of playlist bodies buffered for rewriting, all workers together, at most
 * HELD_MULT × --max-playlist (128 MiB by default): N concurrent max-size playlists
 * cannot take N × max. Past it a request is answered 503 with Retry-After. */
#define HELD_MULT 8
#define LLHLS_TIMEOUT_MS 30000 /* room for 3 × a target duration of up to 10 s */

enum { M_SNIFF, M_BUFFER, M_RELAY, M_ERRBODY, M_DONE };
enum { X_RESPONSE = 1, X_SOURCE = 2 };

typedef struct x_s {
  hg_pipeline_ctx_t *ctx;
  hg_http_txn_t *txn;
  hg_request_t *req;
  hg_policy_t *policy;
  hg_plan_t plan;
  unsigned live;             /* X_RESPONSE | X_SOURCE: what still refers to the exchange */
  int feeding;               /* feed_obj loops running (each may end the exchange) */
  int mode;
  int head_only;
  /* the origin's response */
  int status;
  int64_t clen;
  hg_header_t up_headers[8]; /* the upstream headers worth relaying */
  size_t nup;
  const char *ctype;
  const char *final_url;
  const char *origin_name; /* for messages: "s3 bucket b", "https://host:port", "file" */
  hg_buf_t body;
  uint64_t up_start;
  /* sources: at most one is running */
  hg_fetch_t *fetch;
  hg_file_fetch_t *file;
  int paused;
  hg_sigv4_t *signer; /* lazily created for presigning */
  hg_buf_t tmp;
  /* cache */
  hg_cache_fill_t *fill;     /* we fetch for the cache: tee the body */
  hg_buf_t tee;
  int tee_failed;            /* too big or not a 200: not stored */
  hg_cache_waiter_t waiter;  /* we wait for another request's fill */
  struct x_s *wnext;
  int waiting_output;        /* the wait is for a rewritten playlist (else a raw object) */
  hg_cache_fill_t *out_fill; /* we rewrite for the output cache */
  hg_buf_t shared_key;       /* output cache key for viewer-independent output */
  size_t proxied;            /* URIs this rewrite made into gateway URLs (with params) */
  int64_t presign_at;        /* signing time of this exchange's presigned URLs */
  int64_t presign_bucket;    /* seconds that signing time stays the same */
  /* freshness (SPEC §5, §7) */
  hg_directives_t dir;       /* LL-HLS directives forwarded to the origin */
  const char *up_cc, *up_expires, *up_date, *up_age; /* the origin's word on reuse */
  int64_t obj_left_ms;       /* answered from the cache: how long the object stays fresh */
  int no_store;              /* the origin forbids storing or sharing the answer */
  hg_hls_info_t info;        /* what the playlist in `body` says of itself */
  int info_done;
  size_t held;               /* bytes of x->body counted in g_held */
  /* Content-Encoding: relayed as sent; only a gzip playlist is decoded (to rewrite it) */
  const char *cenc;          /* the origin's Content-Encoding, or NULL */
  z_stream *gz;              /* decoding a gzip playlist into x->body */
  int gz_end;                /* the gzip stream ended */
  uint64_t buffer_until;     /* loop time by which a buffered body must be complete */
  hg_buf_t out_body;         /* a rewritten playlist, handed to the server as is by respond */
  hg_cache_obj_t *cobj;      /* a cached object being fed as the source (retained) */
  size_t coff;               /* bytes of it fed so far */
} x_t;

/* Playlist bytes buffered by all exchanges of the process (every worker). */
static size_t g_held;

/* Counts `n` more buffered playlist bytes against the process-wide budget. Returns 0, or
 * HG_ETOOBIG (nothing counted) when the budget would be exceeded. Any thread. */
static int hold(x_t *x, size_t n) {
  size_t cap = x->ctx->max_playlist * HELD_MULT;
  if (__atomic_add_fetch(&g_held, n, __ATOMIC_RELAXED) > cap) {
    __atomic_sub_fetch(&g_held, n, __ATOMIC_RELAXED);
    return HG_ETOOBIG;
  }
  x->held += n;
  return 0;
}

static void unhold(x_t *x) {
  if (x->held) __atomic_sub_fetch(&g_held, x->held, __ATOMIC_RELAXED);
  x->held = 0;
}

static void src_data(x_t *x, char *data, size_t len);
static void src_done(x_t *x, int err, const char *msg);

/* ---- lifetime ---- */

/* Ends `what` (X_RESPONSE: the response is the server's now; X_SOURCE: the source calls
 * back no more; 0: only re-check) and frees the exchange once nothing refers to it. Not
 * inlined: GCC's -Wuse-after-free cannot see that an exchange survives the first of its
 * two releases, and flags every use after it. */
__attribute__((noinline)) static void x_release(x_t *x, unsigned what) {
  x->live &= ~what;
  if (x->live || x->feeding) return;
  if (x->out_fill) /* not a playlist after all, or failed: waiters rewrite by themselves */
    hg_cache_obj_release(hg_cache_fill_end(x->ctx->cache, x->out_fill, NULL, uv_now(x->ctx->loop), 0, 0));
  hg_policy_plan_done(x->policy, &x->plan);
  hg_policy_release(x->policy);
  unhold(x);
  if (x->gz) {
    inflateEnd(x->gz);
    free(x->gz);
  }
  hg_buf_free(&x->body);
  hg_buf_free(&x->out_body);
  hg_buf_free(&x->tmp);
  hg_buf_free(&x->tee);
  hg_buf_free(&x->shared_key);
  hg_sigv4_free(x->signer);
  free(x);
}

/* ---- responding ---- */

/* Adds the plan's headers (CORS, Cache-Control, …) to a response. */
static void add_plan_headers(x_t *x, hg_response_t *res) {
  for (size_t i = 0; i < x->plan.nheaders; i++) {
    const hg_header_t *h = &x->plan.headers[i];
    hg_response_add_header(res, h->name, h->name_len, h->value, h->value_len);
  }
}

/* Hands a complete response to the server; the exchange's response reference ends. */
static void respond(x_t *x, hg_response_t *res) {
  /* Security: no browser second-guesses our types (a JSON error or a playlist that
   * happens to look like HTML stays inert). */
  hg_response_add_header(res, "X-Content-Type-Options", 22, "nosniff", 7);
  x->mode = M_DONE;
  if (x->out_body.len) { /* Memory: the rewritten playlist is handed over, never copied */
    size_t n;
    char *p = hg_buf_steal(&x->out_body, &n);
    hg_http_stream_start(x->txn, res, (int64_t)n, NULL, NULL);
    hg_http_stream_write(x->txn, p, n); /* (frees p if the client is gone) */
    hg_http_stream_end(x->txn, 1);
  } else {
    hg_http_respond(x->txn, res);
  }
  x_release(x, X_RESPONSE);
}

static void respond_error(x_t *x, int status, const char *msg) {
  hg_response_t res;
  memset(&res, 0, sizeof(res));
  if (hg_response_error(&res, x->req->arena, status, msg, x->req->id) != 0) {
    res.status = 500;
    res.nheaders = 0;
  }
  add_plan_headers(x, &res); /* errors are never cached: the server adds no-store */
  respond(x, &res);
}

/* ---- freshness ---- */

/* What the playlist buffered in `body` says of itself, or NULL when the body is not a
 * playlist (relayed bodies never are). Scanned once. */
static const hg_hls_info_t *body_info(x_t *x) {
  if (x->mode != M_SNIFF && x->mode != M_BUFFER) return NULL;
  if (!x->info_done) hg_hls_info(x->body.data ? x->body.data : "", x->body.len, &x->info);
  x->info_done = 1;
  return x->info.playlist ? &x->info : NULL;
}

/* How long this answer may be reused (SPEC §5, §7): the policy's TTL, half the target
 * duration for a live playlist, never more than the origin allows nor than what is left
 * of the cached object it comes from. */
static uint64_t answer_ttl(x_t *x, const hg_hls_info_t *info) {
  hg_freshness_t f;
  hg_freshness_parse(x->up_cc, x->up_expires, x->up_date, x->up_age, (int64_t)time(NULL), &f);
  if (x->plan.ignore_origin_cache) memset(&f, 0, sizeof(f));
  x->no_store = f.no_store;
  uint64_t ttl = hg_live_ttl_ms(x->plan.cache_ttl * 1000, x->plan.live_ttl_ms, info, &f);
  if (x->obj_left_ms >= 0 && (uint64_t)x->obj_left_ms < ttl) ttl = (uint64_t)x->obj_left_ms;
  return ttl;
}

/* Whether the plan sets response header `name` itself. */
static int plan_has_header(const x_t *x, const char *name) {
  for (size_t i = 0; i < x->plan.nheaders; i++)
    if (strcasecmp(x->plan.headers[i].name, name) == 0) return 1;
  return 0;
}

/* Adds the Cache-Control of SPEC §7 unless the policy set its own (a plan header). */
static void add_cache_control(x_t *x, hg_response_t *res, uint64_t ttl_ms) {
  if (plan_has_header(x, "Cache-Control")) return;
  char cc[48];
  hg_live_cache_control(cc, sizeof(cc), ttl_ms, x->plan.carries_token, x->no_store);
  const char *v = hg_arena_strndup(x->req->arena, cc, strlen(cc));
  if (v) hg_response_add_header(res, "Cache-Control", 13, v, strlen(v));
}

static void source_abort(x_t *x);

/* THE place where upstream failures become statuses: timeouts → 504, SSRF or
 * allowlist refusals → 403, every other failure (refused, reset, TLS, malformed,
 * redirect loops, oversized playlists) → 502. The message names the origin and the
 * reason, never a credential. */
static void respond_upstream_error(x_t *x, int err, const char *msg) {
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
    respond_error(x, status, status == 504 ? "upstream timed out" : "upstream error");
  else
    respond_error(x, status, text);
}

/* An origin answered with an error status: 404/410 → 404, 416 passes through, anything
 * else → 502 naming the status (and S3's <Code> when there is one). */
static void respond_upstream_status(x_t *x) {
  if (x->status == 404 || x->status == 410) {
    respond_error(x, 404, "no such object");
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
    add_plan_headers(x, &res);
    respond(x, &res);
    return;
  }
  char code[96] = "";
  const char *b = x->body.data, *open = b ? strstr(b, "<Code>") : NULL;
  const char *close = open ? strstr(open, "</Code>") : NULL;
  if (close && close - open - 6 < (long)sizeof(code)) snprintf(code, sizeof(code), " %.*s", (int)(close - open - 6), open + 6);
  char msg[160];
  snprintf(msg, sizeof(msg), "returned %d%s", x->status, code);
  respond_upstream_error(x, HG_EUPSTREAM, msg);
}

/* ---- playlists ---- */

/* The time presigned URLs are signed at: rounded down to a bucket (a tenth of the TTL,
 * at most 5 minutes, at least a second) so a hot playlist rewrites to the same bytes for
 * a while (SPEC §7) and its output can be cached until the bucket ends. */
static void presign_clock(x_t *x) {
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
static int act_presign(x_t *x, const hg_hls_uri_t *uri, hg_buf_t *out) {
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

static int act_proxy(x_t *x, const hg_hls_uri_t *uri, hg_buf_t *out) {
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
  x_t *x = ud;
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
static void respond_playlist(x_t *x, hg_response_t *res, uint64_t ttl_ms) {
  hg_response_add_header(res, "Content-Type", 12, "application/vnd.apple.mpegurl", 29);
  /* SPEC §7: output that carries a viewer's token is `private` (carries_token). */
  add_cache_control(x, res, ttl_ms);
  add_plan_headers(x, res);
  respond(x, res);
}

/* Publishes a rewritten playlist in the output cache until its presign bucket ends (and no
 * longer than the raw object may be cached): under the viewer-independent key when nothing
 * was proxied; under its own key when its proxy params are not a viewer's (plan not
 * `private`); a per-viewer one goes to the fill's waiters only. */
static void store_output(x_t *x, const char *body, size_t len, uint64_t ttl) {
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
static void respond_busy(x_t *x) {
  hg_response_t res;
  memset(&res, 0, sizeof(res));
  if (hg_response_error(&res, x->req->arena, 503, "too many playlists in flight", x->req->id) != 0) {
    res.status = 500;
    res.nheaders = 0;
  }
  hg_response_add_header(&res, "Retry-After", 11, "1", 1);
  add_plan_headers(x, &res);
  hg_log(HG_LOG_WARN, "request %s: 503: playlist memory budget (%zu bytes) exhausted", x->req->id,
         x->ctx->max_playlist * HELD_MULT);
  respond(x, &res);
}

static void rewrite_and_respond(x_t *x) {
  hg_buf_t out = HG_BUF_INIT;
  const char *base = x->final_url;
  size_t in = x->body.len, lim = OUT_MAX_MULT * x->ctx->max_playlist;
  if (in < (lim - OUT_SLACK) / OUT_RATIO) lim = in * OUT_RATIO + OUT_SLACK;
  hg_hls_rewriter_limit(x->ctx->rewriter, lim);
  int rc = hg_hls_rewrite(x->ctx->rewriter, &out, x->body.data ? x->body.data : "", x->body.len,
                          base, strlen(base), decide, x, NULL);
  /* The input is done with: give it back before the output is copied to the server. */
  hg_buf_free(&x->body);
  unhold(x);
  if (rc == HG_ETOOBIG) {
    hg_buf_free(&out);
    respond_upstream_error(x, HG_ETOOBIG, "rewritten playlist larger than the limit");
    return;
  }
  if (rc == HG_EPOLICY || rc == HG_EBUDGET) {
    hg_buf_free(&out);
    respond_error(x, 500, "policy error");
    return;
  }
  if (rc != 0) {
    hg_buf_free(&out);
    hg_log(HG_LOG_ERROR, "request %s: rewrite failed: %s", x->req->id, hg_strerror(rc));
    respond_error(x, rc == HG_ENOMEM ? 500 : 502, "cannot rewrite the playlist");
    return;
  }
  hg_response_t res;
  memset(&res, 0, sizeof(res));
  res.status = 200;
  res.body = ""; /* the body goes in x->out_body: respond hands it over without a copy */
  /* The output never outlives its input, nor the time bucket its presigned URLs were
   * signed in (SPEC §7). */
  uint64_t ttl = answer_ttl(x, body_info(x));
  int64_t left = x->presign_at + x->presign_bucket - (int64_t)time(NULL);
  if (x->plan.has_s3 && left * 1000 < (int64_t)ttl) ttl = left > 0 ? (uint64_t)left * 1000 : 0;
  if (x->out_fill) store_output(x, out.len ? out.data : "", out.len, x->no_store ? 0 : ttl);
  x->out_body = out;
  respond_playlist(x, &res, ttl);
}

/* ---- relaying ---- */

static void source_pause(x_t *x);
static void source_resume(x_t *x);

static void on_drain(void *ud, int status) {
  x_t *x = ud;
  if (status < 0) { /* the client is gone: stop the source, end our side */
    if (x->mode == M_RELAY) {
      x->mode = M_DONE;
      source_abort(x);
      hg_http_stream_end(x->txn, 0);
      x_release(x, X_RESPONSE);
    }
    return;
  }
  if (x->paused) source_resume(x);
}

static int is_generic_type(const char *t) {
  return t == NULL || *t == '\0' || strncasecmp(t, "application/octet-stream", 24) == 0 ||
         strncasecmp(t, "binary/octet-stream", 19) == 0;
}

/* The type a relayed body goes out with: the origin's, else the plan's or a guess from
 * the name when the origin says nothing better, else application/octet-stream (never
 * none: a browser would sniff). */
static const char *relay_type(const x_t *x) {
  const char *ctype = x->ctype;
  if (is_generic_type(ctype)) {
    const char *guess = x->plan.content_type ? x->plan.content_type
                                             : hg_file_type(x->final_url, strlen(x->final_url));
    if (guess) ctype = guess;
  }
  return ctype && *ctype ? ctype : "application/octet-stream";
}

/* The media type of a Content-Type value, lower-cased, without parameters or spaces. */
static void media_type(const char *ct, char *mt, size_t cap) {
  size_t n = 0;
  for (; *ct && *ct != ';' && n + 1 < cap; ct++)
    if (*ct != ' ' && *ct != '\t') mt[n++] = (char)((*ct >= 'A' && *ct <= 'Z') ? *ct + 32 : *ct);
  mt[n] = '\0';
}

/* Media a player consumes and no browser runs as a document: no CSP needed. */
static int is_media_type(const char *mt) {
  return strncmp(mt, "video/", 6) == 0 || strncmp(mt, "audio/", 6) == 0 ||
         strcmp(mt, "application/mp4") == 0 || strcmp(mt, "application/vnd.apple.mpegurl") == 0 ||
         strcmp(mt, "application/x-mpegurl") == 0;
}

/* Security: what a player needs inline (SPEC §9 relay): media, keys and opaque segments,
 * subtitles, images (not SVG: it runs script), JSON (content steering, asset lists), plus
 * the plan's content_types.allow. HTML, XHTML, XML, SVG, JavaScript… are not: served from
 * the gateway's origin they would run there. */
static int type_allowed(const x_t *x, const char *mt) {
  static const char *const exact[] = {"application/octet-stream", "binary/octet-stream", "text/vtt",
                                      "application/ttml+xml", "application/json"};
  if (is_media_type(mt)) return 1;
  if (strncmp(mt, "image/", 6) == 0 && !strstr(mt, "svg") && !strstr(mt, "xml")) return 1;
  for (size_t i = 0; i < sizeof(exact) / sizeof(exact[0]); i++)
    if (strcmp(mt, exact[i]) == 0) return 1;
  for (size_t i = 0; i < x->plan.nct_allow; i++) {
    const char *a = x->plan.ct_allow[i];
    size_t n = strlen(a);
    if (n >= 2 && a[n - 1] == '*' && a[n - 2] == '/' ? strncasecmp(mt, a, n - 1) == 0 : strcasecmp(mt, a) == 0)
      return 1;
  }
  return 0;
}

/* Starts relaying: the head now (the upstream's status, type and validators, plus the
 * plan's headers), then the sniffed bytes and everything that follows. */
static void start_relay(x_t *x) {
  hg_response_t res;
  memset(&res, 0, sizeof(res));
  res.status = x->status;
  const char *ctype = relay_type(x);
  char mt[128];
  media_type(ctype, mt, sizeof(mt));
  int inline_ok = type_allowed(x, mt);
  hg_response_add_header(&res, "Content-Type", 12, ctype, strlen(ctype));
  add_cache_control(x, &res, answer_ttl(x, NULL));
  /* Security: the type is the one we chose, never a sniffed one; anything a browser could
   * render as a document runs in a sandbox (no script, opaque origin) if navigated to. */
  hg_response_add_header(&res, "X-Content-Type-Options", 22, "nosniff", 7);
  if (!is_media_type(mt) && !plan_has_header(x, "Content-Security-Policy")) /* the policy's own CSP wins */
    hg_response_add_header(&res, "Content-Security-Policy", 23, "sandbox", 7);
  /* The encoding passes through with the bytes as the origin sent them (issue 11: a
   * decoded gzip bomb would amplify); what we ask the origin for follows the viewer's
   * Accept-Encoding, so caches must key on it. */
  if (x->cenc) hg_response_add_header(&res, "Content-Encoding", 16, x->cenc, strlen(x->cenc));
  if (x->cenc || x->plan.origin == HG_ORIGIN_HTTP) hg_response_add_header(&res, "Vary", 4, "Accept-Encoding", 15);
  for (size_t i = 0; i < x->nup; i++)
    hg_response_add_header(&res, x->up_headers[i].name, x->up_headers[i].name_len,
                           x->up_headers[i].value, x->up_headers[i].value_len);
  if (x->plan.disposition_name || !inline_ok) {
    hg_buf_clear(&x->tmp);
    hg_buf_puts(&x->tmp, inline_ok ? "inline" : "attachment");
    if (x->plan.disposition_name) hg_buf_puts(&x->tmp, "; filename=\"");
    for (const char *c = x->plan.disposition_name; c && *c; c++)
      if (*c != '"' && *c != '\\' && (unsigned char)*c >= 0x20) hg_buf_putc(&x->tmp, *c);
    if (x->plan.disposition_name) hg_buf_putc(&x->tmp, '"');
    const char *v = hg_arena_strndup(x->req->arena, x->tmp.data, x->tmp.len);
    if (v) hg_response_add_header(&res, "Content-Disposition", 19, v, x->tmp.len);
  }
  add_plan_headers(x, &res);
  x->mode = M_RELAY;
  hg_http_stream_start(x->txn, &res, x->clen, on_drain, x);
  if (x->head_only) { /* the head is all a HEAD needs: stop the source */
    x->mode = M_DONE;
    source_abort(x);
    hg_http_stream_end(x->txn, 1);
    x_release(x, X_RESPONSE);
    return;
  }
  if (x->body.len) { /* the sniffed bytes go first */
    size_t n;
    char *p = hg_buf_steal(&x->body, &n);
    hg_http_stream_write(x->txn, p, n);
  }
}

/* Relays the body, or refuses it (403) when its type may not be served inline and the
 * plan says content_types.otherwise = "refuse". */
static void relay_or_refuse(x_t *x, int final) {
  char mt[128];
  media_type(relay_type(x), mt, sizeof(mt));
  if (x->plan.ct_refuse && !type_allowed(x, mt)) {
    if (!final) source_abort(x);
    hg_buf_clear(&x->tmp);
    hg_buf_printf(&x->tmp, "content type not allowed: %s", mt);
    const char *msg = hg_arena_strndup(x->req->arena, x->tmp.data, x->tmp.len);
    respond_error(x, 403, msg ? msg : "content type not allowed");
    return;
  }
  start_relay(x);
}

/* A 206 whose Content-Range covers the whole object ("bytes 0-N-1/N", the answer to the
 * "Range: bytes=0-" that ffmpeg and others send even for playlists) is the full body:
 * it may be a playlist and is then rewritten and answered 200. */
static int whole_range(const x_t *x) {
  if (x->status != 206) return 0;
  for (size_t i = 0; i < x->nup; i++) {
    if (strcmp(x->up_headers[i].name, "Content-Range") != 0) continue;
    long long a, b, total;
    char star;
    if (sscanf(x->up_headers[i].value, "bytes %lld-%lld/%lld%c", &a, &b, &total, &star) != 3) return 0;
    return a == 0 && b == total - 1;
  }
  return 0;
}

static int is_gzip(const char *enc) {
  return enc && (strcasecmp(enc, "gzip") == 0 || strcasecmp(enc, "x-gzip") == 0);
}

/* Decodes gzip `in` into `out` (concatenated members too), stopping once `out` holds more
 * than `max` bytes, 64 KiB of output at a time so a bomb never gets further than that.
 * *end tells whether the input so far ends a member. Returns 0, HG_ETOOBIG, HG_EUPSTREAM
 * (not gzip) or HG_ENOMEM. */
static int gunzip(z_stream *z, const char *in, size_t len, hg_buf_t *out, size_t max, int *end) {
  z->next_in = (Bytef *)in;
  z->avail_in = (uInt)len;
  for (;;) {
    if (*end && z->avail_in > 0) { /* another member follows */
      inflateReset(z);
      *end = 0;
    }
    if (hg_buf_reserve(out, 65536) != 0) return HG_ENOMEM;
    uInt room = 65536;
    z->next_out = (Bytef *)out->data + out->len;
    z->avail_out = room;
    int zr = inflate(z, Z_NO_FLUSH);
    out->len += room - z->avail_out;
    out->data[out->len] = '\0';
    if (out->len > max) return HG_ETOOBIG;
    if (zr == Z_STREAM_END) {
      *end = 1;
      if (z->avail_in == 0) return 0;
    } else if (zr == Z_BUF_ERROR || (zr == Z_OK && z->avail_in == 0 && z->avail_out > 0)) {
      return 0; /* needs more input */
    } else if (zr != Z_OK) {
      return HG_EUPSTREAM;
    }
  }
}

/* Decodes more of a gzip playlist into x->body, counting it against --max-playlist (the
 * decoded size is what we hold) and the process budget. Returns 0 or an HG_E* code. */
static int gz_body(x_t *x, const char *in, size_t len) {
  if (x->gz == NULL) {
    if ((x->gz = calloc(1, sizeof(*x->gz))) == NULL) return HG_ENOMEM;
    if (inflateInit2(x->gz, 16 + MAX_WBITS) != Z_OK) {
      free(x->gz);
      x->gz = NULL;
      return HG_ENOMEM;
    }
  }
  size_t before = x->body.len;
  int rc = gunzip(x->gz, in, len, &x->body, x->ctx->max_playlist, &x->gz_end);
  if (rc == 0 && hold(x, x->body.len - before) != 0) rc = HG_EBUDGET;
  return rc;
}

/* Ends a playlist that cannot be buffered; the source ends here unless `final` (then
 * src_done does). */
static void buffer_failed(x_t *x, int rc, int final) {
  if (!final) source_abort(x);
  if (rc == HG_EBUDGET) respond_busy(x);
  else if (rc == HG_ETOOBIG) respond_upstream_error(x, rc, "playlist larger than the limit");
  else if (rc == HG_EUPSTREAM) respond_upstream_error(x, rc, "bad response: invalid gzip body");
  else if (rc == HG_ETIMEOUT) respond_upstream_error(x, rc, "playlist body not complete in time");
  else respond_error(x, 500, "out of memory");
}

/* Decides from the bytes so far (all of them when `final`) whether this is a playlist.
 * A gzip body is judged on its first decoded bytes (SPEC §5); a body in an encoding we
 * do not decode is relayed as it is. Returns 1 when decided. */
static int sniff(x_t *x, int final) {
  hg_buf_t dec = HG_BUF_INIT;
  const char *view = x->body.data;
  size_t n = x->body.len, i = 0;
  int gzip = is_gzip(x->cenc), decided = final;
  if (gzip) {
    z_stream z;
    int end = 0;
    memset(&z, 0, sizeof(z));
    if (inflateInit2(&z, 16 + MAX_WBITS) != Z_OK) return buffer_failed(x, HG_ENOMEM, final), 1;
    int rc = gunzip(&z, x->body.data, x->body.len, &dec, SNIFF_MAX, &end);
    inflateEnd(&z);
    /* A gzip header may hold any amount of name or comment: judge after 64 KiB at most. */
    if (rc == HG_ETOOBIG || x->body.len >= 65536) decided = 1;
    else if (rc != 0) hg_buf_clear(&dec), decided = 1; /* not gzip after all: relay it */
    view = dec.data;
    n = dec.len;
  }
  const unsigned char *p = (const unsigned char *)view;
  if (n >= 3 && p[0] == 0xef && p[1] == 0xbb && p[2] == 0xbf) i = 3;
  while (i < n && (p[i] == ' ' || p[i] == '\t' || p[i] == '\r' || p[i] == '\n')) i++;
  /* Media bytes (0x47 sync, ISO boxes, ID3…) never start with '#': relay at once. */
  int maybe = (x->status == 200 || whole_range(x)) && (i == n || p[i] == '#') && (!x->cenc || gzip);
  if (maybe && !decided && n < SNIFF_MAX) {
    hg_buf_free(&dec);
    return 0;
  }
  int playlist = maybe && hg_hls_is_playlist(view ? view : "", n);
  hg_buf_free(&dec);
  if (playlist) {
    x->mode = M_BUFFER;
    int rc;
    if (gzip) { /* from here x->body holds the decoded playlist */
      size_t rawlen;
      char *raw = hg_buf_steal(&x->body, &rawlen);
      rc = gz_body(x, raw, rawlen);
      free(raw);
    } else {
      rc = hold(x, x->body.len) != 0 ? HG_EBUDGET : 0;
    }
    if (rc == 0 && final && gzip && !x->gz_end) rc = HG_EUPSTREAM; /* a truncated gzip body */
    if (rc) {
      buffer_failed(x, rc, final);
      return 1;
    }
    if (final) rewrite_and_respond(x);
  } else {
    relay_or_refuse(x, final);
  }
  return 1;
}

/* ---- source events ---- */

static void src_head(x_t *x, int status, int64_t clen) {
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
static void keep_header(x_t *x, const char *name, size_t nlen, const char *value, size_t vlen) {
  static const char *keep[] = {"ETag", "Last-Modified", "Content-Range", "Accept-Ranges"};
  /* The origin's freshness headers bound reuse (answer_ttl); the gateway sends its own. */
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

static void src_data(x_t *x, char *data, size_t len) {
  if (x->fill && !x->tee_failed) {
    if (x->status != 200 || x->tee.len + len > hg_cache_max_object(x->ctx->cache) ||
        hg_buf_append(&x->tee, data, len) != 0) {
      x->tee_failed = 1;
      hg_buf_free(&x->tee);
    }
  }
  if ((x->mode == M_SNIFF || x->mode == M_BUFFER) && uv_now(x->ctx->loop) > x->buffer_until) {
    free(data);
    buffer_failed(x, HG_ETIMEOUT, 0);
    return;
  }
  switch (x->mode) {
  case M_SNIFF:
    hg_buf_append(&x->body, data, len);
    free(data);
    sniff(x, 0);
    return;
  case M_BUFFER:
    if (x->gz) {
      int rc = gz_body(x, data, len);
      free(data);
      if (rc) buffer_failed(x, rc, 0);
      return;
    }
    if (x->body.len + len > x->ctx->max_playlist) {
      free(data);
      source_abort(x);
      respond_upstream_error(x, HG_ETOOBIG, "playlist larger than the limit");
      return;
    }
    if (hold(x, len) != 0) {
      free(data);
      buffer_failed(x, HG_EBUDGET, 0);
      return;
    }
    hg_buf_append(&x->body, data, len);
    free(data);
    return;
  case M_RELAY:
    hg_http_stream_write(x->txn, data, len);
    if (hg_http_stream_queued(x->txn) >= RELAY_HIGH) source_pause(x);
    return;
  case M_ERRBODY:
    if (x->body.len < ERRBODY_MAX) hg_buf_append(&x->body, data, len < ERRBODY_MAX ? len : ERRBODY_MAX);
    free(data);
    return;
  default:
    free(data);
  }
}

static void serve_obj(x_t *x, hg_cache_obj_t *o);

/* Publishes (or abandons) our cache fill. Returns a retained stale copy when the fetch
 * failed and one exists (stale-if-error), else NULL. */
static hg_cache_obj_t *end_fill(x_t *x, int ok) {
  if (x->fill == NULL) return NULL;
  hg_cache_fill_t *fill = x->fill;
  x->fill = NULL;
  hg_cache_obj_t *o = NULL;
  if (ok && !x->tee_failed && x->status == 200) {
    size_t n;
    char *body = hg_buf_steal(&x->tee, &n);
    if (body == NULL) body = calloc(1, 1);
    o = hg_cache_obj_new(body, n, x->ctype, NULL, NULL, x->final_url);
    for (size_t i = 0; o && i < x->nup; i++) { /* validators travel with the object */
      if (strcmp(x->up_headers[i].name, "ETag") == 0) o->etag = strdup(x->up_headers[i].value);
      else if (strcmp(x->up_headers[i].name, "Last-Modified") == 0)
        o->last_modified = strdup(x->up_headers[i].value);
    }
  }
  uint64_t ttl = answer_ttl(x, body_info(x));
  /* Keep an expired object as long again (at least a minute) to serve if the origin
   * fails; never one the origin said not to store. */
  uint64_t stale = x->no_store ? 0 : ttl > 60000 ? ttl : 60000;
  if (o && x->no_store) ttl = 0; /* this fill's waiters still get it */
  return hg_cache_fill_end(x->ctx->cache, fill, o, uv_now(x->ctx->loop), ttl, stale);
}

/* The source ended (err 0: the whole body arrived). Drops the source reference. */
static void src_done(x_t *x, int err, const char *msg) {
  int failed = err != 0 || (x->mode == M_ERRBODY && x->status >= 500);
  hg_cache_obj_t *stale = end_fill(x, !failed);
  if (stale && failed && x->mode != M_RELAY && x->mode != M_DONE) {
    hg_log(HG_LOG_WARN, "request %s: upstream %s failed (%s); serving a stale copy", x->req->id,
           x->origin_name, msg ? msg : "error status");
    x->req->log_cache = "stale";
    x->fetch = NULL;
    serve_obj(x, stale); /* takes over the source reference */
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
    x_release(x, X_RESPONSE);
    break;
  default:
    if (err) respond_upstream_error(x, err, msg);
    else if (x->mode == M_ERRBODY) respond_upstream_status(x);
    else if (x->mode == M_BUFFER && x->gz && !x->gz_end) buffer_failed(x, HG_EUPSTREAM, 1);
    else if (x->mode == M_BUFFER) rewrite_and_respond(x);
    else sniff(x, 1);
    if (x->mode == M_RELAY) { /* a short body relayed in one go */
      x->mode = M_DONE;
      hg_http_stream_end(x->txn, 1);
      x_release(x, X_RESPONSE);
    }
  }
  x->fetch = NULL;
  x->file = NULL;
  x_release(x, X_SOURCE);
}

/* ---- upstream fetch source (http and s3) ---- */

static int on_fetch_head(void *ud, hg_fetch_t *f, const hg_fetch_head_t *head) {
  (void)f;
  x_t *x = ud;
  x->final_url = hg_arena_strndup(x->req->arena, head->final_url, strlen(head->final_url));
  for (size_t i = 0; i < head->nheaders; i++)
    keep_header(x, head->headers[i].name, head->headers[i].name_len, head->headers[i].value,
                head->headers[i].value_len);
  src_head(x, head->status, head->content_length);
  /* The raw cache holds identity bodies only (a cache hit is never encoded). */
  if (x->cenc) x->tee_failed = 1;
  return 0;
}

static void on_fetch_data(void *ud, hg_fetch_t *f, char *data, size_t len) {
  (void)f;
  src_data(ud, data, len);
}

static void on_fetch_done(void *ud, hg_fetch_t *f, int err, const char *msg) {
  (void)f;
  src_done(ud, err, msg);
}

static const hg_fetch_cbs_t fetch_cbs = {on_fetch_head, on_fetch_data, on_fetch_done};

/* Forwards the client's Range/If-Range (SPEC §6) so 206/416 come from the origin. */
static size_t forward_range(x_t *x, hg_header_t *h, size_t n, size_t cap) {
  static const char *names[] = {"Range", "If-Range"};
  for (size_t i = 0; i < 2 && n < cap; i++) {
    const hg_header_t *r = hg_request_header(x->req, names[i]);
    if (r) h[n++] = *r;
  }
  return n;
}

/* SPEC §5: an LL-HLS blocking reload may wait up to three target durations at the origin
 * before it answers: directed requests get LLHLS_TIMEOUT_MS at least. */
static void blocking_timeout(x_t *x, hg_fetch_opts_t *o) {
  if (x->dir.n && o->read_timeout_ms < LLHLS_TIMEOUT_MS) o->read_timeout_ms = LLHLS_TIMEOUT_MS;
}

/* Whether the viewer's Accept-Encoding takes gzip ("gzip" listed without q=0). */
static int viewer_takes_gzip(x_t *x) {
  const hg_header_t *ae = hg_request_header(x->req, "Accept-Encoding");
  if (ae == NULL) return 0;
  char v[256];
  snprintf(v, sizeof(v), "%.*s", (int)ae->value_len, ae->value);
  for (char *save = NULL, *t = strtok_r(v, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
    t += strspn(t, " \t");
    if (strncasecmp(t, "gzip", 4) != 0 || (t[4] && t[4] != ';' && t[4] != ' ' && t[4] != '\t')) continue;
    const char *q = strstr(t, "q=");
    return q == NULL || strtod(q + 2, NULL) > 0;
  }
  return 0;
}

static int start_fetch(x_t *x) {
  hg_plan_t *p = &x->plan;
  hg_header_t h[24];
  size_t nh = 0;
  hg_fetch_opts_t o;
  memset(&o, 0, sizeof(o));
  o.method = "GET";
  o.read_timeout_ms = p->timeout_ms;
  hg_buf_t url = HG_BUF_INIT, host = HG_BUF_INIT, authz = HG_BUF_INIT;
  char origin[200];
  if (p->origin == HG_ORIGIN_S3) {
    hg_sigv4_config_t cfg = {p->s3.access_key, p->s3.secret_key, p->s3.session_token, p->s3.region, "s3"};
    hg_sigv4_t *sv = hg_sigv4_new(&cfg);
    hg_s3_req_t r;
    memset(&r, 0, sizeof(r));
    r.endpoint = p->s3.endpoint;
    r.bucket = p->s3.bucket;
    r.key = p->s3_key;
    r.key_len = strlen(p->s3_key);
    r.path_style = p->s3.path_style;
    r.time = (int64_t)time(NULL);
    r.query = x->dir.kv; /* LL-HLS directives, signed like any parameter */
    r.nquery = x->dir.n;
    hg_sigv4_auth_t auth;
    int rc = sv ? hg_s3_sign(sv, &r, &url, &host, &authz, &auth) : HG_ENOMEM;
    if (rc == 0) {
      h[nh++] = (hg_header_t){"Authorization", 13, authz.data, authz.len};
      h[nh++] = (hg_header_t){"x-amz-date", 10, auth.amz_date, strlen(auth.amz_date)};
      if (auth.content_sha256)
        h[nh++] = (hg_header_t){"x-amz-content-sha256", 20, auth.content_sha256, strlen(auth.content_sha256)};
      if (auth.security_token)
        h[nh++] = (hg_header_t){"x-amz-security-token", 20, auth.security_token, strlen(auth.security_token)};
      o.url = url.data;
    }
    snprintf(origin, sizeof(origin), "s3 bucket %s", p->s3.bucket);
    x->origin_name = hg_arena_strndup(x->req->arena, origin, strlen(origin));
    o.allow = HG_ADDR_ALL; /* the operator configured this endpoint */
    o.max_redirects = 0;
    blocking_timeout(x, &o);
    if (rc == 0) {
      nh = forward_range(x, h, nh, 24);
      o.headers = h;
      o.nheaders = nh;
      x->fetch = hg_fetch_start(x->ctx->upstream, &o, &fetch_cbs, x);
    }
    hg_sigv4_free(sv);
  } else {
    hg_url_t u;
    int ok = hg_url_parse(p->url, strlen(p->url), &u) == 0 && u.has_scheme && u.has_authority;
    snprintf(origin, sizeof(origin), "%.*s://%.*s", ok ? (int)u.scheme_len : 1, ok ? u.scheme : "?",
             ok ? (int)(u.host_len + (u.has_port ? u.port_len + 1 : 0)) : 1, ok ? u.host : "?");
    x->origin_name = hg_arena_strndup(x->req->arena, origin, strlen(origin));
    for (size_t i = 0; i < p->nreq_headers && nh < 16; i++) h[nh++] = p->req_headers[i];
    nh = forward_range(x, h, nh, 24);
    o.url = p->url;
    if (x->dir.n) { /* SPEC §5: the player's LL-HLS directives go to the origin */
      if (hg_directives_apply(&x->dir, &url, p->url, strlen(p->url)) == 0) o.url = url.data;
      else o.url = NULL;
    }
    o.headers = h;
    o.nheaders = nh;
    blocking_timeout(x, &o);
    o.allow = p->allow_private;
    o.allow_hosts = p->allow_hosts;
    o.nallow_hosts = p->nallow_hosts;
    o.max_redirects = p->max_redirects;
    /* Ask for gzip only for a viewer that takes it (a relayed body keeps its encoding);
     * never with ranges (a gzip-encoded 206 cannot be decoded on its own). */
    o.accept_gzip = hg_request_header(x->req, "Range") == NULL && viewer_takes_gzip(x) ? HG_FETCH_GZIP_RAW : 0;
    x->fetch = o.url ? hg_fetch_start(x->ctx->upstream, &o, &fetch_cbs, x) : NULL;
  }
  hg_buf_free(&url);
  hg_buf_free(&host);
  hg_buf_free(&authz);
  return x->fetch ? 0 : HG_EINVAL;
}

/* ---- source control ---- */

static void source_pause(x_t *x) {
  x->paused = 1;
  if (x->fetch) hg_fetch_pause(x->fetch);
  if (x->file) hg_file_fetch_pause(x->file);
}

static void feed_obj(x_t *x);

static void source_resume(x_t *x) {
  x->paused = 0;
  if (x->fetch) hg_fetch_resume(x->fetch);
  if (x->file) hg_file_fetch_resume(x->file);
  if (x->cobj) feed_obj(x);
}

static hg_cache_obj_t *end_fill(x_t *x, int ok);

/* Stops the source: no more source events; drops the source reference. A cache fill in
 * progress is abandoned (its waiters fetch by themselves). */
static void source_abort(x_t *x) {
  hg_cache_obj_release(end_fill(x, 0));
  if (x->fetch) hg_fetch_abort(x->fetch);
  else if (x->file) hg_file_fetch_abort(x->file);
  else if (x->cobj) hg_cache_obj_release(x->cobj);
  else return; /* no source running */
  x->cobj = NULL;
  x->fetch = NULL;
  x->file = NULL;
  x_release(x, X_SOURCE);
}

/* ---- cache source ---- */

/* Feeds a cached object through the same path as a fetched one (sniff → rewrite or
 * relay). Uses the exchange's source reference; releases `o`. */
static void serve_obj(x_t *x, hg_cache_obj_t *o) {
  x->nup = 0;
  x->cenc = NULL; /* cached bodies are identity (a failed fetch may have named one) */
  hg_buf_clear(&x->body); /* a failed fetch may have left part of an error body */
  x->ctype = o->content_type ? hg_arena_strndup(x->req->arena, o->content_type, strlen(o->content_type)) : NULL;
  if (o->etag) keep_header(x, "ETag", 4, o->etag, strlen(o->etag));
  if (o->last_modified) keep_header(x, "Last-Modified", 13, o->last_modified, strlen(o->last_modified));
  if (o->final_url) x->final_url = hg_arena_strndup(x->req->arena, o->final_url, strlen(o->final_url));
  uint64_t now = uv_now(x->ctx->loop);
  x->obj_left_ms = o->expires_ms > now ? (int64_t)(o->expires_ms - now) : 0;
  x->up_cc = x->up_expires = x->up_date = x->up_age = NULL; /* a failed fetch's, if any */
  src_head(x, 200, (int64_t)o->len);
  x->req->log_upstream_status = 0;
  x->cobj = o;
  x->coff = 0;
  feed_obj(x);
}

/* Feeds the cached object in 64 KiB pieces while the client keeps up (Memory: a viewer
 * that stops reading a cached 32 MiB object holds RELAY_HIGH, not a copy of it). Ends
 * with src_done, which drops the source reference. */
static void feed_obj(x_t *x) {
  x->feeding++; /* what it feeds may end the exchange: not under this loop */
  while (x->cobj && !x->paused && x->mode != M_DONE && x->coff < x->cobj->len) {
    size_t n = x->cobj->len - x->coff < 65536 ? x->cobj->len - x->coff : 65536;
    char *p = malloc(n);
    if (p == NULL) break;
    memcpy(p, x->cobj->body + x->coff, n);
    x->coff += n;
    src_data(x, p, n);
  }
  if (x->cobj && (x->coff == x->cobj->len || x->mode == M_DONE || !x->paused)) {
    int err = x->coff == x->cobj->len || x->mode == M_DONE ? 0 : UV_ENOMEM;
    hg_cache_obj_release(x->cobj);
    x->cobj = NULL;
    src_done(x, err, err ? "out of memory" : NULL);
  }
  x->feeding--;
  x_release(x, 0);
}

static void start_source(x_t *x);
static void fetch_raw(x_t *x);
static void serve_output(x_t *x, hg_cache_obj_t *o);

/* Another worker's fill ended: runs on that worker's thread, so only queue ourselves. */
static void on_cache_notify(hg_cache_waiter_t *w) {
  x_t *x = (x_t *)((char *)w - offsetof(x_t, waiter));
  hg_pipeline_ctx_t *ctx = x->ctx;
  uv_mutex_lock(&ctx->wake_lock);
  x->wnext = ctx->woken;
  ctx->woken = x;
  uv_mutex_unlock(&ctx->wake_lock);
  uv_async_send(&ctx->wake);
}

static void on_wake(uv_async_t *a) {
  hg_pipeline_ctx_t *ctx = a->data;
  uv_mutex_lock(&ctx->wake_lock);
  x_t *list = ctx->woken;
  ctx->woken = NULL;
  uv_mutex_unlock(&ctx->wake_lock);
  while (list) {
    x_t *x = list;
    list = x->wnext;
    if (x->waiting_output) {
      x->waiting_output = 0;
      if (x->waiter.obj) serve_output(x, x->waiter.obj);
      else fetch_raw(x); /* that rewrite did not happen: do our own */
    } else if (x->waiter.obj) {
      x->req->log_cache = "hit";
      serve_obj(x, x->waiter.obj);
    } else { /* the fill failed: fetch by ourselves */
      start_source(x);
    }
  }
}

/* The cache key: the object's identity plus the request headers that vary it. Empty
 * when this request must bypass the cache: ranges (a 206 is never stored under the
 * plain key) and LL-HLS directed or delta requests. */
static void cache_key(x_t *x, hg_buf_t *k) {
  hg_plan_t *p = &x->plan;
  if (hg_request_header(x->req, "Range")) return;
  if (p->origin == HG_ORIGIN_S3) {
    hg_buf_printf(k, "s3\n%s\n%s\n%s", p->s3.endpoint, p->s3.bucket, p->s3_key);
  } else if (p->origin == HG_ORIGIN_HTTP) {
    hg_buf_printf(k, "http\n%s", p->url);
    for (size_t i = 0; i < p->nreq_headers; i++)
      hg_buf_printf(k, "\n%s:%s", p->req_headers[i].name, p->req_headers[i].value);
  } else {
    return;
  }
  /* SPEC §5: a directed or delta reply has its own key, never the plain URL's; equal
   * directed requests share it, so they wait on one upstream request. */
  if (x->dir.n) hg_buf_printf(k, "\n?%s", x->dir.query);
}

/* The output cache key: the raw object's key, everything in the plan that shapes the
 * rewritten bytes (rules, proxy mapping and params — so the viewer's token — presign
 * settings and time bucket). Empty when the output must not be cached: no raw caching,
 * an on_uri hook (it may depend on the viewer), or a path that is not a playlist's. */
static void output_key(x_t *x, hg_buf_t *k) {
  hg_plan_t *p = &x->plan;
  if (p->cache_ttl == 0 || p->hook_ref >= 0) return;
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
  hg_buf_printf(k, "%d\n%s\n%s\n%s\n", p->default_action, p->proxy_from ? p->proxy_from : "",
                p->proxy_to ? p->proxy_to : "", p->proxy_prefix ? p->proxy_prefix : "");
  if (p->has_s3)
    hg_buf_printf(k, "%s\n%s\n%s\n%s\n%d\n", p->s3.public_endpoint ? p->s3.public_endpoint : p->s3.endpoint,
                  p->s3.bucket, p->s3.access_key, p->s3.region, p->s3.path_style);
  /* The presign time bucket only when URIs may be presigned: otherwise it would make a
   * new key (a new copy of the output) every second. */
  hg_buf_printf(k, "%u\n%s\n%lld", p->presign_ttl, p->presign_prefix ? p->presign_prefix : "",
                p->has_s3 ? (long long)x->presign_at : 0LL);
  /* The viewer-independent key stops here; the per-viewer one adds the proxy params. */
  hg_buf_clear(&x->shared_key);
  hg_buf_append(&x->shared_key, k->data, k->len);
  hg_buf_puts(&x->shared_key, "\nshared");
  for (size_t i = 0; i < p->nproxy_params; i++)
    hg_buf_printf(k, "\n%s=%s", p->proxy_params[i].name, p->proxy_params[i].value);
}

/* Answers from a cached rewritten playlist; releases `o`. No source runs. */
static void serve_output(x_t *x, hg_cache_obj_t *o) {
  hg_response_t res;
  memset(&res, 0, sizeof(res));
  res.status = 200;
  res.body = ""; /* one copy, handed to the server by respond (not arena + write buffer) */
  int rc = hg_buf_append(&x->out_body, o->body, o->len);
  uint64_t now = uv_now(x->ctx->loop);
  uint64_t left = o->expires_ms > now ? o->expires_ms - now : 0;
  hg_cache_obj_release(o);
  x->live &= ~(unsigned)X_SOURCE; /* no source will run */
  x->req->log_cache = "hit";
  if (rc != 0) respond_error(x, 500, "out of memory");
  else respond_playlist(x, &res, left);
}

/* The raw object: from the cache, from another request's fill, or from the origin. */
static void fetch_raw(x_t *x) {
  hg_pipeline_ctx_t *ctx = x->ctx;
  if (ctx->cache && (x->plan.cache_ttl > 0 || x->dir.n)) {
    hg_buf_t key = HG_BUF_INIT;
    cache_key(x, &key);
    if (key.len) {
      hg_cache_obj_t *o = NULL;
      x->waiter.notify = on_cache_notify;
      int rc = hg_cache_lookup(ctx->cache, key.data, key.len, uv_now(ctx->loop), &x->waiter, &o, &x->fill);
      hg_buf_free(&key);
      x->req->log_cache = rc == HG_CACHE_HIT ? "hit" : rc == HG_CACHE_WAIT ? "wait" : "miss";
      if (rc == HG_CACHE_HIT) {
        serve_obj(x, o);
        return;
      }
      if (rc == HG_CACHE_WAIT) return; /* on_wake continues */
    }
    hg_buf_free(&key);
  }
  start_source(x);
}

/* ---- entry ---- */

/* Starts the plan's origin. If it cannot even start, answers the error and drops the
 * source reference. */
static void start_source(x_t *x) {
  hg_plan_t *p = &x->plan;
  if (p->origin == HG_ORIGIN_FILE) {
    const hg_header_t *r = hg_request_header(x->req, "Range"), *ir = hg_request_header(x->req, "If-Range");
    x->file = hg_file_fetch_start(x->ctx->loop, p->file_root, p->file_path,
                                  r ? hg_arena_strndup(x->req->arena, r->value, r->value_len) : NULL,
                                  ir ? hg_arena_strndup(x->req->arena, ir->value, ir->value_len) : NULL,
                                  x->final_url, &fetch_cbs, x);
    if (x->file) return;
  } else if (start_fetch(x) == 0) {
    return;
  }
  hg_cache_obj_release(end_fill(x, 0));
  x->live &= ~(unsigned)X_SOURCE; /* no source will run */
  respond_upstream_error(x, HG_EINVAL, "cannot start the request");
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
  uv_async_init(loop, &ctx->wake, on_wake);
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
  x_t *x = calloc(1, sizeof(*x));
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
  presign_clock(x);
  if (plan->origin != HG_ORIGIN_FILE && hg_directives_read(req, &x->dir) != 0) {
    x->live &= ~(unsigned)X_SOURCE; /* no source will run */
    respond_error(x, 500, "out of memory");
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
      respond_error(x, 400, "bad path");
      return;
    }
    start_source(x);
    return;
  }
  /* A hot playlist: its rewritten bytes may already be cached (or being made). */
  if (ctx->cache) {
    hg_buf_t key = HG_BUF_INIT;
    output_key(x, &key);
    hg_cache_obj_t *o = NULL;
    if (key.len && hg_cache_peek(ctx->cache, x->shared_key.data, x->shared_key.len, uv_now(ctx->loop), &o)) {
      hg_buf_free(&key);
      serve_output(x, o); /* rewritten for another viewer, identical for this one */
      return;
    }
    if (key.len) {
      x->waiter.notify = on_cache_notify;
      x->waiting_output = 1;
      int rc = hg_cache_lookup(ctx->cache, key.data, key.len, uv_now(ctx->loop), &x->waiter, &o, &x->out_fill);
      hg_buf_free(&key);
      if (rc == HG_CACHE_WAIT) return; /* on_wake continues */
      x->waiting_output = 0;
      if (rc == HG_CACHE_HIT) {
        serve_output(x, o);
        return;
      }
    }
    hg_buf_free(&key);
  }
  fetch_raw(x);
}
