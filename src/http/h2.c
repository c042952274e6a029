/* h2.c — HTTP/2 on a TLS connection (ALPN "h2"), with nghttp2 doing the framing, HPACK,
 * flow control and the RFC 9113 protocol checks (see server_internal.h).
 *
 * Each stream becomes an hg_request_t and a txn with the same API as HTTP/1.1, so the
 * gateway's pipeline (policy, origins, rewrite, relay) runs unchanged. nghttp2 is only
 * ever entered from here and never re-entered: input is fed with mem_recv, and complete
 * requests are handed to the handler after it returns; output is pulled with mem_send
 * in `flush`, never from inside a callback, and only while the connection has less than
 * OUT_HIGH bytes in flight to the socket. A stream's body waits in its own queue until
 * nghttp2's data provider takes it (which it does only within the peer's flow-control
 * windows); an empty queue defers the provider (NGHTTP2_ERR_DEFERRED) until the next
 * write resumes it. So a relay's backpressure is per stream, and the memory of a
 * connection is bounded by its streams' high-water marks plus OUT_HIGH.
 */
#include <nghttp2/nghttp2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base/error.h"
#include "base/log.h"
#include "http/server_internal.h"

#define H2_MAX_STREAMS 128         /* SETTINGS_MAX_CONCURRENT_STREAMS; more are refused */
#define OUT_HIGH (256 * 1024)      /* bytes in flight to the socket before mem_send waits */
#define OUT_BATCH (64 * 1024)      /* frames gathered into one TLS write */

typedef struct ochunk_s {
  struct ochunk_s *next;
  const char *data;
  size_t len, off;
  void (*release)(void *ref); /* of data, once taken (or dropped); NULL: arena or static */
  void *ref;
} ochunk_t;

typedef struct h2_stream_s {
  hg_http_txn_t txn; /* txn.conn: the connection; txn.h2: this */
  struct h2_stream_s *prev, *next, *ready_next;
  int32_t id;
  /* the request as it arrives */
  const char *method, *path, *authority;
  size_t path_len;
  hg_header_t *hdrs;
  size_t nhdrs, hdr_bytes;
  hg_buf_t body;
  int err_status;
  const char *err_msg;
  /* life */
  int in_ready; /* complete, waiting for dispatch */
  int held;     /* a handler has the txn (until respond / stream_end) */
  int closed;   /* nghttp2 closed it, or the connection is gone */
  int ended, deferred, body_allowed, status;
  int eof_sent; /* the response is complete on our side (END_STREAM submitted) */
  int want_drain, notify_gone;
  size_t body_bytes;
  ochunk_t *qhead, *qtail;
  size_t queued;
  hg_http_drain_cb drain;
  void *drain_ud;
  void (*gone_cb)(void *ud); /* hg_http_txn_on_gone: a handler waiting before it answers */
  void *gone_ud;
} h2_stream_t;

typedef struct hg__h2_s {
  nghttp2_session *sess;
  h2_stream_t *streams;
  h2_stream_t *ready, *ready_last;
  size_t nstreams;
  int held;
  int in_recv, flushing, notifying;
  int dead;       /* a connection error: close once the GOAWAY is out */
  int gone;       /* the socket is closed */
  size_t inflight; /* bytes handed to libuv, not yet written */
} h2_t;

static void flush(conn_t *c);

/* ---- streams ---- */

static void free_stream(conn_t *c, h2_stream_t *st) {
  h2_t *h = c->h2;
  if (st->prev) st->prev->next = st->next;
  else h->streams = st->next;
  if (st->next) st->next->prev = st->prev;
  h->nstreams--;
  for (ochunk_t *k = st->qhead, *n; k; k = n) {
    n = k->next;
    if (k->release) k->release(k->ref);
    free(k);
  }
  hg_buf_free(&st->body);
  hg_arena_free(st->txn.req.arena);
  free(st);
}

/* The handler lets go of the txn. A closed stream goes now; after the socket closed,
 * the connection goes with its last held stream. */
static void release(conn_t *c, h2_stream_t *st) {
  h2_t *h = c->h2;
  if (st->held) {
    st->held = 0;
    h->held--;
  }
  if (!st->closed) return;
  free_stream(c, st);
  if (h->gone && !h->notifying && h->held == 0) hg__http_conn_maybe_free(c);
}

static h2_stream_t *stream_of(nghttp2_session *s, int32_t id) {
  return nghttp2_session_get_stream_user_data(s, id);
}

/* ---- nghttp2 callbacks (input) ---- */

static int on_begin_headers(nghttp2_session *s, const nghttp2_frame *f, void *ud) {
  conn_t *c = ud;
  h2_t *h = c->h2;
  if (f->hd.type != NGHTTP2_HEADERS || f->headers.cat != NGHTTP2_HCAT_REQUEST) return 0;
  h2_stream_t *st = calloc(1, sizeof(*st));
  hg_arena_t *a = st ? hg_arena_new(4096) : NULL;
  st = a ? st : (free(st), NULL);
  if (st == NULL) return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE; /* RST_STREAM */
  st->txn.conn = c;
  st->txn.h2 = st;
  st->id = f->hd.stream_id;
  hg_request_t *req = &st->txn.req;
  req->arena = a;
  req->start_ns = uv_hrtime();
  req->http_major = 2;
  req->tls = 1;
  req->method = req->target = "-";
  req->target_len = req->path_len = 1;
  snprintf(req->client, sizeof(req->client), "%s", c->peer);
  st->next = h->streams;
  if (h->streams) h->streams->prev = st;
  h->streams = st;
  h->nstreams++;
  nghttp2_session_set_stream_user_data(s, st->id, st);
  return 0;
}

static void stream_fail(h2_stream_t *st, int status, const char *msg) {
  if (st->err_status == 0) {
    st->err_status = status;
    st->err_msg = msg;
  }
}

static int on_header(nghttp2_session *s, const nghttp2_frame *f, const uint8_t *name, size_t nlen,
                     const uint8_t *value, size_t vlen, uint8_t flags, void *ud) {
  (void)flags;
  conn_t *c = ud;
  h2_stream_t *st = stream_of(s, f->hd.stream_id);
  if (st == NULL || f->hd.type != NGHTTP2_HEADERS || f->headers.cat != NGHTTP2_HCAT_REQUEST)
    return 0; /* trailers are not used */
  const hg_http_limits_t *lim = &c->srv->lim;
  hg_arena_t *a = st->txn.req.arena;
  st->hdr_bytes += nlen + vlen;
  /* SPEC §8 limits as on HTTP/1.1: the whole list (431), the target (414). */
  if (st->hdr_bytes > lim->max_headers) stream_fail(st, 431, "request headers too large");
  if (st->err_status) return 0;
  const char *v = hg_arena_strndup(a, (const char *)value, vlen);
  if (v == NULL) return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
  if (nlen > 0 && name[0] == ':') { /* nghttp2 checked which pseudo-headers may appear */
    if (nlen == 7 && memcmp(name, ":method", 7) == 0) st->method = v;
    else if (nlen == 10 && memcmp(name, ":authority", 10) == 0) st->authority = v;
    else if (nlen == 5 && memcmp(name, ":path", 5) == 0) {
      if (vlen > lim->max_uri) stream_fail(st, 414, "request URI too long");
      st->path = v;
      st->path_len = vlen;
    }
    return 0;
  }
  if (st->nhdrs == MAX_HEADERS) {
    stream_fail(st, 431, "too many request headers");
    return 0;
  }
  if (st->hdrs == NULL && (st->hdrs = hg_arena_alloc(a, (MAX_HEADERS + 1) * sizeof(hg_header_t))) == NULL)
    return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
  hg_header_t *hd = &st->hdrs[st->nhdrs];
  hd->name = hg_arena_strndup(a, (const char *)name, nlen);
  hd->name_len = nlen;
  hd->value = v;
  hd->value_len = vlen;
  if (hd->name == NULL) return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
  st->nhdrs++;
  return 0;
}

static int on_data_chunk(nghttp2_session *s, uint8_t flags, int32_t id, const uint8_t *data, size_t len,
                         void *ud) {
  (void)flags;
  conn_t *c = ud;
  h2_stream_t *st = stream_of(s, id);
  if (st == NULL || st->err_status) return 0;
  if (st->body.len + len > c->srv->lim.max_body) stream_fail(st, 413, "request body too large");
  else if (hg_buf_append(&st->body, data, len)) return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
  return 0;
}

static int on_frame_recv(nghttp2_session *s, const nghttp2_frame *f, void *ud) {
  conn_t *c = ud;
  h2_t *h = c->h2;
  if ((f->hd.type != NGHTTP2_HEADERS && f->hd.type != NGHTTP2_DATA) || !(f->hd.flags & NGHTTP2_FLAG_END_STREAM))
    return 0;
  h2_stream_t *st = stream_of(s, f->hd.stream_id);
  if (st == NULL || st->in_ready || st->held) return 0;
  st->in_ready = 1; /* complete: dispatched once mem_recv returns */
  if (h->ready_last) h->ready_last->ready_next = st;
  else h->ready = st;
  h->ready_last = st;
  return 0;
}

static int on_stream_close(nghttp2_session *s, int32_t id, uint32_t code, void *ud) {
  (void)code;
  conn_t *c = ud;
  h2_stream_t *st = stream_of(s, id);
  if (st == NULL) return 0;
  st->closed = 1;
  if (st->in_ready) return 0; /* dispatch frees it */
  if (st->held) {
    /* Closed before our response was complete: the client is gone (told outside nghttp2,
     * in notify). Closed after it (a HEAD's head, a body's END_STREAM) is just done. */
    if ((st->drain || st->gone_cb) && !st->ended && !st->eof_sent) st->notify_gone = 1;
    return 0;
  }
  free_stream(c, st);
  return 0;
}

/* ---- output ---- */

static ssize_t read_body(nghttp2_session *s, int32_t id, uint8_t *buf, size_t len, uint32_t *flags,
                         nghttp2_data_source *src, void *ud) {
  (void)s, (void)id, (void)ud;
  h2_stream_t *st = src->ptr;
  size_t n = 0;
  while (n < len && st->qhead) {
    ochunk_t *k = st->qhead;
    size_t take = k->len - k->off < len - n ? k->len - k->off : len - n;
    memcpy(buf + n, k->data + k->off, take);
    n += take;
    k->off += take;
    if (k->off == k->len) {
      st->qhead = k->next;
      if (st->qhead == NULL) st->qtail = NULL;
      if (k->release) k->release(k->ref);
      free(k);
    }
  }
  st->queued -= n;
  if (st->qhead == NULL) {
    if (st->ended) {
      *flags |= NGHTTP2_DATA_FLAG_EOF;
      st->eof_sent = 1;
    } else {
      if (st->drain) st->want_drain = 1; /* all taken: the producer may go on */
      if (n == 0) {
        st->deferred = 1;
        return NGHTTP2_ERR_DEFERRED;
      }
    }
  }
  return (ssize_t)n;
}

typedef struct {
  uv_write_t req;
  conn_t *c;
  char *ct;
  size_t len;
} h2write_t;

static void on_timer(uv_timer_t *t) {
  conn_t *c = t->data;
  hg_log(HG_LOG_DEBUG, "%s: h2 %s, closing", c->peer, c->h2->nstreams ? "timeout" : "idle");
  hg__http_conn_close(c); /* idle, an unfinished request, or no progress of an answer */
}

/* Closes a connection that has nothing left to do; arms the idle or send timer. */
static void check_idle(conn_t *c) {
  h2_t *h = c->h2;
  if (c->closing) return;
  int done = h->dead || (!nghttp2_session_want_read(h->sess) && !nghttp2_session_want_write(h->sess));
  if (done && h->inflight == 0) {
    hg__http_conn_close(c);
    return;
  }
  if (h->inflight > 0) {
    uv_timer_start(&c->timer, on_timer, c->srv->lim.send_timeout_ms, 0);
    return;
  }
  if (h->nstreams == 0) {
    uv_timer_start(&c->timer, on_timer, c->srv->lim.keepalive_timeout_ms, 0);
    return;
  }
  /* Streams, nothing in flight: a handler at work has its own deadlines; otherwise the
   * client owes us something. Security: a request it never finishes (HTTP/1.1's header
   * timeout) or windows it never opens for an answer (the send timeout) would otherwise
   * hold the connection and its streams forever. */
  int answering = 0;
  for (h2_stream_t *st = h->streams; st; st = st->next) {
    if (st->held || st->in_ready) {
      uv_timer_stop(&c->timer);
      return;
    }
    answering |= st->status != 0;
  }
  uv_timer_start(&c->timer, on_timer,
                 answering ? c->srv->lim.send_timeout_ms : c->srv->lim.header_timeout_ms, 0);
}

static void on_write(uv_write_t *req, int status) {
  h2write_t *w = (h2write_t *)req;
  conn_t *c = w->c;
  c->h2->inflight -= w->len;
  free(w->ct);
  free(w);
  if (status < 0) {
    hg__http_conn_close(c);
    return;
  }
  flush(c);
}

/* The client left: a waiting handler's gone callback, else the streaming one's drain. */
static void tell_gone(h2_stream_t *st) {
  if (st->gone_cb) {
    void (*cb)(void *) = st->gone_cb;
    st->gone_cb = NULL;
    cb(st->gone_ud);
  } else if (st->drain) {
    st->drain(st->drain_ud, UV_ECONNRESET);
  }
}

void hg__h2_on_gone(hg_http_txn_t *txn, void (*cb)(void *ud), void *ud) {
  txn->h2->gone_cb = cb;
  txn->h2->gone_ud = ud;
}

/* Drain callbacks (a stream's queue was taken) and "client gone" notices, outside of
 * nghttp2. A handler may write, end or be freed in its callback: start over each time. */
static void notify(conn_t *c) {
  h2_t *h = c->h2;
  if (h->notifying) return;
  h->notifying = 1;
  for (h2_stream_t *st = h->streams; st;) {
    if (st->held && st->notify_gone && !st->ended) {
      st->notify_gone = 0;
      st->want_drain = 0;
      tell_gone(st);
      st = h->streams;
    } else if (st->held && st->want_drain && st->drain && !st->ended && st->queued == 0) {
      st->want_drain = 0;
      st->drain(st->drain_ud, 0);
      st = h->streams;
    } else {
      st->notify_gone = st->want_drain = 0;
      st = st->next;
    }
  }
  h->notifying = 0;
}

static void flush(conn_t *c) {
  h2_t *h = c->h2;
  if (h->in_recv || h->flushing || c->closing || h->gone) return;
  h->flushing = 1;
  hg_buf_t out = HG_BUF_INIT;
  while (!c->closing && h->inflight < OUT_HIGH) {
    while (out.len < OUT_BATCH) {
      const uint8_t *p;
      ssize_t n = nghttp2_session_mem_send(h->sess, &p);
      if (n < 0) {
        hg_log(HG_LOG_DEBUG, "%s: h2: %s", c->peer, nghttp2_strerror((int)n));
        h->dead = 1;
        break;
      }
      if (n == 0) break;
      if (hg_buf_append(&out, p, (size_t)n)) {
        h->dead = 1;
        break;
      }
    }
    if (out.len == 0) break;
    h2write_t *w = malloc(sizeof(*w));
    if (w == NULL) {
      h->dead = 1;
      break;
    }
    w->c = c;
    uv_buf_t b = uv_buf_init(out.data, (unsigned)out.len);
    size_t ctlen;
    int rc = hg__htls_encrypt(c, &b, 1, &w->ct, &ctlen);
    uv_buf_t cb = uv_buf_init(w->ct, (unsigned)ctlen);
    if (rc == 0) rc = uv_write(&w->req, (uv_stream_t *)&c->tcp, &cb, 1, on_write);
    if (rc) {
      free(w->ct);
      free(w);
      hg__http_conn_close(c);
      break;
    }
    w->len = out.len;
    h->inflight += out.len;
    hg_buf_clear(&out);
  }
  hg_buf_free(&out);
  h->flushing = 0;
  if (c->closing) return;
  notify(c);
  check_idle(c);
}

/* ---- requests ---- */

static int respond_error(conn_t *c, h2_stream_t *st, int status, const char *msg) {
  hg_request_t *req = &st->txn.req;
  hg_response_t res;
  memset(&res, 0, sizeof(res));
  st->held = 1;
  c->h2->held++;
  if (req->id[0] == '\0') hg__http_new_id(c->srv, req->id);
  if (hg_response_error(&res, req->arena, status, msg, req->id) != 0) res.status = 500;
  return hg__h2_respond(&st->txn, &res);
}

/* Turns a complete stream into the request the handler sees (HTTP/1.1's checks where
 * nghttp2 does not make them), or answers it with an error. */
static void dispatch_one(conn_t *c, h2_stream_t *st) {
  hg_request_t *req = &st->txn.req;
  if (st->method) req->method = st->method;
  if (st->path) {
    req->target = st->path;
    req->target_len = st->path_len;
    req->path_len = strcspn(st->path, "?");
  }
  req->headers = st->hdrs;
  req->nheaders = st->nhdrs;
  const hg_header_t *rid = hg_request_header(req, "x-request-id");
  if (rid && hg__http_sane_request_id(rid->value, rid->value_len)) memcpy(req->id, rid->value, rid->value_len + 1);
  else hg__http_new_id(c->srv, req->id);
  if (st->err_status) {
    respond_error(c, st, st->err_status, st->err_msg);
    return;
  }
  if (strcmp(req->method, "CONNECT") == 0) {
    respond_error(c, st, 405, "CONNECT is not supported");
    return;
  }
  if (!(req->target[0] == '/' || (strcmp(req->method, "OPTIONS") == 0 && strcmp(req->target, "*") == 0))) {
    respond_error(c, st, 400, "invalid request target");
    return;
  }
  /* :authority stands for Host (RFC 9113 §8.3.1); the pipeline reads Host. Security:
   * checked as strictly as an HTTP/1.1 Host, since it ends up in rewritten URLs. */
  const hg_header_t *host = hg_request_header(req, "host");
  if (host == NULL && st->authority && st->hdrs) {
    hg_header_t *hd = &st->hdrs[st->nhdrs++];
    hd->name = "host";
    hd->name_len = 4;
    hd->value = st->authority;
    hd->value_len = strlen(st->authority);
    req->nheaders = st->nhdrs;
    host = hd;
  } else if (host == NULL && st->authority) {
    st->hdrs = hg_arena_alloc(req->arena, sizeof(hg_header_t));
    if (st->hdrs == NULL) {
      respond_error(c, st, 500, "out of memory");
      return;
    }
    st->hdrs[0] = (hg_header_t){"host", 4, st->authority, strlen(st->authority)};
    req->headers = st->hdrs;
    req->nheaders = st->nhdrs = 1;
    host = st->hdrs;
  }
  /* RFC 9113 §8.3.1: a Host that names another entity than :authority is malformed. */
  if (host && st->authority &&
      (strlen(st->authority) != host->value_len || strncasecmp(st->authority, host->value, host->value_len) != 0)) {
    respond_error(c, st, 400, "Host and :authority differ");
    return;
  }
  if (host == NULL || !hg__http_valid_host(host->value, host->value_len)) {
    respond_error(c, st, 400, host ? "invalid Host header" : "missing :authority");
    return;
  }
  if (st->body.len > 0) {
    req->body = hg_arena_strndup(req->arena, st->body.data, st->body.len);
    if (req->body == NULL) {
      respond_error(c, st, 500, "out of memory");
      return;
    }
    req->body_len = st->body.len;
  }
  hg_buf_free(&st->body);
  st->held = 1;
  c->h2->held++;
  c->srv->cb(c->srv->ud, &st->txn, req);
}

static void dispatch(conn_t *c) {
  h2_t *h = c->h2;
  while (h->ready && !c->closing) {
    h2_stream_t *st = h->ready;
    h->ready = st->ready_next;
    if (h->ready == NULL) h->ready_last = NULL;
    st->in_ready = 0;
    if (st->closed) free_stream(c, st); /* reset before we got to it */
    else dispatch_one(c, st);
  }
}

/* ---- connection ---- */

int hg__h2_start(conn_t *c) {
  h2_t *h = calloc(1, sizeof(*h));
  nghttp2_session_callbacks *cbs;
  if (h == NULL || nghttp2_session_callbacks_new(&cbs) != 0) {
    free(h);
    return HG_ENOMEM;
  }
  nghttp2_session_callbacks_set_on_begin_headers_callback(cbs, on_begin_headers);
  nghttp2_session_callbacks_set_on_header_callback(cbs, on_header);
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, on_data_chunk);
  nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, on_frame_recv);
  nghttp2_session_callbacks_set_on_stream_close_callback(cbs, on_stream_close);
  int rc = nghttp2_session_server_new(&h->sess, cbs, c);
  nghttp2_session_callbacks_del(cbs);
  if (rc != 0) {
    free(h);
    return HG_ENOMEM;
  }
  c->h2 = h;
  /* Header lists are limited as on HTTP/1.1 (name + value bytes, 431); the advertised
   * size adds the 32 bytes per field RFC 9113 §6.5.2 counts. */
  nghttp2_settings_entry iv[] = {
      {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, H2_MAX_STREAMS},
      {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, (uint32_t)(c->srv->lim.max_headers + 32 * MAX_HEADERS)},
  };
  nghttp2_submit_settings(h->sess, NGHTTP2_FLAG_NONE, iv, sizeof(iv) / sizeof(iv[0]));
  uv_timer_stop(&c->timer);
  if (c->srv->draining) hg__h2_drain(c);
  flush(c);
  return 0;
}

void hg__h2_recv(conn_t *c, const char *p, size_t n) {
  h2_t *h = c->h2;
  if (h->dead || c->closing) return;
  h->in_recv = 1;
  ssize_t r = nghttp2_session_mem_recv(h->sess, (const uint8_t *)p, n);
  h->in_recv = 0;
  if (r < 0) { /* a connection error: nghttp2 queued the GOAWAY where one is due */
    hg_log(HG_LOG_DEBUG, "%s: h2: %s", c->peer, nghttp2_strerror((int)r));
    h->dead = 1;
  }
  if (!h->dead) dispatch(c);
  flush(c);
}

void hg__h2_eof(conn_t *c) { hg__http_conn_close(c); }

void hg__h2_drain(conn_t *c) {
  h2_t *h = c->h2;
  if (c->closing) return;
  /* No new streams; once the open ones finish nghttp2 wants neither read nor write, and
   * check_idle closes. */
  nghttp2_submit_goaway(h->sess, NGHTTP2_FLAG_NONE, nghttp2_session_get_last_proc_stream_id(h->sess),
                        NGHTTP2_NO_ERROR, NULL, 0);
  flush(c);
}

void hg__h2_closed(conn_t *c) {
  h2_t *h = c->h2;
  h->gone = 1;
  h->notifying = 1; /* the connection is freed by our caller, not by a release */
  for (h2_stream_t *st = h->streams; st;) {
    h2_stream_t *next = st->next;
    st->closed = 1;
    if (st->held && (st->drain || st->gone_cb) && !st->ended) {
      st->ended = 1; /* told once */
      tell_gone(st);
      st = h->streams;
      continue;
    }
    if (!st->held) free_stream(c, st);
    st = next;
  }
  h->ready = h->ready_last = NULL;
  h->notifying = 0;
}

int hg__h2_held(const conn_t *c) { return c->h2->held; }

void hg__h2_free(conn_t *c) {
  h2_t *h = c->h2;
  while (h->streams) free_stream(c, h->streams);
  nghttp2_session_del(h->sess);
  free(h);
  c->h2 = NULL;
}

/* ---- the txn API on a stream ---- */

static int begin(h2_stream_t *st, int status) {
  const char *m = st->txn.req.method;
  st->body_allowed = !(strcmp(m, "HEAD") == 0 || status == 204 || status == 304 || status < 200);
  st->status = status;
  conn_t *c = st->txn.conn;
  return st->closed || c->closing || c->h2->dead;
}

/* Submits the head; `body` says a DATA provider follows. */
static int submit_head(conn_t *c, h2_stream_t *st, const hg_response_t *res, int64_t clen, int body) {
  hg_arena_t *a = st->txn.req.arena;
  nghttp2_nv nv[48];
  size_t n = 0;
  char status[8], len[24];
  snprintf(status, sizeof(status), "%d", res->status);
#define NV(nm, nl, v, vl) nv[n++] = (nghttp2_nv){(uint8_t *)(nm), (uint8_t *)(v), (nl), (vl), NGHTTP2_NV_FLAG_NONE}
  NV(":status", 7, status, strlen(status));
  NV("server", 6, "hlsgate", 7);
  const char *date = hg__http_date(c->srv);
  NV("date", 4, date, strlen(date));
  int has_cc = 0;
  for (size_t i = 0; i < res->nheaders && n < 44; i++) {
    const hg_header_t *hd = &res->headers[i];
    if (hg__http_is_hop_or_framing(hd->name, hd->name_len)) continue;
    if (hd->name_len == 16 && strncasecmp(hd->name, "proxy-connection", 16) == 0) continue;
    char *lname = hg_arena_strndup(a, hd->name, hd->name_len); /* RFC 9113 §8.2.1: lower case */
    if (lname == NULL) return HG_ENOMEM;
    for (size_t k = 0; k < hd->name_len; k++)
      if (lname[k] >= 'A' && lname[k] <= 'Z') lname[k] = (char)(lname[k] + 32);
    has_cc |= hd->name_len == 13 && strcmp(lname, "cache-control") == 0;
    NV(lname, hd->name_len, hd->value, hd->value_len);
  }
  if (!has_cc) NV("cache-control", 13, "no-store", 8); /* SPEC §7, as on HTTP/1.1 */
  if (clen >= 0 && res->status >= 200 && res->status != 204 && res->status != 304) {
    snprintf(len, sizeof(len), "%lld", (long long)clen);
    NV("content-length", 14, len, strlen(len));
  }
  NV("x-request-id", 12, st->txn.req.id, strlen(st->txn.req.id));
#undef NV
  nghttp2_data_provider prd;
  prd.source.ptr = st;
  prd.read_callback = read_body;
  /* nghttp2 copies the header fields. */
  int rc = nghttp2_submit_response(c->h2->sess, st->id, nv, n, body ? &prd : NULL);
  if (!body) st->eof_sent = 1;
  return rc ? HG_ENOMEM : 0;
}

/* Queues a body piece; rel(ref) runs once nghttp2 took it, or when it is dropped. */
static int enqueue(h2_stream_t *st, const char *data, size_t len, void (*rel)(void *), void *ref) {
  ochunk_t *k = malloc(sizeof(*k));
  if (k == NULL) {
    if (rel) rel(ref);
    return HG_ENOMEM;
  }
  *k = (ochunk_t){NULL, data, len, 0, rel, ref};
  if (st->qtail) st->qtail->next = k;
  else st->qhead = k;
  st->qtail = k;
  st->queued += len;
  return 0;
}

static void resume(conn_t *c, h2_stream_t *st) {
  if (!st->deferred) return;
  st->deferred = 0;
  nghttp2_session_resume_data(c->h2->sess, st->id);
}

int hg__h2_respond(hg_http_txn_t *txn, const hg_response_t *res) {
  h2_stream_t *st = txn->h2;
  conn_t *c = txn->conn;
  if (begin(st, res->status)) {
    if (res->body_release) res->body_release(res->body_ref);
    hg__http_access_log(c->srv, &st->txn.req, 499, 0);
    release(c, st);
    return UV_ECONNRESET;
  }
  size_t blen = res->body ? res->body_len : 0;
  int rc = 0;
  int body = st->body_allowed && blen > 0;
  /* Written from where it is: the stream's arena (which lives as long as the stream),
   * static memory, or a reference (a cached object) released once taken. */
  if (body) rc = enqueue(st, res->body, blen, res->body_release, res->body_ref);
  else if (res->body_release) res->body_release(res->body_ref);
  st->ended = 1;
  if (!rc) rc = submit_head(c, st, res, (int64_t)blen, body);
  if (rc) nghttp2_submit_rst_stream(c->h2->sess, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_INTERNAL_ERROR);
  hg__http_access_log(c->srv, &st->txn.req, rc ? 500 : res->status, body ? blen : 0);
  release(c, st); /* (the connection is open: release cannot free it) */
  flush(c);
  return rc;
}

int hg__h2_stream_start(hg_http_txn_t *txn, const hg_response_t *res, int64_t clen, hg_http_drain_cb drain,
                        void *ud) {
  h2_stream_t *st = txn->h2;
  conn_t *c = txn->conn;
  st->drain = drain;
  st->drain_ud = ud;
  if (begin(st, res->status)) return UV_ECONNRESET;
  int rc = submit_head(c, st, res, clen, st->body_allowed);
  if (rc) {
    nghttp2_submit_rst_stream(c->h2->sess, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_INTERNAL_ERROR);
    flush(c);
    return rc;
  }
  flush(c);
  return 0;
}

int hg__h2_stream_write_ref(hg_http_txn_t *txn, const char *data, size_t len, void (*rel)(void *ref),
                            void *ref) {
  h2_stream_t *st = txn->h2;
  conn_t *c = txn->conn;
  if ((st->closed && !st->eof_sent) || c->closing || c->h2->dead) {
    if (rel) rel(ref);
    return UV_ECONNRESET;
  }
  if (!st->body_allowed || len == 0 || st->eof_sent) {
    if (rel) rel(ref);
    return 0;
  }
  int rc = enqueue(st, data, len, rel, ref);
  if (rc) return rc;
  st->body_bytes += len;
  resume(c, st);
  flush(c);
  return 0;
}

size_t hg__h2_stream_queued(const hg_http_txn_t *txn) { return txn->h2->queued; }

void hg__h2_stream_end(hg_http_txn_t *txn, int complete) {
  h2_stream_t *st = txn->h2;
  conn_t *c = txn->conn;
  if ((st->closed && !st->eof_sent) || c->closing || c->h2->dead) {
    hg__http_access_log(c->srv, &st->txn.req, 499, st->body_bytes);
    st->ended = 1;
    release(c, st);
    return;
  }
  hg__http_access_log(c->srv, &st->txn.req, st->status, st->body_bytes);
  st->ended = 1;
  if (st->closed) /* done already (HEAD) */
    ;
  else if (!complete) /* a truncated body must not look complete: reset the stream */
    nghttp2_submit_rst_stream(c->h2->sess, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_INTERNAL_ERROR);
  else
    resume(c, st);
  release(c, st); /* (the connection is open: release cannot free it) */
  flush(c);
}
