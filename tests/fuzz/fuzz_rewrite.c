/* fuzz_rewrite.c — libFuzzer target for the playlist rewriter (src/hls).
 *
 * Each input is a playlist body (the shared corpus is the seed). Besides "no crash, no
 * leak, no sanitizer report", it checks the rewriter's contract on every input:
 *   keep    the output is the input, byte for byte;
 *   marker  every URI becomes a unique marker and the output is exactly the input with
 *           the reported spans replaced (spans in order, inside the body);
 *   mixed   keep / replace (with hostile bytes: quotes, CR/LF, '#') / drop / absolute,
 *           chosen per URI; the result is still a playlist and a keep pass over it
 *           is the identity (replacements never break the structure).
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "hls/hls.h"

/* libFuzzer is guided by the coverage of instrumented code only, and tests/fuzz builds
 * just this file with -fsanitize=fuzzer (libhg_pure.a is not instrumented). So the
 * rewriter's sources are compiled into this translation unit; the linker then takes no
 * hls object from the archive. Harmless once the library is instrumented too. */
#include "hls/attr.c"
#include "hls/hls.c"
#include "hls/rewrite.c"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(x)                                                                  \
  do {                                                                            \
    if (!(x)) {                                                                   \
      fprintf(stderr, "%s:%d: invariant failed: %s\n", __FILE__, __LINE__, #x);   \
      abort();                                                                    \
    }                                                                             \
  } while (0)

enum { M_KEEP, M_MARK, M_MIXED };

typedef struct span_s {
  size_t off, len;
} span_t;

typedef struct ctx_s {
  int mode;
  uint32_t seed;
  span_t spans[4096];
  size_t n, kept;
  const uint8_t *body;
  size_t len;
} ctx_t;

static const char *const hostile[] = {
    "https://gw.example/p?u=a%20b", "x\"y", "a\r\nb", "#frag", "tab\there", "\"", "\n",
    "https://e.example/\x7f\x01",
};

static int decide(void *ud, const hg_hls_uri_t *u, hg_buf_t *repl) {
  ctx_t *c = ud;
  CHECK(u->raw >= (const char *)c->body && u->offset + u->raw_len <= c->len);
  CHECK(u->raw == (const char *)c->body + u->offset && u->raw_len > 0);
  CHECK(u->url != NULL && strlen(u->url) == u->url_len);
  CHECK(u->cls < HG_HLS_CLASS_COUNT && hg_hls_class_name(u->cls) != NULL);
  size_t k = c->n++;
  if (k < sizeof(c->spans) / sizeof(c->spans[0])) c->spans[k] = (span_t){u->offset, u->raw_len};
  switch (c->mode) {
  case M_KEEP: return HG_HLS_KEEP;
  case M_MARK: return hg_buf_printf(repl, "@@%zu@@", k) ? HG_ENOMEM : HG_HLS_REPLACE;
  default: break;
  }
  uint32_t h = (c->seed ^ (uint32_t)(u->offset * 2654435761u)) >> 7;
  switch (h % 5) {
  case 0: c->kept++; return HG_HLS_KEEP;
  case 1:
    if (u->cls == HG_HLS_KEY || u->cls == HG_HLS_MAP) {
      c->kept++;
      return HG_HLS_KEEP;
    }
    return HG_HLS_DROP;
  case 2: c->kept++; return hg_hls_absolute(u, repl);
  default:
    c->kept++;
    return hg_buf_puts(repl, hostile[(h >> 8) % (sizeof(hostile) / sizeof(hostile[0]))])
               ? HG_ENOMEM
               : HG_HLS_REPLACE;
  }
}

static const char *const bases[] = {
    "https://origin.example.com/hls/path/playlist.m3u8?token=tok&foo=bar&parent-token=ptok",
    "http://o.example/a/b/c.m3u8",
    "https://[::1]:8443/x/y.m3u8?a=1#frag",
    "file:///srv/hls/index.m3u8",
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static hg_hls_rewriter_t *rw; /* reused across inputs, as a worker would */
  static ctx_t c;
  if (rw == NULL) rw = hg_hls_rewriter_new();
  const char *body = (const char *)data;
  uint32_t seed = 2166136261u;
  for (size_t i = 0; i < size && i < 64; i++) seed = (seed ^ data[i]) * 16777619u;
  seed ^= (uint32_t)size;
  const char *base = bases[seed % (sizeof(bases) / sizeof(bases[0]))];
  size_t blen = strlen(base);

  /* The attribute parser terminates and stays inside its input. */
  size_t pos = 0, guard = 0;
  hg_hls_attr_t a;
  while (hg_hls_attr_next(body, size, &pos, &a)) {
    CHECK(a.name >= body && a.name + a.name_len <= body + size);
    CHECK(a.value >= body && a.value + a.value_len <= body + size);
    CHECK(++guard <= size);
  }

  int is_pl = hg_hls_is_playlist(body, size);
  /* Live facts (SPEC §5): consistent with detection; a live playlist's reuse is bounded. */
  hg_hls_info_t info;
  hg_hls_info(body, size, &info);
  CHECK(info.playlist == is_pl);
  CHECK(info.live == (info.media && !info.endlist));
  CHECK(!info.live || hg_hls_reuse_ms(&info) <= UINT32_MAX / 2 + 1);
  hg_buf_t out = HG_BUF_INIT, out2 = HG_BUF_INIT, want = HG_BUF_INIT;
  hg_hls_stats_t st;
  c.body = data, c.len = size, c.seed = seed;

  /* keep */
  c.mode = M_KEEP, c.n = 0;
  int rc = hg_hls_rewrite(rw, &out, body, size, base, blen, decide, &c, &st);
  CHECK(is_pl ? rc == 0 : rc == HG_EPARSE);
  if (rc != 0) goto done;
  CHECK(out.len == size && memcmp(out.data, data, size) == 0);
  CHECK(st.uris == c.n);
  size_t uris = c.n;

  /* marker */
  hg_buf_clear(&out);
  c.mode = M_MARK, c.n = 0;
  CHECK(hg_hls_rewrite(rw, &out, body, size, base, blen, decide, &c, &st) == 0);
  CHECK(c.n == uris && st.replaced == uris);
  if (c.n <= sizeof(c.spans) / sizeof(c.spans[0])) {
    size_t p = 0;
    for (size_t i = 0; i < c.n; i++) {
      CHECK(c.spans[i].off >= p);
      hg_buf_append(&want, body + p, c.spans[i].off - p);
      hg_buf_printf(&want, "@@%zu@@", i);
      p = c.spans[i].off + c.spans[i].len;
    }
    hg_buf_append(&want, body + p, size - p);
    CHECK(out.len == want.len && memcmp(out.data, want.data, want.len) == 0);
  }

  /* mixed, then keep and marker passes over the result */
  hg_buf_clear(&out);
  c.mode = M_MIXED, c.n = 0, c.kept = 0;
  CHECK(hg_hls_rewrite(rw, &out, body, size, base, blen, decide, &c, &st) == 0);
  CHECK(c.n == uris && st.dropped + c.kept == uris);
  CHECK(hg_hls_is_playlist(out.data, out.len));
  c.mode = M_KEEP, c.n = 0;
  c.body = (const uint8_t *)out.data, c.len = out.len;
  CHECK(hg_hls_rewrite(rw, &out2, out.data, out.len, base, blen, decide, &c, &st) == 0);
  CHECK(out2.len == out.len && memcmp(out2.data, out.data, out.len) == 0);

done:
  hg_buf_free(&out);
  hg_buf_free(&out2);
  hg_buf_free(&want);
  return 0;
}
