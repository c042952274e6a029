/* slab.c — size-class free lists over 64 KiB chunks (see slab.h). */
#include "base/slab.h"

#include <stdlib.h>
#include <string.h>

#define CHUNK 65536
#define CLASS(n) (((n) + 15) / 16 - 1) /* 1..16 → 0, 17..32 → 1, … */

#if defined(__SANITIZE_ADDRESS__)
#define HG_SLAB_OFF 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define HG_SLAB_OFF 1
#endif
#endif

#ifndef HG_SLAB_OFF
static void *get(hg_slab_t *s, size_t n) {
  if (n > HG_SLAB_MAX) return malloc(n);
  size_t c = CLASS(n), size = (c + 1) * 16;
  void *b = s->free[c];
  if (b) {
    memcpy(&s->free[c], b, sizeof(void *)); /* the next free block */
    return b;
  }
  if (s->left < size) {
    char *chunk = malloc(CHUNK);
    if (chunk == NULL) return NULL;
    memcpy(chunk, &s->chunks, sizeof(void *)); /* the first 16 bytes link the chunks */
    s->chunks = chunk;
    s->cur = chunk + 16;
    s->left = CHUNK - 16;
  }
  b = s->cur;
  s->cur += size;
  s->left -= size;
  return b;
}

static void put(hg_slab_t *s, void *b, size_t n) {
  if (n > HG_SLAB_MAX) {
    free(b);
    return;
  }
  size_t c = CLASS(n);
  memcpy(b, &s->free[c], sizeof(void *));
  s->free[c] = b;
}

#endif

void *hg_slab_realloc(hg_slab_t *s, void *ptr, size_t osize, size_t nsize) {
#ifdef HG_SLAB_OFF
  (void)s, (void)osize;
  if (nsize == 0) {
    free(ptr);
    return NULL;
  }
  return realloc(ptr, nsize);
#else
  if (ptr == NULL) osize = 0;
  if (nsize == 0) {
    if (ptr) put(s, ptr, osize);
    return NULL;
  }
  if (ptr && osize > HG_SLAB_MAX && nsize > HG_SLAB_MAX) return realloc(ptr, nsize);
  if (ptr && osize <= HG_SLAB_MAX && nsize <= HG_SLAB_MAX && CLASS(osize) == CLASS(nsize)) return ptr;
  void *b = get(s, nsize);
  if (b == NULL) return NULL;
  if (ptr) {
    memcpy(b, ptr, osize < nsize ? osize : nsize);
    put(s, ptr, osize);
  }
  return b;
#endif
}

void hg_slab_free(hg_slab_t *s) {
  void *c = s->chunks;
  while (c) {
    void *next;
    memcpy(&next, c, sizeof(void *));
    free(c);
    c = next;
  }
  memset(s, 0, sizeof(*s));
}
