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

#include <llhttp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "base/buf.h"
#include "base/error.h"
#include "base/log.h"

#define READ_CHUNK 65536 /* the loop's shared read buffer */
#define MAX_HEADERS 100
#define MAX_PIPELINED (128 * 1024) /* unparsed input kept while a response is written */

enum { S_IDLE, S_READING, S_BUSY, S_WRITING };

struct hg_http_txn_s {
  struct conn_s *conn;
  hg_request_t req;
};

typedef struct conn_s {
  uv_tcp_t tcp;
  uv_timer_t timer;
  hg_http_server_t *srv;
  struct conn_s *prev, *next;
  llhttp_t parser;
  int state;
  int handles;     /* open libuv handles (tcp, timer) */
  int accepted;    /* counted in the connection gauge */
  int closing;     /* close started */
  int close_after; /* close once the current response is written */
  int reading;
  hg_buf_t in;     /* read buffer; bytes before in_off are consumed */
  size_t in_off;
  hg_buf_t out;    /* serialized response head (and body, for buffered responses) */
  /* response being written */
  int pending;     /* uv_write requests in flight */
  size_t queued;   /* body bytes in flight */
  int ended;       /* the handler finished the response */
  int chunked;     /* body framed with chunked encoding */
  int body_allowed;
  int gone_notified;
  int status;      /* for the access log */
  size_t body_bytes;
  hg_http_drain_cb drain;
  void *drain_ud;
  /* per-request parse state */
  hg_http_txn_t txn;
  hg_buf_t url, field, value, body;
  size_t header_bytes;
  hg_header_t *hdrs;
  size_t nhdrs;
  int err_status;
  const char *err_msg;
  int head_scan;   /* raw-byte check of the request head (obs-fold, space before ':') */
  int ext_resume;  /* llhttp 8.1 chunk-extension workaround: resume at the ';' */
  int ext_quoted;  /* the current chunk-extension value has a '"' in it */
  int nhost;       /* Host header fields seen */
  char peer[64];
} conn_t;

struct hg_http_server_s {
  uv_loop_t *loop;
  hg_http_limits_t lim;
  hg_http_request_cb cb;
  void *ud;
  llhttp_settings_t settings;
  uv_tcp_t *listeners[16];
  size_t nlisteners;
  size_t nopen_listeners;
  conn_t *conns;
  size_t nconns;
  int draining;
  uv_timer_t drain_timer;
  int drain_timer_open;
  void (*drain_done)(void *);
  void *drain_ud;
  uint64_t rng[2];
  time_t date_sec;
  char date[40];
  hg_http_observer_t obs;
  char *rbuf; /* every read lands here first: idle connections hold no buffer */
};

static void conn_close(conn_t *c);
static void conn_process(conn_t *c);
static void settings_init(llhttp_settings_t *st);

/* ---- helpers ---- */

/* xorshift128+ for request ids: fast, per server (per thread), seeded from getrandom.
 * Ids are correlation handles, not secrets. */
static uint64_t rng_next(hg_http_server_t *s) {
  uint64_t x = s->rng[0], y = s->rng[1];
  s->rng[0] = y;
  x ^= x << 23;
  s->rng[1] = x ^ y ^ (x >> 17) ^ (y >> 26);
  return s->rng[1] + y;
}

static const char *http_date(hg_http_server_t *s) {
  time_t now = time(NULL);
  if (now != s->date_sec) {
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(s->date, sizeof(s->date), "%a, %d %b %Y %H:%M:%S GMT", &tm);
    s->date_sec = now;
  }
  return s->date;
}

/* A received X-Request-Id is reused only if it is short and harmless in logs. */
static int sane_request_id(const char *v, size_t n) {
  if (n == 0 || n > 32) return 0;
  for (size_t i = 0; i < n; i++) {
    char ch = v[i];
    if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
          ch == '-' || ch == '_' || ch == '.'))
      return 0;
  }
  return 1;
}

static void timer_start(conn_t *c, uint64_t ms);

/* ---- per-request state ---- */

static void txn_begin(conn_t *c) {
  hg_request_t *req = &c->txn.req;
  hg_arena_t *arena = req->arena;
  if (arena) hg_arena_reset(arena);
  memset(req, 0, sizeof(*req));
  req->arena = arena ? arena : hg_arena_new(4096);
  req->start_ns = uv_hrtime();
  snprintf(req->client, sizeof(req->client), "%s", c->peer);
  req->method = "-";
  req->target = "-";
  req->target_len = req->path_len = 1;
  c->txn.conn = c;
  hg_buf_clear(&c->url);
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
static void ensure_id(conn_t *c) {
  hg_request_t *req = &c->txn.req;
  if (req->id[0] == '\0')
    snprintf(req->id, sizeof(req->id), "%016llx%016llx", (unsigned long long)rng_next(c->srv),
             (unsigned long long)rng_next(c->srv));
}

/* ---- strict framing (RFC 9112) ----
 * llhttp 8.1 accepts obs-fold (a header line starting with SP/HT is glued onto the
 * previous value) and whitespace between a field name and its colon, and its callbacks
 * cannot tell a fold from a value split across two reads. Security: both are classic
 * request-smuggling vectors (RFC 9112 §5.1, §5.2: a server MUST reject them with 400),
 * so the raw bytes of every request head are checked here before llhttp sees them.
 * The state survives reads; it stops at the empty line that ends the head. */
enum { HS_START, HS_LINE0, HS_BOL, HS_FIELD, HS_VALUE, HS_LF, HS_CR, HS_DONE };

/* Returns 0, or -1 with the error set. Security: a bare CR (not followed by LF) is
 * refused too (RFC 9112 §2.2): llhttp 8.1 takes "\r " as a line end, so a head could
 * end earlier for it than for a proxy in front (found by fuzz_http_request). */
static int scan_head(conn_t *c, const char *p, size_t n) {
  int st = c->head_scan;
  for (size_t i = 0; i < n && st != HS_DONE; i++) {
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
      else if (st == HS_FIELD && (ch == ' ' || ch == '\t'))
        return fail(c, 400, "whitespace in a header field name");
      break;
    case HS_LF:
      if (ch != '\n') return fail(c, 400, "bare CR in the request head");
      st = HS_BOL;
      break;
    case HS_BOL:
      if (ch == '\r') st = HS_CR;
      else if (ch == '\n') st = HS_DONE;
      else if (ch == ' ' || ch == '\t') return fail(c, 400, "obsolete line folding");
      else st = HS_FIELD;
      break;
    case HS_CR:
      if (ch != '\n') return fail(c, 400, "bare CR in the request head");
      st = HS_DONE;
      break;
    }
  }
  c->head_scan = st;
  return 0;
}

/* RFC 3986 host [":" port]: reg-name / IPv4 / IP-literal. Security: the Host ends up in
 * rewritten playlist URLs (open proxy without public_url), so nothing beyond these
 * characters may get there. */
static int valid_host(const char *v, size_t n) {
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
    if (!valid_host(t + s, e - s)) return fail(c, 400, "invalid authority in the request target");
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
  if (host && !valid_host(host->value, host->value_len)) return fail(c, 400, "invalid Host header");
  return 0;
}

/* ---- llhttp callbacks ---- */

static conn_t *conn_of(llhttp_t *p) { return p->data; }

static int on_url(llhttp_t *p, const char *at, size_t len) {
  conn_t *c = conn_of(p);
  if (c->url.len + len > c->srv->lim.max_uri) return fail(c, 414, "request URI too long");
  return hg_buf_append(&c->url, at, len) ? fail(c, 500, "out of memory") : 0;
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
  if (rid && sane_request_id(rid->value, rid->value_len)) {
    memcpy(req->id, rid->value, rid->value_len);
    req->id[rid->value_len] = '\0';
  } else {
    ensure_id(c);
  }
  if (check_head(c, p, req)) return -1;
  if ((p->flags & F_CONTENT_LENGTH) && p->content_length > c->srv->lim.max_body)
    return fail(c, 413, "request body too large");
  /* Expect: 100-continue — tell the client to send the body we are willing to take. */
  const hg_header_t *exp = hg_request_header(req, "Expect");
  if (exp && exp->value_len == 12 && strncasecmp(exp->value, "100-continue", 12) == 0 &&
      p->http_minor >= 1 && c->srv->loop /* NULL in hg__http_parse: no socket */) {
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

/* ---- writing ---- */

static void access_log(conn_t *c, int status, size_t bytes) {
  hg_request_t *req = &c->txn.req;
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
  hg_buf_printf(&b, "\",\"status\":%d,\"bytes\":%zu,\"duration_ms\":%.3f", status, bytes, ms);
  if (req->log_policy) hg_buf_printf(&b, ",\"policy\":\"%s\"", req->log_policy);
  if (req->log_upstream_status)
    hg_buf_printf(&b, ",\"upstream_status\":%d,\"upstream_ms\":%.3f", req->log_upstream_status,
                  req->log_upstream_ms);
  if (req->log_cache) hg_buf_printf(&b, ",\"cache\":\"%s\"", req->log_cache);
  hg_buf_putc(&b, '}');
  if (b.data) hg_log_access(b.data, b.len);
  hg_buf_free(&b);
  if (c->srv->obs.request_done) c->srv->obs.request_done(c->srv->obs.ud, req, status, bytes);
}

/* A draining server with no connection and no listener left reports it, once. */
static void check_drained(hg_http_server_t *s) {
  if (!s->draining || s->nconns > 0 || s->nopen_listeners > 0 || s->drain_done == NULL) return;
  void (*done)(void *) = s->drain_done;
  s->drain_done = NULL;
  if (s->drain_timer_open) uv_timer_stop(&s->drain_timer);
  done(s->drain_ud);
}

/* Frees the connection once nothing refers to it any more. */
static void conn_maybe_free(conn_t *c) {
  if (c->handles > 0 || c->state == S_BUSY) return;
  hg_http_server_t *s = c->srv;
  if (c->prev) c->prev->next = c->next;
  else s->conns = c->next;
  if (c->next) c->next->prev = c->prev;
  s->nconns--;
  if (c->accepted && s->obs.connection) s->obs.connection(s->obs.ud, -1);
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
  conn_maybe_free(c);
}

static void conn_close(conn_t *c) {
  if (c->closing) return;
  c->closing = 1;
  uv_close((uv_handle_t *)&c->tcp, on_handle_close);
  uv_close((uv_handle_t *)&c->timer, on_handle_close);
}

static void start_reading(conn_t *c);

/* A queued write: the bytes, plus the chunk-size line when chunked. */
typedef struct wchunk_s {
  uv_write_t req;
  conn_t *c;
  char *data;
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
    conn_close(c);
    return;
  }
  /* Compact the read buffer, then parse any pipelined request already received. */
  if (c->in_off > 0) {
    memmove(c->in.data, c->in.data + c->in_off, c->in.len - c->in_off);
    c->in.len -= c->in_off;
    c->in_off = 0;
  }
  timer_start(c, c->srv->lim.keepalive_timeout_ms);
  conn_process(c);
  if (!c->closing && (c->state == S_IDLE || c->state == S_READING)) start_reading(c);
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
  free(w);
  if (status < 0) {
    conn_close(c);
    notify_gone(c, status);
  }
  if (c->pending > 0) { /* progress: the send timeout counts from here (a slow reader is fine) */
    timer_start(c, c->srv->lim.send_timeout_ms);
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
    conn_close(c);
    return UV_ENOMEM;
  }
  w->c = c;
  w->data = data;
  w->len = blen;
  w->owned = owned;
  w->req.data = w;
  uv_buf_t bufs[3];
  unsigned n = 0;
  if (frame) bufs[n++] = uv_buf_init(w->prefix, (unsigned)snprintf(w->prefix, sizeof(w->prefix), "%zx\r\n", blen));
  bufs[n++] = uv_buf_init(data, (unsigned)(hlen + blen));
  if (frame) bufs[n++] = uv_buf_init("\r\n", 2);
  int rc = uv_write(&w->req, (uv_stream_t *)&c->tcp, bufs, n, on_chunk_write);
  if (rc < 0) {
    if (owned) free(data);
    free(w);
    conn_close(c);
    return rc;
  }
  c->pending++;
  c->queued += blen;
  timer_start(c, c->srv->lim.send_timeout_ms); /* a client that stops reading is cut off */
  return 0;
}

static int is_hop_or_framing(const char *name, size_t n) {
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
                         hg_http_reason(res->status), http_date(c->srv));
  int has_cc = 0;
  for (size_t i = 0; !rc && i < res->nheaders; i++) {
    const hg_header_t *h = &res->headers[i];
    if (is_hop_or_framing(h->name, h->name_len)) continue;
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
  ensure_id(c); /* every answer carries an id, early errors included */
  if (c->srv->draining) c->close_after = 1;
  return c->closing;
}

/* Ends the transaction on a connection that died while the handler worked. */
static void abandon(conn_t *c) {
  access_log(c, 499, c->body_bytes);
  c->ended = 1;
  c->state = S_IDLE;
  conn_maybe_free(c);
}

int hg_http_respond(hg_http_txn_t *txn, const hg_response_t *res) {
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
    conn_close(c);
    return HG_ENOMEM;
  }
  access_log(c, res->status, body_len);
  c->state = S_WRITING;
  return queue_write(c, c->out.data, hlen, body_len, 0, 0);
}

int hg_http_stream_start(hg_http_txn_t *txn, const hg_response_t *res, int64_t content_length,
                         hg_http_drain_cb drain, void *ud) {
  conn_t *c = txn->conn;
  c->drain = drain;
  c->drain_ud = ud;
  if (begin_response(c, res->status)) return UV_ECONNRESET;
  if (content_length < 0 && c->body_allowed) {
    if (c->txn.req.http_major == 1 && c->txn.req.http_minor >= 1) c->chunked = 1;
    else c->close_after = 1; /* HTTP/1.0: the close delimits the body */
  }
  if (serialize_head(c, res, c->body_allowed || content_length >= 0 ? content_length : -1)) {
    conn_close(c);
    return HG_ENOMEM;
  }
  /* c->out stays untouched until txn_done, so the head can be written from it. */
  return queue_write(c, c->out.data, c->out.len, 0, 0, 0);
}

int hg_http_stream_write(hg_http_txn_t *txn, char *data, size_t len) {
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

size_t hg_http_stream_queued(const hg_http_txn_t *txn) { return txn->conn->queued; }

void hg_http_stream_end(hg_http_txn_t *txn, int complete) {
  conn_t *c = txn->conn;
  if (c->closing) {
    abandon(c);
    return;
  }
  access_log(c, c->status, c->body_bytes);
  c->ended = 1;
  if (!complete) { /* a truncated body must not look complete: close */
    c->state = S_IDLE;
    conn_close(c);
    return;
  }
  c->state = S_WRITING;
  if (c->chunked) queue_write(c, "0\r\n\r\n", 5, 0, 0, 0);
  else if (c->pending == 0) txn_done(c);
}

/* Answers a request the server itself rejects (parse errors, limits, timeouts) and
 * closes the connection after it: after a framing error the byte stream cannot be
 * trusted for another request. */
static void respond_error(conn_t *c, int status, const char *msg) {
  hg_request_t *req = &c->txn.req;
  if (req->arena == NULL) txn_begin(c);
  ensure_id(c);
  hg_response_t res;
  memset(&res, 0, sizeof(res));
  c->close_after = 1;
  c->state = S_BUSY;
  if (hg_response_error(&res, req->arena, status, msg, req->id) != 0) {
    c->state = S_IDLE;
    conn_close(c);
    return;
  }
  hg_http_respond(&c->txn, &res);
}

/* Maps an llhttp error to a status. An unknown method on an otherwise well-formed
 * request line ("BREW / HTTP/1.1") is 405; anything else malformed is 400. */
static int error_status(conn_t *c, llhttp_errno_t err, const char **msg) {
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

/* Parses buffered input until a request is complete (then hands it over), the input
 * runs out, or an error answers and closes. */
static void conn_process(conn_t *c) {
  while (!c->closing && (c->state == S_IDLE || c->state == S_READING) && c->in_off < c->in.len) {
    if (c->state == S_IDLE) {
      c->state = S_READING;
      txn_begin(c);
      timer_start(c, c->srv->lim.header_timeout_ms);
    }
    const char *data = c->in.data + c->in_off;
    size_t len = c->in.len - c->in_off;
    llhttp_errno_t err = scan_head(c, data, len) ? HPE_USER : llhttp_execute(&c->parser, data, len);
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
      conn_close(c);
      break;
    }
    if (err == HPE_PAUSED || err == HPE_PAUSED_UPGRADE) {
      c->in_off += (size_t)(llhttp_get_error_pos(&c->parser) - data);
      if (err == HPE_PAUSED_UPGRADE) c->close_after = 1; /* no upgrades here */
      llhttp_resume(&c->parser);
      c->state = S_BUSY;
      uv_timer_stop(&c->timer);
      c->srv->cb(c->srv->ud, &c->txn, &c->txn.req);
      break;
    }
    const char *msg;
    int status = error_status(c, err, &msg);
    hg_log(HG_LOG_DEBUG, "%s: %d %s (llhttp: %s)", c->peer, status, msg, llhttp_errno_name(err));
    respond_error(c, status, msg);
    break;
  }
  if (c->in_off == c->in.len) { /* all parsed: keep no buffer */
    hg_buf_free(&c->in);
    c->in_off = 0;
  }
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
    if (c->state == S_BUSY || c->state == S_WRITING) c->close_after = 1;
    else conn_close(c);
    return;
  }
  if (nread == 0) return;
  if (hg_buf_append(&c->in, buf->base, (size_t)nread) != 0) {
    conn_close(c);
    return;
  }
  conn_process(c);
}

static void start_reading(conn_t *c) {
  if (c->reading || c->closing) return;
  if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) == 0) c->reading = 1;
  else conn_close(c);
}

static void on_timer(uv_timer_t *t) {
  conn_t *c = t->data;
  if (c->state == S_READING) {
    respond_error(c, 408, "request timeout");
  } else if (c->state == S_IDLE) {
    conn_close(c); /* idle keep-alive or a client that never sent a byte */
  } else if (c->pending > 0) {
    hg_log(HG_LOG_DEBUG, "%s: send timeout, closing", c->peer);
    conn_close(c); /* the client stopped reading; pending writes are cancelled */
  }
}

static void timer_start(conn_t *c, uint64_t ms) {
  if (!c->closing) uv_timer_start(&c->timer, on_timer, ms, 0);
}

/* ---- accepting ---- */

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
  struct sockaddr_storage ss;
  int len = sizeof(ss);
  snprintf(c->peer, sizeof(c->peer), "-");
  if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &len) == 0) {
    if (ss.ss_family == AF_INET6) uv_ip6_name((struct sockaddr_in6 *)&ss, c->peer, sizeof(c->peer));
    else uv_ip4_name((struct sockaddr_in *)&ss, c->peer, sizeof(c->peer));
  }
  llhttp_init(&c->parser, HTTP_REQUEST, &s->settings);
  c->parser.data = c;
  c->state = S_IDLE;
  timer_start(c, s->lim.header_timeout_ms);
  start_reading(c);
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
  settings_init(&s->settings);
  if (getrandom(s->rng, sizeof(s->rng), 0) != sizeof(s->rng) || (s->rng[0] | s->rng[1]) == 0) {
    s->rng[0] = uv_hrtime() | 1;
    s->rng[1] = (uint64_t)(uintptr_t)s;
  }
  return s;
}

static void settings_init(llhttp_settings_t *st) {
  llhttp_settings_init(st);
  st->on_url = on_url;
  st->on_header_field = on_header_field;
  st->on_header_value = on_header_value;
  st->on_header_value_complete = on_header_value_complete;
  st->on_headers_complete = on_headers_complete;
  st->on_body = on_body;
  st->on_chunk_extension_value = on_chunk_extension_value;
  st->on_chunk_extension_value_complete = on_chunk_extension_value_complete;
  st->on_message_complete = on_message_complete;
}

int hg_http_server_listen_fd(hg_http_server_t *s, int fd) {
  if (s->nlisteners == sizeof(s->listeners) / sizeof(s->listeners[0])) {
    close(fd);
    return UV_EINVAL;
  }
  uv_tcp_t *t = malloc(sizeof(*t));
  if (t == NULL) {
    close(fd);
    return UV_ENOMEM;
  }
  uv_tcp_init(s->loop, t);
  t->data = s;
  int rc = uv_tcp_open(t, fd);
  if (rc == 0) rc = uv_listen((uv_stream_t *)t, 511, on_connection);
  s->listeners[s->nlisteners++] = t;
  s->nopen_listeners++;
  return rc;
}

static void on_listener_close(uv_handle_t *h) {
  hg_http_server_t *s = h->data;
  free(h);
  s->nopen_listeners--;
  check_drained(s);
}

static void on_drain_timeout(uv_timer_t *t) {
  hg_http_server_t *s = t->data;
  hg_log(HG_LOG_WARN, "drain timeout: closing %zu connection(s)", s->nconns);
  for (conn_t *c = s->conns; c; c = c->next) conn_close(c);
}

static void on_drain_timer_close(uv_handle_t *h) {
  hg_http_server_t *s = h->data;
  s->drain_timer_open = 0;
  free(s->rbuf);
  free(s);
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
    if (c->state == S_IDLE && c->in.len == c->in_off) conn_close(c);
    else c->close_after = 1;
  }
  check_drained(s);
}

void hg_http_server_free(hg_http_server_t *s) {
  if (s == NULL) return;
  if (s->drain_timer_open) {
    uv_close((uv_handle_t *)&s->drain_timer, on_drain_timer_close);
  } else {
    free(s->rbuf);
    free(s);
  }
}

void hg_http_server_observe(hg_http_server_t *s, const hg_http_observer_t *obs) { s->obs = *obs; }

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
  settings_init(&s.settings);
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
        txn_begin(c);
      }
      const char *d = c->in.data + c->in_off;
      size_t n = c->in.len - c->in_off;
      llhttp_errno_t e = scan_head(c, d, n) ? HPE_USER : llhttp_execute(&c->parser, d, n);
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
      *err_status = error_status(c, e, &msg);
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
