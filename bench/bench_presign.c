/* bench_presign.c — presigned S3 URLs per second on one core (SPEC §11: a 1,000-segment
 * playlist presigned per request), plus header signing and JWT verify for scale.
 *
 *   bench_presign [seconds-per-case]   (default 2)
 *
 * Single-threaded: the number is per core. Build Release for meaningful numbers:
 *   cmake -S . -B build/release -DCMAKE_BUILD_TYPE=Release && cmake --build build/release
 *   build/release/bench/bench_presign
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/buf.h"
#include "crypto/jwt.h"
#include "crypto/sigv4.h"

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static volatile size_t sink; /* keeps the work observable */

static void report(const char *what, long n, double secs) {
  printf("%-44s %10.0f /s/core  %8.0f ns/op  (%ld in %.2f s)\n", what, (double)n / secs,
         secs / (double)n * 1e9, n, secs);
}

int main(int argc, char **argv) {
  double budget = argc > 1 ? atof(argv[1]) : 2.0;
  if (budget <= 0) budget = 2.0;
  hg_sigv4_config_t cfg = {"AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
                           NULL, "eu-west-1", "s3"};
  hg_sigv4_t *s = hg_sigv4_new(&cfg);
  cfg.session_token = "IQoJb3JpZ2luX2VjEJ//////////wEaCXVzLWVhc3QtMSJHMEUCIQD6EXAMPLEsessiontoken";
  hg_sigv4_t *st = hg_sigv4_new(&cfg);
  if (s == NULL || st == NULL) return 1;
  hg_buf_t url = HG_BUF_INIT, host = HG_BUF_INIT, authz = HG_BUF_INIT;
  char key[64];
  int64_t t0 = 1735689600; /* 2025-01-01 */

  /* Keys like a real media playlist: 1,000 segments, time fixed within a request. */
  struct {
    const char *name;
    hg_sigv4_t *signer;
    const char *endpoint;
    int path_style;
  } cases[] = {
      {"presign, virtual-hosted (AWS)", s, "https://s3.eu-west-1.amazonaws.com", 0},
      {"presign, path-style, port (MinIO)", s, "http://127.0.0.1:9000", 1},
      {"presign, with session token", st, "https://s3.eu-west-1.amazonaws.com", 0},
  };
  for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
    long n = 0;
    double start = now(), el;
    do {
      for (int i = 0; i < 1000; i++, n++) {
        int kl = snprintf(key, sizeof(key), "videos/asset-42/1080p/seg_%05d.ts", i);
        hg_s3_req_t r = {.endpoint = cases[c].endpoint, .bucket = "media-bucket", .key = key,
                         .key_len = (size_t)kl, .path_style = cases[c].path_style,
                         .time = t0 + n / 100000, .expires = 86400};
        hg_buf_clear(&url);
        if (hg_s3_presign(cases[c].signer, &r, &url)) return 1;
        sink += url.len;
      }
    } while ((el = now() - start) < budget);
    report(cases[c].name, n, el);
  }

  /* Playlist-sized batches: how long one 1,000-segment playlist takes to presign. */
  {
    long rounds = 0;
    double start = now(), el;
    do {
      for (int i = 0; i < 1000; i++) {
        int kl = snprintf(key, sizeof(key), "videos/asset-42/1080p/seg_%05d.ts", i);
        hg_s3_req_t r = {.endpoint = "https://s3.eu-west-1.amazonaws.com", .bucket = "media-bucket",
                         .key = key, .key_len = (size_t)kl, .time = t0, .expires = 86400};
        hg_buf_clear(&url);
        hg_s3_presign(s, &r, &url);
        sink += url.len;
      }
      rounds++;
    } while ((el = now() - start) < budget);
    printf("%-44s %10.1f us per 1,000-segment playlist\n", "presign playlist", el / (double)rounds * 1e6);
  }

  /* Header signing (playlist fetches from the origin). */
  {
    long n = 0;
    double start = now(), el;
    hg_sigv4_auth_t out;
    do {
      for (int i = 0; i < 1000; i++, n++) {
        hg_s3_req_t r = {.endpoint = "http://127.0.0.1:9000", .bucket = "media-bucket",
                         .key = "videos/asset-42/1080p/index.m3u8", .key_len = 32,
                         .path_style = 1, .time = t0};
        hg_buf_clear(&url), hg_buf_clear(&host), hg_buf_clear(&authz);
        if (hg_s3_sign(s, &r, &url, &host, &authz, &out)) return 1;
        sink += authz.len;
      }
    } while ((el = now() - start) < budget);
    report("sign_headers (GET, x-amz-content-sha256)", n, el);
  }

  /* JWT verify (one per viewer request). */
  {
    hg_buf_t tok = HG_BUF_INIT, claims = HG_BUF_INIT;
    const char *c = "{\"sub\":\"hls\",\"pfx\":\"videos/asset-42\",\"exp\":2000000000}";
    const char *why;
    hg_jwt_sign(&tok, HG_JWT_HS256, NULL, "0123456789abcdef0123456789abcdef", 32, c, strlen(c), &why);
    hg_jwt_key_t k = {NULL, "0123456789abcdef0123456789abcdef", 32};
    hg_jwt_verify_opts_t o = {HG_JWT_HS256, &k, 1, 1900000000, 0, 0, HG_JWT_REQUIRE_EXP};
    long n = 0;
    double start = now(), el;
    do {
      for (int i = 0; i < 1000; i++, n++) {
        hg_buf_clear(&claims);
        if (hg_jwt_verify(tok.data, tok.len, &o, &claims, &why)) return 1;
        sink += claims.len;
      }
    } while ((el = now() - start) < budget);
    report("jwt verify HS256", n, el);
    hg_buf_free(&tok);
    hg_buf_free(&claims);
  }

  hg_buf_free(&url);
  hg_buf_free(&host);
  hg_buf_free(&authz);
  hg_sigv4_free(s);
  hg_sigv4_free(st);
  return 0;
}
