/* live.c — LL-HLS directives and per-answer freshness (see live.h). */
#define _GNU_SOURCE /* memmem */
#include "gateway/live.h"

#include <stdio.h>
#include <string.h>

#include "base/error.h"
#include "url/url.h"

static const char *const NAMES[HG_DIRECTIVES_MAX] = {"_HLS_msn", "_HLS_part", "_HLS_skip",
                                                     "_HLS_pathway", "_HLS_primary_id"};

int hg_directives_read(const hg_request_t *req, hg_directives_t *d) {
  memset(d, 0, sizeof(*d));
  d->query = "";
  const char *q = memchr(req->target, '?', req->target_len);
  if (q == NULL) return 0;
  q++;
  /* Hot path: most queries have no directive; one needs "HLS" or an escape to spell it. */
  size_t qn = req->target_len - (size_t)(q - req->target);
  if (memmem(q, qn, "HLS", 3) == NULL && memchr(q, '%', qn) == NULL) return 0;
  const char *val[HG_DIRECTIVES_MAX] = {0};
  size_t vlen[HG_DIRECTIVES_MAX] = {0};
  hg_url_query_iter_t it;
  hg_url_param_t prm;
  hg_buf_t name = HG_BUF_INIT, value = HG_BUF_INIT, query = HG_BUF_INIT;
  int rc = 0;
  hg_url_query_iter(&it, q, req->target_len - (size_t)(q - req->target));
  while (rc == 0 && hg_url_query_next(&it, &prm)) {
    hg_buf_clear(&name);
    if (prm.name_len > 32 || hg_url_decode(&name, prm.name, prm.name_len, HG_URL_DEC_PLUS) != 0 ||
        name.len < 6 || memcmp(name.data, "_HLS_", 5) != 0)
      continue;
    for (int i = 0; i < HG_DIRECTIVES_MAX; i++) {
      if (val[i] || name.len != strlen(NAMES[i]) || memcmp(name.data, NAMES[i], name.len) != 0) continue;
      hg_buf_clear(&value);
      if (hg_url_decode(&value, prm.value, prm.value_len, HG_URL_DEC_PLUS | HG_URL_DEC_NO_NUL) != 0) break;
      val[i] = hg_arena_strndup(req->arena, value.data ? value.data : "", value.len);
      vlen[i] = value.len;
      if (val[i] == NULL) rc = HG_ENOMEM;
      break;
    }
  }
  for (int i = 0; rc == 0 && i < HG_DIRECTIVES_MAX; i++) {
    if (val[i] == NULL) continue;
    d->kv[d->n++] = (hg_sigv4_kv_t){NAMES[i], strlen(NAMES[i]), val[i], vlen[i]};
    rc = hg_url_query_add(&query, NAMES[i], strlen(NAMES[i]), val[i], vlen[i]);
  }
  if (rc == 0 && query.len) {
    d->query = hg_arena_strndup(req->arena, query.data, query.len);
    d->query_len = query.len;
    if (d->query == NULL) rc = HG_ENOMEM;
  }
  if (rc) memset(d, 0, sizeof(*d)), d->query = "";
  hg_buf_free(&name);
  hg_buf_free(&value);
  hg_buf_free(&query);
  return rc;
}

int hg_directives_apply(const hg_directives_t *d, hg_buf_t *out, const char *url, size_t n) {
  size_t end = strcspn(url, "#");
  if (end > n) end = n;
  const char *qm = memchr(url, '?', end);
  if (d->n == 0 || end == 0 || (qm && memmem(qm, end - (size_t)(qm - url), "_HLS_", 5)))
    return hg_buf_append(out, url, end);
  int rc = hg_buf_append(out, url, end);
  char last = url[end - 1]; /* end > 0: the URL has a '?' */
  if (!rc && (qm == NULL || (last != '?' && last != '&'))) rc = hg_buf_putc(out, qm ? '&' : '?');
  if (!rc) rc = hg_buf_append(out, d->query, d->query_len);
  return rc;
}

uint64_t hg_live_ttl_ms(uint64_t policy_ms, int64_t live_ttl_ms, const hg_hls_info_t *info,
                        const hg_freshness_t *origin) {
  uint64_t ttl = policy_ms;
  if (info && info->live) {
    uint64_t live = live_ttl_ms >= 0 ? (uint64_t)live_ttl_ms : hg_hls_reuse_ms(info);
    if (live < ttl) ttl = live;
  }
  if (origin && origin->no_store) return 0;
  if (origin && origin->has_limit && (uint64_t)origin->limit_ms < ttl) ttl = (uint64_t)origin->limit_ms;
  return ttl;
}

const char *hg_live_cache_control(char *buf, size_t n, uint64_t ttl_ms, int priv, int no_store) {
  /* Made for every answer: no printf. "public, max-age=" + 20 digits fits in 48. */
  char tmp[48];
  size_t len = 0;
  if (no_store) {
    memcpy(tmp, "no-store", len = 8);
  } else {
    const char *p = priv ? "private, max-age=" : "public, max-age=";
    len = strlen(p);
    memcpy(tmp, p, len);
    char d[20];
    int k = 0;
    uint64_t v = ttl_ms / 1000;
    do d[k++] = (char)('0' + v % 10); while ((v /= 10) > 0);
    while (k > 0) tmp[len++] = d[--k];
  }
  if (n == 0) return buf;
  if (len >= n) len = n - 1;
  memcpy(buf, tmp, len);
  buf[len] = '\0';
  return buf;
}
