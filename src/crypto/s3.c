/* s3.c — S3 addressing over the SigV4 signer (see sigv4.h): path-style and
 * virtual-hosted targets, endpoints with or without a scheme or a default port, and the
 * presigned URL or signed headers of one object request.
 */
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "base/error.h"
#include "crypto/sigv4.h"
#include "crypto/sigv4_internal.h"

/* ---- S3 addressing ------------------------------------------------------------------- */

/* Splits an endpoint into scheme and host[:port] (default port dropped) and, with the
 * bucket, builds the Host value into hostbuf. Returns 0 or HG_EINVAL. */
static int s3_target(const hg_s3_req_t *q, const char **scheme, char *hostbuf, size_t cap,
                     size_t *host_len) {
  const char *e = q->endpoint;
  if (e == NULL || q->bucket == NULL) return HG_EINVAL;
  int https = 1;
  if (strncasecmp(e, "https://", 8) == 0) {
    e += 8;
  } else if (strncasecmp(e, "http://", 7) == 0) {
    e += 7;
    https = 0;
  } else if (strstr(e, "://")) {
    return HG_EINVAL;
  }
  *scheme = https ? "https" : "http";
  size_t alen = strcspn(e, "/?#");
  if (e[alen] == '/' && e[alen + 1] == '\0') {
    /* a trailing slash is fine */
  } else if (e[alen] != '\0') {
    return HG_EINVAL; /* no base path, query or fragment */
  }
  if (alen == 0) return HG_EINVAL;
  /* host and port */
  const char *colon = NULL;
  if (e[0] == '[') {
    const char *rb = memchr(e, ']', alen);
    if (rb == NULL) return HG_EINVAL;
    for (const char *p = e + 1; p < rb; p++)
      if (!strchr("0123456789abcdefABCDEF:.", *p)) return HG_EINVAL;
    if ((size_t)(rb + 1 - e) < alen) {
      if (rb[1] != ':') return HG_EINVAL;
      colon = rb + 1;
    }
  } else {
    colon = memchr(e, ':', alen);
    for (const char *p = e; p < (colon ? colon : e + alen); p++) {
      unsigned char c = (unsigned char)*p;
      if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
            c == '-' || c == '.'))
        return HG_EINVAL;
    }
  }
  size_t hlen = colon ? (size_t)(colon - e) : alen;
  if (hlen == 0) return HG_EINVAL;
  size_t plen = colon ? alen - hlen - 1 : 0;
  int drop_port = 0;
  if (colon) {
    if (plen == 0 || plen > 5) return HG_EINVAL;
    long port = 0;
    for (size_t i = 0; i < plen; i++) {
      if (colon[1 + i] < '0' || colon[1 + i] > '9') return HG_EINVAL;
      port = port * 10 + (colon[1 + i] - '0');
    }
    if (port < 1 || port > 65535) return HG_EINVAL;
    drop_port = (https && port == 443) || (!https && port == 80);
  }
  /* bucket */
  size_t bl = strlen(q->bucket);
  if (bl == 0 || bl > 255) return HG_EINVAL;
  for (size_t i = 0; i < bl; i++) {
    unsigned char c = (unsigned char)q->bucket[i];
    int dns = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.';
    int path_ok = dns || (c >= 'A' && c <= 'Z') || c == '_';
    if (q->path_style ? !path_ok : !dns) return HG_EINVAL;
  }
  if (!q->path_style && (bl > 63 || q->bucket[0] == '.' || q->bucket[bl - 1] == '.'))
    return HG_EINVAL;
  size_t need = (q->path_style ? 0 : bl + 1) + hlen + (colon && !drop_port ? plen + 1 : 0);
  if (need >= cap) return HG_EINVAL;
  size_t k = 0;
  if (!q->path_style) {
    memcpy(hostbuf, q->bucket, bl);
    hostbuf[bl] = '.';
    k = bl + 1;
  }
  memcpy(hostbuf + k, e, hlen);
  k += hlen;
  if (colon && !drop_port) {
    memcpy(hostbuf + k, colon, plen + 1);
    k += plen + 1;
  }
  hostbuf[k] = '\0';
  *host_len = k;
  return 0;
}

static int s3_creq(const hg_s3_req_t *q, creq_t *r, char *hostbuf, size_t cap, int presign) {
  memset(r, 0, sizeof(*r));
  size_t hl;
  if (s3_target(q, &r->scheme, hostbuf, cap, &hl)) return HG_EINVAL;
  if (q->key == NULL && q->key_len) return HG_EINVAL;
  r->method = q->method ? q->method : "GET";
  r->host = hostbuf;
  r->host_len = hl;
  int n = 0;
  r->path[n] = "/", r->path_len[n++] = 1;
  if (q->path_style) {
    r->path[n] = q->bucket, r->path_len[n++] = strlen(q->bucket);
    if (q->key_len) r->path[n] = "/", r->path_len[n++] = 1;
  }
  if (q->key_len) r->path[n] = q->key, r->path_len[n++] = q->key_len;
  r->npath = n;
  r->query = q->query;
  r->nquery = q->nquery;
  r->headers = q->headers;
  r->nheaders = q->nheaders;
  r->time = q->time;
  r->expires = q->expires;
  r->presign = presign;
  r->content_sha256 = 1;
  r->payload = presign ? HG_SIGV4_UNSIGNED_PAYLOAD
                       : q->payload_hash ? q->payload_hash : HG_SIGV4_EMPTY_SHA256;
  if ((r->nquery && !r->query) || (r->nheaders && !r->headers)) return HG_EINVAL;
  return 0;
}

int hg_s3_presign(hg_sigv4_t *s, const hg_s3_req_t *req, hg_buf_t *url) {
  creq_t r;
  char host[512];
  if (s == NULL || req == NULL || url == NULL || s3_creq(req, &r, host, sizeof(host), 1))
    return HG_EINVAL;
  if (r.nheaders) return HG_EINVAL; /* a presign signs host only: the player sends nothing else */
  return hg__sigv4_presign(s, &r, url);
}

int hg_s3_sign(hg_sigv4_t *s, const hg_s3_req_t *req, hg_buf_t *url, hg_buf_t *host,
               hg_buf_t *authz, hg_sigv4_auth_t *out) {
  creq_t r;
  char hb[512];
  if (s == NULL || req == NULL || authz == NULL || out == NULL || host == NULL ||
      s3_creq(req, &r, hb, sizeof(hb), 0))
    return HG_EINVAL;
  size_t hstart = host->len;
  int rc = hg_buf_append(host, hb, r.host_len);
  if (rc) return rc;
  rc = hg__sigv4_sign_headers(s, &r, url, authz, out);
  if (rc) {
    host->len = hstart;
    if (host->data) host->data[hstart] = '\0';
  }
  return rc;
}

size_t hg_sigv4_auth_headers(const hg_sigv4_auth_t *auth, const hg_buf_t *authz, hg_header_t out[4]) {
  size_t n = 0;
  out[n++] = (hg_header_t){"authorization", 13, authz->data ? authz->data : "", authz->len};
  out[n++] = (hg_header_t){"x-amz-date", 10, auth->amz_date, strlen(auth->amz_date)};
  if (auth->content_sha256)
    out[n++] = (hg_header_t){"x-amz-content-sha256", 20, auth->content_sha256, strlen(auth->content_sha256)};
  if (auth->security_token)
    out[n++] = (hg_header_t){"x-amz-security-token", 20, auth->security_token, strlen(auth->security_token)};
  return n;
}
