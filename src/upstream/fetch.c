/* fetch.c — the public API of the upstream client (client.h) and a fetch's life: the
 * upstream's creation and closing, a fetch's options, its start, pause, resume and abort,
 * the kick queue that defers on_done and resumed pumps to the loop, completion, release
 * and the timeouts. The walk itself is in hop.c, the response in response.c; see
 * client_internal.h for the objects.
 */
#include "upstream/client_internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base/error.h"

#define DEFAULT_CONNECT_MS 5000
#define DEFAULT_READ_MS 10000
#define DEFAULT_IDLE_MS 30000
#define DEFAULT_MAX_IDLE 8


/* Case-insensitive comparison of a (name, len) span with a C string. */
int hg__upstream_name_is(const char *name, size_t len, const char *want) {
  return strlen(want) == len && strncasecmp(name, want, len) == 0;
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
  hg__upstream_fetch_maybe_free(f);
}

void hg__upstream_response_reset(hg_fetch_t *f) {
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

/* Gives up the fetch's slot or its place in the origin's wait queue. */
static void fetch_leave_origin(hg_fetch_t *f) {
  origin_t *o = f->origin;
  if (o == NULL) return;
  f->origin = NULL;
  if (f->has_slot) {
    f->has_slot = 0;
    hg__upstream_slot_release(f->u, o);
  } else { /* a waiter */
    for (hg_fetch_t **pp = &o->waiters; *pp; pp = &(*pp)->wnext) {
      if (*pp == f) {
        *pp = f->wnext;
        break;
      }
    }
    f->wnext = NULL;
    hg__upstream_origin_maybe_free(f->u, o);
  }
}

/* Detaches and closes the fetch's connection (it is never pooled from here). */
void hg__upstream_fetch_drop_conn(hg_fetch_t *f) {
  conn_t *c = f->conn;
  if (c == NULL) return;
  f->conn = NULL;
  c->fetch = NULL;
  hg__upstream_conn_close(c);
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
  hg__upstream_fetch_drop_conn(f);
  fetch_leave_origin(f);
  hg__upstream_response_reset(f);
  if (f->gai_pending) uv_cancel((uv_req_t *)&f->gai); /* its callback still runs */
  uv_close((uv_handle_t *)&f->timer, on_fetch_timer_close);
}

void hg__upstream_fetch_maybe_free(hg_fetch_t *f) {
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
  hg__upstream_maybe_free(u);
}

/* Records the result and schedules on_done. Everything the fetch holds is let go now
 * (a connection passed in here is closed, never pooled). */
void hg__upstream_fetch_finish(hg_fetch_t *f, int err) {
  if (f->state >= F_FINISHED) return;
  f->state = F_FINISHED;
  f->err = err;
  hg__upstream_fetch_drop_conn(f);
  fetch_leave_origin(f);
  if (f->gai_pending) uv_cancel((uv_req_t *)&f->gai);
  uv_timer_stop(&f->timer);
  kick(f);
}

/* Fails the fetch with `err` and a message "<origin>: <reason>". The origin is
 * scheme://host:port only: never a path, query or credentials. */
void hg__upstream_fetch_fail(hg_fetch_t *f, int err, const char *fmt, ...) {
  if (f->state >= F_FINISHED) return;
  int n = snprintf(f->msg, sizeof(f->msg), "%s: ", f->key);
  if (n < 0 || (size_t)n >= sizeof(f->msg)) n = 0;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(f->msg + n, sizeof(f->msg) - (size_t)n, fmt, ap);
  va_end(ap);
  hg__upstream_fetch_finish(f, err);
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
    else if (f->state == F_RESPONSE) hg__upstream_pump(f);
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
    hg__upstream_fetch_fail(f, HG_ETIMEOUT, "timed out after %llu ms (total)",
                            (unsigned long long)f->total_ms);
  else if (f->phase == T_CONNECT)
    hg__upstream_fetch_fail(f, HG_ETIMEOUT, "timed out after %llu ms connecting",
                            (unsigned long long)f->connect_ms);
  else
    hg__upstream_fetch_fail(f, HG_ETIMEOUT, "timed out after %llu ms reading",
                            (unsigned long long)f->read_ms);
}

/* Arms the fetch timer for `phase` (the read timeout is suspended while paused), capped
 * by the total deadline. Called again on every byte received. */
/* a + b, saturating below UINT64_MAX (which hg__upstream_timer_arm reads as "no deadline"). */
static uint64_t add_sat(uint64_t a, uint64_t b) {
  return b > UINT64_MAX - 1 - a ? UINT64_MAX - 1 : a + b;
}

void hg__upstream_timer_arm(hg_fetch_t *f, int phase) {
  uint64_t now = uv_now(f->u->loop), due = UINT64_MAX;
  f->phase = phase;
  if (phase == T_CONNECT) due = add_sat(now, f->connect_ms);
  else if (phase == T_READ && !f->paused) due = add_sat(now, f->read_ms);
  if (f->total_due && f->total_due < due) due = f->total_due;
  if (due == UINT64_MAX) uv_timer_stop(&f->timer);
  else uv_timer_start(&f->timer, on_fetch_timer, due > now ? due - now : 0, 0);
}

/* ---- public API ---- */

static void on_kick_close(uv_handle_t *h) {
  hg_upstream_t *u = h->data;
  u->kick_closed = 2;
  hg__upstream_maybe_free(u);
}

void hg__upstream_maybe_free(hg_upstream_t *u) {
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
  hg__upstream_settings_init(&u->settings);
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
      hg__upstream_fetch_fail(f, UV_ECANCELED, "upstream client closed");
    }
    fetch_complete(f);
  }
  for (origin_t *o = u->origins, *next; o; o = next) {
    o->refs++; /* closing its last conn would free it under our feet */
    while (o->idle) hg__upstream_conn_close(o->idle);
    next = o->next;
    o->refs--;
    hg__upstream_origin_maybe_free(u, o);
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
    if (hg__upstream_name_is(h->name, h->name_len, names[i])) return 1;
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
    hg__upstream_fetch_maybe_free(f); /* nothing was started */
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
  hg__upstream_hop_begin(f); /* errors from here on arrive through on_done, never synchronously */
  return f;
}

void hg_fetch_pause(hg_fetch_t *f) {
  if (f == NULL || f->paused || f->state >= F_FINISHED) return;
  f->paused = 1;
  if (f->state == F_RESPONSE) {
    hg__upstream_timer_arm(f, T_READ); /* total deadline only */
    if (f->conn) hg__upstream_conn_update_reading(f->conn);
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
    hg__upstream_timer_arm(f, T_READ);
    if (f->conn) hg__upstream_conn_update_reading(f->conn);
    kick(f); /* buffered body and events are delivered from the loop, not from here */
  }
}

void hg_fetch_abort(hg_fetch_t *f) {
  if (f == NULL || f->state == F_DEAD || f->in_done) return;
  fetch_release(f);
}
