/* response.c — serializing and writing responses for the HTTP server (see server.h,
 * server_internal.h): heads (Cache-Control default, X-Request-Id, framing), buffered and
 * streamed bodies with chunked framing, backpressure accounting. The access log line is
 * access_log.c's.
 */
#include <errno.h>
#include <stdio.h>
#include <sys/sendfile.h>
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

/* A write the socket did not take at once: what is left of it, and what to release
 * once it is written (or dropped). */
typedef struct wreq_s {
  uv_write_t req;
  conn_t *c;
  size_t blen;                /* body bytes in it (backpressure accounting) */
  void (*release)(void *ref); /* of the body's memory, or NULL (arena, c->out, static) */
  void *ref;
  /* A file piece (send_file): after this write, sendfile goes on from file_off with
   * file_left bytes, the same bytes as mem[file_off…] */
  int fd;
  int64_t file_off;
  size_t file_left;
  const char *mem;
  char prefix[24];            /* the chunk-size line, when chunked */
} wreq_t;


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
  hg__http_timer_start(c, c->srv->lim.keepalive_timeout_ms);
  /* Answered while hg__http_conn_process was handing the request over (a synchronous
   * write): its loop goes on with any pipelined request, no recursion here. */
  if (c->in_process) return;
  /* Compact the read buffer, then parse any pipelined request already received. */
  if (c->in_off > 0) {
    memmove(c->in.data, c->in.data + c->in_off, c->in.len - c->in_off);
    c->in.len -= c->in_off;
    c->in_off = 0;
  }
  hg__http_conn_process(c);
  if (!c->closing && (c->state == S_IDLE || c->state == S_READING)) hg__http_start_reading(c);
}

/* Tells a streaming handler, once, that its client is gone. */
void hg__http_notify_gone(conn_t *c, int status) {
  if (c->ended || c->gone_notified || c->drain == NULL) return;
  c->gone_notified = 1;
  c->drain(c->drain_ud, status < 0 ? status : UV_ECONNRESET);
}

static int file_go(conn_t *c, wreq_t *w);

static void on_write(uv_write_t *req, int status) {
  wreq_t *w = req->data;
  conn_t *c = w->c;
  if (status == 0 && w->file_left > 0 && !c->closing) {
    /* A file piece: the socket took the bridging write, so it has room: sendfile on. */
    if (file_go(c, w) == 0) return; /* waiting again (the same request, still pending) */
    if (c->closing) status = UV_EPIPE; /* sendfile failed: the client is gone */
  }
  c->pending--;
  c->queued -= w->blen;
  if (w->release) w->release(w->ref);
  free(w);
  if (status < 0) {
    hg__http_conn_close(c);
    hg__http_notify_gone(c, status);
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

/* A write request holding release(ref) for blen body bytes; NULL on OOM (then released,
 * and the connection closing). */
static wreq_t *wreq_new(conn_t *c, size_t blen, void (*release)(void *), void *ref) {
  wreq_t *w = malloc(sizeof(*w));
  if (w == NULL) {
    if (release) release(ref);
    hg__http_conn_close(c);
    return NULL;
  }
  w->c = c;
  w->blen = blen;
  w->release = release;
  w->ref = ref;
  w->file_left = 0;
  w->req.data = w;
  return w;
}

/* Sends the unsent head (if any) and one body piece (chunk-framed when chunked), holding
 * release(ref) until the piece is written. The common case is one writev and nothing
 * else: uv_try_write takes it all, with no write request, no allocation and no poll
 * change (a finished uv_write makes libuv re-arm the poll: one epoll_ctl per response).
 * Only what the socket did not take is queued. Returns 0 or a negative code (the
 * connection is then closing; the piece has been released). */
static int send_piece(conn_t *c, const char *data, size_t blen, void (*release)(void *), void *ref) {
  uv_buf_t bufs[4];
  unsigned n = 0;
  char prefix[24];
  int frame = c->chunked && blen > 0;
  if (!c->head_sent) {
    bufs[n++] = uv_buf_init(c->out.data, (unsigned)c->out.len);
    c->head_sent = 1;
  }
  if (frame) bufs[n++] = uv_buf_init(prefix, (unsigned)snprintf(prefix, sizeof(prefix), "%zx\r\n", blen));
  if (blen) bufs[n++] = uv_buf_init((char *)data, (unsigned)blen);
  if (frame) bufs[n++] = uv_buf_init("\r\n", 2);
  if (n == 0) {
    if (release) release(ref);
    return 0;
  }
  if (c->tls) { /* TLS: the records replace the bytes, which go back to their owner now */
    char *ct;
    size_t ctlen;
    int rc = hg__htls_encrypt(c, bufs, n, &ct, &ctlen);
    if (release) release(ref);
    if (rc) {
      hg__http_conn_close(c);
      return rc;
    }
    bufs[0] = uv_buf_init(ct, (unsigned)ctlen);
    n = 1;
    frame = 0;
    release = free;
    ref = ct;
  }
  unsigned i = 0;
  if (c->pending == 0) { /* nothing queued ahead: bytes may go out now, in order */
    int rc = uv_try_write((uv_stream_t *)&c->tcp, bufs, n);
    if (rc < 0 && rc != UV_EAGAIN) {
      if (release) release(ref);
      hg__http_conn_close(c);
      return rc;
    }
    size_t done = rc > 0 ? (size_t)rc : 0;
    while (i < n && done >= bufs[i].len) done -= bufs[i++].len;
    if (i == n) {
      if (release) release(ref);
      return 0;
    }
    bufs[i].base += done;
    bufs[i].len -= done;
  }
  wreq_t *w = wreq_new(c, blen, release, ref);
  if (w == NULL) return UV_ENOMEM;
  if (frame && bufs[i].base >= prefix && bufs[i].base < prefix + sizeof(prefix)) {
    /* the rest of the chunk-size line lives on this stack: keep a copy */
    memcpy(w->prefix, bufs[i].base, bufs[i].len);
    bufs[i].base = w->prefix;
  }
  int rc = uv_write(&w->req, (uv_stream_t *)&c->tcp, bufs + i, n - i, on_write);
  if (rc < 0) {
    if (release) release(ref);
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
/* Copies s[0..n) at w, returns the end. */
static char *cpy(char *w, const char *s, size_t n) {
  memcpy(w, s, n);
  return w + n;
}
#define CPY(w, lit) cpy((w), lit, sizeof(lit) - 1)

static char *put_dec(char *w, uint64_t v) {
  char d[20];
  int k = 0;
  do d[k++] = (char)('0' + v % 10); while ((v /= 10) > 0);
  while (k > 0) *w++ = d[--k];
  return w;
}

/* Writes the response head into c->out: measured first, then copied in one pass (it
 * is made for every answer: no per-piece appends, no printf). */
static int serialize_head(conn_t *c, const hg_response_t *res, int64_t clen) {
  hg_buf_t *o = &c->out;
  const char *reason = hg_http_reason(res->status);
  const char *date = hg__http_date(c->srv);
  size_t nreason = strlen(reason), ndate = strlen(date), nid = strlen(c->txn.req.id);
  /* the fixed parts, every optional one counted, with digits at their widest */
  size_t need = 64 + nreason + ndate + 64 + 40 + 32 + nid + 32;
  for (size_t i = 0; i < res->nheaders; i++) need += res->headers[i].name_len + res->headers[i].value_len + 4;
  hg_buf_clear(o);
  if (hg_buf_reserve(o, need)) return -1;
  char *w = CPY(o->data, "HTTP/1.1 ");
  w = put_dec(w, (unsigned)res->status);
  *w++ = ' ';
  w = cpy(w, reason, nreason);
  w = CPY(w, "\r\nServer: hlsgate\r\nDate: ");
  w = cpy(w, date, ndate);
  w = CPY(w, "\r\n");
  int has_cc = 0;
  for (size_t i = 0; i < res->nheaders; i++) {
    const hg_header_t *h = &res->headers[i];
    if (hg__http_is_hop_or_framing(h->name, h->name_len)) continue;
    has_cc |= h->name_len == 13 && strncasecmp(h->name, "Cache-Control", 13) == 0;
    w = cpy(w, h->name, h->name_len);
    w = CPY(w, ": ");
    w = cpy(w, h->value, h->value_len);
    w = CPY(w, "\r\n");
  }
  /* SPEC §7: every answer says how a cache in front may reuse it; one that says
   * nothing (errors, core endpoints, policy answers) is not to be stored. */
  if (!has_cc) w = CPY(w, "Cache-Control: no-store\r\n");
  if (res->status >= 200 && res->status != 204 && res->status != 304) {
    if (clen >= 0) {
      w = CPY(w, "Content-Length: ");
      w = put_dec(w, (uint64_t)clen);
      w = CPY(w, "\r\n");
    } else if (c->chunked) {
      w = CPY(w, "Transfer-Encoding: chunked\r\n");
    }
  }
  w = CPY(w, "X-Request-Id: ");
  w = cpy(w, c->txn.req.id, nid);
  w = c->close_after ? CPY(w, "\r\nConnection: close\r\n\r\n") : CPY(w, "\r\nConnection: keep-alive\r\n\r\n");
  o->len = (size_t)(w - o->data);
  o->data[o->len] = '\0';
  return 0;
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
  c->head_sent = 0;
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

/* Sends w's file range with sendfile(2) until it is all sent (returns 1: the caller
 * finishes w) or the socket is full (returns 0: a bridging write of the next bytes from
 * memory is queued with w, whose callback comes back here; the kernel copies only those)
 * or fails (returns 1 with the connection closing). Zero-copy: the pages of the cached
 * object's memfd go to the socket by reference. */
#define FILE_BRIDGE 16384
static int file_go(conn_t *c, wreq_t *w) {
  int sock;
  if (uv_fileno((uv_handle_t *)&c->tcp, &sock) != 0) {
    hg__http_conn_close(c);
    return 1;
  }
  while (w->file_left > 0) {
    off_t off = (off_t)w->file_off;
    ssize_t n = sendfile(sock, w->fd, &off, w->file_left);
    if (n > 0) {
      w->file_off += n;
      w->file_left -= (size_t)n;
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno != EAGAIN) {
      hg__http_conn_close(c);
      return 1;
    }
    /* Full (or sendfile sent nothing): let libuv wait for room with a small write. */
    size_t k = w->file_left < FILE_BRIDGE ? w->file_left : FILE_BRIDGE;
    uv_buf_t b = uv_buf_init((char *)w->mem + w->file_off, (unsigned)k);
    w->file_off += (int64_t)k;
    w->file_left -= k;
    if (uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, on_write) < 0) {
      hg__http_conn_close(c);
      return 1;
    }
    return 0;
  }
  return 1;
}

int hg_http_stream_write_file(hg_http_txn_t *txn, const char *data, size_t len, int fd, int64_t off,
                              void (*release)(void *ref), void *ref) {
  if (txn->h2) return hg__h2_stream_write_ref(txn, data, len, release, ref);
  conn_t *c = txn->conn;
  /* sendfile needs the bytes unframed on a plain socket, after everything queued. */
  if (fd < 0 || c->chunked || c->closing || !c->body_allowed || len == 0 || c->pending > 0 ||
      c->no_sendfile)
    return hg_http_stream_write_ref(txn, data, len, release, ref);
  if (!c->head_sent) { /* the head first, then the file */
    int rc = send_piece(c, NULL, 0, NULL, NULL);
    if (rc < 0 || c->pending > 0) {
      if (rc < 0) {
        if (release) release(ref);
        return rc;
      }
      return hg_http_stream_write_ref(txn, data, len, release, ref);
    }
  }
  wreq_t *w = wreq_new(c, len, release, ref);
  if (w == NULL) return UV_ENOMEM;
  w->fd = fd;
  w->file_off = off;
  w->file_left = len;
  w->mem = data - off;
  c->body_bytes += len;
  c->pending++;
  c->queued += len;
  if (file_go(c, w) == 0) { /* waiting for room */
    hg__http_timer_start(c, c->srv->lim.send_timeout_ms);
    return 0;
  }
  c->pending--;
  c->queued -= len;
  if (release) release(ref);
  free(w);
  return c->closing ? UV_ECONNRESET : 0;
}

/* A piece whose memory is not the server's goes back to its owner when the response
 * will not carry it. */
static void drop_body(const hg_response_t *res) {
  if (res->body_release) res->body_release(res->body_ref);
}

int hg_http_respond(hg_http_txn_t *txn, const hg_response_t *res) {
  if (txn->h2) return hg__h2_respond(txn, res);
  conn_t *c = txn->conn;
  if (begin_response(c, res->status)) {
    drop_body(res);
    abandon(c);
    return UV_ECONNRESET;
  }
  size_t body_len = res->body ? res->body_len : 0;
  int rc = serialize_head(c, res, (int64_t)body_len);
  if (!c->body_allowed) body_len = 0;
  c->body_bytes = body_len;
  c->ended = 1;
  if (rc) { /* out of memory while serializing: drop the connection */
    drop_body(res);
    access_log(c, 500, 0);
    c->state = S_IDLE;
    hg__http_conn_close(c);
    return HG_ENOMEM;
  }
  access_log(c, res->status, body_len);
  c->state = S_WRITING;
  /* Head and body in one writev; the body is written from where it is (arena, static,
   * or a reference such as a cached object), never copied. */
  rc = send_piece(c, res->body, body_len, res->body_release, res->body_ref);
  if (rc == 0 && c->pending == 0 && c->state == S_WRITING) txn_done(c);
  return rc;
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
  /* The head waits in c->out (untouched until txn_done) for the first body piece or the
   * end, and goes out in the same writev. */
  return 0;
}

int hg_http_stream_write_ref(hg_http_txn_t *txn, const char *data, size_t len,
                             void (*release)(void *ref), void *ref) {
  if (txn->h2) return hg__h2_stream_write_ref(txn, data, len, release, ref);
  conn_t *c = txn->conn;
  if (c->closing) {
    if (release) release(ref);
    return UV_ECONNRESET;
  }
  if (!c->body_allowed || len == 0) {
    if (release) release(ref);
    return 0;
  }
  c->body_bytes += len;
  return send_piece(c, data, len, release, ref);
}

int hg_http_stream_write(hg_http_txn_t *txn, char *data, size_t len) {
  return hg_http_stream_write_ref(txn, data, len, free, data);
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
  if (c->chunked) {
    c->chunked = 0; /* the last chunk is written as is */
    send_piece(c, "0\r\n\r\n", 5, NULL, NULL);
  } else {
    send_piece(c, NULL, 0, NULL, NULL); /* the head, if no body piece carried it */
  }
  if (!c->closing && c->pending == 0 && c->state == S_WRITING) txn_done(c);
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

