/* Unit tests for gateway/live.c and http/freshness.c: LL-HLS directives and how long an
 * answer may be reused (SPEC §5, §7). */
#include <stdint.h>

#include "hgtest.h"

#include "base/arena.h"
#include "gateway/live.h"
#include "http/freshness.h"

static hg_freshness_t fresh(const char *cc, const char *expires, const char *date, const char *age) {
  hg_freshness_t f;
  hg_freshness_parse(cc, expires, date, age, 1700000000, &f);
  return f;
}

HG_TEST(origin_cache_control) {
  hg_freshness_t f = fresh(NULL, NULL, NULL, NULL);
  CHECK(!f.has_limit && !f.no_store);
  f = fresh("max-age=1", NULL, NULL, NULL);
  CHECK(f.has_limit && f.limit_ms == 1000);
  f = fresh("public, max-age=60, s-maxage=5", NULL, NULL, NULL); /* shared cache: s-maxage */
  CHECK_INT(f.limit_ms, 5000);
  f = fresh("max-age=60", NULL, NULL, "50");
  CHECK_INT(f.limit_ms, 10000);
  f = fresh("max-age=60", NULL, NULL, "500");
  CHECK_INT(f.limit_ms, 0);
  f = fresh("No-Cache", NULL, NULL, NULL);
  CHECK(f.has_limit && f.limit_ms == 0 && !f.no_store);
  f = fresh("no-store", NULL, NULL, NULL);
  CHECK(f.no_store);
  f = fresh("private, max-age=600", NULL, NULL, NULL);
  CHECK(f.no_store);
  f = fresh("max-age=abc", NULL, NULL, NULL); /* malformed: stale, not fresh forever */
  CHECK(f.has_limit && f.limit_ms == 0);
  f = fresh("max-age=\"30\"", NULL, NULL, NULL);
  CHECK_INT(f.limit_ms, 30000);
}

HG_TEST(origin_expires) {
  /* 1700000000 is Tue, 14 Nov 2023 22:13:20 GMT */
  CHECK_INT(hg_http_date_parse("Tue, 14 Nov 2023 22:13:20 GMT"), 1700000000);
  CHECK_INT(hg_http_date_parse("Tuesday, 14-Nov-23 22:13:20 GMT"), 1700000000);
  CHECK_INT(hg_http_date_parse("Tue Nov 14 22:13:20 2023"), 1700000000);
  CHECK_INT(hg_http_date_parse("0"), -1);
  hg_freshness_t f = fresh(NULL, "Tue, 14 Nov 2023 22:13:30 GMT", NULL, NULL);
  CHECK_INT(f.limit_ms, 10000);
  f = fresh(NULL, "Tue, 14 Nov 2023 22:13:30 GMT", "Tue, 14 Nov 2023 22:13:25 GMT", NULL);
  CHECK_INT(f.limit_ms, 5000); /* relative to the origin's Date: clock skew does not matter */
  f = fresh(NULL, "0", NULL, NULL);
  CHECK(f.has_limit && f.limit_ms == 0);
  f = fresh("max-age=3", "Tue, 14 Nov 2023 22:13:30 GMT", NULL, NULL); /* max-age wins */
  CHECK_INT(f.limit_ms, 3000);
}

HG_TEST(ttl_per_class) {
  hg_hls_info_t live, vod;
  const char *l = "#EXTM3U\n#EXT-X-TARGETDURATION:6\n#EXTINF:6,\na.ts\n";
  const char *v = "#EXTM3U\n#EXT-X-TARGETDURATION:6\n#EXTINF:6,\na.ts\n#EXT-X-ENDLIST\n";
  hg_hls_info(l, strlen(l), &live);
  hg_hls_info(v, strlen(v), &vod);
  hg_freshness_t none = fresh(NULL, NULL, NULL, NULL), one = fresh("max-age=1", NULL, NULL, NULL);
  hg_freshness_t nostore = fresh("no-store", NULL, NULL, NULL);
  CHECK_INT(hg_live_ttl_ms(300000, -1, &live, &none), 3000);  /* half the target */
  CHECK_INT(hg_live_ttl_ms(300000, -1, &vod, &none), 300000); /* the policy's */
  CHECK_INT(hg_live_ttl_ms(300000, -1, NULL, &none), 300000); /* a segment */
  CHECK_INT(hg_live_ttl_ms(300000, -1, &live, &one), 1000);   /* the origin's limit */
  CHECK_INT(hg_live_ttl_ms(300000, -1, &vod, &nostore), 0);
  CHECK_INT(hg_live_ttl_ms(300000, 500, &live, &none), 500);  /* the policy overrides */
  CHECK_INT(hg_live_ttl_ms(2000, -1, &live, &none), 2000);    /* never above the policy's */
  CHECK_INT(hg_live_ttl_ms(0, -1, &live, NULL), 0);
  char cc[48];
  CHECK_STR(hg_live_cache_control(cc, sizeof(cc), 3999, 0, 0), "public, max-age=3");
  CHECK_STR(hg_live_cache_control(cc, sizeof(cc), 300000, 1, 0), "private, max-age=300");
  CHECK_STR(hg_live_cache_control(cc, sizeof(cc), 500, 0, 0), "public, max-age=0");
  CHECK_STR(hg_live_cache_control(cc, sizeof(cc), 300000, 0, 1), "no-store");
}

static hg_directives_t directives(hg_arena_t *a, const char *target) {
  hg_request_t req;
  memset(&req, 0, sizeof(req));
  req.arena = a;
  req.target = target;
  req.target_len = strlen(target);
  hg_directives_t d;
  CHECK_INT(hg_directives_read(&req, &d), 0);
  return d;
}

static void check_apply(const hg_directives_t *d, const char *url, const char *want) {
  hg_buf_t out = HG_BUF_INIT;
  CHECK_INT(hg_directives_apply(d, &out, url, strlen(url)), 0);
  hg_buf_putc(&out, '\0');
  CHECK_STR(out.data, want);
  hg_buf_free(&out);
}

HG_TEST(directives_are_read_in_a_fixed_order) {
  hg_arena_t *a = hg_arena_new(1024);
  hg_directives_t d = directives(a, "/proxy?url=http%3A%2F%2Fo%2Fa.m3u8&_HLS_part=1&x=2&_HLS_msn=7");
  CHECK_INT(d.n, 2);
  CHECK_STR(d.query, "_HLS_msn=7&_HLS_part=1");
  /* Same request, other spelling and order: same key. */
  hg_directives_t e = directives(a, "/proxy?%5FHLS_msn=7&url=x&_HLS_part=1&_HLS_msn=9");
  CHECK_STR(e.query, "_HLS_msn=7&_HLS_part=1");
  d = directives(a, "/p?_HLS_skip=YES&_HLS_pathway=CDN%20A&_HLS_primary_id=x&_HLS_other=1");
  CHECK_STR(d.query, "_HLS_skip=YES&_HLS_pathway=CDN%20A&_HLS_primary_id=x");
  d = directives(a, "/stream/hls/live.m3u8?token=abc");
  CHECK_INT(d.n, 0);
  CHECK_STR(d.query, "");
  d = directives(a, "/p?_HLS_msn=%00"); /* a NUL never reaches an origin URL */
  CHECK_INT(d.n, 0);
  hg_arena_free(a);
}

HG_TEST(directives_are_applied_to_the_origin_url) {
  hg_arena_t *a = hg_arena_new(1024);
  hg_directives_t d = directives(a, "/proxy?url=u&_HLS_msn=7&_HLS_part=1");
  check_apply(&d, "http://o/live.m3u8", "http://o/live.m3u8?_HLS_msn=7&_HLS_part=1");
  check_apply(&d, "http://o/live.m3u8?k=v", "http://o/live.m3u8?k=v&_HLS_msn=7&_HLS_part=1");
  check_apply(&d, "http://o/live.m3u8?", "http://o/live.m3u8?_HLS_msn=7&_HLS_part=1");
  check_apply(&d, "http://o/live.m3u8#frag", "http://o/live.m3u8?_HLS_msn=7&_HLS_part=1");
  /* The policy already chose directives: they stay as the policy wrote them. */
  check_apply(&d, "http://o/live.m3u8?_HLS_msn=3", "http://o/live.m3u8?_HLS_msn=3");
  hg_directives_t none = directives(a, "/proxy?url=u");
  check_apply(&none, "http://o/live.m3u8", "http://o/live.m3u8");
  hg_arena_free(a);
}

int main(void) {
  RUN(origin_cache_control);
  RUN(origin_expires);
  RUN(ttl_per_class);
  RUN(directives_are_read_in_a_fixed_order);
  RUN(directives_are_applied_to_the_origin_url);
  return hgtest_done();
}
