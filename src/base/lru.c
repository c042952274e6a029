/* lru.c — the stores' hash table with an LRU list (see lru.h). */
#include "base/lru.h"

#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/types.h>

#include "base/error.h"

/* The keys are URLs and tokens of a few hundred bytes, often chosen by a client. A
 * byte-at-a-time hash (FNV) costs a multiply's latency per byte — five hashes of a
 * 300-byte target were ~2 µs of a new viewer's request — and can be flooded by anyone
 * who knows it. This one takes 16 bytes per 64x64->128-bit multiply (the construction
 * of wyhash) under a secret chosen per process at start. Security: chains stay short
 * whatever keys a client picks, since it cannot predict where they land. */
static uint64_t seed[3] = {0x243f6a8885a308d3ull, 0x13198a2e03707344ull, 0xa4093822299f31d0ull};

__attribute__((constructor)) static void seed_init(void) {
  uint64_t r[3];
  if (getrandom(r, sizeof(r), GRND_NONBLOCK) == (ssize_t)sizeof(r))
    for (int i = 0; i < 3; i++) seed[i] ^= r[i] | 1; /* odd: never a zero multiplier */
}

static inline uint64_t mix(uint64_t a, uint64_t b) {
  __uint128_t r = (__uint128_t)a * b;
  return (uint64_t)r ^ (uint64_t)(r >> 64);
}

static inline uint64_t rd64(const char *p) {
  uint64_t v;
  memcpy(&v, p, 8);
  return v;
}

uint64_t hg_lru_hash(const char *s, size_t n) {
  uint64_t h = seed[0] ^ mix(n ^ seed[1], seed[2]);
  size_t i = 0;
  for (; i + 16 <= n; i += 16) h = mix(rd64(s + i) ^ seed[1], rd64(s + i + 8) ^ h);
  char tail[16] = {0};
  memcpy(tail, s + i, n - i);
  return mix(mix(rd64(tail) ^ seed[1], rd64(tail + 8) ^ h) ^ n, seed[2]);
}

int hg_lru_init(hg_lru_t *t, size_t nbuckets) {
  size_t n = 16;
  while (n < nbuckets && n < ((size_t)1 << 24)) n *= 2;
  t->buckets = calloc(n, sizeof(hg_lru_node_t *));
  t->nbuckets = t->buckets ? n : 0;
  t->n = 0;
  t->head = t->tail = NULL;
  return t->buckets ? 0 : HG_ENOMEM;
}

void hg_lru_free(hg_lru_t *t) {
  free(t->buckets);
  t->buckets = NULL;
  t->nbuckets = t->n = 0;
  t->head = t->tail = NULL;
}

hg_lru_node_t *hg_lru_find(const hg_lru_t *t, const char *key, size_t klen, uint64_t hash) {
  for (hg_lru_node_t *e = t->buckets[hash & (t->nbuckets - 1)]; e; e = e->hnext)
    if (e->hash == hash && e->klen == klen && (klen == 0 || memcmp(e->key, key, klen) == 0)) return e;
  return NULL;
}

static void unlink_list(hg_lru_t *t, hg_lru_node_t *e) {
  if (e->prev) e->prev->next = e->next;
  else t->head = e->next;
  if (e->next) e->next->prev = e->prev;
  else t->tail = e->prev;
  e->prev = e->next = NULL;
}

static void push_list(hg_lru_t *t, hg_lru_node_t *e) {
  e->prev = NULL;
  e->next = t->head;
  if (t->head) t->head->prev = e;
  t->head = e;
  if (t->tail == NULL) t->tail = e;
}

static void grow(hg_lru_t *t) {
  size_t n = t->nbuckets * 2;
  hg_lru_node_t **b = calloc(n, sizeof(hg_lru_node_t *));
  if (b == NULL) return; /* keep the longer chains */
  for (size_t i = 0; i < t->nbuckets; i++) {
    for (hg_lru_node_t *e = t->buckets[i], *next; e; e = next) {
      next = e->hnext;
      e->hnext = b[e->hash & (n - 1)];
      b[e->hash & (n - 1)] = e;
    }
  }
  free(t->buckets);
  t->buckets = b;
  t->nbuckets = n;
}

void hg_lru_insert(hg_lru_t *t, hg_lru_node_t *e) {
  hg_lru_node_t **b = &t->buckets[e->hash & (t->nbuckets - 1)];
  e->hnext = *b;
  *b = e;
  push_list(t, e);
  if (++t->n > t->nbuckets) grow(t);
}

void hg_lru_remove(hg_lru_t *t, hg_lru_node_t *e) {
  hg_lru_node_t **pp = &t->buckets[e->hash & (t->nbuckets - 1)];
  while (*pp != e) pp = &(*pp)->hnext;
  *pp = e->hnext;
  unlink_list(t, e);
  t->n--;
}

void hg_lru_touch(hg_lru_t *t, hg_lru_node_t *e) {
  if (t->head == e) return;
  unlink_list(t, e);
  push_list(t, e);
}
