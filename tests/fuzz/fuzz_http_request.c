/* fuzz_http_request.c — libFuzzer target for the HTTP/1.1 request path
 * (src/http/server.c: llhttp glue, the raw head check against obs-fold and blanks before
 * ':', Host/Transfer-Encoding/target rules, the chunk-extension workaround, limits),
 * through the hg__http_parse seam.
 *
 * Input: byte 0 = seed for where the stream is split into reads; the rest is what a
 * client sends on one connection. Besides crashes and sanitizer reports it checks
 * properties that must hold for every input:
 *   - splitting the stream into reads anywhere never changes which requests are handed
 *     over (method, target, Host, headers, body) nor the error that ends the connection
 *     (400 and 405 counted as one: whether an unknown method is followed by a
 *     well-formed line can depend on how much has arrived);
 *   - every HTTP/1.1 request handed over has exactly one Host; no target exceeds the
 *     URI limit, no body the body limit.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http/server.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CAP 64

typedef struct run_s {
  hg__http_parsed_t reqs[CAP];
  size_t n;
  int err;
} run_t;

static const hg_http_limits_t LIM = {.max_headers = 2048, .max_uri = 512, .max_body = 4096};

static void run(const char *msg, size_t len, const size_t *cuts, size_t ncuts, run_t *r) {
  hg__http_parse(msg, len, cuts, ncuts, &LIM, r->reqs, CAP, &r->n, &r->err);
  if (r->err == 405) r->err = 400;
}

static int same(const run_t *a, const run_t *b) {
  if (a->n != b->n || a->err != b->err) return 0;
  for (size_t i = 0; i < a->n && i < CAP; i++) {
    const hg__http_parsed_t *x = &a->reqs[i], *y = &b->reqs[i];
    if (strcmp(x->method, y->method) || x->target_len != y->target_len ||
        x->target_hash != y->target_hash || x->host_hash != y->host_hash ||
        x->has_host != y->has_host || x->nheaders != y->nheaders || x->body_len != y->body_len ||
        x->body_hash != y->body_hash || x->http_minor != y->http_minor)
      return 0;
  }
  return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  uint32_t seed = data[0] * 2654435761u + 1;
  const char *msg = (const char *)data + 1;
  size_t len = size - 1;
  static run_t whole, split, bytewise;

  run(msg, len, NULL, 0, &whole);
  size_t cuts[64], ncuts = 0, at = 0;
  while (ncuts < 64 && at < len) {
    seed = seed * 1103515245u + 12345u;
    at += 1 + (seed >> 16) % 24;
    cuts[ncuts++] = at;
  }
  run(msg, len, cuts, ncuts, &split);
  if (!same(&whole, &split)) abort();
  if (len <= 1024) {
    size_t *all = malloc((len ? len : 1) * sizeof(size_t));
    if (all) {
      for (size_t i = 0; i < len; i++) all[i] = i + 1;
      run(msg, len, all, len, &bytewise);
      free(all);
      if (!same(&whole, &bytewise)) abort();
    }
  }
  for (size_t i = 0; i < whole.n && i < CAP; i++) {
    const hg__http_parsed_t *q = &whole.reqs[i];
    if (q->http_minor >= 1 && !q->has_host) abort();
    if (q->target_len > LIM.max_uri || q->body_len > LIM.max_body) abort();
  }
  return 0;
}
