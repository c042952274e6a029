/* pool.c — origins ("scheme://host:port"): their connection slots (max_conns_per_origin),
 * the fetches waiting for one, and the idle connections kept for reuse (taken, put back
 * after a complete response, or closed when idle too long or too many).
 */
#include "upstream/client_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- origins and slots ---- */

static origin_t *origin_find(hg_upstream_t *u, const char *key) {
  for (origin_t *o = u->origins; o; o = o->next)
    if (strcmp(o->key, key) == 0) return o;
  return NULL;
}

origin_t *hg__upstream_origin_get(hg_upstream_t *u, const char *key) {
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

void hg__upstream_origin_maybe_free(hg_upstream_t *u, origin_t *o) {
  if (o->nslots > 0 || o->waiters != NULL || o->refs > 0) return;
  if (o->prev) o->prev->next = o->next;
  else u->origins = o->next;
  if (o->next) o->next->prev = o->prev;
  free(o);
}

/* A slot of `o` became free: hand it to the first waiter, or free an unused origin.
 * The origin is pinned meanwhile: a woken waiter may fail and release again. */
void hg__upstream_slot_release(hg_upstream_t *u, origin_t *o) {
  o->nslots--;
  o->refs++;
  size_t limit = u->cfg.max_conns_per_origin;
  while (o->waiters && (limit == 0 || o->nslots < limit) && !u->closing) {
    hg_fetch_t *w = o->waiters;
    o->waiters = w->wnext;
    w->wnext = NULL;
    w->origin = NULL;
    hg__upstream_hop_connect(w, o);
  }
  o->refs--;
  hg__upstream_origin_maybe_free(u, o);
}

/* Security: a pooled conn was checked against the `allow` mask of the fetch that opened
 * it; another fetch may only reuse it if its own mask allows the peer's class. */
conn_t *hg__upstream_pool_take(origin_t *o, hg_fetch_t *f) {
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

void hg__upstream_attach(hg_fetch_t *f, conn_t *c) {
  c->fetch = f;
  c->state = C_ACTIVE;
  f->conn = c;
}

static void on_idle_timer(uv_timer_t *t) {
  conn_t *c = t->data;
  if (c->state == C_IDLE) hg__upstream_conn_close(c);
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
    hg_buf_free(&c->tls.in); /* empty: hg__upstream_conn_release checked that nothing is pending */
    c->tls.in_off = 0;
  }
  for (hg_fetch_t **pp = &o->waiters; *pp; pp = &(*pp)->wnext) {
    hg_fetch_t *w = *pp;
    if (c->addr_class & ~w->allow) continue;
    *pp = w->wnext;
    w->wnext = NULL;
    w->origin = NULL;
    hg__upstream_attach(w, c);
    w->reused = 1;
    hg__upstream_send_request(w);
    return;
  }
  c->iprev = NULL;
  c->inext = o->idle;
  if (o->idle) o->idle->iprev = c;
  o->idle = c;
  o->nidle++;
  uv_timer_start(&c->idle_timer, on_idle_timer, u->cfg.idle_timeout_ms, 0);
  hg__upstream_conn_update_reading(c); /* an idle conn that gets EOF or bytes is closed */
  if (o->nidle > u->cfg.max_idle_per_origin) {
    conn_t *old = o->idle;
    while (old->inext) old = old->inext;
    hg__upstream_conn_close(old); /* the least recently used one */
  }
}

/* Hands the conn back after a complete response: pooled if the server allows and
 * nothing unread or unwritten is left on it, else closed. */
void hg__upstream_conn_release(hg_fetch_t *f) {
  conn_t *c = f->conn;
  if (c == NULL) return;
  hg_upstream_t *u = f->u;
  f->conn = NULL;
  c->fetch = NULL;
  int reusable = c->keepalive && c->rx_off == c->rx.len && !c->eof && !c->rerr &&
                 c->writes == 0 && c->origin && !u->closing &&
                 !(c->tls_on && hg__tls_has_pending(&c->tls));
  if (reusable) pool_put(c);
  else hg__upstream_conn_close(c);
}
