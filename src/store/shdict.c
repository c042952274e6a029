/* shdict.c — shared dictionary with TTLs and LRU eviction (see shdict.h). */
#include "store/shdict.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/error.h"

typedef struct ent_s {
  struct ent_s *hnext, *prev, *next;
  uint64_t hash, expires; /* expires: monotonic ms, 0 = never */
  hg_shd_type_t type;
  double num;
  size_t klen, slen;
  char data[]; /* key bytes, then string value bytes */
} ent_t;

struct hg_shdict_s {
  pthread_mutex_t lock;
  ent_t **buckets;
  size_t nbuckets, n, bytes, max_entries, max_bytes;
  ent_t *head, *tail; /* LRU: head = most recent */
};

static uint64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static uint64_t hash(const char *s, size_t n) {
  uint64_t h = 1469598103934665603ull;
  for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
  return h;
}

hg_shdict_t *hg_shdict_new(size_t max_entries, size_t max_bytes) {
  hg_shdict_t *d = calloc(1, sizeof(*d));
  if (d == NULL) return NULL;
  d->nbuckets = 4096;
  while (d->nbuckets < max_entries && d->nbuckets < ((size_t)1 << 20)) d->nbuckets *= 2;
  d->buckets = calloc(d->nbuckets, sizeof(ent_t *));
  if (d->buckets == NULL) {
    free(d);
    return NULL;
  }
  pthread_mutex_init(&d->lock, NULL);
  d->max_entries = max_entries;
  d->max_bytes = max_bytes;
  return d;
}

static hg_shdict_t *global;
static pthread_once_t global_once = PTHREAD_ONCE_INIT;
static void make_global(void) { global = hg_shdict_new(100000, (size_t)16 << 20); }

hg_shdict_t *hg_shdict_default(void) {
  pthread_once(&global_once, make_global);
  return global;
}

void hg_shdict_free(hg_shdict_t *d) {
  if (d == NULL) return;
  for (ent_t *e = d->head, *next; e; e = next) {
    next = e->next;
    free(e);
  }
  free(d->buckets);
  pthread_mutex_destroy(&d->lock);
  free(d);
}

/* ---- lock held below ---- */

static void unlink_lru(hg_shdict_t *d, ent_t *e) {
  if (e->prev) e->prev->next = e->next;
  else d->head = e->next;
  if (e->next) e->next->prev = e->prev;
  else d->tail = e->prev;
}

static void push_lru(hg_shdict_t *d, ent_t *e) {
  e->prev = NULL;
  e->next = d->head;
  if (d->head) d->head->prev = e;
  d->head = e;
  if (d->tail == NULL) d->tail = e;
}

static void remove_ent(hg_shdict_t *d, ent_t *e) {
  ent_t **pp = &d->buckets[e->hash & (d->nbuckets - 1)];
  while (*pp != e) pp = &(*pp)->hnext;
  *pp = e->hnext;
  unlink_lru(d, e);
  d->n--;
  d->bytes -= e->klen + e->slen;
  free(e);
}

/* Finds a live entry (an expired one is removed on the way). */
static ent_t *find(hg_shdict_t *d, const char *key, size_t klen, uint64_t h, uint64_t now) {
  for (ent_t *e = d->buckets[h & (d->nbuckets - 1)]; e; e = e->hnext) {
    if (e->hash != h || e->klen != klen || memcmp(e->data, key, klen) != 0) continue;
    if (e->expires && e->expires <= now) {
      remove_ent(d, e);
      return NULL;
    }
    return e;
  }
  return NULL;
}

/* Inserts a new entry, evicting least recently used ones to make room. */
static int insert(hg_shdict_t *d, const char *key, size_t klen, uint64_t h, hg_shd_type_t type,
                  const char *str, size_t slen, double num, uint64_t expires) {
  size_t size = klen + slen;
  if (size > d->max_bytes) return HG_ETOOBIG;
  while (d->tail && (d->n + 1 > d->max_entries || d->bytes + size > d->max_bytes)) remove_ent(d, d->tail);
  ent_t *e = malloc(sizeof(*e) + size);
  if (e == NULL) return HG_ENOMEM;
  e->hash = h;
  e->expires = expires;
  e->type = type;
  e->num = num;
  e->klen = klen;
  e->slen = slen;
  memcpy(e->data, key, klen);
  if (slen) memcpy(e->data + klen, str, slen);
  ent_t **b = &d->buckets[h & (d->nbuckets - 1)];
  e->hnext = *b;
  *b = e;
  push_lru(d, e);
  d->n++;
  d->bytes += size;
  return 0;
}

/* ---- API ---- */

hg_shd_type_t hg_shdict_get(hg_shdict_t *d, const char *key, size_t klen, hg_buf_t *str, double *num) {
  uint64_t h = hash(key, klen);
  pthread_mutex_lock(&d->lock);
  ent_t *e = find(d, key, klen, h, now_ms());
  hg_shd_type_t t = HG_SHD_NONE;
  if (e) {
    unlink_lru(d, e);
    push_lru(d, e);
    t = e->type;
    if (t == HG_SHD_STRING) {
      if (hg_buf_append(str, e->data + e->klen, e->slen) != 0) t = HG_SHD_NONE;
    } else {
      *num = e->num;
    }
  }
  pthread_mutex_unlock(&d->lock);
  return t;
}

int hg_shdict_set(hg_shdict_t *d, const char *key, size_t klen, hg_shd_type_t type,
                  const char *str, size_t slen, double num, uint64_t ttl_ms, int only_if_absent) {
  uint64_t h = hash(key, klen), now = now_ms();
  pthread_mutex_lock(&d->lock);
  ent_t *e = find(d, key, klen, h, now);
  int rc = 0;
  if (e && only_if_absent) rc = HG_EINVAL;
  else {
    if (e) remove_ent(d, e);
    rc = insert(d, key, klen, h, type, type == HG_SHD_STRING ? str : NULL,
                type == HG_SHD_STRING ? slen : 0, num, ttl_ms ? now + ttl_ms : 0);
  }
  pthread_mutex_unlock(&d->lock);
  return rc;
}

int hg_shdict_incr(hg_shdict_t *d, const char *key, size_t klen, double delta, double init,
                   uint64_t ttl_ms, double *out) {
  uint64_t h = hash(key, klen), now = now_ms();
  pthread_mutex_lock(&d->lock);
  ent_t *e = find(d, key, klen, h, now);
  int rc = 0;
  if (e && e->type != HG_SHD_NUMBER) {
    rc = HG_EINVAL;
  } else if (e) {
    e->num += delta;
    *out = e->num;
  } else {
    *out = init + delta;
    rc = insert(d, key, klen, h, HG_SHD_NUMBER, NULL, 0, *out, ttl_ms ? now + ttl_ms : 0);
  }
  pthread_mutex_unlock(&d->lock);
  return rc;
}

int hg_shdict_delete(hg_shdict_t *d, const char *key, size_t klen) {
  uint64_t h = hash(key, klen);
  pthread_mutex_lock(&d->lock);
  ent_t *e = find(d, key, klen, h, now_ms());
  if (e) remove_ent(d, e);
  pthread_mutex_unlock(&d->lock);
  return e != NULL;
}
