/* access_log.c — the access log line of a request (hg__http_access_log, see
 * server_internal.h): one JSON object per request, built without printf in the server's
 * reused buffer (it is on every request's path: see bench/RESULTS.md), its "path" the
 * target redacted and escaped, memoized per target.
 */
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "base/lru.h"
#include "http/server_internal.h"

/* Appends us microseconds as milliseconds with three decimals ("12.345"). */
static void put_ms(hg_buf_t *b, uint64_t us) {
  hg_buf_put_u64(b, us / 1000);
  unsigned f = (unsigned)(us % 1000);
  char d[4] = {'.', (char)('0' + f / 100), (char)('0' + f / 10 % 10), (char)('0' + f % 10)};
  hg_buf_append(b, d, 4);
}

#define PUT(b, lit) hg_buf_append((b), lit, sizeof(lit) - 1)

/* Appends the log's "path": the target redacted and JSON-escaped. Security: secrets in
 * the target (tokens, signatures, nested URLs' ones) never reach the log (see
 * hg_log_redact_target); the memo keeps only what was made from an identical target. */
static void put_path(hg_http_server_t *s, hg_buf_t *b, const char *t, size_t n) {
  logmemo_t *e = NULL;
  if (n <= HG_LOGMEMO_MAX) {
    e = &s->logmemo[hg_lru_hash(t, n) & (HG_LOGMEMO - 1)];
    if (e->target && e->tlen == n && memcmp(e->target, t, n) == 0) {
      hg_buf_append(b, e->out, e->olen);
      return;
    }
  }
  hg_buf_t *path = &s->logpath;
  hg_buf_clear(path);
  hg_log_redact_target(path, t, n);
  size_t at = b->len;
  if (hg_buf_json_escape(b, path->data ? path->data : "", path->len) != 0 || e == NULL) return;
  size_t olen = b->len - at;
  char *mem = malloc(n + olen + 1); /* the target and its "path", one block */
  if (mem == NULL) return;
  free(e->target);
  memcpy(mem, t, n);
  memcpy(mem + n, b->data + at, olen);
  e->target = mem, e->tlen = n;
  e->out = mem + n, e->olen = olen;
}

void hg__http_access_log(hg_http_server_t *s, hg_request_t *req, int status, size_t bytes) {
  hg_buf_t *b = &s->logline;
  hg_buf_clear(b);
  uint64_t us = (uv_hrtime() - req->start_ns) / 1000;
  PUT(b, "{\"time\":\"");
  hg_log_timestamp(b);
  PUT(b, "\",\"id\":\"");
  hg_buf_puts(b, req->id[0] ? req->id : "-");
  PUT(b, "\",\"client\":\"");
  hg_buf_json_escape(b, req->client, strlen(req->client));
  PUT(b, "\",\"method\":\"");
  hg_buf_puts(b, req->method);
  PUT(b, "\",\"path\":\"");
  put_path(s, b, req->target, req->target_len);
  PUT(b, "\",\"status\":");
  hg_buf_put_u64(b, (unsigned)status);
  PUT(b, ",\"bytes\":");
  hg_buf_put_u64(b, bytes);
  PUT(b, ",\"duration_ms\":");
  put_ms(b, us);
  { /* HTTP/1.0, HTTP/1.1 or HTTP/2.0 (after the fields log tools match by position) */
    char v[4] = {(char)('0' + (req->http_major == 2 ? 2 : 1)), '.',
                 (char)('0' + (req->http_major == 2 ? 0 : req->http_minor % 10)), 0};
    PUT(b, ",\"protocol\":\"HTTP/");
    hg_buf_puts(b, v);
    hg_buf_putc(b, '"');
  }
  if (req->log_policy) {
    PUT(b, ",\"policy\":\"");
    hg_buf_puts(b, req->log_policy);
    hg_buf_putc(b, '"');
  }
  if (req->log_upstream_status) {
    PUT(b, ",\"upstream_status\":");
    hg_buf_put_u64(b, (unsigned)req->log_upstream_status);
    PUT(b, ",\"upstream_ms\":");
    put_ms(b, (uint64_t)(req->log_upstream_ms * 1000.0));
  }
  if (req->log_cache) {
    PUT(b, ",\"cache\":\"");
    hg_buf_puts(b, req->log_cache);
    hg_buf_putc(b, '"');
  }
  hg_buf_putc(b, '}');
  if (b->data && !hg_buf_error(b)) hg_log_access(b->data, b->len); /* never a cut line */
  /* Memory: a huge line (a long target) is not kept for the next request. */
  if (b->cap > 16384 || hg_buf_error(b)) hg_buf_free(b);
  if (s->logpath.cap > 16384 || hg_buf_error(&s->logpath)) hg_buf_free(&s->logpath);
  if (s->obs.request_done) s->obs.request_done(s->obs.ud, req, status, bytes);
}
