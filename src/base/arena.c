/* arena.c — chunked bump allocator (see arena.h). */
#include "base/arena.h"

#include <stdalign.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct chunk_s {
  struct chunk_s *next;
  size_t size; /* usable bytes in data[] */
  size_t used;
  alignas(max_align_t) unsigned char data[];
} chunk_t;

struct hg_arena_s {
  chunk_t *head;   /* current chunk (allocations come from here) */
  chunk_t *first;  /* the chunk kept across resets */
  size_t total;    /* bytes handed out */
  hg_arena_allocf f; /* NULL: malloc/free */
  void *ud;
};

static void *mem_get(hg_arena_allocf f, void *ud, size_t n) { return f ? f(ud, NULL, 0, n) : malloc(n); }

static void mem_put(hg_arena_allocf f, void *ud, void *p, size_t n) {
  if (f) f(ud, p, n, 0);
  else free(p);
}

static chunk_t *chunk_new(hg_arena_t *a, size_t size) {
  chunk_t *c = mem_get(a->f, a->ud, sizeof(*c) + size);
  if (c == NULL) return NULL;
  c->next = NULL;
  c->size = size;
  c->used = 0;
  return c;
}

hg_arena_t *hg_arena_new_with(size_t hint, hg_arena_allocf f, void *ud) {
  hg_arena_t *a = mem_get(f, ud, sizeof(*a));
  if (a == NULL) return NULL;
  a->f = f;
  a->ud = ud;
  a->first = a->head = chunk_new(a, hint ? hint : 4096);
  if (a->head == NULL) {
    mem_put(f, ud, a, sizeof(*a));
    return NULL;
  }
  a->total = 0;
  return a;
}

hg_arena_t *hg_arena_new(size_t hint) { return hg_arena_new_with(hint, NULL, NULL); }

static void free_chain(hg_arena_t *a, chunk_t *c, chunk_t *stop) {
  while (c != NULL && c != stop) {
    chunk_t *next = c->next;
    mem_put(a->f, a->ud, c, sizeof(*c) + c->size);
    c = next;
  }
}

void hg_arena_free(hg_arena_t *a) {
  if (a == NULL) return;
  free_chain(a, a->head, NULL);
  mem_put(a->f, a->ud, a, sizeof(*a));
}

void hg_arena_reset(hg_arena_t *a) {
  /* Chunks are pushed on the front, so `first` is the tail of the list. */
  free_chain(a, a->head, a->first);
  a->head = a->first;
  a->first->next = NULL;
  a->first->used = 0;
  a->total = 0;
}

void *hg_arena_alloc(hg_arena_t *a, size_t n) {
  const size_t align = alignof(max_align_t);
  size_t need = (n + align - 1) & ~(align - 1);
  if (need < n) return NULL; /* overflow */
  chunk_t *c = a->head;
  if (c->size - c->used < need) {
    size_t size = c->size * 2;
    if (size < need) size = need;
    if (size > SIZE_MAX - sizeof(chunk_t)) return NULL;
    chunk_t *nc = chunk_new(a, size);
    if (nc == NULL) return NULL;
    nc->next = c;
    a->head = c = nc;
  }
  void *p = c->data + c->used;
  c->used += need;
  a->total += n;
  return p;
}

char *hg_arena_strndup(hg_arena_t *a, const char *s, size_t n) {
  char *p = hg_arena_alloc(a, n + 1);
  if (p == NULL) return NULL;
  memcpy(p, s, n);
  p[n] = '\0';
  return p;
}

size_t hg_arena_used(const hg_arena_t *a) { return a->total; }
