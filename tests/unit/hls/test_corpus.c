/* The rewriter over all 161 playlists of the shared conformance corpus, checked against
 * the independent URI counts in tests/data/hls/uri-counts.tsv (see the README there):
 *   keep      the output is the input, byte for byte;
 *   markers   every URI becomes a unique marker: the output is exactly the input with
 *             the reported URI spans replaced, and the number of URIs per class, of
 *             foreign and of unresolved URIs is what the independent count says;
 *   absolute  rewriting the absolute output again changes nothing (idempotent);
 *   drop      dropping every URI that may be dropped leaves a playlist in which a second
 *             pass finds only the keys and maps (which may not be dropped).
 */
#include "hgtest.h"

#include "base/error.h"
#include "hls/hls.h"

#define CORPUS HG_SHARED_DIR "/conformance/playlists/"
#define COUNTS HG_SOURCE_DIR "/tests/data/hls/uri-counts.tsv"
/* The base URL count_uris.py assumes (its query feeds EXT-X-DEFINE QUERYPARAM). */
#define BASE "https://origin.example.com/hls/path/playlist.m3u8?token=tok&foo=bar&parent-token=ptok"

enum { M_KEEP, M_MARK, M_ABS, M_DROP };

typedef struct span_s {
  size_t off, len;
  int quoted;
} span_t;

typedef struct ctx_s {
  int mode;
  span_t *spans;
  size_t n, cap;
  size_t keys_maps;
} ctx_t;

static int decide(void *ud, const hg_hls_uri_t *u, hg_buf_t *repl) {
  ctx_t *c = ud;
  if (c->n == c->cap) {
    c->cap = c->cap ? c->cap * 2 : 64;
    c->spans = realloc(c->spans, c->cap * sizeof(*c->spans));
  }
  c->spans[c->n++] = (span_t){u->offset, u->raw_len, (u->flags & HG_HLS_URI_QUOTED) != 0};
  if (u->cls == HG_HLS_KEY || u->cls == HG_HLS_MAP) c->keys_maps++;
  switch (c->mode) {
  case M_MARK: return hg_buf_printf(repl, "@@URI-%zu@@", c->n - 1) ? HG_ENOMEM : HG_HLS_REPLACE;
  case M_ABS: return hg_hls_absolute(u, repl);
  case M_DROP: return u->cls == HG_HLS_KEY || u->cls == HG_HLS_MAP ? HG_HLS_KEEP : HG_HLS_DROP;
  default: return HG_HLS_KEEP;
  }
}

static int run(hg_hls_rewriter_t *r, ctx_t *c, int mode, const char *body, size_t len,
               hg_buf_t *out, hg_hls_stats_t *st) {
  c->mode = mode;
  c->n = 0;
  c->keys_maps = 0;
  hg_buf_clear(out);
  return hg_hls_rewrite(r, out, body, len, BASE, strlen(BASE), decide, c, st);
}

/* "a=1,b=2" -> the count for class `name`, 0 if absent. */
static long class_count(const char *list, const char *name) {
  size_t n = strlen(name);
  for (const char *p = list; p && *p;) {
    if (strncmp(p, name, n) == 0 && p[n] == '=') return atol(p + n + 1);
    p = strchr(p, ',');
    if (p) p++;
  }
  return 0;
}

HG_TEST(corpus_matches_independent_counts) {
  size_t tsv_len;
  char *tsv = hgtest_slurp(COUNTS, &tsv_len);
  CHECK(tsv != NULL);
  if (tsv == NULL) return;

  hg_hls_rewriter_t *r = hg_hls_rewriter_new();
  hg_buf_t out = HG_BUF_INIT, out2 = HG_BUF_INIT, want = HG_BUF_INIT;
  ctx_t c = {0};
  int files = 0, bad_files = 0;
  long total = 0;
  char *save = NULL;
  for (char *ln = strtok_r(tsv, "\n", &save); ln; ln = strtok_r(NULL, "\n", &save)) {
    if (ln[0] == '#') continue;
    char name[512], classes[512];
    long uris, foreign, unresolved;
    if (sscanf(ln, "%511[^\t]\t%ld\t%ld\t%ld\t%511s", name, &uris, &foreign, &unresolved, classes) != 5) {
      CHECK(!"malformed uri-counts.tsv line");
      continue;
    }
    int before = hgtest_failures;
    files++;
    total += uris;
    char path[1024];
    snprintf(path, sizeof(path), CORPUS "%s", name);
    size_t len;
    char *body = hgtest_slurp(path, &len);
    CHECK(body != NULL);
    if (body == NULL) continue;
    CHECK(hg_hls_is_playlist(body, len));
    hg_hls_stats_t st;

    /* keep: byte for byte. */
    CHECK_INT(run(r, &c, M_KEEP, body, len, &out, &st), 0);
    CHECK(out.len == len && memcmp(out.data, body, len) == 0);

    /* markers: exactly the URI spans change, and the counts match. */
    CHECK_INT(run(r, &c, M_MARK, body, len, &out, &st), 0);
    CHECK_INT(st.uris, uris);
    CHECK_INT(c.n, uris);
    CHECK_INT(st.replaced, uris);
    CHECK_INT(st.foreign, foreign);
    CHECK_INT(st.unresolved, unresolved);
    for (int k = 0; k < HG_HLS_CLASS_COUNT; k++) {
      const char *cn = hg_hls_class_name((hg_hls_class_t)k);
      long got = (long)st.by_class[k], exp = class_count(classes, cn);
      if (got != exp) fprintf(stderr, "  %s: class %s: %ld, expected %ld\n", name, cn, got, exp);
      CHECK(got == exp);
    }
    hg_buf_clear(&want);
    size_t p = 0;
    for (size_t i = 0; i < c.n; i++) {
      const span_t *s = &c.spans[i];
      CHECK(s->off >= p && s->off + s->len <= len && s->len > 0);
      if (s->off < p || s->off + s->len > len) break;
      if (s->quoted) CHECK(body[s->off - 1] == '"' && body[s->off + s->len] == '"');
      else CHECK(s->off + s->len == len || body[s->off + s->len] == '\n' ||
                 body[s->off + s->len] == '\r' || body[s->off + s->len] == ' ' ||
                 body[s->off + s->len] == '\t');
      hg_buf_append(&want, body + p, s->off - p);
      hg_buf_printf(&want, "@@URI-%zu@@", i);
      p = s->off + s->len;
    }
    hg_buf_append(&want, body + p, len - p);
    CHECK(out.len == want.len && memcmp(out.data, want.data, want.len) == 0);

    /* absolute, twice: the second pass is the identity. */
    CHECK_INT(run(r, &c, M_ABS, body, len, &out, &st), 0);
    size_t n1 = c.n;
    hg_buf_clear(&out2);
    c.n = 0;
    CHECK_INT(hg_hls_rewrite(r, &out2, out.data, out.len, BASE, strlen(BASE), decide, &c, &st), 0);
    CHECK(c.n == n1);
    CHECK(out2.len == out.len && memcmp(out2.data, out.data, out.len) == 0);

    /* drop all that may be dropped; a second pass finds only keys and maps. */
    CHECK_INT(run(r, &c, M_DROP, body, len, &out, &st), 0);
    size_t km = c.keys_maps;
    CHECK(hg_hls_is_playlist(out.data, out.len));
    hg_buf_clear(&out2);
    c.mode = M_KEEP;
    c.n = 0;
    CHECK_INT(hg_hls_rewrite(r, &out2, out.data, out.len, BASE, strlen(BASE), decide, &c, &st), 0);
    CHECK(c.n == km);
    CHECK(st.uris == km);

    if (hgtest_failures != before) {
      bad_files++;
      fprintf(stderr, "FAIL %s\n", name);
    }
    free(body);
  }
  printf("corpus: %d files, %ld URIs, %d failed\n", files, total, bad_files);
  CHECK_INT(files, 161);
  free(c.spans);
  free(tsv);
  hg_buf_free(&out);
  hg_buf_free(&out2);
  hg_buf_free(&want);
  hg_hls_rewriter_free(r);
}

int main(void) {
  RUN(corpus_matches_independent_counts);
  return hgtest_done();
}
