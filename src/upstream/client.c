/* client.c — the upstream HTTP/1.1 client (see client.h).
 *
 * Objects, all owned by one hg_upstream_t and used on its loop's thread only:
 *
 *   fetch   one hg_fetch_start call. Walks hops (the URL, then each redirect): check
 *           the host allowlist → take a pooled connection, or take a connection slot,
 *           resolve, check every address (SSRF), connect, TLS handshake → send the
 *           request → parse the response. Owns a timer (connect/read/total timeouts).
 *   conn    one TCP connection (and its TLS session) to one origin. Belongs to the
 *           fetch using it, or to its origin's idle list while pooled.
 *   origin  per "scheme://host:port": counts connection slots (for
 *           max_conns_per_origin), holds the idle list and the fetches waiting for a slot.
 *
 * Callbacks to the user never run from inside llhttp or mbedTLS: the llhttp callbacks
 * only record events (head complete, body bytes, message complete) and pump() acts on
 * them between parser calls, re-checking the fetch state after every user callback, so
 * a callback may pause, resume or abort freely. on_done is always deferred to the
 * `kick` idle handle (never run from inside hg_fetch_start, hg_fetch_resume or another
 * callback), so it runs exactly once, last, from the loop.
 *
 * Memory: a conn is freed in the close callback of its last handle; a fetch when its
 * timer is closed and no getaddrinfo request is outstanding; the upstream when it is
 * closing and no conn, fetch or handle of its own is left.
 */
#include "upstream/client.h"

#include <arpa/inet.h>
#include <llhttp.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <zlib.h>

#include "base/buf.h"
#include "base/error.h"
#include "base/log.h"
#include "upstream/addr.h"
#include "upstream/tls.h"
#include "url/url.h"

#ifndef HG_VERSION
#define HG_VERSION "0"
#endif

#define READ_CHUNK 65536        /* socket read size: bounds what is buffered while paused */
#define PLAIN_CHUNK 16384       /* TLS plaintext per mbedtls_ssl_read (one record) */
#define GZ_CHUNK 65536          /* decoded bytes per on_data call */
#define MAX_RESP_HEADERS 128
#define MAX_RESP_HEADER_BYTES 65536
#define MAX_ADDRS 16
#define REDIRECT_DRAIN_MAX 65536 /* a redirect body up to this size is read to keep the conn */
#define DEFAULT_CONNECT_MS 5000
#define DEFAULT_READ_MS 10000
#define DEFAULT_IDLE_MS 30000
#define DEFAULT_MAX_IDLE 8

typedef struct origin_s origin_t;
typedef struct conn_s conn_t;

enum { C_CONNECTING, C_HANDSHAKE, C_ACTIVE, C_IDLE };
enum { F_START, F_WAIT, F_DNS, F_CONNECT, F_RESPONSE, F_FINISHED, F_DEAD };
enum { T_NONE, T_CONNECT, T_READ };

struct origin_s {
  origin_t *prev, *next;
  size_t nslots;          /* live conns + fetches resolving without a conn yet */
  int refs;               /* pins the origin while code iterates over it */
  conn_t *idle;           /* idle conns, most recently used first */
  size_t nidle;
  hg_fetch_t *waiters;    /* fetches waiting for a slot, FIFO (singly linked) */
  char key[300];          /* "https://host:port" */
};

struct conn_s {
  uv_tcp_t tcp;
  uv_timer_t idle_timer;
  uv_connect_t creq;
  hg_upstream_t *u;
  origin_t *origin;       /* set while the conn holds a slot of it */
  hg_fetch_t *fetch;      /* the fetch using it; NULL while idle */
  conn_t *iprev, *inext;  /* origin idle list */
  int state;
  int handles;            /* open libuv handles (tcp, idle_timer) */
  int closing, reading;
  int eof, rerr;          /* transport EOF / read error seen */
  int keepalive;          /* the last response allows another request */
  int writes;             /* uv_write requests in flight */
  int addr_class;         /* SSRF class of the peer: checked again before each reuse */
  int tls_on;
  hg__tls_t tls;
  llhttp_t parser;
  hg_buf_t rx;            /* plaintext for llhttp, consumed from rx_off */
  size_t rx_off;
};

typedef struct hidx_s {
  size_t n, nl, v, vl; /* offsets/lengths of a NUL-terminated name and value in hstore */
} hidx_t;

struct hg_fetch_s {
  hg_upstream_t *u;
  hg_fetch_t *prev, *next;   /* u->fetches: live (not yet released) fetches */
  hg_fetch_t *kprev, *knext; /* u's kick queue */
  hg_fetch_t *wnext;         /* origin waiters */
  int kicked;
  int listed;                /* in u->fetches */
  int state;
  hg_fetch_cbs_t cbs;
  void *ud;
  /* options (copied) */
  int head_method;
  hg_header_t *hdrs;         /* request headers; strings in hdr_mem */
  size_t nhdrs;
  char *hdr_mem;
  char **allow_hosts;        /* NULL = any */
  size_t nallow;
  int allow, max_redirects, accept_gzip;
  uint64_t connect_ms, read_ms, total_ms, total_due;
  /* current hop */
  hg_buf_t url;
  hg_url_origin_t org;
  char key[300];
  origin_t *origin;          /* set while holding a slot or waiting for one */
  int has_slot;
  int nredirects;
  uv_timer_t timer;
  int phase;
  int timer_closed;
  uv_getaddrinfo_t gai;
  int gai_pending;
  struct sockaddr_storage addrs[MAX_ADDRS];
  int naddrs, addr_idx;
  int last_err;
  conn_t *conn;
  int reused, retried;
  /* response */
  hg_buf_t hstore;
  hidx_t *hidx;
  size_t nh, hcap;
  hidx_t hcur;
  int hstate;                /* 0 between headers, 1 in a name, 2 in a value */
  int status;
  int64_t clen;
  int ev_head, ev_done, head_done, interim, discard;
  char perr[96];             /* why a llhttp callback refused the response */
  uint64_t resp_bytes;       /* plaintext response bytes parsed on this conn */
  hg_buf_t body;             /* raw (maybe gzip) body bytes not yet delivered */
  size_t body_off;
  z_stream gz;
  int gz_on, gz_end, gz_more;
  uint64_t gz_in;
  hg_buf_t next_url;         /* redirect target while draining the redirect response */
  int paused, in_pump, in_done;
  /* result */
  int err;
  char msg[512];
};

struct hg_upstream_s {
  uv_loop_t *loop;
  hg_upstream_config_t cfg;
  char *ca_file;
  hg__tls_ctx_t *tls;
  llhttp_settings_t settings;
  uv_idle_t kick;
  int kick_active, kick_closed;
  hg_fetch_t *kick_head, *kick_tail;
  hg_fetch_t *fetches;
  size_t nfetches;           /* allocated fetches (live or being freed) */
  origin_t *origins;
  size_t nconns;             /* allocated conns */
  int closing;
};

static void pump(hg_fetch_t *f);
static void conn_close(conn_t *c);
static void conn_update_reading(conn_t *c);
static void send_request(hg_fetch_t *f);
static void hop_begin(hg_fetch_t *f);
static void hop_resolve(hg_fetch_t *f);
static void fetch_maybe_free(hg_fetch_t *f);
static void upstream_maybe_free(hg_upstream_t *u);

/* ---- small helpers ---- */

static int is_ws(char c) { return c == ' ' || c == '\t'; }

/* Case-insensitive comparison of a (name, len) span with a C string. */
static int name_is(const char *name, size_t len, const char *want) {
  return strlen(want) == len && strncasecmp(name, want, len) == 0;
}

/* "scheme://host:port": the pool key and the origin named in messages (no userinfo,
 * path or query: nothing secret). */
static void origin_key(const hg_url_origin_t *o, char *out, size_t outlen) {
  snprintf(out, outlen, "%s://%s%s%s:%u", o->https ? "https" : "http", o->ipv6 ? "[" : "",
           o->host, o->ipv6 ? "]" : "", o->port);
}

/* ---- kick queue: deferred work on the next loop iteration ---- */

static void kick_unlink(hg_fetch_t *f) {
  hg_upstream_t *u = f->u;
  if (!f->kicked) return;
  if (f->kprev) f->kprev->knext = f->knext;
  else u->kick_head = f->knext;
  if (f->knext) f->knext->kprev = f->kprev;
  else u->kick_tail = f->kprev;
  f->kprev = f->knext = NULL;
  f->kicked = 0;
}

static void on_kick(uv_idle_t *h);

/* Schedules on_done (F_FINISHED) or a pump (resume) for the next loop iteration. */
static void kick(hg_fetch_t *f) {
  hg_upstream_t *u = f->u;
  if (f->kicked || u->kick_closed) return;
  f->kicked = 1;
  f->kprev = u->kick_tail;
  f->knext = NULL;
  if (u->kick_tail) u->kick_tail->knext = f;
  else u->kick_head = f;
  u->kick_tail = f;
  if (!u->kick_active) {
    uv_idle_start(&u->kick, on_kick);
    u->kick_active = 1;
  }
}

/* ---- fetch completion and release ---- */

static void on_fetch_timer_close(uv_handle_t *h) {
  hg_fetch_t *f = h->data;
  f->timer_closed = 1;
  fetch_maybe_free(f);
}

static void response_reset(hg_fetch_t *f) {
  hg_buf_clear(&f->hstore);
  f->nh = 0;
  f->hstate = 0;
  f->status = 0;
  f->clen = -1;
  f->ev_head = f->ev_done = f->head_done = f->interim = f->discard = 0;
  f->perr[0] = '\0';
  f->resp_bytes = 0;
  hg_buf_clear(&f->body);
  f->body_off = 0;
  if (f->gz_on) inflateEnd(&f->gz);
  f->gz_on = f->gz_end = f->gz_more = 0;
  f->gz_in = 0;
}

static void slot_release(hg_upstream_t *u, origin_t *o);
static void origin_maybe_free(hg_upstream_t *u, origin_t *o);

/* Gives up the fetch's slot or its place in the origin's wait queue. */
static void fetch_leave_origin(hg_fetch_t *f) {
  origin_t *o = f->origin;
  if (o == NULL) return;
  f->origin = NULL;
  if (f->has_slot) {
    f->has_slot = 0;
    slot_release(f->u, o);
  } else { /* a waiter */
    for (hg_fetch_t **pp = &o->waiters; *pp; pp = &(*pp)->wnext) {
      if (*pp == f) {
        *pp = f->wnext;
        break;
      }
    }
    f->wnext = NULL;
    origin_maybe_free(f->u, o);
  }
}

/* Detaches and closes the fetch's connection (it is never pooled from here). */
static void fetch_drop_conn(hg_fetch_t *f) {
  conn_t *c = f->conn;
  if (c == NULL) return;
  f->conn = NULL;
  c->fetch = NULL;
  conn_close(c);
}

static void fetch_unlist(hg_fetch_t *f) {
  hg_upstream_t *u = f->u;
  if (!f->listed) return;
  f->listed = 0;
  if (f->prev) f->prev->next = f->next;
  else u->fetches = f->next;
  if (f->next) f->next->prev = f->prev;
  f->prev = f->next = NULL;
}

/* Ends the fetch without any callback: closes what it holds; the memory goes when the
 * timer is closed and any getaddrinfo request came back. */
static void fetch_release(hg_fetch_t *f) {
  if (f->state == F_DEAD) return;
  f->state = F_DEAD;
  fetch_unlist(f);
  kick_unlink(f);
  fetch_drop_conn(f);
  fetch_leave_origin(f);
  response_reset(f);
  if (f->gai_pending) uv_cancel((uv_req_t *)&f->gai); /* its callback still runs */
  uv_close((uv_handle_t *)&f->timer, on_fetch_timer_close);
}

static void fetch_maybe_free(hg_fetch_t *f) {
  if (f->state != F_DEAD || !f->timer_closed || f->gai_pending) return;
  hg_upstream_t *u = f->u;
  kick_unlink(f);
  hg_buf_free(&f->url);
  hg_buf_free(&f->next_url);
  hg_buf_free(&f->hstore);
  hg_buf_free(&f->body);
  free(f->hidx);
  free(f->hdrs);
  free(f->hdr_mem);
  if (f->allow_hosts) {
    for (size_t i = 0; i < f->nallow; i++) free(f->allow_hosts[i]);
    free(f->allow_hosts);
  }
  free(f);
  u->nfetches--;
  upstream_maybe_free(u);
}

/* Records the result and schedules on_done. Everything the fetch holds is let go now
 * (a connection passed in here is closed, never pooled). */
static void fetch_finish(hg_fetch_t *f, int err) {
  if (f->state >= F_FINISHED) return;
  f->state = F_FINISHED;
  f->err = err;
  fetch_drop_conn(f);
  fetch_leave_origin(f);
  if (f->gai_pending) uv_cancel((uv_req_t *)&f->gai);
  uv_timer_stop(&f->timer);
  kick(f);
}

/* Fails the fetch with `err` and a message "<origin>: <reason>". The origin is
 * scheme://host:port only: never a path, query or credentials. */
static void fetch_fail(hg_fetch_t *f, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void fetch_fail(hg_fetch_t *f, int err, const char *fmt, ...) {
  if (f->state >= F_FINISHED) return;
  int n = snprintf(f->msg, sizeof(f->msg), "%s: ", f->key);
  if (n < 0 || (size_t)n >= sizeof(f->msg)) n = 0;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(f->msg + n, sizeof(f->msg) - (size_t)n, fmt, ap);
  va_end(ap);
  fetch_finish(f, err);
}

/* Runs on_done (exactly once) and releases the fetch. */
static void fetch_complete(hg_fetch_t *f) {
  fetch_unlist(f); /* hg_upstream_close from on_done must not see it again */
  f->in_done = 1;
  f->cbs.on_done(f->ud, f, f->err, f->msg);
  f->in_done = 0;
  fetch_release(f);
}

static void on_kick(uv_idle_t *h) {
  hg_upstream_t *u = h->data;
  /* Serve the fetches queued so far; fetches kicked meanwhile wait for the next
   * iteration, so a callback that keeps resuming cannot starve the loop. */
  size_t n = 0;
  for (hg_fetch_t *f = u->kick_head; f; f = f->knext) n++;
  while (n-- > 0 && u->kick_head) {
    hg_fetch_t *f = u->kick_head;
    kick_unlink(f);
    if (f->state == F_FINISHED) fetch_complete(f);
    else if (f->state == F_RESPONSE) pump(f);
  }
  if (u->kick_head == NULL && u->kick_active && !u->kick_closed) {
    uv_idle_stop(&u->kick);
    u->kick_active = 0;
  }
}

/* ---- timeouts ---- */

static void on_fetch_timer(uv_timer_t *t) {
  hg_fetch_t *f = t->data;
  if (f->state >= F_FINISHED) return;
  uint64_t now = uv_now(f->u->loop);
  if (f->total_due && now >= f->total_due)
    fetch_fail(f, HG_ETIMEOUT, "timed out after %llu ms (total)", (unsigned long long)f->total_ms);
  else if (f->phase == T_CONNECT)
    fetch_fail(f, HG_ETIMEOUT, "timed out after %llu ms connecting",
               (unsigned long long)f->connect_ms);
  else
    fetch_fail(f, HG_ETIMEOUT, "timed out after %llu ms reading", (unsigned long long)f->read_ms);
}

/* Arms the fetch timer for `phase` (the read timeout is suspended while paused), capped
 * by the total deadline. Called again on every byte received. */
/* a + b, saturating below UINT64_MAX (which timer_arm reads as "no deadline"). */
static uint64_t add_sat(uint64_t a, uint64_t b) {
  return b > UINT64_MAX - 1 - a ? UINT64_MAX - 1 : a + b;
}

static void timer_arm(hg_fetch_t *f, int phase) {
  uint64_t now = uv_now(f->u->loop), due = UINT64_MAX;
  f->phase = phase;
  if (phase == T_CONNECT) due = add_sat(now, f->connect_ms);
  else if (phase == T_READ && !f->paused) due = add_sat(now, f->read_ms);
  if (f->total_due && f->total_due < due) due = f->total_due;
  if (due == UINT64_MAX) uv_timer_stop(&f->timer);
  else uv_timer_start(&f->timer, on_fetch_timer, due > now ? due - now : 0, 0);
}

/* ---- origins and slots ---- */

static origin_t *origin_find(hg_upstream_t *u, const char *key) {
  for (origin_t *o = u->origins; o; o = o->next)
    if (strcmp(o->key, key) == 0) return o;
  return NULL;
}

static origin_t *origin_get(hg_upstream_t *u, const char *key) {
  origin_t *o = origin_find(u, key);
  if (o) return o;
  o = calloc(1, sizeof(*o));
  if (o == NULL) return NULL;
  snprintf(o->key, sizeof(o->key), "%s", key);
  o->next = u->origins;
  if (u->origins) u->origins->prev = o;
  u->origins = o;
  return o;
}

static void origin_maybe_free(hg_upstream_t *u, origin_t *o) {
  if (o->nslots > 0 || o->waiters != NULL || o->refs > 0) return;
  if (o->prev) o->prev->next = o->next;
  else u->origins = o->next;
  if (o->next) o->next->prev = o->prev;
  free(o);
}

static void hop_connect(hg_fetch_t *f, origin_t *o);

/* A slot of `o` became free: hand it to the first waiter, or free an unused origin.
 * The origin is pinned meanwhile: a woken waiter may fail and release again. */
static void slot_release(hg_upstream_t *u, origin_t *o) {
  o->nslots--;
  o->refs++;
  size_t limit = u->cfg.max_conns_per_origin;
  while (o->waiters && (limit == 0 || o->nslots < limit) && !u->closing) {
    hg_fetch_t *w = o->waiters;
    o->waiters = w->wnext;
    w->wnext = NULL;
    w->origin = NULL;
    hop_connect(w, o);
  }
  o->refs--;
  origin_maybe_free(u, o);
}

/* Security: a pooled conn was checked against the `allow` mask of the fetch that opened
 * it; another fetch may only reuse it if its own mask allows the peer's class. */
static conn_t *pool_take(origin_t *o, hg_fetch_t *f) {
  for (conn_t *c = o->idle; c; c = c->inext) {
    if (c->addr_class & ~f->allow) continue;
    if (c->iprev) c->iprev->inext = c->inext;
    else o->idle = c->inext;
    if (c->inext) c->inext->iprev = c->iprev;
    c->iprev = c->inext = NULL;
    o->nidle--;
    uv_timer_stop(&c->idle_timer);
    return c;
  }
  return NULL;
}

static void attach(hg_fetch_t *f, conn_t *c) {
  c->fetch = f;
  c->state = C_ACTIVE;
  f->conn = c;
}

static void on_idle_timer(uv_timer_t *t) {
  conn_t *c = t->data;
  if (c->state == C_IDLE) conn_close(c);
}

/* Puts a conn whose response was read completely back into its origin's pool — or
 * straight to a waiting fetch that may use it. */
static void pool_put(conn_t *c) {
  hg_upstream_t *u = c->u;
  origin_t *o = c->origin;
  c->fetch = NULL;
  c->state = C_IDLE;
  c->keepalive = 0;
  hg_buf_free(&c->rx); /* idle conns keep no read buffers */
  c->rx_off = 0;
  if (c->tls_on) {
    hg_buf_free(&c->tls.in); /* empty: conn_release checked that nothing is pending */
    c->tls.in_off = 0;
  }
  for (hg_fetch_t **pp = &o->waiters; *pp; pp = &(*pp)->wnext) {
    hg_fetch_t *w = *pp;
    if (c->addr_class & ~w->allow) continue;
    *pp = w->wnext;
    w->wnext = NULL;
    w->origin = NULL;
    attach(w, c);
    w->reused = 1;
    send_request(w);
    return;
  }
  c->iprev = NULL;
  c->inext = o->idle;
  if (o->idle) o->idle->iprev = c;
  o->idle = c;
  o->nidle++;
  uv_timer_start(&c->idle_timer, on_idle_timer, u->cfg.idle_timeout_ms, 0);
  conn_update_reading(c); /* an idle conn that gets EOF or bytes is closed */
  if (o->nidle > u->cfg.max_idle_per_origin) {
    conn_t *old = o->idle;
    while (old->inext) old = old->inext;
    conn_close(old); /* the least recently used one */
  }
}

/* ---- connections ---- */

static void on_conn_close(uv_handle_t *h) {
  conn_t *c = h->data;
  if (--c->handles > 0) return;
  hg_upstream_t *u = c->u;
  hg_buf_free(&c->rx);
  if (c->tls_on) hg__tls_free(&c->tls);
  free(c);
  u->nconns--;
  upstream_maybe_free(u);
}

/* Closes a conn (idempotent): unpools it, gives back its slot, detaches its fetch. */
static void conn_close(conn_t *c) {
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
    slot_release(c->u, o);
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
  conn_close(c);
}

typedef struct wreq_s {
  uv_write_t req;
  conn_t *c;
  char *data;
} wreq_t;

static void conn_failed(hg_fetch_t *f, int err, const char *what);

static void on_write(uv_write_t *req, int status) {
  wreq_t *w = req->data;
  conn_t *c = w->c;
  free(w->data);
  free(w);
  c->writes--;
  if (status >= 0 || c->closing) return;
  hg_fetch_t *f = c->fetch;
  if (f == NULL) {
    conn_close(c);
  } else if (f->state == F_CONNECT) {
    fetch_fail(f, status, "TLS: %s", uv_strerror(status));
  } else if (f->state == F_RESPONSE && f->resp_bytes == 0) {
    conn_failed(f, status, uv_strerror(status));
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
    conn_close(c); /* the server closed it, or sent bytes nobody asked for */
    return;
  }
  if (c->state == C_HANDSHAKE) {
    tls_step(c);
    return;
  }
  hg_fetch_t *f = c->fetch;
  if (c->state != C_ACTIVE || f == NULL || f->state != F_RESPONSE) return;
  if (nread > 0) timer_arm(f, T_READ);
  pump(f);
}

/* Reads while someone wants bytes: the handshake, an unpaused response, an idle conn
 * (to notice the server closing it). Stops otherwise: that is the backpressure. */
static void conn_update_reading(conn_t *c) {
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
static int tls_flush(conn_t *c) { return conn_write(c, &c->tls.out); }

static void tls_step(conn_t *c) {
  hg_fetch_t *f = c->fetch;
  if (f == NULL) {
    conn_close(c);
    return;
  }
  int rc = hg__tls_handshake(&c->tls);
  int wrc = tls_flush(c);
  if (rc < 0) {
    if (rc == MBEDTLS_ERR_SSL_CONN_EOF) {
      fetch_fail(f, UV_ECONNRESET, "TLS: connection closed during the handshake");
      return;
    }
    char why[256];
    hg__tls_describe(&c->tls, rc, why, sizeof(why));
    /* Security: a certificate that fails verification ends the fetch; never retried. */
    fetch_fail(f, HG_EUPSTREAM, "TLS: %s", why);
    return;
  }
  if (wrc < 0) {
    fetch_fail(f, wrc, "TLS: %s", uv_strerror(wrc));
    return;
  }
  if (c->rerr) {
    fetch_fail(f, c->rerr, "TLS: %s", uv_strerror(c->rerr));
    return;
  }
  if (rc == 1) {
    if (c->eof) fetch_fail(f, UV_ECONNRESET, "TLS: connection closed during the handshake");
    else conn_update_reading(c);
    return;
  }
  c->state = C_ACTIVE;
  send_request(f);
}

static void hop_try_connect(hg_fetch_t *f);

static void on_connect(uv_connect_t *req, int status) {
  conn_t *c = req->data;
  if (status == UV_ECANCELED || c->closing) return;
  hg_fetch_t *f = c->fetch;
  if (f == NULL) {
    conn_close(c);
    return;
  }
  if (status < 0) {
    f->last_err = status;
    conn_close_keep_slot(f);
    f->addr_idx++;
    hop_try_connect(f); /* the next address, if any */
    return;
  }
  uv_tcp_nodelay(&c->tcp, 1);
  uv_tcp_keepalive(&c->tcp, 1, 60);
  if (c->tls_on) {
    c->state = C_HANDSHAKE;
    tls_step(c);
  } else {
    c->state = C_ACTIVE;
    send_request(f);
  }
}

/* Opens a conn to `sa` for f, moving f's slot to it. Returns 0, or a UV_E* code or
 * HG_ENOMEM (then f keeps its slot). */
static int conn_open(hg_fetch_t *f, const struct sockaddr *sa) {
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
  attach(f, c);
  c->state = C_CONNECTING;
  int rc = uv_tcp_connect(&c->creq, &c->tcp, sa, on_connect);
  if (rc < 0) {
    conn_close_keep_slot(f);
    return rc;
  }
  return 0;
}

/* ---- hops: allowlist → pool / slot → DNS → SSRF check → connect ---- */

static void hop_try_connect(hg_fetch_t *f) {
  while (f->addr_idx < f->naddrs) {
    int rc = conn_open(f, (const struct sockaddr *)&f->addrs[f->addr_idx]);
    if (rc == 0) {
      f->state = F_CONNECT;
      return;
    }
    if (rc == HG_ENOMEM) {
      fetch_fail(f, HG_ENOMEM, "out of memory");
      return;
    }
    f->last_err = rc;
    f->addr_idx++;
  }
  int err = f->last_err ? f->last_err : UV_ECONNREFUSED;
  fetch_fail(f, err, "%s", uv_strerror(err));
}

/* Security (SSRF): every address the host resolved to must be in a class the fetch
 * allows; one forbidden address refuses the whole host (a name that mixes public and
 * internal addresses is not one to trust). We then connect only to these very
 * addresses, so there is no second lookup to rebind. */
static void hop_resolved(hg_fetch_t *f) {
  if (f->naddrs == 0) {
    fetch_fail(f, UV_EAI_NONAME, "DNS: %s has no address", f->org.host);
    return;
  }
  for (int i = 0; i < f->naddrs; i++) {
    const struct sockaddr *sa = (const struct sockaddr *)&f->addrs[i];
    int cls = hg_upstream_addr_class(sa);
    if (cls & ~f->allow) {
      char a[INET6_ADDRSTRLEN];
      hg__upstream_addr_name(sa, a, sizeof(a));
      if (strcmp(a, f->org.host) == 0)
        fetch_fail(f, HG_EDENIED, "address %s is %s, which is not allowed", a,
                   hg__upstream_class_name(cls & ~f->allow));
      else
        fetch_fail(f, HG_EDENIED, "host %s resolves to %s (%s), which is not allowed",
                   f->org.host, a, hg__upstream_class_name(cls & ~f->allow));
      return;
    }
  }
  f->addr_idx = 0;
  f->last_err = 0;
  hop_try_connect(f);
}

static void on_gai(uv_getaddrinfo_t *req, int status, struct addrinfo *res) {
  hg_fetch_t *f = req->data;
  f->gai_pending = 0;
  if (f->state != F_DNS) { /* aborted, finished or closed meanwhile */
    if (res) uv_freeaddrinfo(res);
    fetch_maybe_free(f);
    return;
  }
  if (status < 0) {
    if (res) uv_freeaddrinfo(res);
    fetch_fail(f, status, "DNS: %s", uv_strerror(status));
    return;
  }
  f->naddrs = 0;
  for (struct addrinfo *ai = res; ai && f->naddrs < MAX_ADDRS; ai = ai->ai_next) {
    if (ai->ai_family != AF_INET && ai->ai_family != AF_INET6) continue;
    if (ai->ai_addrlen > sizeof(f->addrs[0])) continue;
    int dup = 0;
    for (int i = 0; i < f->naddrs && !dup; i++)
      dup = memcmp(&f->addrs[i], ai->ai_addr, ai->ai_addrlen) == 0;
    if (dup) continue;
    memset(&f->addrs[f->naddrs], 0, sizeof(f->addrs[0]));
    memcpy(&f->addrs[f->naddrs], ai->ai_addr, ai->ai_addrlen);
    f->naddrs++;
  }
  uv_freeaddrinfo(res);
  hop_resolved(f);
}

/* Resolves the hop's host (IP literals without the thread pool). f holds a slot. */
static void hop_resolve(hg_fetch_t *f) {
  hg_upstream_t *u = f->u;
  f->state = F_DNS;
  f->naddrs = 0;
  struct sockaddr_in *s4 = (struct sockaddr_in *)&f->addrs[0];
  struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&f->addrs[0];
  memset(&f->addrs[0], 0, sizeof(f->addrs[0]));
  if (uv_inet_pton(AF_INET, f->org.host, &s4->sin_addr) == 0) {
    s4->sin_family = AF_INET;
    s4->sin_port = htons((uint16_t)f->org.port);
    f->naddrs = 1;
  } else if (uv_inet_pton(AF_INET6, f->org.host, &s6->sin6_addr) == 0) {
    s6->sin6_family = AF_INET6;
    s6->sin6_port = htons((uint16_t)f->org.port);
    f->naddrs = 1;
  }
  if (f->naddrs) {
    hop_resolved(f);
    return;
  }
  char port[8];
  snprintf(port, sizeof(port), "%u", f->org.port);
  struct addrinfo hints;
  memset(&hints, 0, sizeof(hints));
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_protocol = IPPROTO_TCP;
  f->gai.data = f;
  int rc = uv_getaddrinfo(u->loop, &f->gai, on_gai, f->org.host, port, &hints);
  if (rc < 0) {
    fetch_fail(f, rc, "DNS: %s", uv_strerror(rc));
    return;
  }
  f->gai_pending = 1;
}

/* Gets the hop a connection: a pooled one, else a new one within the origin's limit,
 * else a place in its wait queue. */
static void hop_connect(hg_fetch_t *f, origin_t *o) {
  hg_upstream_t *u = f->u;
  conn_t *c = pool_take(o, f);
  if (c) {
    attach(f, c);
    f->reused = 1;
    send_request(f);
    return;
  }
  size_t limit = u->cfg.max_conns_per_origin;
  if (limit && o->nslots >= limit && o->idle) {
    /* At the limit, and the idle conns are ones this fetch may not reuse (another
     * address class): close the least recently used to make room. Its slot goes to an
     * earlier waiter if there is one; this fetch then queues behind it. */
    conn_t *old = o->idle;
    while (old->inext) old = old->inext;
    o->refs++; /* keep the origin across the close */
    conn_close(old);
    o->refs--;
  }
  if (limit && o->nslots >= limit) {
    f->state = F_WAIT;
    f->origin = o;
    f->wnext = NULL;
    hg_fetch_t **pp = &o->waiters;
    while (*pp) pp = &(*pp)->wnext;
    *pp = f;
    return;
  }
  o->nslots++;
  f->origin = o;
  f->has_slot = 1;
  hop_resolve(f);
}

/* Starts the hop to f->url (already validated by hg_url_origin). */
static void hop_begin(hg_fetch_t *f) {
  hg_upstream_t *u = f->u;
  hg_url_t pu;
  if (hg_url_parse(f->url.data, f->url.len, &pu) != 0 || hg_url_origin(&pu, &f->org) != 0) {
    fetch_fail(f, HG_EUPSTREAM, "bad URL");
    return;
  }
  origin_key(&f->org, f->key, sizeof(f->key));
  f->state = F_START;
  f->conn = NULL;
  f->reused = f->retried = 0;
  response_reset(f);
  timer_arm(f, T_CONNECT);
  /* Security: the host allowlist is checked on every hop, before any lookup. */
  if (!hg__upstream_host_allowed((const char *const *)f->allow_hosts, f->nallow, f->org.host,
                                 f->org.host_len)) {
    fetch_fail(f, HG_EDENIED, "host %s is not in the allowed hosts", f->org.host);
    return;
  }
  origin_t *o = origin_get(u, f->key);
  if (o == NULL) {
    fetch_fail(f, HG_ENOMEM, "out of memory");
    return;
  }
  hop_connect(f, o);
}

/* ---- request ---- */

static void send_request(hg_fetch_t *f) {
  conn_t *c = f->conn;
  hg_upstream_t *u = f->u;
  hg_url_t pu;
  hg_buf_t req = HG_BUF_INIT;
  int bad = 0;
  hg_url_parse(f->url.data, f->url.len, &pu); /* validated in hop_begin */
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
    if (name_is(h->name, h->name_len, "user-agent")) have_ua = 1;
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
    fetch_fail(f, HG_ENOMEM, "out of memory");
    return;
  }
  llhttp_init(&c->parser, HTTP_RESPONSE, &u->settings);
  c->parser.data = c;
  c->rx.len = c->rx_off = 0;
  response_reset(f);
  f->state = F_RESPONSE;
  int rc;
  if (c->tls_on) {
    rc = hg__tls_write(&c->tls, req.data, req.len);
    hg_buf_free(&req);
    if (rc < 0) {
      char why[256];
      hg__tls_describe(&c->tls, rc, why, sizeof(why));
      fetch_fail(f, HG_EUPSTREAM, "TLS: %s", why);
      return;
    }
    rc = tls_flush(c);
  } else {
    rc = conn_write(c, &req);
    hg_buf_free(&req);
  }
  if (rc < 0) {
    conn_failed(f, rc, uv_strerror(rc));
    return;
  }
  timer_arm(f, T_READ);
  conn_update_reading(c);
}

/* The conn broke before the response completed. A pooled conn that dies before a single
 * response byte is the classic keep-alive race (the server closed it as we reused it):
 * GET and HEAD are idempotent, so retry once on a fresh connection. */
static void conn_failed(hg_fetch_t *f, int err, const char *what) {
  if (f->reused && f->resp_bytes == 0 && !f->retried && f->state == F_RESPONSE) {
    f->retried = 1;
    f->reused = 0;
    conn_close_keep_slot(f);
    if (!f->has_slot) { /* cannot happen (a live conn holds a slot), but stay safe */
      fetch_fail(f, err, "%s", what);
      return;
    }
    response_reset(f);
    timer_arm(f, T_CONNECT);
    hop_resolve(f);
    return;
  }
  fetch_fail(f, err, "%s", what);
}

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

/* Security: credentials the caller attached for one origin are not sent to another. */
static void strip_credentials(hg_fetch_t *f) {
  size_t w = 0;
  for (size_t i = 0; i < f->nhdrs; i++) {
    const hg_header_t *h = &f->hdrs[i];
    if (name_is(h->name, h->name_len, "authorization") ||
        name_is(h->name, h->name_len, "proxy-authorization") ||
        name_is(h->name, h->name_len, "cookie"))
      continue;
    f->hdrs[w++] = *h;
  }
  f->nhdrs = w;
}

/* Moves to the redirect target in f->next_url (validated by handle_head). */
static void follow_redirect(hg_fetch_t *f) {
  hg_url_t pu;
  hg_url_origin_t org;
  char key[sizeof(f->key)];
  if (hg_url_parse(f->next_url.data, f->next_url.len, &pu) == 0 && hg_url_origin(&pu, &org) == 0) {
    origin_key(&org, key, sizeof(key));
    if (strcmp(key, f->key) != 0) strip_credentials(f);
  }
  hg_buf_t tmp = f->url;
  f->url = f->next_url;
  f->next_url = tmp;
  hg_buf_clear(&f->next_url);
  hop_begin(f);
}

/* Hands the conn back after a complete response: pooled if the server allows and
 * nothing unread or unwritten is left on it, else closed. */
static void conn_release(hg_fetch_t *f) {
  conn_t *c = f->conn;
  if (c == NULL) return;
  hg_upstream_t *u = f->u;
  f->conn = NULL;
  c->fetch = NULL;
  int reusable = c->keepalive && c->rx_off == c->rx.len && !c->eof && !c->rerr &&
                 c->writes == 0 && c->origin && !u->closing &&
                 !(c->tls_on && hg__tls_has_pending(&c->tls));
  if (reusable) pool_put(c);
  else conn_close(c);
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
      fetch_fail(f, HG_ENOMEM, "out of memory");
      return;
    }
    f->gz_on = 1;
  }
  hg_header_t *hv = malloc((f->nh ? f->nh : 1) * sizeof(*hv));
  if (hv == NULL) {
    fetch_fail(f, HG_ENOMEM, "out of memory");
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
  if (rc != 0) fetch_fail(f, rc, "cancelled by the caller (%s)", hg_strerror(rc));
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
    fetch_fail(f, HG_EUPSTREAM, "too many redirects (more than %d)", f->max_redirects);
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
    fetch_fail(f, HG_ENOMEM, "out of memory");
    return;
  }
  if (rc != 0) {
    fetch_fail(f, HG_EUPSTREAM, "bad response: unusable redirect location");
    return;
  }
  f->nredirects++;
  f->discard = 1;
  hg_buf_clear(&f->body);
  f->body_off = 0;
  /* A short redirect body is read so the conn can be pooled; anything else closes it. */
  if (!f->ev_done && !(f->clen >= 0 && f->clen <= REDIRECT_DRAIN_MAX)) {
    fetch_drop_conn(f);
    follow_redirect(f);
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
    fetch_fail(f, HG_ENOMEM, "out of memory");
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
    fetch_fail(f, HG_EUPSTREAM, "bad response: invalid gzip body (%s)",
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
    conn_release(f);
    follow_redirect(f);
    return;
  }
  if (f->gz_on && f->gz_in > 0 && !f->gz_end) {
    fetch_fail(f, HG_EUPSTREAM, "bad response: truncated gzip body");
    return;
  }
  conn_release(f);
  snprintf(f->msg, sizeof(f->msg), "%s: ok", f->key);
  fetch_finish(f, 0);
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
      fetch_fail(f, HG_EUPSTREAM, "bad response: %s",
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
      fetch_fail(f, HG_ENOMEM, "out of memory");
      return 0;
    }
    int n = hg__tls_read(&c->tls, c->rx.data, PLAIN_CHUNK, &eof);
    int wrc = tls_flush(c);
    if (n > 0) {
      c->rx.len = (size_t)n;
      return 1;
    }
    if (n < 0) {
      char why[256];
      hg__tls_describe(&c->tls, n, why, sizeof(why));
      fetch_fail(f, HG_EUPSTREAM, "TLS: %s", why);
      return 0;
    }
    if (wrc < 0) {
      conn_failed(f, wrc, uv_strerror(wrc));
      return 0;
    }
    if (!eof) return 0;
    c->eof = 1;
  }
  if (c->rerr) {
    conn_failed(f, c->rerr, uv_strerror(c->rerr));
    return 0;
  }
  if (!c->eof) return 0;
  if (f->resp_bytes == 0) {
    conn_failed(f, UV_ECONNRESET, "connection closed without a response");
    return 0;
  }
  llhttp_errno_t e = llhttp_finish(&c->parser); /* ends a close-delimited body */
  if (f->ev_done && (e == HPE_OK || e == HPE_PAUSED)) {
    c->keepalive = 0;
    return 1;
  }
  fetch_fail(f, HG_EUPSTREAM, "bad response: connection closed before the end of the response");
  return 0;
}

static int body_pending(const hg_fetch_t *f) {
  return f->body.len > f->body_off || (f->gz_on && f->gz_more);
}

static void pump(hg_fetch_t *f) {
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
  if (f->state == F_RESPONSE && f->conn) conn_update_reading(f->conn);
}

/* ---- public API ---- */

static void on_kick_close(uv_handle_t *h) {
  hg_upstream_t *u = h->data;
  u->kick_closed = 2;
  upstream_maybe_free(u);
}

static void upstream_maybe_free(hg_upstream_t *u) {
  if (!u->closing || u->kick_closed != 2 || u->nconns > 0 || u->nfetches > 0) return;
  while (u->origins) { /* none should be left; stay leak-free regardless */
    origin_t *o = u->origins;
    u->origins = o->next;
    free(o);
  }
  hg__tls_ctx_free(u->tls);
  free(u->ca_file);
  free(u);
}

static void settings_init(llhttp_settings_t *s) {
  llhttp_settings_init(s);
  s->on_header_field = on_header_field;
  s->on_header_value = on_header_value;
  s->on_header_value_complete = on_header_value_complete;
  s->on_headers_complete = on_headers_complete;
  s->on_body = on_body;
  s->on_message_complete = on_message_complete;
}

hg_upstream_t *hg_upstream_new(uv_loop_t *loop, const hg_upstream_config_t *cfg, char *err,
                               size_t errlen) {
  char dummy[8];
  if (err == NULL || errlen == 0) {
    err = dummy;
    errlen = sizeof(dummy);
  }
  err[0] = '\0';
  hg_upstream_t *u = calloc(1, sizeof(*u));
  if (u == NULL) {
    snprintf(err, errlen, "out of memory");
    return NULL;
  }
  u->loop = loop;
  if (cfg) u->cfg = *cfg;
  if (u->cfg.max_idle_per_origin == 0) u->cfg.max_idle_per_origin = DEFAULT_MAX_IDLE;
  if (u->cfg.idle_timeout_ms == 0) u->cfg.idle_timeout_ms = DEFAULT_IDLE_MS;
  if (u->cfg.ca_file) {
    u->ca_file = strdup(u->cfg.ca_file);
    if (u->ca_file == NULL) {
      free(u);
      snprintf(err, errlen, "out of memory");
      return NULL;
    }
  }
  u->cfg.ca_file = u->ca_file;
  u->tls = hg__tls_ctx_new(u->ca_file, err, errlen);
  if (u->tls == NULL) {
    free(u->ca_file);
    free(u);
    return NULL;
  }
  settings_init(&u->settings);
  uv_idle_init(loop, &u->kick);
  u->kick.data = u;
  return u;
}

void hg_upstream_close(hg_upstream_t *u) {
  if (u == NULL || u->closing) return;
  u->closing = 1;
  /* Running fetches end with UV_ECANCELED (on_done runs now); finished ones get their
   * pending on_done. Callbacks may start fetches (refused) or abort others. */
  while (u->fetches) {
    hg_fetch_t *f = u->fetches;
    if (f->state < F_FINISHED) {
      fetch_fail(f, UV_ECANCELED, "upstream client closed");
    }
    fetch_complete(f);
  }
  for (origin_t *o = u->origins, *next; o; o = next) {
    o->refs++; /* closing its last conn would free it under our feet */
    while (o->idle) conn_close(o->idle);
    next = o->next;
    o->refs--;
    origin_maybe_free(u, o);
  }
  u->kick_closed = 1;
  uv_close((uv_handle_t *)&u->kick, on_kick_close);
}

/* Request header names must be tokens and values must not break the framing. */
static int header_ok(const hg_header_t *h) {
  if (h->name == NULL || h->name_len == 0 || (h->value == NULL && h->value_len)) return 0;
  for (size_t i = 0; i < h->name_len; i++) {
    unsigned char ch = (unsigned char)h->name[i];
    if (ch <= 32 || ch >= 127 || strchr("\"(),/:;<=>?@[\\]{}", ch)) return 0;
  }
  for (size_t i = 0; i < h->value_len; i++) {
    unsigned char ch = (unsigned char)h->value[i];
    /* Security: CR/LF/NUL would let a value inject headers or a second request. */
    if (ch == '\r' || ch == '\n' || ch == '\0') return 0;
  }
  return 1;
}

/* Headers the client writes itself (framing, connection management). */
static int header_reserved(const hg_header_t *h) {
  static const char *names[] = {"host", "connection", "accept-encoding", "content-length",
                                "transfer-encoding", "keep-alive", "upgrade", "te",
                                "proxy-connection"};
  for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
    if (name_is(h->name, h->name_len, names[i])) return 1;
  return 0;
}

/* Copies the options into f. Returns 0, HG_EINVAL or HG_ENOMEM. */
static int copy_opts(hg_fetch_t *f, const hg_fetch_opts_t *o) {
  if (o->method == NULL || strcmp(o->method, "GET") == 0) f->head_method = 0;
  else if (strcmp(o->method, "HEAD") == 0) f->head_method = 1;
  else return HG_EINVAL;
  size_t total = 0;
  for (size_t i = 0; i < o->nheaders; i++) {
    if (!header_ok(&o->headers[i])) return HG_EINVAL;
    total += o->headers[i].name_len + o->headers[i].value_len + 2;
  }
  if (o->nheaders) {
    f->hdrs = calloc(o->nheaders, sizeof(*f->hdrs));
    f->hdr_mem = malloc(total ? total : 1);
    if (f->hdrs == NULL || f->hdr_mem == NULL) return HG_ENOMEM;
    char *p = f->hdr_mem;
    for (size_t i = 0; i < o->nheaders; i++) {
      const hg_header_t *h = &o->headers[i];
      if (header_reserved(h)) continue;
      hg_header_t *d = &f->hdrs[f->nhdrs++];
      memcpy(p, h->name, h->name_len);
      p[h->name_len] = '\0';
      d->name = p;
      d->name_len = h->name_len;
      p += h->name_len + 1;
      if (h->value_len) memcpy(p, h->value, h->value_len);
      p[h->value_len] = '\0';
      d->value = p;
      d->value_len = h->value_len;
      p += h->value_len + 1;
    }
  }
  if (o->allow_hosts) {
    f->allow_hosts = calloc(o->nallow_hosts ? o->nallow_hosts : 1, sizeof(char *));
    if (f->allow_hosts == NULL) return HG_ENOMEM;
    for (size_t i = 0; i < o->nallow_hosts; i++) {
      f->allow_hosts[i] = strdup(o->allow_hosts[i] ? o->allow_hosts[i] : "");
      if (f->allow_hosts[i] == NULL) return HG_ENOMEM;
      f->nallow = i + 1;
    }
  }
  f->allow = o->allow & HG_ADDR_ALL;
  f->max_redirects = o->max_redirects > 0 ? o->max_redirects : 0;
  f->accept_gzip = o->accept_gzip;
  f->connect_ms = o->connect_timeout_ms ? o->connect_timeout_ms : DEFAULT_CONNECT_MS;
  f->read_ms = o->read_timeout_ms ? o->read_timeout_ms : DEFAULT_READ_MS;
  f->total_ms = o->total_timeout_ms;
  if (hg_buf_puts(&f->url, o->url) != 0) return HG_ENOMEM;
  hg_url_t pu;
  hg_url_origin_t org;
  if (hg_url_parse(f->url.data, f->url.len, &pu) != 0 || hg_url_origin(&pu, &org) != 0)
    return HG_EINVAL;
  return 0;
}

hg_fetch_t *hg_fetch_start(hg_upstream_t *u, const hg_fetch_opts_t *opts,
                           const hg_fetch_cbs_t *cbs, void *ud) {
  if (u == NULL || u->closing || opts == NULL || opts->url == NULL || cbs == NULL ||
      cbs->on_done == NULL)
    return NULL;
  hg_fetch_t *f = calloc(1, sizeof(*f));
  if (f == NULL) return NULL;
  f->u = u;
  f->cbs = *cbs;
  f->ud = ud;
  f->clen = -1;
  u->nfetches++;
  if (copy_opts(f, opts) != 0) {
    f->state = F_DEAD;
    f->timer_closed = 1;
    fetch_maybe_free(f); /* nothing was started */
    return NULL;
  }
  uv_timer_init(u->loop, &f->timer);
  f->timer.data = f;
  f->next = u->fetches;
  if (u->fetches) u->fetches->prev = f;
  u->fetches = f;
  f->listed = 1;
  /* The loop's clock is from the start of this iteration; whatever ran since (a policy,
   * loading CAs) would otherwise be taken off this fetch's timeouts. */
  uv_update_time(u->loop);
  if (f->total_ms) f->total_due = add_sat(uv_now(u->loop), f->total_ms);
  hop_begin(f); /* errors from here on arrive through on_done, never synchronously */
  return f;
}

void hg_fetch_pause(hg_fetch_t *f) {
  if (f == NULL || f->paused || f->state >= F_FINISHED) return;
  f->paused = 1;
  if (f->state == F_RESPONSE) {
    timer_arm(f, T_READ); /* total deadline only */
    if (f->conn) conn_update_reading(f->conn);
    /* Memory: a paused fetch (a viewer that stopped reading) keeps no read buffer; the
     * origin's bytes wait in the kernel. It is allocated again on resume. */
    if (f->conn && f->conn->rx_off == f->conn->rx.len) {
      hg_buf_free(&f->conn->rx);
      f->conn->rx_off = 0;
    }
  }
}

void hg_fetch_resume(hg_fetch_t *f) {
  if (f == NULL || !f->paused || f->state >= F_FINISHED) return;
  f->paused = 0;
  if (f->state == F_RESPONSE) {
    timer_arm(f, T_READ);
    if (f->conn) conn_update_reading(f->conn);
    kick(f); /* buffered body and events are delivered from the loop, not from here */
  }
}

void hg_fetch_abort(hg_fetch_t *f) {
  if (f == NULL || f->state == F_DEAD || f->in_done) return;
  fetch_release(f);
}

/* ---- test seam (client.h): the parser as feed() drives it, without a socket ---- */

void hg__upstream_parse(const char *data, size_t len, const size_t *cuts, size_t ncuts, int head,
                        hg__parsed_t *out) {
  memset(out, 0, sizeof(*out));
  out->rc = HG_ENOMEM;
  llhttp_settings_t s;
  settings_init(&s);
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
