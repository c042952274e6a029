/* cache.c — shared object cache with single-flight fills (see cache.h).
 *
 * Entries live in the stores' hash table with an LRU list (base/lru.h). An entry is either READY (has an object) or being FILLED (has a fill with its
 * waiters), or both during a refresh of an expired object (stale-if-error keeps the old
 * one until the new one arrives). All structure changes happen under the mutex;
 * objects are reference-counted so they outlive eviction while in use.
 */
#define _GNU_SOURCE /* memfd_create */
#include "store/cache.h"

#include <errno.h>
#include <pthread.h>
#include <sys/mman.h>
#include <unistd.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "base/lru.h"

typedef struct entry_s {
  hg_lru_node_t node;               /* key (owned: node.key), hash, LRU position */
  hg_cache_obj_t *obj;              /* READY object or NULL */
  struct hg_cache_fill_s *fill;     /* fill in progress or NULL */
} entry_t;

struct hg_cache_fill_s {
  entry_t *entry;
  hg_cache_waiter_t *waiters;
};

struct hg_cache_s {
  pthread_mutex_t lock;
  hg_lru_t index;
  size_t bytes, max_bytes, max_object;
  hg_cache_stats_t st;
};

#define ENTRY(n) hg_lru_entry((n), entry_t, node)

hg_cache_t *hg_cache_new(size_t max_bytes, size_t max_object) {
  hg_cache_t *c = calloc(1, sizeof(*c));
  if (c == NULL) return NULL;
  if (hg_lru_init(&c->index, 1024) != 0) {
    free(c);
    return NULL;
  }
  pthread_mutex_init(&c->lock, NULL);
  c->max_bytes = max_bytes;
  c->max_object = max_object < max_bytes ? max_object : max_bytes;
  return c;
}

size_t hg_cache_max_object(const hg_cache_t *c) { return c->max_object; }

/* Moves a large body into an anonymous file mapped read-only where it was: one copy when
 * the object is made, none per response (the server sends it with sendfile). Kept in
 * memory as it was when any step fails. */
static void to_file(hg_cache_obj_t *o) {
  int fd = memfd_create("hlsgate-cache", MFD_CLOEXEC);
  if (fd < 0) return;
  size_t done = 0;
  while (done < o->len) {
    ssize_t w = write(fd, o->body + done, o->len - done);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) break;
    done += (size_t)w;
  }
  void *m = done == o->len ? mmap(NULL, o->len, PROT_READ, MAP_SHARED, fd, 0) : MAP_FAILED;
  if (m == MAP_FAILED) {
    close(fd);
    return;
  }
  free(o->body);
  o->body = m;
  o->fd = fd;
}

hg_cache_obj_t *hg_cache_obj_new(char *body, size_t len, const char *content_type,
                                 const char *etag, const char *last_modified,
                                 const char *final_url) {
  hg_cache_obj_t *o = calloc(1, sizeof(*o));
  if (o == NULL) {
    free(body);
    return NULL;
  }
  o->body = body;
  o->len = len;
  o->refs = 1;
  o->fd = -1;
  static _Atomic uint64_t last_id;
  o->id = ++last_id; /* atomic: objects are made on every worker */
  if (len >= HG_CACHE_FILE_MIN) to_file(o);
  int fail = 0;
#define DUP(field, s) if ((s) && !(o->field = strdup(s))) fail = 1
  DUP(content_type, content_type);
  DUP(etag, etag);
  DUP(last_modified, last_modified);
  DUP(final_url, final_url);
#undef DUP
  if (fail) {
    hg_cache_obj_release(o);
    return NULL;
  }
  return o;
}

void hg_cache_obj_retain(hg_cache_obj_t *o) { __atomic_add_fetch(&o->refs, 1, __ATOMIC_RELAXED); }

void hg_cache_obj_release(hg_cache_obj_t *o) {
  if (o == NULL || __atomic_sub_fetch(&o->refs, 1, __ATOMIC_ACQ_REL) != 0) return;
  if (o->fd >= 0) {
    munmap(o->body, o->len);
    close(o->fd);
  } else {
    free(o->body);
  }
  free(o->content_type);
  free(o->etag);
  free(o->last_modified);
  free(o->final_url);
  free(o);
}

/* ---- entries (lock held) ---- */

static entry_t *find(hg_cache_t *c, const char *key, size_t klen, uint64_t h) {
  hg_lru_node_t *n = hg_lru_find(&c->index, key, klen, h);
  return n ? ENTRY(n) : NULL;
}

static void drop_obj(hg_cache_t *c, entry_t *e) {
  if (e->obj == NULL) return;
  c->bytes -= e->obj->len;
  hg_cache_obj_release(e->obj);
  e->obj = NULL;
}

static void remove_entry(hg_cache_t *c, entry_t *e) {
  hg_lru_remove(&c->index, &e->node);
  drop_obj(c, e);
  free((char *)e->node.key);
  free(e);
}

/* Evicts least recently used objects until `need` more bytes fit. Entries being filled
 * stay (their waiters need them); only their stale objects go. */
static void make_room(hg_cache_t *c, size_t need) {
  hg_lru_node_t *n = c->index.tail;
  while (c->bytes + need > c->max_bytes && n) {
    hg_lru_node_t *prev = n->prev;
    entry_t *e = ENTRY(n);
    if (e->obj) {
      c->st.evictions++;
      if (e->fill) drop_obj(c, e);
      else remove_entry(c, e);
    }
    n = prev;
  }
}

/* Adds an empty entry for `key` (most recently used). NULL on OOM. */
static entry_t *new_entry(hg_cache_t *c, const char *key, size_t klen, uint64_t h) {
  entry_t *e = calloc(1, sizeof(*e));
  char *k = e ? malloc(klen ? klen : 1) : NULL;
  if (k == NULL) {
    free(e);
    return NULL;
  }
  memcpy(k, key, klen);
  e->node.key = k;
  e->node.klen = klen;
  e->node.hash = h;
  hg_lru_insert(&c->index, &e->node);
  return e;
}

/* ---- API ---- */

int hg_cache_lookup(hg_cache_t *c, const char *key, size_t klen, uint64_t now_ms,
                    hg_cache_waiter_t *w, hg_cache_obj_t **obj, hg_cache_fill_t **fill) {
  uint64_t h = hg_lru_hash(key, klen);
  pthread_mutex_lock(&c->lock);
  entry_t *e = find(c, key, klen, h);
  if (e && e->obj && e->obj->expires_ms > now_ms) { /* fresh */
    hg_lru_touch(&c->index, &e->node);
    hg_cache_obj_retain(e->obj);
    *obj = e->obj;
    c->st.hits++;
    pthread_mutex_unlock(&c->lock);
    return HG_CACHE_HIT;
  }
  if (e && e->fill) { /* someone is fetching it: wait for them */
    w->obj = NULL;
    w->next = e->fill->waiters;
    e->fill->waiters = w;
    c->st.coalesced++;
    pthread_mutex_unlock(&c->lock);
    return HG_CACHE_WAIT;
  }
  if (e == NULL && (e = new_entry(c, key, klen, h)) == NULL) {
    pthread_mutex_unlock(&c->lock);
    return HG_ENOMEM;
  }
  /* Expired beyond its stale window: forget it. Within it: keep it for stale-if-error. */
  if (e->obj && e->obj->stale_ms <= now_ms) drop_obj(c, e);
  e->fill = calloc(1, sizeof(*e->fill));
  if (e->fill == NULL) {
    if (e->obj == NULL) remove_entry(c, e);
    pthread_mutex_unlock(&c->lock);
    return HG_ENOMEM;
  }
  e->fill->entry = e;
  *fill = e->fill;
  c->st.misses++;
  pthread_mutex_unlock(&c->lock);
  return HG_CACHE_FILL;
}

int hg_cache_peek(hg_cache_t *c, const char *key, size_t klen, uint64_t now_ms, hg_cache_obj_t **obj) {
  uint64_t h = hg_lru_hash(key, klen);
  pthread_mutex_lock(&c->lock);
  entry_t *e = find(c, key, klen, h);
  int hit = e && e->obj && e->obj->expires_ms > now_ms;
  if (hit) {
    hg_lru_touch(&c->index, &e->node);
    hg_cache_obj_retain(e->obj);
    *obj = e->obj;
    c->st.hits++;
  }
  pthread_mutex_unlock(&c->lock);
  return hit;
}

void hg_cache_put(hg_cache_t *c, const char *key, size_t klen, hg_cache_obj_t *obj, uint64_t now_ms,
                  uint64_t ttl_ms) {
  uint64_t h = hg_lru_hash(key, klen);
  pthread_mutex_lock(&c->lock);
  entry_t *e = find(c, key, klen, h);
  int stored = 0;
  if (obj->len <= c->max_object && ttl_ms > 0 && !(e && e->fill)) {
    if (e == NULL) e = new_entry(c, key, klen, h);
    if (e) {
      drop_obj(c, e);
      make_room(c, obj->len);
      obj->expires_ms = now_ms + ttl_ms;
      obj->stale_ms = obj->expires_ms;
      e->obj = obj;
      c->bytes += obj->len;
      c->st.stores++;
      stored = 1;
    }
  }
  pthread_mutex_unlock(&c->lock);
  if (!stored) hg_cache_obj_release(obj);
}

hg_cache_obj_t *hg_cache_fill_end(hg_cache_t *c, hg_cache_fill_t *fill, hg_cache_obj_t *obj,
                                  uint64_t now_ms, uint64_t ttl_ms, uint64_t stale_ms) {
  pthread_mutex_lock(&c->lock);
  entry_t *e = fill->entry;
  e->fill = NULL;
  hg_cache_obj_t *give = NULL; /* what waiters (and, when stale, the filler) get */
  if (obj && obj->len <= c->max_object && ttl_ms > 0) {
    drop_obj(c, e);
    make_room(c, obj->len);
    obj->expires_ms = now_ms + ttl_ms;
    obj->stale_ms = obj->expires_ms + stale_ms;
    e->obj = obj;
    c->bytes += obj->len;
    c->st.stores++;
    give = obj;
  } else if (obj) {
    give = obj; /* not storable, but waiters can still use it */
  } else if (e->obj) {
    give = e->obj; /* stale-if-error */
    c->st.stale++;
  }
  hg_cache_waiter_t *ws = fill->waiters;
  for (hg_cache_waiter_t *w = ws; w; w = w->next)
    if ((w->obj = give) != NULL) hg_cache_obj_retain(give);
  hg_cache_obj_t *stale = (obj == NULL && give) ? give : NULL;
  if (stale) hg_cache_obj_retain(stale);
  int stored = obj && e->obj == obj;
  if (e->obj == NULL) remove_entry(c, e);
  pthread_mutex_unlock(&c->lock);
  free(fill);
  /* Notify outside the lock: waiters may look the cache up again right away. */
  while (ws) {
    hg_cache_waiter_t *next = ws->next;
    ws->notify(ws);
    ws = next;
  }
  if (obj && !stored) hg_cache_obj_release(obj); /* the cache did not keep it */
  return stale;
}

void hg_cache_stats(hg_cache_t *c, hg_cache_stats_t *out) {
  pthread_mutex_lock(&c->lock);
  *out = c->st;
  out->bytes = c->bytes;
  out->objects = c->index.n;
  pthread_mutex_unlock(&c->lock);
}

void hg_cache_free(hg_cache_t *c) {
  if (c == NULL) return;
  for (hg_lru_node_t *n = c->index.head, *next; n; n = next) {
    next = n->next;
    entry_t *e = ENTRY(n);
    if (e->obj) hg_cache_obj_release(e->obj);
    free(e->fill);
    free((char *)n->key);
    free(e);
  }
  hg_lru_free(&c->index);
  pthread_mutex_destroy(&c->lock);
  free(c);
}
