/* arena.h — a bump allocator: many small allocations, one free.
 *
 * One arena belongs to one request (or one parse) and is freed when it ends, so the
 * code that fills it never frees piecemeal. Not thread-safe: one thread owns an arena.
 */
#ifndef HG_BASE_ARENA_H
#define HG_BASE_ARENA_H

#include <stddef.h>

typedef struct hg_arena_s hg_arena_t;

/* Returns a new arena whose first chunk holds `hint` bytes (0 → 4 KiB), or NULL. The
 * caller owns it and frees it with hg_arena_free. */
hg_arena_t *hg_arena_new(size_t hint);

/* How an arena gets its chunks: realloc-shaped like lua_Alloc (nsize 0 frees; osize is
 * the size of ptr, 0 for a new block), so an arena can draw on a Lua state's allocator
 * and count against its memory cap. */
typedef void *(*hg_arena_allocf)(void *ud, void *ptr, size_t osize, size_t nsize);

/* As hg_arena_new, with chunks (and the arena itself) from `f`. NULL on OOM. */
hg_arena_t *hg_arena_new_with(size_t hint, hg_arena_allocf f, void *ud);

/* Frees the arena and everything allocated from it. NULL is a no-op. */
void hg_arena_free(hg_arena_t *a);

/* Frees every allocation but keeps the first chunk for reuse (keep-alive requests). */
void hg_arena_reset(hg_arena_t *a);

/* Returns `n` bytes aligned for any type, owned by the arena, or NULL on OOM. */
void *hg_arena_alloc(hg_arena_t *a, size_t n);

/* Returns a NUL-terminated copy of s[0..n) owned by the arena, or NULL on OOM. */
char *hg_arena_strndup(hg_arena_t *a, const char *s, size_t n);

/* Bytes handed out since creation or the last reset (for limits and metrics). */
size_t hg_arena_used(const hg_arena_t *a);

#endif
