/* fuzz_upstream_response.c — libFuzzer target for the upstream response parser
 * (src/upstream/response.c: llhttp with the client's callbacks and limits, through the
 * hg__upstream_parse seam: status line, headers, interim 1xx, chunked framing and
 * trailers, Content-Length, close-delimited bodies, HEAD).
 *
 * Input: byte 0 = flags (bit 0: HEAD), byte 1 = seed for where the stream is split into
 * reads; the rest is what the origin sends, then EOF. Besides crashes and sanitizer
 * reports it checks properties that must hold for every input:
 *   - splitting the stream into reads anywhere never changes the outcome (accepted or
 *     not; if accepted: status, length, headers, body bytes, keep-alive): the parser must
 *     not depend on how TCP segments arrive;
 *   - a complete response with a Content-Length has exactly that many body bytes (none
 *     for HEAD, 204, 304);
 *   - headers stay within the client's limits (128 headers, 64 KiB);
 *   - a status is 2xx..5xx-ish (100..999) and never interim once complete.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "upstream/client.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Equal outcomes. After an error only the error counts: how much of a bad head was
 * recorded before llhttp stopped depends on where reads ended (spans are flushed at the
 * end of each read), and nothing of it is used. */
static int same(const hg__parsed_t *a, const hg__parsed_t *b) {
  if (a->rc != b->rc) return 0;
  if (a->rc != 0) return 1;
  return a->status == b->status && a->clen == b->clen &&
         a->nheaders == b->nheaders && a->header_bytes == b->header_bytes &&
         a->body_len == b->body_len && a->body_hash == b->body_hash && a->keepalive == b->keepalive;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 2) return 0;
  int head = data[0] & 1;
  uint32_t seed = data[1] * 2654435761u + 1;
  const char *msg = (const char *)data + 2;
  size_t len = size - 2;

  hg__parsed_t whole, split, bytewise;
  hg__upstream_parse(msg, len, NULL, 0, head, &whole);

  size_t cuts[64], ncuts = 0, at = 0;
  while (ncuts < 64 && at < len) { /* pseudo-random reads of 1..16 bytes, then the rest */
    seed = seed * 1103515245u + 12345u;
    at += 1 + (seed >> 16) % 16;
    cuts[ncuts++] = at;
  }
  hg__upstream_parse(msg, len, cuts, ncuts, head, &split);
  if (!same(&whole, &split)) abort();

  if (len <= 512) { /* one byte per read: every boundary at once */
    size_t *all = malloc((len ? len : 1) * sizeof(size_t));
    if (all) {
      for (size_t i = 0; i < len; i++) all[i] = i + 1;
      hg__upstream_parse(msg, len, all, len, head, &bytewise);
      free(all);
      if (!same(&whole, &bytewise)) abort();
    }
  }

  if (whole.rc == 0) {
    if (whole.status < 100 || whole.status > 999 || whole.status / 100 == 1) abort();
    if (whole.clen >= 0 && !head && whole.body_len != (size_t)whole.clen) abort();
    if ((head || whole.status == 204 || whole.status == 304) && whole.body_len != 0) abort();
  }
  if (whole.nheaders > 128 || whole.header_bytes > 65536) abort();
  return 0;
}
