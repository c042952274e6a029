/* response.c — serializing and writing responses for the HTTP server (see server.h,
 * server_internal.h): heads (Cache-Control default, X-Request-Id, framing), buffered and
 * streamed bodies with chunked framing, backpressure accounting, the access log line.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base/error.h"
#include "base/log.h"
#include "http/server_internal.h"

const char *hg__http_date(hg_http_server_t *s) {
  time_t now = time(NULL);
  if (now != s->date_sec) {
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(s->date, sizeof(s->date), "%a, %d %b %Y %H:%M:%S GMT", &tm);
    s->date_sec = now;
  }
  return s->date;
}


/* ---- writing ---- */

static void access_log(conn_t *c, int status, size_t bytes) { hg__http_access_log(c->srv, &c->txn.req, status, bytes); }

void hg__http_access_log(hg_http_server_t *s, hg_request_t *req, int status, size_t bytes) {
  hg_buf_t b = HG_BUF_INIT;
  double ms = (double)(uv_hrtime() - req->start_ns) / 1e6;
  hg_buf_puts(&b, "{\"time\":\"");
  hg_log_timestamp(&b);
  hg_buf_printf(&b, "\",\"id\":\"%s\",\"client\":\"", req->id[0] ? req->id : "-");
  hg_buf_json_escape(&b, req->client, strlen(req->client));
  hg_buf_printf(&b, "\",\"method\":\"%s\",\"path\":\"", req->method);
  hg_buf_t path = HG_BUF_INIT;
  hg_log_redact_target(&path, req->target, req->target_len);
  hg_buf_json_escape(&b, path.data ? path.data : "", path.len);
  hg_buf_free(&path);
  hg_buf_printf(&b, "\",\"protocol\":\"HTTP/%d.%d\",\"status\":%d,\"bytes\":%zu,\"duration_ms\":%.3f", req->http_major == 2 ? 2 : 1,
                req->http_major == 2 ? 0 : req->http_minor, status, bytes, ms);
  if (req->log_policy) hg_buf_printf(&b, ",\"policy\":\"%s\"", req->log_policy);
  if (req->log_upstream_status)
    hg_buf_printf(&b, ",\"upstream_status\":%d,\"upstream_ms\":%.3f", req->log_upstream_status,
                  req->log_upstream_ms);
  if (req->log_cache) hg_buf_printf(&b, ",\"cache\":\"%s\"", req->log_cache);
  hg_buf_putc(&b, '}');
  if (b.data && !hg_buf_error(&b)) hg_log_access(b.data, b.len); /* never a cut line */
  hg_buf_free(&b);
  if (s->obs.request_done) s->obs.request_done(s->obs.ud, req, status, bytes);
}


/* A queued write: the bytes, plus the chunk-size line when chunked. */
typedef struct wchunk_s {
  uv_write_t req;
  conn_t *c;
  char *data;
  char *ct;        /* TLS: the records written (tls_conn.c) */
  size_t len;      /* body bytes (0 for the head) */
  int owned;       /* free(data) when done */
  char prefix[24];
} wchunk_t;


/* The response is fully written: log nothing more, then go back to reading (keep-alive
 * and pipelined requests) or close. */
static void txn_done(conn_t *c) {
  /* Give back what the transaction used: an idle keep-alive connection costs only its
   * handles and this struct (SPEC §11: RSS flat under many idle connections). */
  hg_buf_free(&c->out);
  hg_buf_free(&c->url);
  hg_buf_free(&c->field);
  hg_buf_free(&c->value);
  hg_buf_free(&c->body);
  hg_arena_free(c->txn.req.arena);
  c->txn.req.arena = NULL;
  c->state = S_IDLE;
  c->drain = NULL;
  if (c->close_after || c->closing) {
    hg__http_conn_close(c);
    return;
  }
  /* Compact the read buffer, then parse any pipelined request already received. */
  if (c->in_off > 0) {
    memmove(c->in.data, c->in.data + c->in_off, c->in.len - c->in_off);
    c->in.len -= c->in_off;
    c->in_off = 0;
  }
  hg__http_timer_start(c, c->srv->lim.keepalive_timeout_ms);
  hg__http_conn_process(c);
  if (!c->closing && (c->state == S_IDLE || c->state == S_READING)) hg__http_start_reading(c);
}

/* Tells a streaming handler, once, that its client is gone. */
static void notify_gone(conn_t *c, int status) {
  if (c->ended || c->gone_notified || c->drain == NULL) return;
  c->gone_notified = 1;
  c->drain(c->drain_ud, status < 0 ? status : UV_ECONNRESET);
}

static void on_chunk_write(uv_write_t *req, int status) {
  wchunk_t *w = req->data;
  conn_t *c = w->c;
  c->pending--;
  c->queued -= w->len;
  if (w->owned) free(w->data);
  free(w->ct);
  free(w);
  if (status < 0) {
    hg__http_conn_close(c);
    notify_gone(c, status);
  }
  if (c->pending > 0) { /* progress: the send timeout counts from here (a slow reader is fine) */
    hg__http_timer_start(c, c->srv->lim.send_timeout_ms);
    return;
  }
  if (!c->closing) uv_timer_stop(&c->timer);
  if (c->ended) {
    if (c->state == S_WRITING) txn_done(c);
  } else if (!c->closing && c->drain) {
    c->drain(c->drain_ud, 0);
  }
}

/* Queues one write (with chunk framing when `frame`). Returns 0 or a negative code (the
 * connection is then closing; owned data has been freed). */
static int queue_write(conn_t *c, char *data, size_t hlen, size_t blen, int owned, int frame) {
  wchunk_t *w = malloc(sizeof(*w));
  if (w == NULL) {
    if (owned) free(data);
    hg__http_conn_close(c);
    return UV_ENOMEM;
  }
  w->c = c;
  w->data = data;
  w->len = blen;
  w->owned = owned;
  w->ct = NULL;
  w->req.data = w;
  uv_buf_t bufs[3];
  unsigned n = 0;
  if (frame) bufs[n++] = uv_buf_init(w->prefix, (unsigned)snprintf(w->prefix, sizeof(w->prefix), "%zx\r\n", blen));
  bufs[n++] = uv_buf_init(data, (unsigned)(hlen + blen));
  if (frame) bufs[n++] = uv_buf_init("\r\n", 2);
  int rc = c->tls ? hg__htls_write(c, &w->req, bufs, n, &w->ct, on_chunk_write)
                  : uv_write(&w->req, (uv_stream_t *)&c->tcp, bufs, n, on_chunk_write);
  if (rc < 0) {
    if (owned) free(data);
    free(w);
    hg__http_conn_close(c);
    return rc;
  }
  c->pending++;
  c->queued += blen;
  hg__http_timer_start(c, c->srv->lim.send_timeout_ms); /* a client that stops reading is cut off */
  return 0;
}

int hg__http_is_hop_or_framing(const char *name, size_t n) {
  static const char *names[] = {"content-length", "transfer-encoding", "connection",
                                "keep-alive", "date", "x-request-id", "upgrade"};
  for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
    if (strlen(names[i]) == n && strncasecmp(names[i], name, n) == 0) return 1;
  return 0;
}

/* Serializes the status line and headers into c->out. `clen` >= 0 → Content-Length;
 * -1 → chunked (if c->chunked) or nothing (close-delimited / no body). */
static int serialize_head(conn_t *c, const hg_response_t *res, int64_t clen) {
  hg_buf_t *o = &c->out;
  hg_buf_clear(o);
  int rc = hg_buf_printf(o, "HTTP/1.1 %d %s\r\nServer: hlsgate\r\nDate: %s\r\n", res->status,
                         hg_http_reason(res->status), hg__http_date(c->srv));
  int has_cc = 0;
  for (size_t i = 0; !rc && i < res->nheaders; i++) {
    const hg_header_t *h = &res->headers[i];
    if (hg__http_is_hop_or_framing(h->name, h->name_len)) continue;
    has_cc |= h->name_len == 13 && strncasecmp(h->name, "Cache-Control", 13) == 0;
    rc = hg_buf_append(o, h->name, h->name_len);
    if (!rc) rc = hg_buf_append(o, ": ", 2);
    if (!rc) rc = hg_buf_append(o, h->value, h->value_len);
    if (!rc) rc = hg_buf_append(o, "\r\n", 2);
  }
  /* SPEC §7: every answer says how a cache in front may reuse it; one that says
   * nothing (errors, core endpoints, policy answers) is not to be stored. */
  if (!rc && !has_cc) rc = hg_buf_puts(o, "Cache-Control: no-store\r\n");
  if (!rc && res->status >= 200 && res->status != 204 && res->status != 304) {
    if (clen >= 0) rc = hg_buf_printf(o, "Content-Length: %lld\r\n", (long long)clen);
    else if (c->chunked) rc = hg_buf_puts(o, "Transfer-Encoding: chunked\r\n");
  }
  if (!rc)
    rc = hg_buf_printf(o, "X-Request-Id: %s\r\nConnection: %s\r\n\r\n", c->txn.req.id,
                       c->close_after ? "close" : "keep-alive");
  return rc;
}

/* Common start of every response: no body for HEAD/1xx/204/304; Connection: close
 * while draining. Returns 0, or non-zero when the client is already gone. */
static int begin_response(conn_t *c, int status) {
  const char *m = c->txn.req.method;
  c->body_allowed = !(strcmp(m, "HEAD") == 0 || status == 204 || status == 304 || status < 200);
  c->status = status;
  c->body_bytes = 0;
  c->ended = 0;
  c->gone_notified = 0;
  c->chunked = 0;
  hg__http_ensure_id(c); /* every answer carries an id, early errors included */
  if (c->srv->draining) c->close_after = 1;
  return c->closing;
}

/* Ends the transaction on a connection that died while the handler worked. */
static void abandon(conn_t *c) {
  access_log(c, 499, c->body_bytes);
  c->ended = 1;
  c->state = S_IDLE;
  hg__http_conn_maybe_free(c);
}

int hg_http_respond(hg_http_txn_t *txn, const hg_response_t *res) {
  if (txn->h2) return hg__h2_respond(txn, res);
  conn_t *c = txn->conn;
  if (begin_response(c, res->status)) {
    abandon(c);
    return UV_ECONNRESET;
  }
  size_t body_len = res->body ? res->body_len : 0;
  int rc = serialize_head(c, res, (int64_t)body_len);
  size_t hlen = c->out.len;
  if (!c->body_allowed) body_len = 0;
  if (!rc && body_len) rc = hg_buf_append(&c->out, res->body, body_len);
  c->body_bytes = body_len;
  c->ended = 1;
  if (rc) { /* out of memory while serializing: drop the connection */
    access_log(c, 500, 0);
    c->state = S_IDLE;
    hg__http_conn_close(c);
    return HG_ENOMEM;
  }
  access_log(c, res->status, body_len);
  c->state = S_WRITING;
  return queue_write(c, c->out.data, hlen, body_len, 0, 0);
}

int hg_http_stream_start(hg_http_txn_t *txn, const hg_response_t *res, int64_t content_length,
                         hg_http_drain_cb drain, void *ud) {
  if (txn->h2) return hg__h2_stream_start(txn, res, content_length, drain, ud);
  conn_t *c = txn->conn;
  c->drain = drain;
  c->drain_ud = ud;
  if (begin_response(c, res->status)) return UV_ECONNRESET;
  if (content_length < 0 && c->body_allowed) {
    if (c->txn.req.http_major == 1 && c->txn.req.http_minor >= 1) c->chunked = 1;
    else c->close_after = 1; /* HTTP/1.0: the close delimits the body */
  }
  if (serialize_head(c, res, c->body_allowed || content_length >= 0 ? content_length : -1)) {
    hg__http_conn_close(c);
    return HG_ENOMEM;
  }
  /* c->out stays untouched until txn_done, so the head can be written from it. */
  return queue_write(c, c->out.data, c->out.len, 0, 0, 0);
}

int hg_http_stream_write(hg_http_txn_t *txn, char *data, size_t len) {
  if (txn->h2) return hg__h2_stream_write(txn, data, len);
  conn_t *c = txn->conn;
  if (c->closing) {
    free(data);
    return UV_ECONNRESET;
  }
  if (!c->body_allowed || len == 0) {
    free(data);
    return 0;
  }
  c->body_bytes += len;
  return queue_write(c, data, 0, len, 1, c->chunked);
}

size_t hg_http_stream_queued(const hg_http_txn_t *txn) {
  return txn->h2 ? hg__h2_stream_queued(txn) : txn->conn->queued;
}

void hg_http_stream_end(hg_http_txn_t *txn, int complete) {
  if (txn->h2) {
    hg__h2_stream_end(txn, complete);
    return;
  }
  conn_t *c = txn->conn;
  if (c->closing) {
    abandon(c);
    return;
  }
  access_log(c, c->status, c->body_bytes);
  c->ended = 1;
  if (!complete) { /* a truncated body must not look complete: close */
    c->state = S_IDLE;
    hg__http_conn_close(c);
    return;
  }
  c->state = S_WRITING;
  if (c->chunked) queue_write(c, "0\r\n\r\n", 5, 0, 0, 0);
  else if (c->pending == 0) txn_done(c);
}

/* Answers a request the server itself rejects (parse errors, limits, timeouts) and
 * closes the connection after it: after a framing error the byte stream cannot be
 * trusted for another request. */
void hg__http_respond_error(conn_t *c, int status, const char *msg) {
  hg_request_t *req = &c->txn.req;
  if (req->arena == NULL) hg__http_txn_begin(c);
  hg__http_ensure_id(c);
  hg_response_t res;
  memset(&res, 0, sizeof(res));
  c->close_after = 1;
  c->state = S_BUSY;
  if (hg_response_error(&res, req->arena, status, msg, req->id) != 0) {
    c->state = S_IDLE;
    hg__http_conn_close(c);
    return;
  }
  hg_http_respond(&c->txn, &res);
}

