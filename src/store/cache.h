/* cache.h — the object cache of SPEC §7, shared by all workers: complete upstream
 * objects by key, TTL set by the policy, LRU within a byte budget, concurrent misses
 * coalesced into one fill (single-flight), and stale-if-error.
 *
 * Thread-safe (one mutex). Objects are immutable once published and reference-counted,
 * so readers use them without the lock. The cache knows nothing of event loops: a
 * waiter is told through its `notify` callback, which runs on the filling thread and
 * must only hand the waiter over to its own thread (e.g. a uv_async).
 */
#ifndef HG_STORE_CACHE_H
#define HG_STORE_CACHE_H

#include <stddef.h>
#include <stdint.h>

typedef struct hg_cache_s hg_cache_t;

/* A cached object: the upstream's 200 response, whole. Read-only for users. */
typedef struct hg_cache_obj_s {
  char *body;
  size_t len;
  char *content_type; /* or NULL */
  char *etag;         /* or NULL */
  char *last_modified;/* or NULL */
  char *final_url;    /* after redirects */
  /* A body of HG_CACHE_FILE_MIN bytes or more lives in an anonymous file (memfd) mapped
   * at `body`: readers use the memory, the server may sendfile(2) from `fd` instead of
   * copying it into every response. -1 otherwise. */
  int fd;
  /* This object's number, unique in the process (never 0): what it says of its bytes and
   * final_url, a digest would say at a cost (the rewrite templates' key). */
  uint64_t id;
  /* private */
  int refs;
  uint64_t expires_ms, stale_ms;
} hg_cache_obj_t;

/* A caller waiting for someone else's fill. Embedded in the caller's request state. */
typedef struct hg_cache_waiter_s {
  void (*notify)(struct hg_cache_waiter_s *w); /* runs on the filling thread */
  hg_cache_obj_t *obj; /* set before notify: the object (retained for the waiter) or NULL
                          when the fill failed (the waiter then fetches by itself) */
  struct hg_cache_waiter_s *next;
} hg_cache_waiter_t;

typedef struct hg_cache_fill_s hg_cache_fill_t;

typedef struct hg_cache_stats_s {
  uint64_t hits, misses, stale, coalesced, evictions, stores;
  size_t bytes, objects;
} hg_cache_stats_t;

/* Returns a cache holding at most `max_bytes` of objects, none bigger than `max_object`,
 * or NULL on OOM. The main thread owns it and frees it after the workers stopped. */
hg_cache_t *hg_cache_new(size_t max_bytes, size_t max_object);
void hg_cache_free(hg_cache_t *c);

enum {
  HG_CACHE_HIT = 1,  /* *obj is a fresh object, retained for the caller */
  HG_CACHE_FILL = 2, /* the caller fetches and must call hg_cache_fill_end with *fill */
  HG_CACHE_WAIT = 3  /* another caller is fetching: `w` will be notified */
};

/* Looks `key` up. `now_ms` is a monotonic clock. Returns one of HG_CACHE_*, or HG_ENOMEM.
 * Any thread. */
int hg_cache_lookup(hg_cache_t *c, const char *key, size_t klen, uint64_t now_ms,
                    hg_cache_waiter_t *w, hg_cache_obj_t **obj, hg_cache_fill_t **fill);

/* Returns 1 with a fresh object for `key` (retained for the caller), or 0. Never starts a
 * fill and never waits. Any thread. */
int hg_cache_peek(hg_cache_t *c, const char *key, size_t klen, uint64_t now_ms, hg_cache_obj_t **obj);

/* Publishes `obj` (ownership passes to the cache) under `key` for `ttl_ms`, replacing an
 * object there, unless a fill for the key is in progress (then `obj` is dropped). Any
 * thread. */
void hg_cache_put(hg_cache_t *c, const char *key, size_t klen, hg_cache_obj_t *obj, uint64_t now_ms,
                  uint64_t ttl_ms);

/* Ends a fill. `obj` (built with hg_cache_obj_new; ownership passes to the cache) is
 * published for `ttl_ms` and kept `stale_ms` longer for stale-if-error; NULL means the
 * fetch failed or the object is not cacheable. When NULL and a stale copy exists, the
 * stale copy is returned retained (serve it) — else NULL. Waiters are notified with
 * the published object, the stale copy, or NULL. Any thread. */
hg_cache_obj_t *hg_cache_fill_end(hg_cache_t *c, hg_cache_fill_t *fill, hg_cache_obj_t *obj,
                                  uint64_t now_ms, uint64_t ttl_ms, uint64_t stale_ms);

#define HG_CACHE_FILE_MIN (256 << 10)

/* Returns a new object with copies of the strings (NULLs allowed) and `body` adopted
 * (malloc'd; the object frees it — or, HG_CACHE_FILE_MIN bytes and more, moves it into a
 * memfd, see `fd`), or NULL on OOM (body freed). */
hg_cache_obj_t *hg_cache_obj_new(char *body, size_t len, const char *content_type,
                                 const char *etag, const char *last_modified,
                                 const char *final_url);

/* Reference counting (atomic): any thread. */
void hg_cache_obj_retain(hg_cache_obj_t *o);
void hg_cache_obj_release(hg_cache_obj_t *o);

/* The largest object the cache stores. */
size_t hg_cache_max_object(const hg_cache_t *c);

void hg_cache_stats(hg_cache_t *c, hg_cache_stats_t *out);

#endif
