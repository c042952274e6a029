/* conn.c — one TCP connection (and its TLS session) to one origin: opening it,
 * the TLS handshake, writes, reads and their backpressure, closing it (keeping or giving
 * back its slot); writing the request on it, and what happens when it breaks before the
 * response (one retry of a reused connection).
 */
#include "upstream/client_internal.h"

#include <stdlib.h>

#include "base/error.h"
#include "upstream/addr.h"

#ifndef HG_VERSION
#define HG_VERSION "0"
#endif

#define READ_CHUNK 65536        /* socket read size: bounds what is buffered while paused */


/* ---- connections ---- */

static void on_conn_close(uv_handle_t *h) {
  conn_t *c = h->data;
  if (--c->handles > 0) return;
  hg_upstream_t *u = c->u;
  hg_buf_free(&c->rx);
  if (c->tls_on) hg__tls_free(&c->tls);
  free(c);
  u->nconns--;
  hg__upstream_maybe_free(u);
}

/* Closes a conn (idempotent): unpools it, gives back its slot, detaches its fetch. */
void hg__upstream_conn_close(conn_t *c) {
  if (c->closing) return;
  c->closing = 1;
  c->reading = 0;
  origin_t *o = c->origin;
  if (c->state == C_IDLE && o) {
    if (c->iprev) c->iprev->inext = c->inext;
    else o->idle = c->inext;
    if (c->inext) c->inext->iprev = c->iprev;
    c->iprev = c->inext = NULL;
    o->nidle--;
  }
  if (c->fetch) {
    c->fetch->conn = NULL;
    c->fetch = NULL;
  }
  uv_close((uv_handle_t *)&c->tcp, on_conn_close);
  uv_close((uv_handle_t *)&c->idle_timer, on_conn_close);
  if (o) {
    c->origin = NULL;
    hg__upstream_slot_release(c->u, o);
  }
}

/* Closes the fetch's conn but keeps its slot for the fetch (next address, retry). */
static void conn_close_keep_slot(hg_fetch_t *f) {
  conn_t *c = f->conn;
  if (c == NULL) return;
  if (c->origin) {
    f->origin = c->origin;
    f->has_slot = 1;
    c->origin = NULL;
  }
  f->conn = NULL;
  c->fetch = NULL;
  hg__upstream_conn_close(c);
}

typedef struct wreq_s {
  uv_write_t req;
  conn_t *c;
  char *data;
} wreq_t;


static void on_write(uv_write_t *req, int status) {
  wreq_t *w = req->data;
  conn_t *c = w->c;
  free(w->data);
  free(w);
  c->writes--;
  if (status >= 0 || c->closing) return;
  hg_fetch_t *f = c->fetch;
  if (f == NULL) {
    hg__upstream_conn_close(c);
  } else if (f->state == F_CONNECT) {
    hg__upstream_fetch_fail(f, status, "TLS: %s", uv_strerror(status));
  } else if (f->state == F_RESPONSE && f->resp_bytes == 0) {
    hg__upstream_conn_failed(f, status, uv_strerror(status));
  }
  /* Otherwise the response is already arriving: the read side decides. */
}

/* Queues b's bytes for writing; takes them (b is left empty). Returns 0 or UV_E*. */
static int conn_write(conn_t *c, hg_buf_t *b) {
  if (b->len == 0) return 0;
  size_t len;
  char *data = hg_buf_steal(b, &len);
  wreq_t *w = malloc(sizeof(*w));
  if (w == NULL) {
    free(data);
    return UV_ENOMEM;
  }
  w->c = c;
  w->data = data;
  w->req.data = w;
  uv_buf_t buf = uv_buf_init(data, (unsigned)len);
  int rc = uv_write(&w->req, (uv_stream_t *)&c->tcp, &buf, 1, on_write);
  if (rc < 0) {
    free(data);
    free(w);
    return rc;
  }
  c->writes++;
  return 0;
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf) {
  (void)hint;
  conn_t *c = h->data;
  if (c->tls_on) {
    size_t room = 0;
    char *p = hg__tls_in_reserve(&c->tls, READ_CHUNK, &room);
    *buf = uv_buf_init(p, p ? (unsigned)room : 0);
    return;
  }
  if (c->rx_off == c->rx.len) c->rx.len = c->rx_off = 0;
  if (hg_buf_reserve(&c->rx, READ_CHUNK) != 0) {
    *buf = uv_buf_init(NULL, 0); /* libuv reports UV_ENOBUFS */
    return;
  }
  size_t room = c->rx.cap - c->rx.len - 1; /* (doubling may have made it 128 KiB) */
  /* Memory: one read is at most READ_CHUNK, what a paused relay may hold besides its queue. */
  *buf = uv_buf_init(c->rx.data + c->rx.len, (unsigned)(room < READ_CHUNK ? room : READ_CHUNK));
}

static void tls_step(conn_t *c);

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  (void)buf;
  conn_t *c = s->data;
  if (nread == 0 || c->closing) return;
  if (nread > 0) {
    if (c->tls_on) {
      hg__tls_in_commit(&c->tls, (size_t)nread);
    } else {
      c->rx.len += (size_t)nread;
      c->rx.data[c->rx.len] = '\0';
    }
  } else {
    if (nread == UV_EOF) c->eof = 1;
    else c->rerr = (int)nread;
    if (c->tls_on) c->tls.eof = 1;
    uv_read_stop(s);
    c->reading = 0;
  }
  if (c->state == C_IDLE) {
    hg__upstream_conn_close(c); /* the server closed it, or sent bytes nobody asked for */
    return;
  }
  if (c->state == C_HANDSHAKE) {
    tls_step(c);
    return;
  }
  hg_fetch_t *f = c->fetch;
  if (c->state != C_ACTIVE || f == NULL || f->state != F_RESPONSE) return;
  if (nread > 0) hg__upstream_timer_arm(f, T_READ);
  hg__upstream_pump(f);
}

/* Reads while someone wants bytes: the handshake, an unpaused response, an idle conn
 * (to notice the server closing it). Stops otherwise: that is the backpressure. */
void hg__upstream_conn_update_reading(conn_t *c) {
  if (c->closing) return;
  int want = !c->eof && !c->rerr &&
             (c->state == C_HANDSHAKE || c->state == C_IDLE ||
              (c->state == C_ACTIVE && c->fetch && !c->fetch->paused));
  if (want && !c->reading) {
    if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) == 0) c->reading = 1;
  } else if (!want && c->reading) {
    uv_read_stop((uv_stream_t *)&c->tcp);
    c->reading = 0;
  }
}

/* Sends ciphertext mbedTLS produced. Returns 0 or UV_E*. */
int hg__upstream_tls_flush(conn_t *c) { return conn_write(c, &c->tls.out); }

static void tls_step(conn_t *c) {
  hg_fetch_t *f = c->fetch;
  if (f == NULL) {
    hg__upstream_conn_close(c);
    return;
  }
  int rc = hg__tls_handshake(&c->tls);
  int wrc = hg__upstream_tls_flush(c);
  if (rc < 0) {
    if (rc == MBEDTLS_ERR_SSL_CONN_EOF) {
      hg__upstream_fetch_fail(f, UV_ECONNRESET, "TLS: connection closed during the handshake");
      return;
    }
    char why[256];
    hg__tls_describe(&c->tls, rc, why, sizeof(why));
    /* Security: a certificate that fails verification ends the fetch; never retried. */
    hg__upstream_fetch_fail(f, HG_EUPSTREAM, "TLS: %s", why);
    return;
  }
  if (wrc < 0) {
    hg__upstream_fetch_fail(f, wrc, "TLS: %s", uv_strerror(wrc));
    return;
  }
  if (c->rerr) {
    hg__upstream_fetch_fail(f, c->rerr, "TLS: %s", uv_strerror(c->rerr));
    return;
  }
  if (rc == 1) {
    if (c->eof) hg__upstream_fetch_fail(f, UV_ECONNRESET, "TLS: connection closed during the handshake");
    else hg__upstream_conn_update_reading(c);
    return;
  }
  c->state = C_ACTIVE;
  hg__upstream_send_request(f);
}


static void on_connect(uv_connect_t *req, int status) {
  conn_t *c = req->data;
  if (status == UV_ECANCELED || c->closing) return;
  hg_fetch_t *f = c->fetch;
  if (f == NULL) {
    hg__upstream_conn_close(c);
    return;
  }
  if (status < 0) {
    f->last_err = status;
    conn_close_keep_slot(f);
    f->addr_idx++;
    hg__upstream_hop_try_connect(f); /* the next address, if any */
    return;
  }
  uv_tcp_nodelay(&c->tcp, 1);
  uv_tcp_keepalive(&c->tcp, 1, 60);
  if (c->tls_on) {
    c->state = C_HANDSHAKE;
    tls_step(c);
  } else {
    c->state = C_ACTIVE;
    hg__upstream_send_request(f);
  }
}

/* Opens a conn to `sa` for f, moving f's slot to it. Returns 0, or a UV_E* code or
 * HG_ENOMEM (then f keeps its slot). */
int hg__upstream_conn_open(hg_fetch_t *f, const struct sockaddr *sa) {
  hg_upstream_t *u = f->u;
  conn_t *c = calloc(1, sizeof(*c));
  if (c == NULL) return HG_ENOMEM;
  c->u = u;
  if (f->org.https) {
    if (hg__tls_init(&c->tls, u->tls, f->org.host) != 0) {
      free(c);
      return HG_ENOMEM;
    }
    c->tls_on = 1;
  }
  uv_tcp_init(u->loop, &c->tcp);
  uv_timer_init(u->loop, &c->idle_timer);
  c->tcp.data = c->idle_timer.data = c;
  c->creq.data = c;
  c->handles = 2;
  u->nconns++;
  c->addr_class = hg_upstream_addr_class(sa);
  c->origin = f->origin; /* the slot moves to the conn */
  f->has_slot = 0;
  f->origin = NULL;
  hg__upstream_attach(f, c);
  c->state = C_CONNECTING;
  int rc = uv_tcp_connect(&c->creq, &c->tcp, sa, on_connect);
  if (rc < 0) {
    conn_close_keep_slot(f);
    return rc;
  }
  return 0;
}

/* ---- request ---- */

void hg__upstream_send_request(hg_fetch_t *f) {
  conn_t *c = f->conn;
  hg_upstream_t *u = f->u;
  hg_url_t pu;
  hg_buf_t req = HG_BUF_INIT;
  int bad = 0;
  hg_url_parse(f->url.data, f->url.len, &pu); /* validated in hg__upstream_hop_begin */
  bad |= hg_buf_puts(&req, f->head_method ? "HEAD " : "GET ");
  if (pu.path_len) bad |= hg_buf_append(&req, pu.path, pu.path_len);
  else bad |= hg_buf_putc(&req, '/');
  if (pu.has_query) {
    bad |= hg_buf_putc(&req, '?');
    bad |= hg_buf_append(&req, pu.query, pu.query_len);
  }
  /* Host is exactly what signers (SigV4) expect: the port only when not the default. */
  bad |= hg_buf_printf(&req, " HTTP/1.1\r\nHost: %s%s%s", f->org.ipv6 ? "[" : "", f->org.host,
                       f->org.ipv6 ? "]" : "");
  if (f->org.port != (f->org.https ? 443u : 80u)) bad |= hg_buf_printf(&req, ":%u", f->org.port);
  bad |= hg_buf_puts(&req, "\r\n");
  int have_ua = 0;
  for (size_t i = 0; i < f->nhdrs; i++) {
    const hg_header_t *h = &f->hdrs[i];
    if (hg__upstream_name_is(h->name, h->name_len, "user-agent")) have_ua = 1;
    bad |= hg_buf_append(&req, h->name, h->name_len);
    bad |= hg_buf_puts(&req, ": ");
    bad |= hg_buf_append(&req, h->value, h->value_len);
    bad |= hg_buf_puts(&req, "\r\n");
  }
  if (!have_ua) bad |= hg_buf_puts(&req, "User-Agent: hlsgate/" HG_VERSION "\r\n");
  bad |= hg_buf_printf(&req, "Accept-Encoding: %s\r\nConnection: keep-alive\r\n\r\n",
                       f->accept_gzip ? "gzip" : "identity");
  if (bad) {
    hg_buf_free(&req);
    hg__upstream_fetch_fail(f, HG_ENOMEM, "out of memory");
    return;
  }
  llhttp_init(&c->parser, HTTP_RESPONSE, &u->settings);
  c->parser.data = c;
  c->rx.len = c->rx_off = 0;
  hg__upstream_response_reset(f);
  f->state = F_RESPONSE;
  int rc;
  if (c->tls_on) {
    rc = hg__tls_write(&c->tls, req.data, req.len);
    hg_buf_free(&req);
    if (rc < 0) {
      char why[256];
      hg__tls_describe(&c->tls, rc, why, sizeof(why));
      hg__upstream_fetch_fail(f, HG_EUPSTREAM, "TLS: %s", why);
      return;
    }
    rc = hg__upstream_tls_flush(c);
  } else {
    rc = conn_write(c, &req);
    hg_buf_free(&req);
  }
  if (rc < 0) {
    hg__upstream_conn_failed(f, rc, uv_strerror(rc));
    return;
  }
  hg__upstream_timer_arm(f, T_READ);
  hg__upstream_conn_update_reading(c);
}

/* The conn broke before the response completed. A pooled conn that dies before a single
 * response byte is the classic keep-alive race (the server closed it as we reused it):
 * GET and HEAD are idempotent, so retry once on a fresh connection. */
void hg__upstream_conn_failed(hg_fetch_t *f, int err, const char *what) {
  if (f->reused && f->resp_bytes == 0 && !f->retried && f->state == F_RESPONSE) {
    f->retried = 1;
    f->reused = 0;
    conn_close_keep_slot(f);
    if (!f->has_slot) { /* cannot happen (a live conn holds a slot), but stay safe */
      hg__upstream_fetch_fail(f, err, "%s", what);
      return;
    }
    hg__upstream_response_reset(f);
    hg__upstream_timer_arm(f, T_CONNECT);
    hg__upstream_hop_resolve(f);
    return;
  }
  hg__upstream_fetch_fail(f, err, "%s", what);
}
