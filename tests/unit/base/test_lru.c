/* Unit tests for base/lru: the stores' hash table with an LRU list. */
#include <stdio.h>
#include <string.h>

#include "hgtest.h"

#include "base/lru.h"

typedef struct item_s {
  int value;
  hg_lru_node_t node;
  char key[16];
} item_t;

static void add(hg_lru_t *t, item_t *it, int v) {
  it->value = v;
  snprintf(it->key, sizeof(it->key), "k%d", v);
  it->node.key = it->key;
  it->node.klen = strlen(it->key);
  it->node.hash = hg_lru_hash(it->key, it->node.klen);
  hg_lru_insert(t, &it->node);
}

static item_t *get(hg_lru_t *t, const char *k) {
  hg_lru_node_t *n = hg_lru_find(t, k, strlen(k), hg_lru_hash(k, strlen(k)));
  return n ? hg_lru_entry(n, item_t, node) : NULL;
}

HG_TEST(find_grow_remove) {
  hg_lru_t t;
  CHECK_INT(hg_lru_init(&t, 4), 0);
  CHECK_INT(t.nbuckets, 16);
  static item_t items[1000];
  for (int i = 0; i < 1000; i++) add(&t, &items[i], i);
  CHECK_INT(t.n, 1000);
  CHECK(t.nbuckets >= 1000); /* grew */
  for (int i = 0; i < 1000; i++) {
    char k[16];
    snprintf(k, sizeof(k), "k%d", i);
    item_t *it = get(&t, k);
    CHECK(it && it->value == i);
  }
  CHECK(get(&t, "k1000") == NULL);
  CHECK(get(&t, "") == NULL);
  for (int i = 0; i < 1000; i += 2) hg_lru_remove(&t, &items[i].node);
  CHECK_INT(t.n, 500);
  CHECK(get(&t, "k2") == NULL && get(&t, "k3") != NULL);
  hg_lru_free(&t);
}

HG_TEST(lru_order) {
  hg_lru_t t;
  CHECK_INT(hg_lru_init(&t, 16), 0);
  item_t a, b, c;
  add(&t, &a, 1);
  add(&t, &b, 2);
  add(&t, &c, 3);
  CHECK(t.head == &c.node && t.tail == &a.node); /* most recent first */
  hg_lru_touch(&t, &a.node);
  CHECK(t.head == &a.node && t.tail == &b.node);
  hg_lru_remove(&t, &b.node);
  CHECK(t.tail == &c.node && c.node.prev == &a.node && a.node.next == &c.node);
  hg_lru_remove(&t, &a.node);
  hg_lru_remove(&t, &c.node);
  CHECK(t.head == NULL && t.tail == NULL && t.n == 0);
  hg_lru_free(&t);
}

HG_TEST(colliding_keys) {
  /* Equal hashes, different keys: told apart by their bytes. */
  hg_lru_t t;
  CHECK_INT(hg_lru_init(&t, 16), 0);
  item_t x = {.value = 7, .key = "seven"}, y = {.value = 8, .key = "eight"};
  x.node = (hg_lru_node_t){.key = x.key, .klen = 5, .hash = 42};
  y.node = (hg_lru_node_t){.key = y.key, .klen = 5, .hash = 42};
  hg_lru_insert(&t, &x.node);
  hg_lru_insert(&t, &y.node);
  CHECK(hg_lru_find(&t, "seven", 5, 42) == &x.node);
  CHECK(hg_lru_find(&t, "eight", 5, 42) == &y.node);
  hg_lru_remove(&t, &x.node);
  CHECK(hg_lru_find(&t, "seven", 5, 42) == NULL && hg_lru_find(&t, "eight", 5, 42) == &y.node);
  hg_lru_free(&t);
}

/* The hash: every byte and the length count (a key differing in one bit, or extended by
 * a zero byte, hashes apart), at every length across the 16-byte blocks and the tail;
 * the low bits (the bucket index) spread. */
HG_TEST(hash_covers_every_byte) {
  char a[80] = {0}, b[81] = {0};
  for (size_t n = 0; n <= 70; n++) {
    for (size_t i = 0; i < n; i++) a[i] = (char)('a' + (i * 7) % 26);
    uint64_t h = hg_lru_hash(a, n);
    CHECK(h == hg_lru_hash(a, n));
    for (size_t i = 0; i < n; i++) {
      memcpy(b, a, n);
      b[i] ^= 1;
      CHECK(hg_lru_hash(b, n) != h);
    }
    memcpy(b, a, n);
    b[n] = '\0';
    CHECK(hg_lru_hash(b, n + 1) != h);
  }
  /* 4,096 keys "k0".."k4095" over 256 buckets: no bucket with more than 4x its share */
  int count[256] = {0}, most = 0;
  for (int i = 0; i < 4096; i++) {
    char k[16];
    int kl = snprintf(k, sizeof(k), "k%d", i);
    int c = ++count[hg_lru_hash(k, (size_t)kl) & 255];
    if (c > most) most = c;
  }
  CHECK(most <= 64);
}

int main(void) {
  RUN(find_grow_remove);
  RUN(hash_covers_every_byte);
  RUN(lru_order);
  RUN(colliding_keys);
  return hgtest_done();
}
