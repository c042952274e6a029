/* origin.c — the sources of an exchange (see exchange.h): the upstream fetch for http
 * and s3 origins (SigV4-signed headers, LL-HLS directives, Range, gzip by the viewer's
 * Accept-Encoding, timeouts) and local files; starting, pausing, resuming and aborting
 * whichever runs.
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

static int on_fetch_head(void *ud, hg_fetch_t *f, const hg_fetch_head_t *head);
static void on_fetch_data(void *ud, hg_fetch_t *f, char *data, size_t len);
static void on_fetch_done(void *ud, hg_fetch_t *f, int err, const char *msg);
static size_t forward_range(exchange_t *x, hg_header_t *h, size_t n, size_t cap);
static void blocking_timeout(exchange_t *x, hg_fetch_opts_t *o);
static int viewer_takes_gzip(exchange_t *x);
static int start_fetch(exchange_t *x);

static int on_fetch_head(void *ud, hg_fetch_t *f, const hg_fetch_head_t *head) {
  (void)f;
  exchange_t *x = ud;
  x->final_url = hg_arena_strndup(x->req->arena, head->final_url, strlen(head->final_url));
  for (size_t i = 0; i < head->nheaders; i++)
    hg__x_keep_header(x, head->headers[i].name, head->headers[i].name_len, head->headers[i].value,
                head->headers[i].value_len);
  hg__x_src_head(x, head->status, head->content_length);
  /* The raw cache holds identity bodies only (a cache hit is never encoded). */
  if (x->cenc) x->tee_failed = 1;
  return 0;
}

static void on_fetch_data(void *ud, hg_fetch_t *f, char *data, size_t len) {
  (void)f;
  hg__x_src_data(ud, data, len);
}

static void on_fetch_done(void *ud, hg_fetch_t *f, int err, const char *msg) {
  (void)f;
  hg__x_src_done(ud, err, msg);
}

static const hg_fetch_cbs_t fetch_cbs = {on_fetch_head, on_fetch_data, on_fetch_done};

/* Forwards the client's Range/If-Range (SPEC §6) so 206/416 come from the origin. */
static size_t forward_range(exchange_t *x, hg_header_t *h, size_t n, size_t cap) {
  static const char *names[] = {"Range", "If-Range"};
  for (size_t i = 0; i < 2 && n < cap; i++) {
    const hg_header_t *r = hg_request_header(x->req, names[i]);
    if (r) h[n++] = *r;
  }
  return n;
}

/* SPEC §5: an LL-HLS blocking reload may wait up to three target durations at the origin
 * before it answers: directed requests get LLHLS_TIMEOUT_MS at least. */
static void blocking_timeout(exchange_t *x, hg_fetch_opts_t *o) {
  if (x->dir.n && o->read_timeout_ms < LLHLS_TIMEOUT_MS) o->read_timeout_ms = LLHLS_TIMEOUT_MS;
}

/* Whether the viewer's Accept-Encoding takes gzip ("gzip" listed without q=0). */
static int viewer_takes_gzip(exchange_t *x) {
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

static int start_fetch(exchange_t *x) {
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
      nh += hg_sigv4_auth_headers(&auth, &authz, h + nh);
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

void hg__x_source_pause(exchange_t *x) {
  x->paused = 1;
  if (x->fetch) hg_fetch_pause(x->fetch);
  if (x->file) hg_file_fetch_pause(x->file);
}

void hg__x_source_resume(exchange_t *x) {
  x->paused = 0;
  if (x->fetch) hg_fetch_resume(x->fetch);
  if (x->file) hg_file_fetch_resume(x->file);
  if (x->cobj) hg__x_feed_obj(x);
}

/* Stops the source: no more source events; drops the source reference. A cache fill in
 * progress is abandoned (its waiters fetch by themselves). */
void hg__x_source_abort(exchange_t *x) {
  hg_cache_obj_release(hg__x_end_fill(x, 0));
  if (x->fetch) hg_fetch_abort(x->fetch);
  else if (x->file) hg_file_fetch_abort(x->file);
  else if (x->cobj) hg_cache_obj_release(x->cobj);
  else return; /* no source running */
  x->cobj = NULL;
  x->fetch = NULL;
  x->file = NULL;
  hg__x_release(x, X_SOURCE);
}

/* Starts the plan's origin. If it cannot even start, answers the error and drops the
 * source reference. */
void hg__x_start_source(exchange_t *x) {
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
  hg_cache_obj_release(hg__x_end_fill(x, 0));
  x->live &= ~(unsigned)X_SOURCE; /* no source will run */
  hg__x_respond_upstream_error(x, HG_EINVAL, "cannot start the request");
}
