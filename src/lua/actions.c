/* actions.c — the per-URI playlist actions of a plan (see actions.h): class rules,
 * proxy (prefix mapping, query style, signed child URLs), presign (buckets, prefix),
 * absolute, keep, drop. Shared by the gateway's rewrite and the busted module.
 */
#include "lua/actions.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "base/error.h"
#include "crypto/hash.h"
#include "url/url.h"

void hg_actions_clock(hg_actions_t *a, const hg_plan_t *p, int64_t now) {
  int64_t b = p->presign_ttl / 10;
  if (b > 300) b = 300;
  if (b < 1) b = 1;
  a->presign_at = now - now % b;
  a->presign_bucket = b;
}

hg_action_t hg_actions_for_class(const hg_plan_t *p, hg_hls_class_t cls) {
  hg_action_t act = p->actions[cls];
  int parent = hg_hls_class_parent(cls);
  if (act == HG_ACT_UNSET && parent >= 0) act = p->actions[parent];
  return act == HG_ACT_UNSET ? p->default_action : act;
}

hg_action_t hg_actions_resolve(const hg_plan_t *p, hg_action_t act, hg_hls_class_t cls) {
  if (act == HG_ACT_PRESIGN && cls == HG_HLS_PRELOAD_HINT)
    return p->proxy_prefix || p->proxy_from ? HG_ACT_PROXY : HG_ACT_ABSOLUTE;
  return act;
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
static int act_presign(hg_actions_t *a, const hg_plan_t *p, const hg_hls_uri_t *uri, hg_buf_t *out) {
  if (!p->has_s3) return hg_hls_absolute(uri, out);
  hg_buf_clear(&a->tmp);
  if (s3_base(&a->tmp, &p->s3)) return HG_ENOMEM;
  size_t blen = a->tmp.len;
  if (uri->url_len <= blen || strncasecmp(uri->url, a->tmp.data, blen) != 0) return hg_hls_absolute(uri, out);
  size_t klen = strcspn(uri->url + blen, "?#");
  hg_buf_clear(&a->tmp);
  if (hg_url_decode(&a->tmp, uri->url + blen, klen, HG_URL_DEC_NO_NUL) != 0) return hg_hls_absolute(uri, out);
  if (p->presign_prefix && strncmp(a->tmp.data, p->presign_prefix, strlen(p->presign_prefix)) != 0)
    return hg_hls_absolute(uri, out);
  if (a->signer == NULL) {
    hg_sigv4_config_t cfg = {p->s3.access_key, p->s3.secret_key, p->s3.session_token, p->s3.region, "s3"};
    if ((a->signer = hg_sigv4_new(&cfg)) == NULL) return HG_ENOMEM;
  }
  hg_s3_req_t r;
  memset(&r, 0, sizeof(r));
  r.endpoint = p->s3.public_endpoint ? p->s3.public_endpoint : p->s3.endpoint;
  r.bucket = p->s3.bucket;
  r.key = a->tmp.data;
  r.key_len = a->tmp.len;
  r.path_style = p->s3.path_style;
  r.time = a->presign_at;
  r.expires = p->presign_ttl;
  int rc = hg_s3_presign(a->signer, &r, out);
  return rc ? rc : HG_HLS_REPLACE;
}

/* Appends "exp=E&sig=S&" for `url` (plan.proxy.sign, see plan.h). The signature covers
 * exp, the URL and the value of every proxy param (e.g. the stream's upstream headers):
 * HMAC(exp "\n" url ["\n" value]…). Returns 0 or an error code. */
static int proxy_sign(const hg_actions_t *a, const hg_plan_t *p, const char *url, size_t n, hg_buf_t *out) {
  uint64_t ttl = p->proxy_sign_ttl;
  uint64_t now = a->sign_now ? (uint64_t)a->sign_now : (uint64_t)time(NULL);
  uint64_t exp = (now / ttl + 2) * ttl; /* between ttl and 2*ttl from now */
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

/* proxy: a gateway URL that carries the plan's params (e.g. the viewer's token). */
static int act_proxy(hg_actions_t *a, const hg_plan_t *p, const hg_hls_uri_t *uri, hg_buf_t *out) {
  int rc;
  if (p->proxy_prefix) {
    /* "…/proxy?" [exp=E&sig=S&] [name=value&]… "url=" encoded-URL: the params go before
     * the URL so that it still ends with the origin's path (players such as ffmpeg judge
     * a segment by the extension at the end of its URL). A prefix without '?' gets them
     * after. */
    const char *q = strchr(p->proxy_prefix, '?');
    size_t qlen = q ? (size_t)(q - p->proxy_prefix) + 1 : strlen(p->proxy_prefix);
    rc = hg_buf_append(out, p->proxy_prefix, qlen);
    if (!rc && p->proxy_sign_secret) rc = proxy_sign(a, p, uri->url, uri->url_len, out);
    for (size_t i = 0; q && !rc && i < p->nproxy_params; i++) {
      const hg_header_t *kv = &p->proxy_params[i];
      rc = hg_url_query_add(out, kv->name, kv->name_len, kv->value, kv->value_len);
      if (!rc) rc = hg_buf_putc(out, '&');
    }
    if (!rc) rc = hg_buf_puts(out, p->proxy_prefix + qlen);
    if (!rc) rc = hg_url_encode(out, uri->url, uri->url_len, 0);
    for (size_t i = 0; !q && !rc && i < p->nproxy_params; i++) { /* "prefix<url>?a=1&b=2" */
      const hg_header_t *kv = &p->proxy_params[i];
      if (i == 0) rc = hg_buf_putc(out, '?');
      if (!rc) rc = hg_url_query_add(out, kv->name, kv->name_len, kv->value, kv->value_len);
    }
    return rc ? rc : HG_HLS_REPLACE;
  }
  size_t flen = p->proxy_from ? strlen(p->proxy_from) : 0;
  if (!p->proxy_from || uri->url_len < flen || strncmp(uri->url, p->proxy_from, flen) != 0)
    return hg_hls_absolute(uri, out); /* outside the proxied tree */
  hg_buf_clear(&a->tmp);
  rc = hg_buf_puts(&a->tmp, p->proxy_to);
  if (!rc) rc = hg_buf_append(&a->tmp, uri->url + flen, uri->url_len - flen);
  /* Set each param (replacing one already there: a token is never added twice), from
   * one scratch buffer to the other, the last one straight into out. */
  for (size_t i = 0; !rc && i + 1 < p->nproxy_params; i++) {
    const hg_header_t *kv = &p->proxy_params[i];
    hg_buf_clear(&a->tmp2);
    rc = hg_url_query_set(&a->tmp2, a->tmp.data, a->tmp.len, kv->name, kv->value);
    hg_buf_t swap = a->tmp;
    a->tmp = a->tmp2;
    a->tmp2 = swap;
  }
  if (!rc && p->nproxy_params > 0) {
    const hg_header_t *kv = &p->proxy_params[p->nproxy_params - 1];
    rc = hg_url_query_set(out, a->tmp.data, a->tmp.len, kv->name, kv->value);
  } else if (!rc) {
    rc = hg_buf_append(out, a->tmp.data, a->tmp.len);
  }
  return rc ? rc : HG_HLS_REPLACE;
}

int hg_actions_do(hg_actions_t *a, const hg_plan_t *p, hg_action_t act, const hg_hls_uri_t *uri,
                  hg_buf_t *out) {
  switch (act) {
  case HG_ACT_DROP: return HG_HLS_DROP;
  case HG_ACT_ABSOLUTE: return hg_hls_absolute(uri, out);
  case HG_ACT_PROXY: a->proxied++; return act_proxy(a, p, uri, out);
  case HG_ACT_PRESIGN: return act_presign(a, p, uri, out);
  default: return HG_HLS_KEEP;
  }
}

void hg_actions_free(hg_actions_t *a) {
  hg_buf_free(&a->tmp);
  hg_buf_free(&a->tmp2);
  hg_sigv4_free(a->signer);
  a->signer = NULL;
}
