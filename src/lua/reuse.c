/* reuse.c — answering a request with a plan on_request already gave for the same request
 * (docs/policy-api.md, "Reusing plans").
 *
 * A policy that returns `reuse = true` in its table lets its frozen plans be reused: when
 * on_request answers with hg.plan(t, { vary = …, ttl = …, expires = … }), later requests
 * with the same method, target and scheme, and the same values of the headers in `vary`
 * (and no body), get that plan without on_request running — for ttl seconds at most,
 * never after `expires`. The hot request of a live stream (every viewer reloading one playlist URL
 * every few seconds) then costs a table lookup instead of a Lua call.
 *
 * Security: the policy as a whole opts in, not a recipe: a recipe knows what its own
 * answer depends on, not what a wrapper around it checks (a client address allowlist,
 * say), and a reused answer skips the wrapper too. One entry per (method, target,
 * scheme), at most HG_REUSE_MAX per policy, least recently used first out; a reload
 * starts with none. A plan is kept the second time its request is seen (admission, below).
 * Owner thread of the policy only.
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <uv.h>

#include "base/log.h"
#include "lua/policy_internal.h"

#define HG_REUSE_MAX 1024

typedef struct reuse_s {
  hg_lru_node_t node;
  hg_plan_frozen_t *fz;   /* retained */
  uint64_t deadline_ms;   /* monotonic (uv_hrtime) */
  int64_t until;          /* unix seconds, 0: none */
  char *vals;             /* the vary headers' values as the request had them (put_value),
                             after the key */
  char key[];
} reuse_t;

static uint64_t now_ms(void) { return uv_hrtime() / 1000000u; }

/* "METHOD scheme target", into buf (cap bytes). Returns its length, or 0 when too long. */
static size_t make_key(const hg_request_t *req, char *buf, size_t cap) {
  size_t ml = strlen(req->method), n = ml + 1 + 5 + 1 + req->target_len;
  if (n > cap) return 0;
  memcpy(buf, req->method, ml);
  buf[ml] = ' ';
  memcpy(buf + ml + 1, req->tls ? "https" : "http ", 5);
  buf[ml + 6] = ' ';
  memcpy(buf + ml + 7, req->target, req->target_len);
  return n;
}

/* Writes header `name`'s value in req as req.headers has it (repeated ones joined by
 * ", ") at w, after a flag ('+' present, '-' absent), then a NUL. Returns the bytes that
 * takes; with w NULL, only counts them. */
static size_t put_value(const hg_request_t *req, const char *name, char *w) {
  size_t nl = strlen(name), n = 1;
  int found = 0;
  for (size_t i = 0; i < req->nheaders; i++) {
    const hg_header_t *h = &req->headers[i];
    if (h->name_len != nl || strncasecmp(h->name, name, nl) != 0) continue;
    if (found) {
      if (w) memcpy(w + n, ", ", 2);
      n += 2;
    }
    if (w) memcpy(w + n, h->value, h->value_len);
    n += h->value_len;
    found = 1;
  }
  if (w) {
    w[0] = found ? '+' : '-';
    w[n] = '\0';
  }
  return n + 1;
}

/* Whether header `name` in req has the value kept at *v (as put_value wrote it).
 * Advances *v past it. */
static int same_value(const hg_request_t *req, const char *name, const char **v) {
  const char *want = *v;
  size_t wl = strlen(want);
  *v += wl + 1;
  size_t nl = strlen(name), pos = 1;
  int found = 0;
  for (size_t i = 0; i < req->nheaders; i++) {
    const hg_header_t *h = &req->headers[i];
    if (h->name_len != nl || strncasecmp(h->name, name, nl) != 0) continue;
    if (found) {
      if (pos + 2 > wl || memcmp(want + pos, ", ", 2) != 0) return 0;
      pos += 2;
    }
    if (pos + h->value_len > wl || memcmp(want + pos, h->value, h->value_len) != 0) return 0;
    pos += h->value_len;
    found = 1;
  }
  return want[0] == (found ? '+' : '-') && pos == wl;
}

static void drop(hg_policy_t *p, reuse_t *e) {
  hg_lru_remove(&p->reuse, &e->node);
  hg__lua_frozen_release(e->fz);
  free(e);
}

int hg__reuse_get(hg_policy_t *p, hg_request_t *req, hg_plan_t *plan) {
  if (p->reuse.n == 0 || req->body) return 0; /* a body is not part of the key: asked */
  char key[4096];
  size_t kl = make_key(req, key, sizeof(key));
  if (kl == 0) return 0;
  hg_lru_node_t *node = hg_lru_find(&p->reuse, key, kl, hg_lru_hash(key, kl));
  if (node == NULL) return 0;
  reuse_t *e = hg_lru_entry(node, reuse_t, node);
  if (now_ms() >= e->deadline_ms || (e->until && time(NULL) > e->until)) {
    drop(p, e);
    return 0;
  }
  const hg_plan_frozen_t *fz = e->fz;
  const char *v = e->vals;
  for (size_t i = 0; i < fz->nvary; i++)
    if (!same_value(req, fz->vary[i], &v)) return 0; /* another variant: on_request decides */
  hg_lru_touch(&p->reuse, node);
  *plan = fz->plan;
  hg__lua_frozen_retain(e->fz);
  if (fz->route) req->route = hg_arena_strndup(req->arena, fz->route, strlen(fz->route));
  return 1;
}

/* Admission: a plan is kept for a request seen before (its key's hash in a small table
 * of recent ones), so a target asked once — a new viewer's token, a scan of random URLs —
 * costs a hash, not a frozen plan and an entry, and evicts nothing. */
#define SEEN 4096 /* hashes (a power of two) */

int hg__reuse_admit(hg_policy_t *p, const hg_request_t *req) {
  char key[4096];
  size_t kl = req->body ? 0 : make_key(req, key, sizeof(key));
  if (kl == 0) return 0;
  if (p->reuse_seen == NULL && (p->reuse_seen = calloc(SEEN, sizeof(uint64_t))) == NULL) return 0;
  uint64_t h = hg_lru_hash(key, kl) | 1; /* never 0: an empty slot */
  uint64_t *slot = &p->reuse_seen[h & (SEEN - 1)];
  if (*slot == h) return 1;
  *slot = h;
  return 0;
}

void hg__reuse_put(hg_policy_t *p, const hg_request_t *req, hg_plan_frozen_t *fz) {
  char key[4096];
  size_t kl = req->body ? 0 : make_key(req, key, sizeof(key));
  if (kl == 0 || fz->reuse_ttl_ms == 0) return;
  if (fz->reuse_until && time(NULL) > fz->reuse_until) return;
  size_t vbytes = 0;
  for (size_t i = 0; i < fz->nvary; i++) vbytes += put_value(req, fz->vary[i], NULL);
  if (p->reuse.nbuckets == 0 && hg_lru_init(&p->reuse, 256) != 0) return;
  uint64_t hash = hg_lru_hash(key, kl);
  hg_lru_node_t *old = hg_lru_find(&p->reuse, key, kl, hash);
  if (old) drop(p, hg_lru_entry(old, reuse_t, node));
  if (p->reuse.n >= HG_REUSE_MAX) drop(p, hg_lru_entry(p->reuse.tail, reuse_t, node));
  reuse_t *e = malloc(sizeof(*e) + kl + vbytes);
  if (e == NULL) return; /* not kept: the next request asks on_request again */
  memcpy(e->key, key, kl);
  e->vals = e->key + kl;
  char *w = e->vals;
  for (size_t i = 0; i < fz->nvary; i++) w += put_value(req, fz->vary[i], w);
  e->fz = fz;
  hg__lua_frozen_retain(fz);
  e->deadline_ms = now_ms() + fz->reuse_ttl_ms;
  e->until = fz->reuse_until;
  e->node.key = e->key;
  e->node.klen = kl;
  e->node.hash = hash;
  hg_lru_insert(&p->reuse, &e->node);
}

void hg__reuse_clear(hg_policy_t *p) {
  while (p->reuse.tail) drop(p, hg_lru_entry(p->reuse.tail, reuse_t, node));
  hg_lru_free(&p->reuse);
  free(p->reuse_seen);
  p->reuse_seen = NULL;
}
