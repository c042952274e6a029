/* tls_conn.c — TLS on a server connection (see server_internal.h, tls.h).
 *
 * mbedTLS runs over memory: what the socket reads is appended to `rx` and the record
 * layer reads it from there; what the record layer writes is collected in `tx` and
 * handed to libuv. The handshake runs first (its timeout is the header timeout of the
 * idle connection); then ALPN decides: "h2" goes to h2.c, anything else (or no ALPN) is
 * HTTP/1.1 through the same parser and writer as plain connections, only with reads
 * decrypted and writes encrypted here.
 */
#include <mbedtls/error.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "base/log.h"
#include "http/server_internal.h"
#include "http/tls_internal.h"

typedef struct hg__htls_conn_s {
  mbedtls_ssl_context ssl;
  hg__htls_gen_t *gen; /* the certificates this connection started with */
  hg_buf_t rx;         /* ciphertext received, not yet consumed by mbedTLS */
  size_t rx_off;
  hg_buf_t tx;         /* ciphertext produced, not yet handed to libuv */
  int established;
} tconn_t;

/* BIO callbacks over rx/tx. */
static int bio_send(void *ud, const unsigned char *p, size_t n) {
  tconn_t *t = ud;
  return hg_buf_append(&t->tx, p, n) ? MBEDTLS_ERR_SSL_ALLOC_FAILED : (int)n;
}

static int bio_recv(void *ud, unsigned char *p, size_t n) {
  tconn_t *t = ud;
  size_t avail = t->rx.len - t->rx_off;
  if (avail == 0) return MBEDTLS_ERR_SSL_WANT_READ;
  if (n > avail) n = avail;
  memcpy(p, t->rx.data + t->rx_off, n);
  t->rx_off += n;
  if (t->rx_off == t->rx.len) {
    hg_buf_clear(&t->rx);
    t->rx_off = 0;
  }
  return (int)n;
}

int hg__htls_conn_new(conn_t *c, hg_http_tls_t *tls) {
  tconn_t *t = calloc(1, sizeof(*t));
  if (t == NULL) return HG_ENOMEM;
  mbedtls_ssl_init(&t->ssl);
  if (mbedtls_ssl_setup(&t->ssl, &tls->cur->conf) != 0) {
    mbedtls_ssl_free(&t->ssl);
    free(t);
    return HG_ENOMEM;
  }
  t->gen = tls->cur;
  hg__htls_gen_retain(t->gen);
  mbedtls_ssl_set_bio(&t->ssl, t, bio_send, bio_recv, NULL);
  c->tls = t;
  return 0;
}

void hg__htls_conn_free(conn_t *c) {
  tconn_t *t = c->tls;
  mbedtls_ssl_free(&t->ssl);
  hg__htls_gen_release(t->gen);
  hg_buf_free(&t->rx);
  hg_buf_free(&t->tx);
  free(t);
  c->tls = NULL;
}

typedef struct {
  uv_write_t req;
  char *data;
} twrite_t;

static void on_tx_write(uv_write_t *req, int status) {
  twrite_t *w = (twrite_t *)req;
  conn_t *c = req->data;
  free(w->data);
  free(w);
  if (status < 0) hg__http_conn_close(c);
}

/* Writes what the record layer produced outside of a response (handshake, alerts). */
static void flush_tx(conn_t *c) {
  tconn_t *t = c->tls;
  if (t->tx.len == 0 || c->closing) {
    hg_buf_clear(&t->tx);
    return;
  }
  twrite_t *w = malloc(sizeof(*w));
  size_t n;
  char *p = hg_buf_steal(&t->tx, &n);
  if (w == NULL || p == NULL) {
    free(w);
    free(p);
    hg__http_conn_close(c);
    return;
  }
  w->data = p;
  w->req.data = c;
  uv_buf_t b = uv_buf_init(p, (unsigned)n);
  if (uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, on_tx_write) != 0) {
    free(p);
    free(w);
    hg__http_conn_close(c);
  }
}

/* Feeds p[0..n) to the record layer (a record per 16 KiB at most). */
static int seal(tconn_t *t, const unsigned char *p, size_t n) {
  while (n > 0) { /* mbedTLS writes at most one record (16 KiB) per call */
    int r = mbedtls_ssl_write(&t->ssl, p, n);
    if (r <= 0) return r == MBEDTLS_ERR_SSL_ALLOC_FAILED ? HG_ENOMEM : UV_EPROTO;
    p += r;
    n -= (size_t)r;
  }
  return 0;
}

int hg__htls_encrypt(conn_t *c, const uv_buf_t *bufs, unsigned n, char **out, size_t *outlen) {
  tconn_t *t = c->tls;
  *out = NULL;
  /* One allocation for the records: the bytes plus each record's header, IV and tag. */
  size_t total = 0;
  for (unsigned i = 0; i < n; i++) total += bufs[i].len;
  if (hg_buf_reserve(&t->tx, total + (total / 16384 + 1) * 64) != 0) return HG_ENOMEM;
  /* Small pieces (a head, a chunk-size line, a small body) are gathered into full
   * records: one record, one AEAD pass per answer instead of one per piece, as OpenSSL's
   * write buffer does for nginx. Whole 16 KiB stretches of a big body go straight in. */
  unsigned char stage[16384];
  size_t sl = 0;
  int rc = 0;
  for (unsigned i = 0; rc == 0 && i < n; i++) {
    const unsigned char *p = (const unsigned char *)bufs[i].base;
    size_t left = bufs[i].len;
    while (rc == 0 && left > 0) {
      if (sl == 0 && left >= sizeof(stage)) {
        size_t k = left - left % sizeof(stage);
        rc = seal(t, p, k);
        p += k;
        left -= k;
        continue;
      }
      size_t k = sizeof(stage) - sl < left ? sizeof(stage) - sl : left;
      memcpy(stage + sl, p, k);
      sl += k;
      p += k;
      left -= k;
      if (sl == sizeof(stage)) {
        rc = seal(t, stage, sl);
        sl = 0;
      }
    }
  }
  if (rc == 0 && sl) rc = seal(t, stage, sl);
  if (rc) {
    hg_buf_clear(&t->tx);
    return rc;
  }
  *out = hg_buf_steal(&t->tx, outlen);
  return *out ? 0 : HG_ENOMEM;
}

/* The peer is gone or broke the protocol: as plain on_read's EOF. */
static void on_eof(conn_t *c) {
  uv_read_stop((uv_stream_t *)&c->tcp);
  c->reading = 0;
  if (c->h2) hg__h2_eof(c);
  else if (c->state == S_BUSY || c->state == S_WRITING) c->close_after = 1;
  else hg__http_conn_close(c);
}

static void handshake(conn_t *c) {
  tconn_t *t = c->tls;
  int r = mbedtls_ssl_handshake(&t->ssl);
  flush_tx(c);
  if (r == MBEDTLS_ERR_SSL_WANT_READ || r == MBEDTLS_ERR_SSL_WANT_WRITE) return;
  if (r != 0) {
    char m[96];
    mbedtls_strerror(r, m, sizeof(m));
    hg_log(HG_LOG_DEBUG, "%s: TLS handshake failed: %s", c->peer, m);
    hg__http_conn_close(c);
    return;
  }
  t->established = 1;
  const char *proto = mbedtls_ssl_get_alpn_protocol(&t->ssl);
  if (proto && strcmp(proto, "h2") == 0 && hg__h2_start(c) != 0) hg__http_conn_close(c);
}

void hg__htls_on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf) {
  conn_t *c = stream->data;
  tconn_t *t = c->tls;
  if (nread < 0) {
    on_eof(c);
    return;
  }
  if (nread == 0 || c->closing) return;
  if (hg_buf_append(&t->rx, buf->base, (size_t)nread) != 0) {
    hg__http_conn_close(c);
    return;
  }
  if (!t->established) {
    handshake(c);
    if (!t->established || c->closing) return;
  }
  /* Decrypt everything received into the loop's read buffer (the ciphertext was copied
   * out of it), a record at a time, and hand it on. */
  char *plain = c->srv->rbuf;
  for (;;) {
    int r = mbedtls_ssl_read(&t->ssl, (unsigned char *)plain, READ_CHUNK);
    if (r == MBEDTLS_ERR_SSL_WANT_READ || r == MBEDTLS_ERR_SSL_WANT_WRITE) break;
    if (r <= 0) { /* close_notify, EOF or a bad record */
      flush_tx(c);
      on_eof(c);
      return;
    }
    if (c->h2) {
      hg__h2_recv(c, plain, (size_t)r);
    } else {
      if (hg_buf_append(&c->in, plain, (size_t)r) != 0) {
        hg__http_conn_close(c);
        return;
      }
      hg__http_conn_process(c);
    }
    /* (Even when reading paused for pipelined input: what the record layer already
     * holds is decrypted now, or nothing would wake us for it.) */
    if (c->closing) break;
  }
  flush_tx(c);
}
