/* bench_rewrite.c — playlist rewrite throughput (MB/s, URIs/s) on a generated
 * 100,000-segment media playlist.
 *
 *   bench_rewrite [segments] [seconds-per-case]
 *
 * Cases: `keep` (parse + resolve + callback, output = input), `absolute` (every segment
 * becomes its resolved URL) and `presign-like` (every segment becomes its resolved URL
 * plus a SigV4-query-sized tail, ~330 bytes, the shape presigning produces; the
 * signature is a counter, so this measures the rewriter, not HMAC). One rewriter and one
 * output buffer are reused, as a worker would, so the steady state allocates nothing.
 * Build it Release for meaningful numbers (the default build dir may be Debug+ASan).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/buf.h"
#include "base/error.h"
#include "hls/hls.h"

#define BASE "https://bucket.s3.eu-central-1.amazonaws.com/videos/abc123/720p/index.m3u8"

enum { KEEP, ABSOLUTE, PRESIGN };

static unsigned long counter;

static int decide(void *ud, const hg_hls_uri_t *u, hg_buf_t *repl) {
  int mode = *(const int *)ud;
  if (mode == KEEP) return HG_HLS_KEEP;
  if (mode == ABSOLUTE) return hg_hls_absolute(u, repl);
  static const char tail[] =
      "?X-Amz-Algorithm=AWS4-HMAC-SHA256"
      "&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20240101%2Feu-central-1%2Fs3%2Faws4_request"
      "&X-Amz-Date=20240101T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host"
      "&X-Amz-Signature=";
  if (hg_buf_append(repl, u->url, u->url_len) || hg_buf_append(repl, tail, sizeof(tail) - 1))
    return HG_ENOMEM;
  /* A 64-hex-digit "signature" from a counter (cheap: the bench measures rewriting). */
  char sig[64];
  unsigned long x = ++counter * 0x9E3779B97F4A7C15ul;
  for (int i = 0; i < 64; i++, x = x * 6364136223846793005ul + 1442695040888963407ul)
    sig[i] = "0123456789abcdef"[x >> 60];
  if (hg_buf_append(repl, sig, sizeof(sig))) return HG_ENOMEM;
  return HG_HLS_REPLACE;
}

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
  long segments = argc > 1 ? atol(argv[1]) : 100000;
  double budget = argc > 2 ? atof(argv[2]) : 2.0;
  hg_buf_t pl = HG_BUF_INIT, out = HG_BUF_INIT;
  hg_buf_puts(&pl, "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:4\n#EXT-X-MEDIA-SEQUENCE:0\n"
                   "#EXT-X-PLAYLIST-TYPE:VOD\n");
  for (long i = 0; i < segments; i++) hg_buf_printf(&pl, "#EXTINF:4.000,\nsegment_%06ld.ts\n", i);
  hg_buf_puts(&pl, "#EXT-X-ENDLIST\n");

  hg_hls_rewriter_t *rw = hg_hls_rewriter_new();
  static const char *const names[] = {"keep", "absolute", "presign-like"};
  printf("playlist: %ld segments, %.2f MB\n", segments, (double)pl.len / 1e6);
  printf("%-13s %10s %10s %12s %10s %8s\n", "case", "ms/rewrite", "in MB/s", "URIs/s", "out MB/s", "out MB");
  for (int mode = KEEP; mode <= PRESIGN; mode++) {
    hg_hls_stats_t st;
    int runs = 0;
    double t0 = now(), t;
    do {
      hg_buf_clear(&out);
      int rc = hg_hls_rewrite(rw, &out, pl.data, pl.len, BASE, strlen(BASE), decide, &mode, &st);
      if (rc) {
        fprintf(stderr, "rewrite failed: %s\n", hg_strerror(rc));
        return 1;
      }
      runs++;
      t = now() - t0;
    } while (t < budget);
    double per = t / runs;
    printf("%-13s %10.2f %10.1f %12.0f %10.1f %8.2f\n", names[mode], per * 1e3,
           (double)pl.len / per / 1e6, (double)st.uris / per, (double)out.len / per / 1e6,
           (double)out.len / 1e6);
  }
  hg_hls_rewriter_free(rw);
  hg_buf_free(&pl);
  hg_buf_free(&out);
  return 0;
}
