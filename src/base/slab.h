/* slab.h — small blocks from per-owner free lists, for allocators called very often
 * with small sizes (a Lua state: strings, tables, closures of every request). Blocks of
 * up to HG_SLAB_MAX bytes come in 16-byte size classes carved from 64 KiB chunks; a freed
 * block goes back to its class's list and is reused, never returned to the system until
 * hg_slab_free. So the memory it holds is its owner's peak of small blocks.
 *
 * Not thread-safe: one owner, one thread at a time. Under AddressSanitizer every block
 * is a plain malloc (use-after-free stays detectable).
 */
#ifndef HG_BASE_SLAB_H
#define HG_BASE_SLAB_H

#include <stddef.h>

#define HG_SLAB_MAX 256
#define HG_SLAB_CLASSES (HG_SLAB_MAX / 16)

typedef struct hg_slab_s {
  void *free[HG_SLAB_CLASSES]; /* per class: a list threaded through the free blocks */
  char *cur;                   /* the rest of the newest chunk */
  size_t left;
  void *chunks;                /* every chunk, for hg_slab_free */
} hg_slab_t;

#define HG_SLAB_INIT {{0}, 0, 0, 0}

/* Returns the block ptr (of `osize` bytes, or NULL) resized to `nsize` bytes, like
 * realloc, with the old contents kept; nsize 0 frees it and returns NULL. NULL on OOM
 * (ptr is then untouched). `osize` must be the size the block was allocated with. */
void *hg_slab_realloc(hg_slab_t *s, void *ptr, size_t osize, size_t nsize);

/* Frees every chunk (the blocks of the slab are all gone). */
void hg_slab_free(hg_slab_t *s);

#endif
