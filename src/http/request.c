/* request.c — parsing requests for the HTTP server (see server.h, server_internal.h):
 * the llhttp callbacks that build hg_request_t within the SPEC §8 limits, the strict
 * RFC 9112 checks llhttp does not make (obs-fold, whitespace before ':', bare CR, Host,
 * Transfer-Encoding), request ids, and the parser test seam hg__http_parse.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base/error.h"
#include "base/log.h"
#include "http/server_internal.h"

/* xorshift128+ for request ids: fast, per server (per thread), seeded from getrandom.
 * Ids are correlation handles, not secrets. */
static uint64_t rng_next(hg_http_server_t *s) {
  uint64_t x = s->rng[0], y = s->rng[1];
  s->rng[0] = y;
  x ^= x << 23;
  s->rng[1] = x ^ y ^ (x >> 17) ^ (y >> 26);
  return s->rng[1] + y;
}


/* A received X-Request-Id is reused only if it is short and harmless in logs. */
int hg__http_sane_request_id(const char *v, size_t n) {
  if (n == 0 || n > 32) return 0;
  for (size_t i = 0; i < n; i++) {
    char ch = v[i];
    if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
          ch == '-' || ch == '_' || ch == '.'))
      return 0;
  }
  return 1;
}


/* ---- per-request state ---- */

void hg__http_txn_begin(conn_t *c) {
  hg_request_t *req = &c->txn.req;
  hg_arena_t *arena = req->arena;
  if (arena) hg_arena_reset(arena);
  memset(req, 0, sizeof(*req));
  req->arena = arena ? arena : hg_arena_new(4096);
  req->start_ns = uv_hrtime();
  req->tls = c->tls != NULL;
  size_t pl = strnlen(c->peer, sizeof(req->client) - 1); /* (no printf: every request) */
  memcpy(req->client, c->peer, pl);
  req->client[pl] = '\0';
  req->method = "-";
  req->target = "-";
  req->target_len = req->path_len = 1;
  c->txn.conn = c;
  c->gone_cb = NULL;
  hg_buf_clear(&c->url);
  c->url_total = 0;
  hg_buf_clear(&c->field);
  hg_buf_clear(&c->value);
  hg_buf_clear(&c->body);
  c->header_bytes = 0;
  c->nhdrs = 0;
  c->hdrs = NULL;
  c->err_status = 0;
  c->err_msg = NULL;
  c->head_scan = 0;
  c->ext_resume = 0;
  c->ext_quoted = 0;
  c->nhost = 0;
}

static int fail(conn_t *c, int status, const char *msg) {
  c->err_status = status;
  c->err_msg = msg;
  return -1;
}

/* A fresh request id: random, or kept when one was already chosen. */
void hg__http_ensure_id(conn_t *c) {
  hg_request_t *req = &c->txn.req;
  if (req->id[0] == '\0') hg__http_new_id(c->srv, req->id);
}

void hg__http_new_id(hg_http_server_t *s, char id[33]) {
  static const char hex[] = "0123456789abcdef";
  for (int h = 0; h < 2; h++) {
    uint64_t v = rng_next(s);
    for (int i = 15; i >= 0; i--, v >>= 4) id[h * 16 + i] = hex[v & 15];
  }
  id[32] = '\0';
}

/* ---- strict framing (RFC 9112) ----
 * llhttp 8.1 accepts obs-fold (a header line starting with SP/HT is glued onto the
 * previous value) and whitespace between a field name and its colon, and its callbacks
 * cannot tell a fold from a value split across two reads. Security: both are classic
 * request-smuggling vectors (RFC 9112 §5.1, §5.2: a server MUST reject them with 400),
 * so the raw bytes of every request head are checked here before llhttp sees them.
 * The state survives reads; it stops at the empty line that ends the head. */
enum { HS_START, HS_LINE0, HS_BOL, HS_FIELD, HS_VALUE, HS_LF, HS_CR, HS_DONE };

/* Scans p[0..n) and returns n, or the offset of the first byte that breaks the rules
 * with *status and *msg set (the head state then stops there). The caller lets llhttp
 * parse the bytes before that offset first, so that whichever error comes first in the
 * stream is the answer, however the stream was split into reads (fuzz_http_request).
 * Security: a bare CR (not followed by LF) is refused too (RFC 9112 §2.2): llhttp 8.1
 * takes "\r " as a line end, so a head could end earlier for it than for a proxy in
 * front (found by fuzz_http_request). */
static size_t scan_head(conn_t *c, const char *p, size_t n, int *status, const char **msg) {
  int st = c->head_scan;
  *status = 0;
  *msg = NULL;
  size_t i = 0;
#define BAD(m) do { *status = 400; *msg = (m); c->head_scan = st; return i; } while (0)
  for (; i < n && st != HS_DONE; i++) {
    if (st == HS_LINE0 || st == HS_VALUE) { /* the long runs (target, values): to the line end */
      while (i < n && p[i] != '\r' && p[i] != '\n') i++;
      if (i == n) break;
    }
    char ch = p[i];
    switch (st) {
    case HS_START: /* RFC 9112 §2.2: empty lines before the request line are ignored */
      if (ch != '\r' && ch != '\n') st = HS_LINE0;
      break;
    case HS_LINE0:
    case HS_FIELD:
    case HS_VALUE:
      if (ch == '\r') st = HS_LF;
      else if (ch == '\n') st = HS_BOL; /* a bare LF: llhttp refuses it where it matters */
      else if (st == HS_FIELD && ch == ':') st = HS_VALUE;
      else if (st == HS_FIELD && (ch == ' ' || ch == '\t')) BAD("whitespace in a header field name");
      break;
    case HS_LF:
      if (ch != '\n') BAD("bare CR in the request head");
      st = HS_BOL;
      break;
    case HS_BOL:
      if (ch == '\r') st = HS_CR;
      else if (ch == '\n') st = HS_DONE;
      else if (ch == ' ' || ch == '\t') BAD("obsolete line folding");
      else st = HS_FIELD;
      break;
    case HS_CR:
      if (ch != '\n') BAD("bare CR in the request head");
      st = HS_DONE;
      break;
    }
  }
#undef BAD
  c->head_scan = st;
  return n;
}

llhttp_errno_t hg__http_execute(conn_t *c, const char *p, size_t n) {
  int bad;
  const char *why;
  size_t upto = scan_head(c, p, n, &bad, &why);
  llhttp_errno_t err = upto ? llhttp_execute(&c->parser, p, upto) : HPE_OK;
  if (err == HPE_OK && bad) {
    fail(c, bad, why);
    err = HPE_USER;
  }
  return err;
}

/* RFC 3986 host [":" port]: reg-name / IPv4 / IP-literal. Security: the Host ends up in
 * rewritten playlist URLs (open proxy without public_url), so nothing beyond these
 * characters may get there. */
int hg__http_valid_host(const char *v, size_t n) {
  if (n == 0 || n > 255) return 0;
  size_t i = 0;
  if (v[0] == '[') {
    while (i < n && v[i] != ']') {
      char ch = v[i];
      if (!(ch == '[' && i == 0) && !(ch == ':' || ch == '.' || (ch >= '0' && ch <= '9') ||
                                      (ch >= 'a' && ch <= 'f') || (ch >= 'A' && ch <= 'F')))
        return 0;
      i++;
    }
    if (i == n || i < 3) return 0;
    i++;
  } else {
    for (; i < n && v[i] != ':'; i++) {
      char ch = v[i];
      if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
            strchr("-._~!$&'()*+,;=%", ch)))
        return 0;
    }
    if (i == 0) return 0;
  }
  if (i == n) return 1;
  if (v[i] != ':' || n - i - 1 > 5) return 0;
  for (i++; i < n; i++)
    if (v[i] < '0' || v[i] > '9') return 0;
  return 1;
}

/* Checks what llhttp leaves to the application once the head is parsed: the version,
 * Host (count and syntax), Transfer-Encoding other than exactly "chunked", and the form
 * of the target; an absolute-form target replaces Host (RFC 9112 §3.2.2), so the two can
 * never disagree. Returns 0 or -1 with the error set. */
static int check_head(conn_t *c, llhttp_t *p, hg_request_t *req) {
  if (p->http_major != 1) /* HTTP/0.9 has no headers and no status line: never answer it */
    return fail(c, p->http_major == 0 ? 400 : 505, p->http_major == 0 ? "HTTP/0.9 is not supported" : "HTTP version not supported");
  if (p->method == HTTP_CONNECT) return fail(c, 405, "CONNECT is not supported");
  if (c->nhost > 1) return fail(c, 400, "more than one Host header");
  if (c->nhost == 0 && p->http_minor >= 1) return fail(c, 400, "missing Host header");
  if (p->flags & F_TRANSFER_ENCODING) {
    /* Security: only plain "chunked" frames a request body here (nginx answers 501 too);
     * anything else means the length is unknown, and the rest of the stream with it. */
    size_t nte = 0;
    const hg_header_t *te = NULL;
    for (size_t i = 0; i < c->nhdrs; i++)
      if (c->hdrs[i].name_len == 17 && strncasecmp(c->hdrs[i].name, "Transfer-Encoding", 17) == 0)
        te = &c->hdrs[i], nte++;
    if (nte != 1 || te->value_len != 7 || strncasecmp(te->value, "chunked", 7) != 0)
      return fail(c, 501, "transfer coding not implemented");
  }
  char *t = (char *)req->target;
  size_t tl = req->target_len;
  if (tl >= 7 && (strncasecmp(t, "http://", 7) == 0 || (tl >= 8 && strncasecmp(t, "https://", 8) == 0))) {
    size_t s = t[4] == ':' ? 7 : 8, e = s;
    while (e < tl && t[e] != '/' && t[e] != '?') e++;
    if (!hg__http_valid_host(t + s, e - s)) return fail(c, 400, "invalid authority in the request target");
    hg_header_t *host = NULL;
    for (size_t i = 0; i < c->nhdrs; i++)
      if (c->hdrs[i].name_len == 4 && strncasecmp(c->hdrs[i].name, "Host", 4) == 0) host = &c->hdrs[i];
    if (host) { /* the target's authority wins */
      host->value = hg_arena_strndup(req->arena, t + s, e - s);
      host->value_len = e - s;
      if (host->value == NULL) return fail(c, 500, "out of memory");
    }
    if (e == tl) { /* "http://h" → "/" */
      req->target = "/";
      req->target_len = 1;
    } else {
      req->target = t + e;
      req->target_len = tl - e;
    }
    req->path_len = strcspn(req->target, "?");
  } else if (!(tl > 0 && t[0] == '/') && !(p->method == HTTP_OPTIONS && tl == 1 && t[0] == '*')) {
    return fail(c, 400, "invalid request target");
  }
  const hg_header_t *host = hg_request_header(req, "Host");
  if (host && !hg__http_valid_host(host->value, host->value_len)) return fail(c, 400, "invalid Host header");
  return 0;
}

/* ---- llhttp callbacks ---- */

static conn_t *conn_of(llhttp_t *p) { return p->data; }

/* The target arrives in pieces (one per read). Too long is judged when it ends, so that
 * a target both too long and malformed gets the same answer (400: llhttp stops at the bad
 * byte) however TCP split it (found by fuzz_http_request); bytes past the limit are
 * counted, not kept, and a target that goes on far past it is refused at once. */
static int on_url(llhttp_t *p, const char *at, size_t len) {
  conn_t *c = conn_of(p);
  size_t max = c->srv->lim.max_uri;
  c->url_total += len;
  if (c->url_total > max + URI_GRACE) return fail(c, 414, "request URI too long");
  if (c->url_total > max) return 0;
  return hg_buf_append(&c->url, at, len) ? fail(c, 500, "out of memory") : 0;
}

static int on_url_complete(llhttp_t *p) {
  conn_t *c = conn_of(p);
  return c->url_total > c->srv->lim.max_uri ? fail(c, 414, "request URI too long") : 0;
}

static int add_header_bytes(conn_t *c, size_t len) {
  c->header_bytes += len;
  return c->header_bytes > c->srv->lim.max_headers ? fail(c, 431, "request headers too large") : 0;
}

static int on_header_field(llhttp_t *p, const char *at, size_t len) {
  conn_t *c = conn_of(p);
  if (add_header_bytes(c, len)) return -1;
  return hg_buf_append(&c->field, at, len) ? fail(c, 500, "out of memory") : 0;
}

static int on_header_value(llhttp_t *p, const char *at, size_t len) {
  conn_t *c = conn_of(p);
  if (add_header_bytes(c, len)) return -1;
  return hg_buf_append(&c->value, at, len) ? fail(c, 500, "out of memory") : 0;
}

static int on_header_value_complete(llhttp_t *p) {
  conn_t *c = conn_of(p);
  hg_arena_t *a = c->txn.req.arena;
  if (c->nhdrs == MAX_HEADERS) return fail(c, 431, "too many request headers");
  if (c->hdrs == NULL) {
    c->hdrs = hg_arena_alloc(a, MAX_HEADERS * sizeof(hg_header_t));
    if (c->hdrs == NULL) return fail(c, 500, "out of memory");
  }
  hg_header_t *h = &c->hdrs[c->nhdrs];
  /* llhttp drops the blanks before a value but keeps those after it: trim them too
   * (RFC 9110 §5.5: OWS is not part of the value), or "Host: a " would be refused. */
  while (c->value.len > 0 && (c->value.data[c->value.len - 1] == ' ' || c->value.data[c->value.len - 1] == '\t'))
    c->value.len--;
  h->name = hg_arena_strndup(a, c->field.data ? c->field.data : "", c->field.len);
  h->name_len = c->field.len;
  h->value = hg_arena_strndup(a, c->value.data ? c->value.data : "", c->value.len);
  h->value_len = c->value.len;
  if (h->name == NULL || h->value == NULL) return fail(c, 500, "out of memory");
  if (h->name_len == 4 && strncasecmp(h->name, "Host", 4) == 0) c->nhost++;
  c->nhdrs++;
  hg_buf_clear(&c->field);
  hg_buf_clear(&c->value);
  return 0;
}

static int on_headers_complete(llhttp_t *p) {
  conn_t *c = conn_of(p);
  hg_request_t *req = &c->txn.req;
  req->method = llhttp_method_name((llhttp_method_t)p->method);
  req->target = hg_arena_strndup(req->arena, c->url.data ? c->url.data : "", c->url.len);
  if (req->target == NULL) return fail(c, 500, "out of memory");
  req->target_len = c->url.len;
  req->path_len = strcspn(req->target, "?");
  req->headers = c->hdrs;
  req->nheaders = c->nhdrs;
  req->http_major = p->http_major;
  req->http_minor = p->http_minor;
  const hg_header_t *rid = hg_request_header(req, "X-Request-Id");
  if (rid && hg__http_sane_request_id(rid->value, rid->value_len)) {
    memcpy(req->id, rid->value, rid->value_len);
    req->id[rid->value_len] = '\0';
  } else {
    hg__http_ensure_id(c);
  }
  if (check_head(c, p, req)) return -1;
  if ((p->flags & F_CONTENT_LENGTH) && p->content_length > c->srv->lim.max_body)
    return fail(c, 413, "request body too large");
  /* Expect: 100-continue — tell the client to send the body we are willing to take. */
  const hg_header_t *exp = hg_request_header(req, "Expect");
  if (exp && exp->value_len == 12 && strncasecmp(exp->value, "100-continue", 12) == 0 &&
      p->http_minor >= 1 && c->srv->loop /* NULL in hg__http_parse: no socket */ &&
      c->tls == NULL /* not worth a TLS record: the client sends the body after its wait */) {
    static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
    uv_buf_t b = uv_buf_init((char *)cont, sizeof(cont) - 1);
    uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
  }
  return 0;
}

static int on_body(llhttp_t *p, const char *at, size_t len) {
  conn_t *c = conn_of(p);
  if (c->body.len + len > c->srv->lim.max_body) return fail(c, 413, "request body too large");
  return hg_buf_append(&c->body, at, len) ? fail(c, 500, "out of memory") : 0;
}

/* llhttp 8.1 bug: after an unquoted chunk-extension value it consumes the ';' and then
 * expects another ';' or CR, so the valid "4;a=b;c=d" is refused (fixed in llhttp 9).
 * Pausing exactly there lets conn_process resume one byte earlier, at the ';', which
 * llhttp then reads as the start of the next extension. */
static int on_chunk_extension_value(llhttp_t *p, const char *at, size_t len) {
  conn_t *c = conn_of(p);
  const char *end = c->in.data + c->in.len;
  /* A value with a quote in it (llhttp switches to its quoted-string states at the first
   * '"', even mid-token) is followed by ';' too, but parsed right: leave those alone.
   * (fuzz_http_request found `x=ran"{;z";w`.) */
  if (len > 0 && memchr(at, '"', len)) c->ext_quoted = 1;
  if (!c->ext_quoted && at + len < end && at[len] == ';') {
    c->ext_resume = 1;
    return HPE_PAUSED;
  }
  return 0;
}

static int on_chunk_extension_value_complete(llhttp_t *p) {
  conn_of(p)->ext_quoted = 0;
  return 0;
}

static int on_message_complete(llhttp_t *p) {
  conn_t *c = conn_of(p);
  hg_request_t *req = &c->txn.req;
  if (c->body.len > 0) {
    req->body = hg_arena_strndup(req->arena, c->body.data, c->body.len);
    if (req->body == NULL) return fail(c, 500, "out of memory");
    req->body_len = c->body.len;
  }
  if (!llhttp_should_keep_alive(p)) c->close_after = 1;
  /* An Upgrade (or CONNECT) request is answered as a plain request; what follows it on
   * the connection is not HTTP we parse, so the connection closes after the answer. */
  if (p->upgrade) c->close_after = 1;
  return HPE_PAUSED; /* hand the request over before parsing the next one */
}


/* Maps an llhttp error to a status. An unknown method on an otherwise well-formed
 * request line ("BREW / HTTP/1.1") is 405; anything else malformed is 400. */
int hg__http_error_status(conn_t *c, llhttp_errno_t err, const char **msg) {
  if (c->err_status) {
    *msg = c->err_msg;
    return c->err_status;
  }
  if (err == HPE_INVALID_METHOD) {
    const char *p = c->in.data + c->in_off, *end = c->in.data + c->in.len;
    const char *q = p;
    while (q < end && *q >= 'A' && *q <= 'Z') q++;
    if (q > p && q < end && *q == ' ' && q + 1 < end && q[1] != ' ') {
      *msg = "method not allowed";
      return 405;
    }
  }
  *msg = "bad request";
  return 400;
}


void hg__http_settings_init(llhttp_settings_t *st) {
  llhttp_settings_init(st);
  st->on_url = on_url;
  st->on_url_complete = on_url_complete;
  st->on_header_field = on_header_field;
  st->on_header_value = on_header_value;
  st->on_header_value_complete = on_header_value_complete;
  st->on_headers_complete = on_headers_complete;
  st->on_body = on_body;
  st->on_chunk_extension_value = on_chunk_extension_value;
  st->on_chunk_extension_value_complete = on_chunk_extension_value_complete;
  st->on_message_complete = on_message_complete;
}


/* ---- test seam (server.h): the request parser as conn_process drives it ---- */

void hg__http_parse(const char *data, size_t len, const size_t *cuts, size_t ncuts,
                    const hg_http_limits_t *lim, hg__http_parsed_t *out, size_t cap, size_t *nout,
                    int *err_status) {
  *nout = 0;
  *err_status = 0;
  hg_http_server_t s;
  memset(&s, 0, sizeof(s));
  s.lim = *lim;
  s.rng[0] = 1;
  hg__http_settings_init(&s.settings);
  conn_t *c = calloc(1, sizeof(*c));
  if (c == NULL) {
    *err_status = 500;
    return;
  }
  c->srv = &s;
  llhttp_init(&c->parser, HTTP_REQUEST, &s.settings);
  c->parser.data = c;
  c->state = S_IDLE;
  size_t pos = 0;
  for (size_t i = 0; i <= ncuts && !*err_status && !c->close_after; i++) {
    size_t end = i < ncuts ? cuts[i] : len;
    if (end > len) end = len;
    if (end <= pos) continue;
    if (hg_buf_append(&c->in, data + pos, end - pos)) break;
    pos = end;
    while (!*err_status && !c->close_after && c->in_off < c->in.len) {
      if (c->state == S_IDLE) {
        c->state = S_READING;
        hg__http_txn_begin(c);
      }
      const char *d = c->in.data + c->in_off;
      size_t n = c->in.len - c->in_off;
      llhttp_errno_t e = hg__http_execute(c, d, n);
      if (e == HPE_OK) {
        c->in_off = c->in.len;
        break;
      }
      if (e == HPE_PAUSED && c->ext_resume) {
        c->ext_resume = 0;
        c->in_off += (size_t)(llhttp_get_error_pos(&c->parser) - d) - 1;
        llhttp_resume(&c->parser);
        continue;
      }
      if (e == HPE_PAUSED || e == HPE_PAUSED_UPGRADE) { /* a request: record it */
        c->in_off += (size_t)(llhttp_get_error_pos(&c->parser) - d);
        llhttp_resume(&c->parser);
        hg_request_t *req = &c->txn.req;
        if (*nout < cap) {
          hg__http_parsed_t *o = &out[(*nout)++];
          const hg_header_t *host = hg_request_header(req, "Host");
          snprintf(o->method, sizeof(o->method), "%s", req->method);
          o->target_len = req->target_len;
          o->target_hash = o->host_hash = o->body_hash = 1469598103934665603ull;
          for (size_t k = 0; k < req->target_len; k++)
            o->target_hash = (o->target_hash ^ (unsigned char)req->target[k]) * 1099511628211ull;
          for (size_t k = 0; host && k < host->value_len; k++)
            o->host_hash = (o->host_hash ^ (unsigned char)host->value[k]) * 1099511628211ull;
          for (size_t k = 0; k < req->body_len; k++)
            o->body_hash = (o->body_hash ^ (unsigned char)req->body[k]) * 1099511628211ull;
          o->has_host = host != NULL;
          o->nheaders = req->nheaders;
          o->body_len = req->body_len;
          o->http_minor = req->http_minor;
        }
        c->state = S_IDLE;
        continue;
      }
      const char *msg;
      *err_status = hg__http_error_status(c, e, &msg);
    }
    if (c->in_off == c->in.len) {
      hg_buf_free(&c->in);
      c->in_off = 0;
    }
  }
  hg_arena_free(c->txn.req.arena);
  hg_buf_free(&c->in);
  hg_buf_free(&c->url);
  hg_buf_free(&c->field);
  hg_buf_free(&c->value);
  hg_buf_free(&c->body);
  free(c);
}

