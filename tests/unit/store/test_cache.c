/* Unit tests for store/cache: hits and misses, single-flight, LRU within the budget,
 * stale-if-error, and concurrent use from several threads. */
#include "hgtest.h"

#include <pthread.h>
#include <sched.h>

#include "store/cache.h"

static hg_cache_obj_t *obj(const char *body) {
  return hg_cache_obj_new(strdup(body), strlen(body), "text/plain", NULL, NULL, "http://o/x");
}

typedef struct {
  hg_cache_waiter_t w;
  int notified;
} waiter_t;

static void on_notify(hg_cache_waiter_t *w) { ((waiter_t *)w)->notified++; }

HG_TEST(miss_then_hit_then_expiry) {
  hg_cache_t *c = hg_cache_new(1 << 20, 1 << 16);
  hg_cache_obj_t *o = NULL;
  hg_cache_fill_t *f = NULL;
  waiter_t w = {{on_notify, NULL, NULL}, 0};
  CHECK_INT(hg_cache_lookup(c, "k", 1, 1000, &w.w, &o, &f), HG_CACHE_FILL);
  CHECK(hg_cache_fill_end(c, f, obj("hello"), 1000, 500, 0) == NULL);
  CHECK_INT(hg_cache_lookup(c, "k", 1, 1400, &w.w, &o, &f), HG_CACHE_HIT);
  CHECK(o->len == 5 && memcmp(o->body, "hello", 5) == 0);
  hg_cache_obj_release(o);
  CHECK_INT(hg_cache_lookup(c, "k", 1, 1501, &w.w, &o, &f), HG_CACHE_FILL); /* expired */
  CHECK(hg_cache_fill_end(c, f, NULL, 1501, 500, 0) == NULL);
  hg_cache_stats_t st;
  hg_cache_stats(c, &st);
  CHECK_INT(st.hits, 1);
  CHECK_INT(st.misses, 2);
  hg_cache_free(c);
}

HG_TEST(concurrent_misses_coalesce) {
  hg_cache_t *c = hg_cache_new(1 << 20, 1 << 16);
  hg_cache_obj_t *o = NULL;
  hg_cache_fill_t *f = NULL, *f2 = NULL;
  waiter_t ws[10];
  CHECK_INT(hg_cache_lookup(c, "k", 1, 0, &ws[0].w, &o, &f), HG_CACHE_FILL);
  for (int i = 1; i < 10; i++) {
    ws[i] = (waiter_t){{on_notify, NULL, NULL}, 0};
    CHECK_INT(hg_cache_lookup(c, "k", 1, 0, &ws[i].w, &o, &f2), HG_CACHE_WAIT);
  }
  hg_cache_fill_end(c, f, obj("body"), 0, 1000, 0);
  for (int i = 1; i < 10; i++) {
    CHECK_INT(ws[i].notified, 1);
    CHECK(ws[i].w.obj != NULL && ws[i].w.obj->len == 4);
    hg_cache_obj_release(ws[i].w.obj);
  }
  hg_cache_stats_t st;
  hg_cache_stats(c, &st);
  CHECK_INT(st.misses, 1);
  CHECK_INT(st.coalesced, 9);
  hg_cache_free(c);
}

HG_TEST(failed_fill_wakes_waiters_empty_handed) {
  hg_cache_t *c = hg_cache_new(1 << 20, 1 << 16);
  hg_cache_obj_t *o = NULL;
  hg_cache_fill_t *f = NULL, *f2 = NULL;
  waiter_t w = {{on_notify, NULL, NULL}, 0};
  CHECK_INT(hg_cache_lookup(c, "k", 1, 0, &w.w, &o, &f), HG_CACHE_FILL);
  CHECK_INT(hg_cache_lookup(c, "k", 1, 0, &w.w, &o, &f2), HG_CACHE_WAIT);
  CHECK(hg_cache_fill_end(c, f, NULL, 0, 1000, 0) == NULL);
  CHECK_INT(w.notified, 1);
  CHECK(w.w.obj == NULL);
  CHECK_INT(hg_cache_lookup(c, "k", 1, 0, &w.w, &o, &f), HG_CACHE_FILL); /* not cached */
  hg_cache_fill_end(c, f, NULL, 0, 1000, 0);
  hg_cache_free(c);
}

HG_TEST(stale_if_error) {
  hg_cache_t *c = hg_cache_new(1 << 20, 1 << 16);
  hg_cache_obj_t *o = NULL;
  hg_cache_fill_t *f = NULL;
  waiter_t w = {{on_notify, NULL, NULL}, 0};
  hg_cache_lookup(c, "k", 1, 0, &w.w, &o, &f);
  hg_cache_fill_end(c, f, obj("old"), 0, 100, 1000);
  CHECK_INT(hg_cache_lookup(c, "k", 1, 200, &w.w, &o, &f), HG_CACHE_FILL); /* expired */
  hg_cache_obj_t *stale = hg_cache_fill_end(c, f, NULL, 200, 100, 1000); /* refresh failed */
  CHECK(stale != NULL && stale->len == 3);
  hg_cache_obj_release(stale);
  CHECK_INT(hg_cache_lookup(c, "k", 1, 2000, &w.w, &o, &f), HG_CACHE_FILL); /* past stale */
  CHECK(hg_cache_fill_end(c, f, NULL, 2000, 100, 1000) == NULL);
  hg_cache_free(c);
}

HG_TEST(lru_eviction_within_budget) {
  hg_cache_t *c = hg_cache_new(100, 60);
  hg_cache_obj_t *o = NULL;
  hg_cache_fill_t *f = NULL;
  waiter_t w = {{on_notify, NULL, NULL}, 0};
  char big[41];
  memset(big, 'x', 40);
  big[40] = '\0';
  const char *keys[] = {"a", "b", "c"};
  for (int i = 0; i < 3; i++) {
    CHECK_INT(hg_cache_lookup(c, keys[i], 1, 0, &w.w, &o, &f), HG_CACHE_FILL);
    hg_cache_fill_end(c, f, obj(big), 0, 1000, 0);
    if (i == 1) { /* touch "a" so "b" is the least recently used */
      CHECK_INT(hg_cache_lookup(c, "a", 1, 0, &w.w, &o, &f), HG_CACHE_HIT);
      hg_cache_obj_release(o);
    }
  }
  hg_cache_stats_t st;
  hg_cache_stats(c, &st);
  CHECK(st.bytes <= 100);
  CHECK_INT(st.evictions, 1);
  CHECK_INT(hg_cache_lookup(c, "a", 1, 0, &w.w, &o, &f), HG_CACHE_HIT);
  hg_cache_obj_release(o);
  CHECK_INT(hg_cache_lookup(c, "b", 1, 0, &w.w, &o, &f), HG_CACHE_FILL);
  hg_cache_fill_end(c, f, NULL, 0, 1000, 0);
  /* Too big to store: waiters still get it, the cache does not keep it. */
  char huge[80];
  memset(huge, 'y', 79);
  huge[79] = '\0';
  CHECK_INT(hg_cache_lookup(c, "h", 1, 0, &w.w, &o, &f), HG_CACHE_FILL);
  hg_cache_fill_end(c, f, obj(huge), 0, 1000, 0);
  CHECK_INT(hg_cache_lookup(c, "h", 1, 0, &w.w, &o, &f), HG_CACHE_FILL);
  hg_cache_fill_end(c, f, NULL, 0, 1000, 0);
  hg_cache_free(c);
}

HG_TEST(peek_and_put) {
  hg_cache_t *c = hg_cache_new(1 << 20, 1 << 16);
  hg_cache_obj_t *o = NULL;
  hg_cache_fill_t *f = NULL;
  waiter_t w = {{on_notify, NULL, NULL}, 0};
  CHECK_INT(hg_cache_peek(c, "p", 1, 0, &o), 0); /* a miss starts nothing */
  CHECK_INT(hg_cache_lookup(c, "p", 1, 0, &w.w, &o, &f), HG_CACHE_FILL);
  hg_cache_put(c, "p", 1, obj("dropped"), 0, 1000); /* a fill is in progress: not stored */
  hg_cache_fill_end(c, f, obj("filled"), 0, 1000, 0);
  CHECK_INT(hg_cache_peek(c, "p", 1, 10, &o), 1);
  CHECK(o->len == 6 && memcmp(o->body, "filled", 6) == 0);
  hg_cache_obj_release(o);
  hg_cache_put(c, "q", 1, obj("put"), 0, 100);
  CHECK_INT(hg_cache_peek(c, "q", 1, 50, &o), 1);
  CHECK(o->len == 3);
  hg_cache_obj_release(o);
  CHECK_INT(hg_cache_peek(c, "q", 1, 150, &o), 0); /* expired */
  hg_cache_put(c, "q", 1, obj("again"), 150, 100); /* replaces */
  CHECK_INT(hg_cache_peek(c, "q", 1, 160, &o), 1);
  CHECK(o->len == 5);
  hg_cache_obj_release(o);
  hg_cache_free(c);
}

static hg_cache_t *shared;

static void *hammer(void *arg) {
  unsigned seed = (unsigned)(size_t)arg;
  for (int i = 0; i < 20000; i++) {
    char key[8];
    snprintf(key, sizeof(key), "k%u", (seed = seed * 1103515245u + 12345u) % 64);
    hg_cache_obj_t *o = NULL;
    hg_cache_fill_t *f = NULL;
    waiter_t *w = malloc(sizeof(*w));
    *w = (waiter_t){{on_notify, NULL, NULL}, 0};
    int rc = hg_cache_lookup(shared, key, strlen(key), (uint64_t)i, &w->w, &o, &f);
    if (rc == HG_CACHE_HIT) {
      hg_cache_obj_release(o);
      free(w);
    } else if (rc == HG_CACHE_FILL) {
      /* A failed refresh may hand back a stale copy (retained for us). */
      hg_cache_obj_release(hg_cache_fill_end(shared, f, i % 7 ? obj("data-data-data") : NULL,
                                             (uint64_t)i, 50, 50));
      free(w);
    } else {
      /* Another thread fills it: wait for the notification. */
      while (__atomic_load_n(&w->notified, __ATOMIC_ACQUIRE) == 0) sched_yield();
      hg_cache_obj_release(w->w.obj);
      free(w);
    }
  }
  return NULL;
}

HG_TEST(threads) {
  shared = hg_cache_new(4096, 1024);
  pthread_t t[4];
  for (size_t i = 0; i < 4; i++) pthread_create(&t[i], NULL, hammer, (void *)(i + 1));
  for (int i = 0; i < 4; i++) pthread_join(t[i], NULL);
  hg_cache_stats_t st;
  hg_cache_stats(shared, &st);
  CHECK(st.bytes <= 4096);
  CHECK(st.hits > 0);
  hg_cache_free(shared);
}

int main(void) {
  RUN(miss_then_hit_then_expiry);
  RUN(concurrent_misses_coalesce);
  RUN(failed_fill_wakes_waiters_empty_handed);
  RUN(stale_if_error);
  RUN(lru_eviction_within_budget);
  RUN(peek_and_put);
  RUN(threads);
  return hgtest_done();
}
