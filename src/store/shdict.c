/* shdict.c — shared dictionary with TTLs and LRU eviction (see shdict.h). */
#include "store/shdict.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/error.h"
#include "base/lru.h"

typedef struct ent_s {
  hg_lru_node_t node;     /* key (in data), hash, LRU position */
  uint64_t expires;       /* monotonic ms, 0 = never */
  hg_shd_type_t type;
  double num;
  size_t slen;
  char data[]; /* key bytes, then string value bytes */
} ent_t;

struct hg_shdict_s {
  pthread_mutex_t lock;
  hg_lru_t index;
  size_t bytes, max_entries, max_bytes;
};

#define ENT(n) hg_lru_entry((n), ent_t, node)

static uint64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

hg_shdict_t *hg_shdict_new(size_t max_entries, size_t max_bytes) {
  hg_shdict_t *d = calloc(1, sizeof(*d));
  if (d == NULL) return NULL;
  if (hg_lru_init(&d->index, max_entries < 4096 ? 4096 : max_entries) != 0) {
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
  for (hg_lru_node_t *n = d->index.head, *next; n; n = next) {
    next = n->next;
    free(ENT(n));
  }
  hg_lru_free(&d->index);
  pthread_mutex_destroy(&d->lock);
  free(d);
}

/* ---- lock held below ---- */

static void remove_ent(hg_shdict_t *d, ent_t *e) {
  hg_lru_remove(&d->index, &e->node);
  d->bytes -= e->node.klen + e->slen;
  free(e);
}

/* Finds a live entry (an expired one is removed on the way). */
static ent_t *find(hg_shdict_t *d, const char *key, size_t klen, uint64_t h, uint64_t now) {
  hg_lru_node_t *n = hg_lru_find(&d->index, key, klen, h);
  if (n == NULL) return NULL;
  ent_t *e = ENT(n);
  if (e->expires && e->expires <= now) {
    remove_ent(d, e);
    return NULL;
  }
  return e;
}

/* Inserts a new entry, evicting least recently used ones to make room. */
static int insert(hg_shdict_t *d, const char *key, size_t klen, uint64_t h, hg_shd_type_t type,
                  const char *str, size_t slen, double num, uint64_t expires) {
  size_t size = klen + slen;
  if (size > d->max_bytes) return HG_ETOOBIG;
  while (d->index.tail && (d->index.n + 1 > d->max_entries || d->bytes + size > d->max_bytes))
    remove_ent(d, ENT(d->index.tail));
  ent_t *e = malloc(sizeof(*e) + size);
  if (e == NULL) return HG_ENOMEM;
  e->expires = expires;
  e->type = type;
  e->num = num;
  e->slen = slen;
  memcpy(e->data, key, klen);
  if (slen) memcpy(e->data + klen, str, slen);
  e->node.key = e->data;
  e->node.klen = klen;
  e->node.hash = h;
  hg_lru_insert(&d->index, &e->node);
  d->bytes += size;
  return 0;
}

/* ---- API ---- */

hg_shd_type_t hg_shdict_get(hg_shdict_t *d, const char *key, size_t klen, hg_buf_t *str, double *num) {
  uint64_t h = hg_lru_hash(key, klen);
  pthread_mutex_lock(&d->lock);
  ent_t *e = find(d, key, klen, h, now_ms());
  hg_shd_type_t t = HG_SHD_NONE;
  if (e) {
    hg_lru_touch(&d->index, &e->node);
    t = e->type;
    if (t == HG_SHD_STRING) {
      if (hg_buf_append(str, e->data + e->node.klen, e->slen) != 0) t = HG_SHD_NONE;
    } else {
      *num = e->num;
    }
  }
  pthread_mutex_unlock(&d->lock);
  return t;
}

int hg_shdict_set(hg_shdict_t *d, const char *key, size_t klen, hg_shd_type_t type,
                  const char *str, size_t slen, double num, uint64_t ttl_ms, int only_if_absent) {
  uint64_t h = hg_lru_hash(key, klen), now = now_ms();
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
  uint64_t h = hg_lru_hash(key, klen), now = now_ms();
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
  uint64_t h = hg_lru_hash(key, klen);
  pthread_mutex_lock(&d->lock);
  ent_t *e = find(d, key, klen, h, now_ms());
  if (e) remove_ent(d, e);
  pthread_mutex_unlock(&d->lock);
  return e != NULL;
}
