/* server.c — HTTP/1.1 server on libuv + llhttp (see server.h).
 *
 * Connection life: IDLE (no request bytes yet) → READING (parsing a request; the
 * header timer runs) → BUSY (handed to the request callback) → WRITING (response
 * queued) → IDLE again, or closed. Requests are parsed one at a time; while one is
 * BUSY/WRITING, further input is only buffered, and reading pauses once more than
 * MAX_PIPELINED bytes wait (then unread requests stay in the kernel's buffers).
 * A connection is freed only when both its handles are closed and no handler holds
 * its transaction.
 */
#include "http/server.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "base/error.h"
#include "base/log.h"
#include "http/server_internal.h"

/* A draining server with no connection and no listener left reports it, once. */
static void check_drained(hg_http_server_t *s) {
  if (!s->draining || s->nconns > 0 || s->nopen_listeners > 0 || s->drain_done == NULL) return;
  void (*done)(void *) = s->drain_done;
  s->drain_done = NULL;
  if (s->drain_timer_open) uv_timer_stop(&s->drain_timer);
  done(s->drain_ud);
}

/* Frees the connection once nothing refers to it any more. */
void hg__http_conn_maybe_free(conn_t *c) {
  if (c->handles > 0 || c->state == S_BUSY || (c->h2 && hg__h2_held(c))) return;
  hg_http_server_t *s = c->srv;
  if (c->prev) c->prev->next = c->next;
  else s->conns = c->next;
  if (c->next) c->next->prev = c->prev;
  s->nconns--;
  if (c->accepted && s->obs.connection) s->obs.connection(s->obs.ud, -1);
  if (c->h2) hg__h2_free(c);
  if (c->tls) hg__htls_conn_free(c);
  hg_arena_free(c->txn.req.arena);
  hg_buf_free(&c->in);
  hg_buf_free(&c->out);
  hg_buf_free(&c->url);
  hg_buf_free(&c->field);
  hg_buf_free(&c->value);
  hg_buf_free(&c->body);
  free(c);
  check_drained(s);
}

static void on_handle_close(uv_handle_t *h) {
  conn_t *c = h->data;
  c->handles--;
  if (c->handles == 0 && c->h2) hg__h2_closed(c); /* streams still handled learn it */
  if (c->handles == 0 && !c->h2 && c->state == S_BUSY && c->drain && !c->ended && !c->gone_notified) {
    /* A response still streaming on a connection closed under it (a write that failed at
     * once, the drain's end): its source stops now instead of running to its end for
     * nobody. Security: a client asking for a large body and leaving must not keep the
     * gateway downloading it. The handler ends the response, which frees c. */
    hg__http_notify_gone(c, UV_ECONNRESET);
    return;
  }
  hg__http_conn_maybe_free(c);
}

/* A handler waiting before it answers learns that its client left (hg_http_txn_on_gone). */
static void fire_gone(conn_t *c) {
  if (c->state != S_BUSY || c->gone_cb == NULL) return;
  void (*cb)(void *) = c->gone_cb;
  c->gone_cb = NULL;
  cb(c->gone_ud);
}

void hg__http_conn_close(conn_t *c) {
  if (c->closing) return;
  c->closing = 1;
  uv_close((uv_handle_t *)&c->tcp, on_handle_close);
  uv_close((uv_handle_t *)&c->timer, on_handle_close);
  fire_gone(c); /* the handles close later: the connection outlives the callback */
}

void hg_http_txn_on_gone(hg_http_txn_t *txn, void (*cb)(void *ud), void *ud) {
  if (txn->h2) { /* a stream of an HTTP/2 connection: told per stream (h2.c) */
    hg__h2_on_gone(txn, cb, ud);
    return;
  }
  txn->conn->gone_cb = cb;
  txn->conn->gone_ud = ud;
}

void hg__http_start_reading(conn_t *c);


/* Parses buffered input until a request is complete (then hands it over), the input
 * runs out, or an error answers and closes. */
void hg__http_conn_process(conn_t *c) {
  c->in_process = 1;
  while (!c->closing && (c->state == S_IDLE || c->state == S_READING) && c->in_off < c->in.len) {
    if (c->state == S_IDLE) {
      c->state = S_READING;
      hg__http_txn_begin(c);
      hg__http_timer_start(c, c->srv->lim.header_timeout_ms);
    }
    const char *data = c->in.data + c->in_off;
    size_t len = c->in.len - c->in_off;
    llhttp_errno_t err = hg__http_execute(c, data, len);
    if (err == HPE_OK) {
      c->in_off = c->in.len;
      break;
    }
    if (err == HPE_PAUSED && c->ext_resume) { /* see on_chunk_extension_value */
      c->ext_resume = 0;
      c->in_off += (size_t)(llhttp_get_error_pos(&c->parser) - data) - 1;
      llhttp_resume(&c->parser);
      continue;
    }
    if (err == HPE_PAUSED_UPGRADE && c->state == S_READING && c->txn.req.id[0] == '\0') {
      /* Nothing after an upgrade is parsed (on_message_complete closes after it). */
      hg__http_conn_close(c);
      break;
    }
    if (err == HPE_PAUSED || err == HPE_PAUSED_UPGRADE) {
      c->in_off += (size_t)(llhttp_get_error_pos(&c->parser) - data);
      if (err == HPE_PAUSED_UPGRADE) c->close_after = 1; /* no upgrades here */
      llhttp_resume(&c->parser);
      c->state = S_BUSY;
      uv_timer_stop(&c->timer);
      c->srv->cb(c->srv->ud, &c->txn, &c->txn.req);
      continue; /* answered at once (state S_IDLE): parse the next pipelined request */
    }
    const char *msg;
    int status = hg__http_error_status(c, err, &msg);
    hg_log(HG_LOG_DEBUG, "%s: %d %s (llhttp: %s)", c->peer, status, msg, llhttp_errno_name(err));
    hg__http_respond_error(c, status, msg);
    break;
  }
  c->in_process = 0;
  if (c->in_off == c->in.len) { /* all parsed: keep no buffer */
    hg_buf_free(&c->in);
    c->in_off = 0;
  }
  /* Answered at once after reading was paused (MAX_PIPELINED): resume it. */
  if (!c->closing && !c->reading && (c->state == S_IDLE || c->state == S_READING))
    hg__http_start_reading(c);
  /* While a request is being answered, reading goes on (no epoll churn per request, and
   * a client that leaves is noticed), but a pipelining client that piles up more than
   * MAX_PIPELINED unparsed bytes is paused until we catch up: memory stays bounded. */
  if (!c->closing && c->reading && c->state != S_IDLE && c->state != S_READING &&
      c->in.len - c->in_off > MAX_PIPELINED) {
    uv_read_stop((uv_stream_t *)&c->tcp);
    c->reading = 0;
  }
}

/* ---- reading and timers ---- */

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf) {
  (void)hint;
  conn_t *c = h->data;
  *buf = uv_buf_init(c->srv->rbuf, READ_CHUNK); /* one per loop: reads never overlap */
}

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf) {
  conn_t *c = stream->data;
  if (nread < 0) {
    /* EOF or error. A half-received request is abandoned; a request being handled
     * still gets its response attempt (the write will fail if the peer is gone). */
    uv_read_stop(stream);
    c->reading = 0;
    if (c->state == S_BUSY && c->gone_cb) hg__http_conn_close(c); /* nobody to wait for */
    else if (c->state == S_BUSY || c->state == S_WRITING) c->close_after = 1;
    else hg__http_conn_close(c);
    return;
  }
  if (nread == 0) return;
  if (hg_buf_append(&c->in, buf->base, (size_t)nread) != 0) {
    hg__http_conn_close(c);
    return;
  }
  hg__http_conn_process(c);
}

void hg__http_start_reading(conn_t *c) {
  if (c->reading || c->closing) return;
  if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, c->tls ? hg__htls_on_read : on_read) == 0) c->reading = 1;
  else hg__http_conn_close(c);
}

static void on_timer(uv_timer_t *t) {
  conn_t *c = t->data;
  if (c->state == S_READING) {
    hg__http_respond_error(c, 408, "request timeout");
  } else if (c->state == S_IDLE) {
    hg__http_conn_close(c); /* idle keep-alive or a client that never sent a byte */
  } else if (c->pending > 0) {
    hg_log(HG_LOG_DEBUG, "%s: send timeout, closing", c->peer);
    hg__http_conn_close(c); /* the client stopped reading; pending writes are cancelled */
  }
}

void hg__http_timer_start(conn_t *c, uint64_t ms) {
  if (!c->closing) uv_timer_start(&c->timer, on_timer, ms, 0);
}

/* ---- accepting ---- */

/* At most NOTSENT_LOWAT bytes of a response wait unsent in the kernel (TCP_NOTSENT_LOWAT):
 * the socket says writable again only below it. Without it, sendfile fills a send buffer
 * of megabytes that the kernel then transmits from the softirq of each ACK — on the
 * client's CPU (on loopback, the benchmark's wrk spent 13 % of its time there and became
 * the bottleneck of 2 MiB segments). Lower values move that work to the sending process
 * (128 KiB: ~1.2 ms of our CPU per 2 MiB on loopback, 512 KiB: the client's again);
 * 256 KiB shares it as nginx's sending does (bench/RESULTS.md). Memory: it also bounds
 * what a slow client holds of the kernel's memory beyond what is in flight. */
#define NOTSENT_LOWAT (256 << 10)
static void limit_unsent(conn_t *c) {
  int fd, lowat = NOTSENT_LOWAT;
  if (uv_fileno((uv_handle_t *)&c->tcp, &fd) == 0)
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NOTSENT_LOWAT, &lowat, sizeof(lowat)); /* best effort */
}

static void on_connection(uv_stream_t *server, int status) {
  hg_http_server_t *s = server->data;
  if (status < 0 || s->draining) return;
  conn_t *c = calloc(1, sizeof(*c));
  if (c == NULL) return; /* the kernel keeps the connection queued; we retry next time */
  c->srv = s;
  uv_tcp_init(s->loop, &c->tcp);
  c->tcp.data = c;
  c->handles = 1;
  if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0) {
    c->closing = 1;
    uv_close((uv_handle_t *)&c->tcp, on_handle_close);
    c->next = s->conns; /* linked so that conn_maybe_free can unlink */
    if (s->conns) s->conns->prev = c;
    s->conns = c;
    s->nconns++;
    return;
  }
  uv_timer_init(s->loop, &c->timer);
  c->timer.data = c;
  c->handles = 2;
  c->next = s->conns;
  if (s->conns) s->conns->prev = c;
  s->conns = c;
  s->nconns++;
  c->accepted = 1;
  if (s->obs.connection) s->obs.connection(s->obs.ud, +1);
  uv_tcp_nodelay(&c->tcp, 1);
  limit_unsent(c);
  struct sockaddr_storage ss;
  int len = sizeof(ss);
  snprintf(c->peer, sizeof(c->peer), "-");
  if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &len) == 0) {
    if (ss.ss_family == AF_INET6) uv_ip6_name((struct sockaddr_in6 *)&ss, c->peer, sizeof(c->peer));
    else uv_ip4_name((struct sockaddr_in *)&ss, c->peer, sizeof(c->peer));
  }
  llhttp_init(&c->parser, HTTP_REQUEST, &s->settings);
  c->parser.data = c;
  hg_http_tls_t *tls = ((hg__listener_t *)server)->tls;
  if (tls && hg__htls_conn_new(c, tls) != 0) {
    hg__http_conn_close(c);
    return;
  }
  c->no_sendfile = tls != NULL; /* the bytes must go through the record layer */
  c->state = S_IDLE;
  hg__http_timer_start(c, s->lim.header_timeout_ms);
  hg__http_start_reading(c);
}

hg_http_server_t *hg_http_server_new(uv_loop_t *loop, const hg_http_limits_t *limits,
                                     hg_http_request_cb cb, void *ud) {
  hg_http_server_t *s = calloc(1, sizeof(*s));
  if (s == NULL || (s->rbuf = malloc(READ_CHUNK)) == NULL) {
    free(s);
    return NULL;
  }
  s->loop = loop;
  s->lim = *limits;
  s->cb = cb;
  s->ud = ud;
  hg__http_settings_init(&s->settings);
  if (getrandom(s->rng, sizeof(s->rng), 0) != sizeof(s->rng) || (s->rng[0] | s->rng[1]) == 0) {
    s->rng[0] = uv_hrtime() | 1;
    s->rng[1] = (uint64_t)(uintptr_t)s;
  }
  return s;
}


int hg_http_server_listen_fd(hg_http_server_t *s, int fd) { return hg_http_server_listen_tls(s, fd, NULL); }

int hg_http_server_listen_tls(hg_http_server_t *s, int fd, hg_http_tls_t *tls) {
  if (s->nlisteners == sizeof(s->listeners) / sizeof(s->listeners[0])) {
    close(fd);
    hg_http_tls_free(tls);
    return UV_EINVAL;
  }
  hg__listener_t *l = malloc(sizeof(*l));
  if (l == NULL) {
    close(fd);
    hg_http_tls_free(tls);
    return UV_ENOMEM;
  }
  uv_tcp_t *t = &l->tcp;
  l->tls = tls;
  uv_tcp_init(s->loop, t);
  t->data = s;
  int rc = uv_tcp_open(t, fd);
  if (rc == 0) rc = uv_listen((uv_stream_t *)t, 511, on_connection);
  s->listeners[s->nlisteners++] = l;
  s->nopen_listeners++;
  return rc;
}

static void on_listener_close(uv_handle_t *h) {
  hg_http_server_t *s = h->data;
  hg_http_tls_free(((hg__listener_t *)h)->tls);
  free(h);
  s->nopen_listeners--;
  check_drained(s);
}

static void on_drain_timeout(uv_timer_t *t) {
  hg_http_server_t *s = t->data;
  hg_log(HG_LOG_WARN, "drain timeout: closing %zu connection(s)", s->nconns);
  for (conn_t *c = s->conns; c; c = c->next) hg__http_conn_close(c);
}

static void server_free(hg_http_server_t *s) {
  free(s->rbuf);
  hg_buf_free(&s->logline);
  hg_buf_free(&s->logpath);
  for (size_t i = 0; i < HG_LOGMEMO; i++) free(s->logmemo[i].target);
  free(s);
}

static void on_drain_timer_close(uv_handle_t *h) {
  hg_http_server_t *s = h->data;
  s->drain_timer_open = 0;
  server_free(s);
}

void hg_http_server_drain(hg_http_server_t *s, uint64_t timeout_ms, void (*done)(void *),
                          void *ud) {
  s->draining = 1;
  s->drain_done = done;
  s->drain_ud = ud;
  uv_timer_init(s->loop, &s->drain_timer);
  s->drain_timer.data = s;
  s->drain_timer_open = 1;
  uv_timer_start(&s->drain_timer, on_drain_timeout, timeout_ms, 0);
  for (size_t i = 0; i < s->nlisteners; i++) uv_close((uv_handle_t *)s->listeners[i], on_listener_close);
  s->nlisteners = 0;
  /* Idle connections go now; busy ones finish their response with Connection: close. */
  conn_t *next;
  for (conn_t *c = s->conns; c; c = next) {
    next = c->next;
    if (c->h2) hg__h2_drain(c); /* GOAWAY; closes once its streams are done */
    else if (c->state == S_IDLE && c->in.len == c->in_off) hg__http_conn_close(c);
    else c->close_after = 1;
  }
  check_drained(s);
}

void hg_http_server_drain_now(hg_http_server_t *s) {
  if (s == NULL || !s->draining || s->drain_done == NULL || !s->drain_timer_open) return;
  uv_timer_start(&s->drain_timer, on_drain_timeout, 0, 0);
}

void hg_http_server_free(hg_http_server_t *s) {
  if (s == NULL) return;
  if (s->drain_timer_open) {
    uv_close((uv_handle_t *)&s->drain_timer, on_drain_timer_close);
  } else {
    server_free(s);
  }
}

int hg_http_server_reload_tls(hg_http_server_t *s, char *err, size_t errlen) {
  int rc = 0;
  for (size_t i = 0; i < s->nlisteners; i++) {
    if (s->listeners[i]->tls == NULL) continue;
    int r = hg_http_tls_reload(s->listeners[i]->tls, err, errlen);
    if (r && !rc) rc = r;
  }
  return rc;
}

void hg_http_server_observe(hg_http_server_t *s, const hg_http_observer_t *obs) { s->obs = *obs; }

