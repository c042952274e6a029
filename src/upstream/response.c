/* response.c — reading a response: the llhttp callbacks that only record what they
 * see (head, body bytes, message complete), and pump() that acts on those events between
 * parser calls — following or delivering the head (gzip decision), delivering the body
 * (decoding gzip a chunk at a time), ending the response — and feeds the parser from the
 * connection. Also the test seam hg__upstream_parse (client.h): the parser as feed()
 * drives it, without a socket (unit tests, fuzz_upstream_response).
 */
#include "upstream/client_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base/error.h"

#define PLAIN_CHUNK 16384       /* TLS plaintext per mbedtls_ssl_read (one record) */
#define GZ_CHUNK 65536          /* decoded bytes per on_data call */
#define MAX_RESP_HEADERS 128
#define MAX_RESP_HEADER_BYTES 65536
#define REDIRECT_DRAIN_MAX 65536 /* a redirect body up to this size is read to keep the conn */


static int is_ws(char c) { return c == ' ' || c == '\t'; }
/* ---- response parsing (llhttp callbacks only record; pump() acts) ---- */

static hg_fetch_t *fetch_of(llhttp_t *p) { return ((conn_t *)p->data)->fetch; }

static int perr(hg_fetch_t *f, const char *why) {
  snprintf(f->perr, sizeof(f->perr), "%s", why);
  return -1;
}

static int hstore_add(hg_fetch_t *f, const char *at, size_t len) {
  if (f->hstore.len + len + 1 > MAX_RESP_HEADER_BYTES) return perr(f, "headers too large");
  return hg_buf_append(&f->hstore, at, len) ? perr(f, "out of memory") : 0;
}

static int on_header_field(llhttp_t *p, const char *at, size_t len) {
  hg_fetch_t *f = fetch_of(p);
  if (f->head_done) return 0; /* trailers are ignored */
  if (f->hstate != 1) {
    if (f->nh == MAX_RESP_HEADERS) return perr(f, "too many headers");
    f->hcur.n = f->hstore.len;
    f->hcur.nl = 0;
    f->hstate = 1;
  }
  f->hcur.nl += len;
  return hstore_add(f, at, len);
}

/* Ends the name being collected and starts its value. */
static int start_value(hg_fetch_t *f) {
  if (hg_buf_putc(&f->hstore, '\0')) return perr(f, "out of memory");
  f->hcur.v = f->hstore.len;
  f->hcur.vl = 0;
  f->hstate = 2;
  return 0;
}

static int on_header_value(llhttp_t *p, const char *at, size_t len) {
  hg_fetch_t *f = fetch_of(p);
  if (f->head_done) return 0;
  if (f->hstate == 1 && start_value(f)) return -1;
  f->hcur.vl += len;
  return hstore_add(f, at, len);
}

static int on_header_value_complete(llhttp_t *p) {
  hg_fetch_t *f = fetch_of(p);
  if (f->head_done) return 0;
  if (f->hstate == 1 && start_value(f)) return -1; /* empty value */
  if (hg_buf_putc(&f->hstore, '\0')) return perr(f, "out of memory");
  if (f->nh == f->hcap) {
    size_t cap = f->hcap ? f->hcap * 2 : 16;
    hidx_t *n = realloc(f->hidx, cap * sizeof(*n));
    if (n == NULL) return perr(f, "out of memory");
    f->hidx = n;
    f->hcap = cap;
  }
  /* llhttp hands the value without leading blanks; drop trailing ones too. */
  while (f->hcur.vl > 0 && is_ws(f->hstore.data[f->hcur.v + f->hcur.vl - 1])) f->hcur.vl--;
  f->hidx[f->nh++] = f->hcur;
  f->hstate = 0;
  return 0;
}

static int on_headers_complete(llhttp_t *p) {
  hg_fetch_t *f = fetch_of(p);
  int status = p->status_code;
  /* llhttp 8.1 takes "HTTP/1.0 1 x" (found by fuzz_upstream_response): a status code is
   * three digits (RFC 9110 §15); anything else is garbage, not a response to relay. */
  if (status < 100 || status > 999) return perr(f, "invalid status code");
  if (status == 101) return perr(f, "unexpected 101 Switching Protocols");
  if (status / 100 == 1) { /* interim (100 Continue, 103 Early Hints): skip it */
    hg_buf_clear(&f->hstore);
    f->nh = 0;
    f->hstate = 0;
    f->interim = 1;
    return 1;
  }
  f->status = status;
  f->head_done = 1;
  f->ev_head = 1;
  if (status == 204 || status == 304) f->clen = 0;
  else if ((p->flags & F_CONTENT_LENGTH) && !(p->flags & F_CHUNKED))
    f->clen = (int64_t)p->content_length;
  else f->clen = -1;
  /* 1 = "no body": llhttp must be told that a HEAD response carries none. */
  return (f->head_method || status == 204 || status == 304) ? 1 : 0;
}

static int on_body(llhttp_t *p, const char *at, size_t len) {
  hg_fetch_t *f = fetch_of(p);
  if (f->discard) return 0;
  return hg_buf_append(&f->body, at, len) ? perr(f, "out of memory") : 0;
}

static int on_message_complete(llhttp_t *p) {
  conn_t *c = p->data;
  hg_fetch_t *f = c->fetch;
  if (f->interim) {
    f->interim = 0;
    return 0;
  }
  f->ev_done = 1;
  c->keepalive = llhttp_should_keep_alive(p);
  return HPE_PAUSED; /* nothing after this response belongs to us */
}

/* ---- pump: acts on parser events, delivers the body, reads more ---- */

static const hidx_t *find_header(hg_fetch_t *f, const char *name) {
  for (size_t i = 0; i < f->nh; i++)
    if (strcasecmp(f->hstore.data + f->hidx[i].n, name) == 0) return &f->hidx[i];
  return NULL;
}

static int is_redirect(int status) {
  return status == 301 || status == 302 || status == 303 || status == 307 || status == 308;
}

/* The final head: decide on gzip, show it to the caller. */
static void deliver_head(hg_fetch_t *f) {
  int gzip = 0;
  const hidx_t *ce = f->accept_gzip == HG_FETCH_GZIP_DECODE ? find_header(f, "content-encoding") : NULL;
  if (ce) {
    const char *v = f->hstore.data + ce->v;
    gzip = (ce->vl == 4 && strncasecmp(v, "gzip", 4) == 0) ||
           (ce->vl == 6 && strncasecmp(v, "x-gzip", 6) == 0);
  }
  int has_body = !f->head_method && f->status != 204 && f->status != 304;
  if (gzip && has_body) {
    memset(&f->gz, 0, sizeof(f->gz));
    if (inflateInit2(&f->gz, 16 + MAX_WBITS) != Z_OK) {
      hg__upstream_fetch_fail(f, HG_ENOMEM, "out of memory");
      return;
    }
    f->gz_on = 1;
  }
  hg_header_t *hv = malloc((f->nh ? f->nh : 1) * sizeof(*hv));
  if (hv == NULL) {
    hg__upstream_fetch_fail(f, HG_ENOMEM, "out of memory");
    return;
  }
  size_t n = 0;
  for (size_t i = 0; i < f->nh; i++) {
    const char *name = f->hstore.data + f->hidx[i].n;
    /* Decoded bodies have neither the encoding nor the encoded length. */
    if (gzip &&
        (strcasecmp(name, "content-encoding") == 0 || strcasecmp(name, "content-length") == 0))
      continue;
    hv[n].name = name;
    hv[n].name_len = f->hidx[i].nl;
    hv[n].value = f->hstore.data + f->hidx[i].v;
    hv[n].value_len = f->hidx[i].vl;
    n++;
  }
  hg_fetch_head_t head;
  head.status = f->status;
  head.headers = hv;
  head.nheaders = n;
  head.content_length = gzip ? -1 : f->clen;
  head.final_url = f->url.data;
  int rc = f->cbs.on_head ? f->cbs.on_head(f->ud, f, &head) : 0;
  free(hv);
  if (f->state != F_RESPONSE) return; /* aborted from on_head */
  if (rc != 0) hg__upstream_fetch_fail(f, rc, "cancelled by the caller (%s)", hg_strerror(rc));
}

/* A head arrived: follow it if it is a redirect we follow, else deliver it. */
static void handle_head(hg_fetch_t *f) {
  f->ev_head = 0;
  const hidx_t *loc = find_header(f, "location");
  if (!is_redirect(f->status) || f->max_redirects <= 0 || loc == NULL || loc->vl == 0) {
    deliver_head(f);
    return;
  }
  if (f->nredirects >= f->max_redirects) {
    hg__upstream_fetch_fail(f, HG_EUPSTREAM, "too many redirects (more than %d)", f->max_redirects);
    return;
  }
  hg_buf_t esc = HG_BUF_INIT;
  hg_buf_clear(&f->next_url);
  int rc = hg_url_escape_invalid(&esc, f->hstore.data + loc->v, loc->vl);
  if (rc == 0) rc = hg_url_resolve(&f->next_url, f->url.data, f->url.len, esc.data, esc.len);
  hg_buf_free(&esc);
  hg_url_t pu;
  hg_url_origin_t org;
  if (rc == 0 && (hg_url_parse(f->next_url.data, f->next_url.len, &pu) != 0 ||
                  hg_url_origin(&pu, &org) != 0))
    rc = HG_EINVAL;
  if (rc == HG_ENOMEM) {
    hg__upstream_fetch_fail(f, HG_ENOMEM, "out of memory");
    return;
  }
  if (rc != 0) {
    hg__upstream_fetch_fail(f, HG_EUPSTREAM, "bad response: unusable redirect location");
    return;
  }
  f->nredirects++;
  f->discard = 1;
  hg_buf_clear(&f->body);
  f->body_off = 0;
  /* A short redirect body is read so the conn can be pooled; anything else closes it. */
  if (!f->ev_done && !(f->clen >= 0 && f->clen <= REDIRECT_DRAIN_MAX)) {
    hg__upstream_fetch_drop_conn(f);
    hg__upstream_follow_redirect(f);
  }
}

/* Delivers (part of) the pending body: all of it when plain, GZ_CHUNK decoded bytes at
 * a time when gzip, so a paused caller is not flooded by a high compression ratio. */
static void deliver_body(hg_fetch_t *f) {
  if (!f->gz_on) {
    size_t len;
    char *data = hg_buf_steal(&f->body, &len);
    f->body_off = 0;
    if (f->cbs.on_data) f->cbs.on_data(f->ud, f, data, len);
    else free(data);
    return;
  }
  char *out = malloc(GZ_CHUNK);
  if (out == NULL) {
    hg__upstream_fetch_fail(f, HG_ENOMEM, "out of memory");
    return;
  }
  size_t in_len = f->body.len - f->body_off;
  if (f->gz_end && in_len > 0) { /* another gzip member follows */
    inflateReset(&f->gz);
    f->gz_end = 0;
  }
  f->gz.next_in = (Bytef *)(f->body.data ? f->body.data + f->body_off : NULL);
  f->gz.avail_in = (uInt)in_len;
  f->gz.next_out = (Bytef *)out;
  f->gz.avail_out = GZ_CHUNK;
  int zr = inflate(&f->gz, Z_NO_FLUSH);
  size_t used = in_len - f->gz.avail_in, made = GZ_CHUNK - f->gz.avail_out;
  f->body_off += used;
  f->gz_in += used;
  if (f->body_off == f->body.len) {
    hg_buf_clear(&f->body);
    f->body_off = 0;
  }
  f->gz_more = f->gz.avail_out == 0; /* output may be pending without more input */
  if (zr == Z_STREAM_END) {
    f->gz_end = 1;
    f->gz_more = 0;
  } else if (zr == Z_BUF_ERROR && (used > 0 || made > 0 || in_len == 0)) {
    f->gz_more = 0; /* no progress possible until more input */
  } else if (zr != Z_OK) {
    free(out);
    hg__upstream_fetch_fail(f, HG_EUPSTREAM, "bad response: invalid gzip body (%s)",
                            f->gz.msg ? f->gz.msg : "inflate failed");
    return;
  }
  if (made == 0) {
    free(out);
    return;
  }
  if (f->cbs.on_data) f->cbs.on_data(f->ud, f, out, made);
  else free(out);
}

/* The response ended (message complete, body delivered). */
static void handle_done(hg_fetch_t *f) {
  f->ev_done = 0;
  if (f->discard) { /* a drained redirect response */
    hg__upstream_conn_release(f);
    hg__upstream_follow_redirect(f);
    return;
  }
  if (f->gz_on && f->gz_in > 0 && !f->gz_end) {
    hg__upstream_fetch_fail(f, HG_EUPSTREAM, "bad response: truncated gzip body");
    return;
  }
  hg__upstream_conn_release(f);
  snprintf(f->msg, sizeof(f->msg), "%s: ok", f->key);
  hg__upstream_fetch_finish(f, 0);
}

/* Parses whatever input is available. Returns 1 on progress, 0 when it must wait for
 * the socket (or the fetch ended). */
static int feed(hg_fetch_t *f) {
  conn_t *c = f->conn;
  if (c->rx_off < c->rx.len) {
    const char *data = c->rx.data + c->rx_off;
    size_t len = c->rx.len - c->rx_off, used = len;
    llhttp_errno_t e = llhttp_execute(&c->parser, data, len);
    if (e == HPE_PAUSED) {
      used = (size_t)(llhttp_get_error_pos(&c->parser) - data);
      llhttp_resume(&c->parser);
    } else if (e != HPE_OK) {
      hg__upstream_fetch_fail(f, HG_EUPSTREAM, "bad response: %s",
                              f->perr[0] ? f->perr : llhttp_get_error_reason(&c->parser));
      return 0;
    }
    f->resp_bytes += used;
    c->rx_off += used;
    if (c->rx_off == c->rx.len) {
      c->rx.len = c->rx_off = 0;
      /* Memory: all parsed (the parser copies what it keeps): a fetch waiting for its
       * next bytes holds no read buffer, so 1,000 slow origins do not cost 64 MiB. */
      if (!c->tls_on) hg_buf_free(&c->rx);
    }
    return 1;
  }
  if (c->tls_on && !c->rerr) {
    int eof = 0;
    c->rx.len = c->rx_off = 0;
    if (hg_buf_reserve(&c->rx, PLAIN_CHUNK) != 0) {
      hg__upstream_fetch_fail(f, HG_ENOMEM, "out of memory");
      return 0;
    }
    int n = hg__tls_read(&c->tls, c->rx.data, PLAIN_CHUNK, &eof);
    int wrc = hg__upstream_tls_flush(c);
    if (n > 0) {
      c->rx.len = (size_t)n;
      return 1;
    }
    if (n < 0) {
      char why[256];
      hg__tls_describe(&c->tls, n, why, sizeof(why));
      hg__upstream_fetch_fail(f, HG_EUPSTREAM, "TLS: %s", why);
      return 0;
    }
    if (wrc < 0) {
      hg__upstream_conn_failed(f, wrc, uv_strerror(wrc));
      return 0;
    }
    if (!eof) return 0;
    c->eof = 1;
  }
  if (c->rerr) {
    hg__upstream_conn_failed(f, c->rerr, uv_strerror(c->rerr));
    return 0;
  }
  if (!c->eof) return 0;
  if (f->resp_bytes == 0) {
    hg__upstream_conn_failed(f, UV_ECONNRESET, "connection closed without a response");
    return 0;
  }
  llhttp_errno_t e = llhttp_finish(&c->parser); /* ends a close-delimited body */
  if (f->ev_done && (e == HPE_OK || e == HPE_PAUSED)) {
    c->keepalive = 0;
    return 1;
  }
  hg__upstream_fetch_fail(f, HG_EUPSTREAM, "bad response: connection closed before the end of the response");
  return 0;
}

static int body_pending(const hg_fetch_t *f) {
  return f->body.len > f->body_off || (f->gz_on && f->gz_more);
}

void hg__upstream_pump(hg_fetch_t *f) {
  if (f->in_pump) return; /* re-entered from a callback: the outer loop continues */
  f->in_pump = 1;
  while (f->state == F_RESPONSE && f->conn) {
    if (f->ev_head) {
      handle_head(f);
      continue;
    }
    if (body_pending(f) && !f->discard) {
      if (f->paused) break;
      deliver_body(f);
      continue;
    }
    if (f->ev_done) {
      handle_done(f);
      continue;
    }
    if (f->paused) break;
    if (!feed(f)) break;
  }
  f->in_pump = 0;
  if (f->state == F_RESPONSE && f->conn) hg__upstream_conn_update_reading(f->conn);
}

void hg__upstream_settings_init(llhttp_settings_t *s) {
  llhttp_settings_init(s);
  s->on_header_field = on_header_field;
  s->on_header_value = on_header_value;
  s->on_header_value_complete = on_header_value_complete;
  s->on_headers_complete = on_headers_complete;
  s->on_body = on_body;
  s->on_message_complete = on_message_complete;
}

/* ---- test seam (client.h): the parser as feed() drives it, without a socket ---- */

void hg__upstream_parse(const char *data, size_t len, const size_t *cuts, size_t ncuts, int head,
                        hg__parsed_t *out) {
  memset(out, 0, sizeof(*out));
  out->rc = HG_ENOMEM;
  llhttp_settings_t s;
  hg__upstream_settings_init(&s);
  conn_t *c = calloc(1, sizeof(*c));
  hg_fetch_t *f = calloc(1, sizeof(*f));
  if (c == NULL || f == NULL) {
    free(c);
    free(f);
    return;
  }
  c->fetch = f;
  f->conn = c;
  f->head_method = head;
  f->clen = -1;
  llhttp_init(&c->parser, HTTP_RESPONSE, &s);
  c->parser.data = c;
  int rc = 0;
  size_t pos = 0;
  for (size_t i = 0; i <= ncuts && !rc && !f->ev_done; i++) {
    size_t end = i < ncuts ? cuts[i] : len;
    if (end > len) end = len;
    if (end <= pos) continue;
    if (hg_buf_append(&c->rx, data + pos, end - pos)) rc = HG_ENOMEM;
    pos = end;
    while (!rc && !f->ev_done && c->rx_off < c->rx.len) { /* feed(), first branch */
      const char *d = c->rx.data + c->rx_off;
      size_t n = c->rx.len - c->rx_off, used = n;
      llhttp_errno_t e = llhttp_execute(&c->parser, d, n);
      if (e == HPE_PAUSED) {
        used = (size_t)(llhttp_get_error_pos(&c->parser) - d);
        llhttp_resume(&c->parser);
      } else if (e != HPE_OK) {
        rc = HG_EUPSTREAM;
      }
      f->resp_bytes += used;
      c->rx_off += used;
      f->ev_head = 0; /* handle_head's business in a fetch */
    }
  }
  if (!rc && !f->ev_done) { /* EOF: feed(), last branch */
    llhttp_errno_t e = llhttp_finish(&c->parser);
    if (f->resp_bytes == 0 || !f->ev_done || (e != HPE_OK && e != HPE_PAUSED)) rc = HG_EUPSTREAM;
    c->keepalive = 0;
  }
  out->rc = rc;
  out->status = f->status;
  out->clen = f->clen;
  out->nheaders = f->nh;
  out->header_bytes = f->hstore.len;
  out->body_len = f->body.len;
  out->body_hash = 1469598103934665603ull;
  for (size_t i = 0; i < f->body.len; i++)
    out->body_hash = (out->body_hash ^ (unsigned char)f->body.data[i]) * 1099511628211ull;
  out->keepalive = c->keepalive;
  hg_buf_free(&c->rx);
  hg_buf_free(&f->hstore);
  hg_buf_free(&f->body);
  free(f->hidx);
  free(f);
  free(c);
}
