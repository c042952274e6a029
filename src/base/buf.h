/* buf.h — a growable byte buffer, always NUL-terminated after `len` bytes.
 *
 * Used for responses, rewritten playlists and URLs. Appends grow geometrically, so a
 * buffer reused across lines or requests stops allocating once it is big enough.
 * Errors are sticky: after a failed append every later one fails too and leaves the
 * buffer as it was, so a sequence of appends can be checked once at its end with
 * hg_buf_error (a cache key built in pieces is never used half-built). Not thread-safe:
 * one owner.
 */
#ifndef HG_BASE_BUF_H
#define HG_BASE_BUF_H

#include <stddef.h>

typedef struct hg_buf_s {
  char *data;  /* NULL until the first append; then data[len] == '\0' */
  size_t len;
  size_t cap;
  int err;     /* the first failure since the last clear/free (sticky), or 0 */
} hg_buf_t;

#define HG_BUF_INIT {NULL, 0, 0, 0}

/* Ensures room for `extra` more bytes (plus the NUL). Returns 0 or HG_ENOMEM/HG_ETOOBIG. */
int hg_buf_reserve(hg_buf_t *b, size_t extra);

/* Appends bytes / a C string / one byte / printf output. Return 0 or HG_ENOMEM (or the
 * buffer's earlier error); on failure the buffer is unchanged. */
int hg_buf_append(hg_buf_t *b, const void *p, size_t n);
int hg_buf_puts(hg_buf_t *b, const char *s);
int hg_buf_putc(hg_buf_t *b, char c);
int hg_buf_printf(hg_buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Appends v in decimal (the hot paths' printf-free "%llu"). */
int hg_buf_put_u64(hg_buf_t *b, unsigned long long v);

/* Appends `s` escaped as the inside of a JSON string (no surrounding quotes). */
int hg_buf_json_escape(hg_buf_t *b, const char *s, size_t n);

/* Empties the buffer, keeping its memory; forgets an earlier error. */
static inline void hg_buf_clear(hg_buf_t *b) {
  b->len = 0;
  b->err = 0;
  if (b->data) b->data[0] = '\0';
}

/* Returns 0, or the error of the first append that failed since the last clear. */
static inline int hg_buf_error(const hg_buf_t *b) { return b->err; }

/* Frees the memory and resets to HG_BUF_INIT. */
void hg_buf_free(hg_buf_t *b);

/* Hands the memory to the caller (who free()s it) and resets the buffer. May return NULL
 * for an empty, never-grown buffer. */
char *hg_buf_steal(hg_buf_t *b, size_t *len);

#endif
