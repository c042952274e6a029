/* lru.h — a hash table whose entries are also on a least-recently-used list: the one
 * index both stores (the object cache and hg.shared) keep their entries in.
 *
 * Intrusive: the caller embeds an hg_lru_node_t in its entry, owns the entry and the key
 * bytes, and gets the entry back with hg_lru_entry. No locking (the stores lock around
 * every call); no allocation except the bucket array, which doubles when the table holds
 * more entries than buckets.
 */
#ifndef HG_BASE_LRU_H
#define HG_BASE_LRU_H

#include <stddef.h>
#include <stdint.h>

typedef struct hg_lru_node_s {
  struct hg_lru_node_s *hnext;      /* bucket chain */
  struct hg_lru_node_s *prev, *next; /* LRU list: head is the most recent */
  uint64_t hash;
  const char *key;                  /* the caller's bytes, alive while in the table */
  size_t klen;
} hg_lru_node_t;

typedef struct hg_lru_s {
  hg_lru_node_t **buckets;
  size_t nbuckets; /* a power of two */
  size_t n;        /* entries */
  hg_lru_node_t *head, *tail;
} hg_lru_t;

/* The entry that embeds `node` as `member`. */
#define hg_lru_entry(node, type, member) ((type *)(void *)((char *)(node) - offsetof(type, member)))

/* Initialises an empty table with at least `nbuckets` buckets. Returns 0 or HG_ENOMEM. */
int hg_lru_init(hg_lru_t *t, size_t nbuckets);

/* Frees the bucket array (the entries are the caller's). */
void hg_lru_free(hg_lru_t *t);

/* The hash hg_lru_find and hg_lru_insert expect: keyed by a secret chosen when the
 * process starts (a client cannot aim keys at one bucket), so values differ from run to
 * run. Any thread. */
uint64_t hg_lru_hash(const char *key, size_t n);

/* Returns the node with this key (and hash), or NULL. Does not touch the LRU order. */
hg_lru_node_t *hg_lru_find(const hg_lru_t *t, const char *key, size_t klen, uint64_t hash);

/* Adds `node` (key, klen and hash set by the caller; the key must not be in the table)
 * as the most recent. Never fails: a table that cannot grow keeps longer chains. */
void hg_lru_insert(hg_lru_t *t, hg_lru_node_t *node);

/* Takes `node` out of the table and the list. */
void hg_lru_remove(hg_lru_t *t, hg_lru_node_t *node);

/* Makes `node` the most recent. */
void hg_lru_touch(hg_lru_t *t, hg_lru_node_t *node);

#endif
