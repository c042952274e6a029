/* buf.c — growable byte buffer (see buf.h). */
#include "base/buf.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"

int hg_buf_reserve(hg_buf_t *b, size_t extra) {
  if (b->err) return b->err; /* sticky: see buf.h */
  if (extra > SIZE_MAX - b->len - 1) return b->err = HG_ETOOBIG;
  size_t need = b->len + extra + 1;
  if (need <= b->cap) return 0;
  size_t cap = b->cap ? b->cap : 64;
  while (cap < need) cap = cap > SIZE_MAX / 2 ? need : cap * 2;
  char *p = realloc(b->data, cap);
  if (p == NULL) return b->err = HG_ENOMEM;
  b->data = p;
  b->cap = cap;
  return 0;
}

int hg_buf_append(hg_buf_t *b, const void *p, size_t n) {
  int rc = hg_buf_reserve(b, n);
  if (rc) return rc;
  if (n) memcpy(b->data + b->len, p, n);
  b->len += n;
  b->data[b->len] = '\0';
  return 0;
}

int hg_buf_puts(hg_buf_t *b, const char *s) { return hg_buf_append(b, s, strlen(s)); }

int hg_buf_putc(hg_buf_t *b, char c) {
  if (b->err == 0 && b->len + 2 <= b->cap) { /* the common case: room, no call */
    b->data[b->len++] = c;
    b->data[b->len] = '\0';
    return 0;
  }
  return hg_buf_append(b, &c, 1);
}

int hg_buf_put_u64(hg_buf_t *b, unsigned long long v) {
  char d[24];
  size_t i = sizeof(d);
  do {
    d[--i] = (char)('0' + v % 10);
    v /= 10;
  } while (v);
  return hg_buf_append(b, d + i, sizeof(d) - i);
}

int hg_buf_printf(hg_buf_t *b, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  char tmp[256];
  int n = vsnprintf(tmp, sizeof(tmp), fmt, ap); // NOLINT(clang-analyzer-valist.Uninitialized): va_start above
  va_end(ap);
  if (b->err) return b->err;
  if (n < 0) return b->err = HG_EINVAL;
  if ((size_t)n < sizeof(tmp)) return hg_buf_append(b, tmp, (size_t)n);
  int rc = hg_buf_reserve(b, (size_t)n);
  if (rc) return rc;
  va_start(ap, fmt);
  vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
  va_end(ap);
  b->len += (size_t)n;
  return 0;
}

int hg_buf_json_escape(hg_buf_t *b, const char *s, size_t n) {
  static const char hex[] = "0123456789abcdef";
  int rc = hg_buf_reserve(b, n);
  size_t run = 0; /* s[run..i) needs no escape: appended in one piece */
  for (size_t i = 0; rc == 0 && i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c >= 0x20 && c != '"' && c != '\\' && c != 0x7f) continue;
    char esc[6];
    size_t k = 2;
    esc[0] = '\\';
    switch (c) {
    case '"': esc[1] = '"'; break;
    case '\\': esc[1] = '\\'; break;
    case '\n': esc[1] = 'n'; break;
    case '\r': esc[1] = 'r'; break;
    case '\t': esc[1] = 't'; break;
    default:
      memcpy(esc, "\\u00", 4);
      esc[4] = hex[c >> 4], esc[5] = hex[c & 15], k = 6;
    }
    rc = hg_buf_append(b, s + run, i - run);
    if (rc == 0) rc = hg_buf_append(b, esc, k);
    run = i + 1;
  }
  if (rc == 0) rc = hg_buf_append(b, s + run, n - run);
  return rc;
}

void hg_buf_free(hg_buf_t *b) {
  free(b->data);
  b->data = NULL;
  b->len = b->cap = 0;
  b->err = 0;
}

char *hg_buf_steal(hg_buf_t *b, size_t *len) {
  char *p = b->data;
  if (len) *len = b->len;
  b->data = NULL;
  b->len = b->cap = 0;
  b->err = 0;
  return p;
}
