/* Unit tests for hls/rewrite: every carrier and class, the actions, drop semantics,
 * byte-exactness (CRLF, BOM, no final newline), variables, escaping, errors. */
#include "hgtest.h"

#include "base/error.h"
#include "hls/hls.h"
#include "url/url.h"

/* ---- A configurable decision callback -------------------------------------------- */

enum { A_KEEP = 0, A_REPLACE, A_DROP, A_ABSOLUTE, A_PROXY, A_MARK, A_TOKEN, A_FAIL };

typedef struct rec_s {
  hg_hls_class_t cls;
  char raw[256], url[512], tag[64], attr[32], attrs[256];
  unsigned flags;
  size_t line, offset;
} rec_t;

typedef struct tctx_s {
  int action[HG_HLS_CLASS_COUNT];
  const char *fixed; /* A_REPLACE bytes */
  rec_t recs[64];
  int n;
} tctx_t;

static void cpy(char *dst, size_t cap, const char *s, size_t n) {
  if (s == NULL) {
    dst[0] = '\0';
    return;
  }
  if (n >= cap) n = cap - 1;
  memcpy(dst, s, n);
  dst[n] = '\0';
}

static int decide(void *ud, const hg_hls_uri_t *u, hg_buf_t *repl) {
  tctx_t *c = ud;
  if (c->n < 64) {
    rec_t *r = &c->recs[c->n];
    r->cls = u->cls;
    cpy(r->raw, sizeof(r->raw), u->raw, u->raw_len);
    cpy(r->url, sizeof(r->url), u->url, u->url_len);
    cpy(r->tag, sizeof(r->tag), u->tag, u->tag_len);
    cpy(r->attr, sizeof(r->attr), u->attr, u->attr_len);
    cpy(r->attrs, sizeof(r->attrs), u->attrs, u->attrs_len);
    r->flags = u->flags;
    r->line = u->line;
    r->offset = u->offset;
  }
  int k = c->n++;
  CHECK(strlen(u->url) == u->url_len);
  switch (c->action[u->cls]) {
  case A_KEEP: return HG_HLS_KEEP;
  case A_DROP: return HG_HLS_DROP;
  case A_REPLACE: return hg_buf_puts(repl, c->fixed) ?: HG_HLS_REPLACE;
  case A_ABSOLUTE: return hg_hls_absolute(u, repl);
  case A_PROXY:
    hg_buf_puts(repl, "https://gw.example/proxy?url=");
    hg_url_encode(repl, u->url, u->url_len, 0);
    return HG_HLS_REPLACE;
  case A_MARK: return hg_buf_printf(repl, "M%d", k) ?: HG_HLS_REPLACE;
  case A_TOKEN: return hg_url_query_set(repl, u->url, u->url_len, "token", "T0K") ?: HG_HLS_REPLACE;
  case A_FAIL: return HG_EBUDGET;
  }
  return 7; /* not an action */
}

static void all(tctx_t *c, int action) {
  for (int i = 0; i < HG_HLS_CLASS_COUNT; i++) c->action[i] = action;
}

#define BASE "https://origin.example.com/v/master.m3u8"

/* Rewrites `body` (a C string) against `base`; returns rc, output in *out (caller frees
 * with hg_buf_free). */
static int rw(const char *body, const char *base, tctx_t *c, hg_buf_t *out, hg_hls_stats_t *st) {
  *out = (hg_buf_t)HG_BUF_INIT;
  c->n = 0;
  return hg_hls_rewrite(NULL, out, body, strlen(body), base, strlen(base), decide, c, st);
}

/* Rewrites and checks the output against `want`. */
static void expect(const char *body, const char *base, tctx_t *c, const char *want) {
  hg_buf_t out;
  int rc = rw(body, base, c, &out, NULL);
  CHECK_INT(rc, 0);
  CHECK_STR(out.data ? out.data : "", want);
  hg_buf_free(&out);
}

/* ---- Classes, detection, attribute lists ------------------------------------------ */

HG_TEST(class_names_round_trip) {
  for (int i = 0; i < HG_HLS_CLASS_COUNT; i++) {
    const char *n = hg_hls_class_name((hg_hls_class_t)i);
    CHECK(n != NULL);
    CHECK_INT(hg_hls_class_parse(n, strlen(n)), i);
  }
  CHECK(hg_hls_class_name(HG_HLS_CLASS_COUNT) == NULL);
  CHECK_STR(hg_hls_class_name(HG_HLS_PRELOAD_HINT), "preload_hint");
  CHECK_INT(hg_hls_class_parse("Segment", 7), -1);
  CHECK_INT(hg_hls_class_parse("seg", 3), -1);
  CHECK_INT(hg_hls_class_parent(HG_HLS_SESSION_KEY), HG_HLS_KEY);
  CHECK_INT(hg_hls_class_parent(HG_HLS_IFRAME_PLAYLIST), HG_HLS_PLAYLIST);
  CHECK_INT(hg_hls_class_parent(HG_HLS_PART), HG_HLS_SEGMENT);
  CHECK_INT(hg_hls_class_parent(HG_HLS_PRELOAD_HINT), -1);
  CHECK_INT(hg_hls_class_parent(HG_HLS_SEGMENT), -1);
}

HG_TEST(detects_playlists) {
#define IS(s) hg_hls_is_playlist(s, sizeof(s) - 1)
  CHECK(IS("#EXTM3U"));
  CHECK(IS("#EXTM3U\n#EXT-X-VERSION:3\n"));
  CHECK(IS("\xEF\xBB\xBF#EXTM3U\r\n"));
  CHECK(IS("# a comment\n\n  \n#another\r\n#EXTM3U\n"));
  CHECK(IS("#EXTM3U x-tvg-url=\"a\"\n"));
  CHECK(IS("#\n#EXTM3U\n"));
  CHECK(!IS(""));
  CHECK(!IS("\xEF\xBB\xBF"));
  CHECK(!IS("#EXTM3U8\n"));
  CHECK(!IS("#EXT-X-VERSION:3\n#EXTM3U\n"));
  CHECK(!IS("<html>#EXTM3U"));
  CHECK(!IS("seg.ts\n#EXTM3U\n"));
  CHECK(!IS("\x47\x40\x11\x10#EXTM3U"));
  CHECK(!IS("# only comments\n"));
#undef IS
}

HG_TEST(parses_attribute_lists) {
  const char *s = " METHOD=AES-128, URI=\"k,1.bin\" ,IV=0x01,CODECS=\"a, b\",bare,EMPTY=\"\",X=\"open";
  size_t pos = 0, n = strlen(s);
  hg_hls_attr_t a;
  const char *names[] = {"METHOD", "URI", "IV", "CODECS", "EMPTY", "X"};
  const char *vals[] = {"AES-128", "k,1.bin", "0x01", "a, b", "", "open"};
  int quoted[] = {0, 1, 0, 1, 1, 0};
  int i = 0;
  while (hg_hls_attr_next(s, n, &pos, &a)) {
    CHECK(i < 6);
    if (i >= 6) break;
    CHECK(a.name_len == strlen(names[i]) && memcmp(a.name, names[i], a.name_len) == 0);
    CHECK(a.value_len == strlen(vals[i]) && memcmp(a.value, vals[i], a.value_len) == 0);
    CHECK_INT(a.quoted, quoted[i]);
    i++;
  }
  CHECK_INT(i, 6);
  CHECK(hg_hls_attr_get(s, n, "IV", 2, &a) && a.value_len == 4);
  CHECK(!hg_hls_attr_get(s, n, "KEYFORMAT", 9, &a));
  pos = 0;
  CHECK(!hg_hls_attr_next("", 0, &pos, &a));
}

/* ---- Carriers and classes ---------------------------------------------------------- */

HG_TEST(every_multivariant_carrier) {
  const char *pl =
      "#EXTM3U\n"
      "#EXT-X-CONTENT-STEERING:SERVER-URI=\"/steer.json\",PATHWAY-ID=\"A\"\n"
      "#EXT-X-SESSION-DATA:DATA-ID=\"com.x\",URI=\"data.json\"\n"
      "#EXT-X-SESSION-KEY:METHOD=AES-128,URI=\"keys/k1.bin\"\n"
      "#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"aac\",NAME=\"en\",URI=\"audio/en.m3u8\"\n"
      "#EXT-X-MEDIA:TYPE=CLOSED-CAPTIONS,GROUP-ID=\"cc\",NAME=\"cc\",INSTREAM-ID=\"CC1\"\n"
      "#EXT-X-STREAM-INF:BANDWIDTH=1280000,CODECS=\"avc1.4d401f,mp4a.40.2\",AUDIO=\"aac\"\n"
      "low/index.m3u8\n"
      "#EXT-X-I-FRAME-STREAM-INF:BANDWIDTH=86000,URI=\"low/iframe.m3u8\"\n"
      "#EXT-X-IMAGE-STREAM-INF:BANDWIDTH=16460,URI=\"img/thumbs.m3u8\"\n";
  tctx_t c = {0};
  all(&c, A_MARK);
  hg_buf_t out;
  hg_hls_stats_t st;
  CHECK_INT(rw(pl, BASE, &c, &out, &st), 0);
  CHECK_INT(c.n, 7);
  hg_hls_class_t cls[] = {HG_HLS_STEERING, HG_HLS_SESSION_DATA, HG_HLS_SESSION_KEY,
                          HG_HLS_PLAYLIST, HG_HLS_PLAYLIST, HG_HLS_IFRAME_PLAYLIST,
                          HG_HLS_IMAGE_PLAYLIST};
  const char *url[] = {"https://origin.example.com/steer.json",
                       "https://origin.example.com/v/data.json",
                       "https://origin.example.com/v/keys/k1.bin",
                       "https://origin.example.com/v/audio/en.m3u8",
                       "https://origin.example.com/v/low/index.m3u8",
                       "https://origin.example.com/v/low/iframe.m3u8",
                       "https://origin.example.com/v/img/thumbs.m3u8"};
  const char *tag[] = {"EXT-X-CONTENT-STEERING", "EXT-X-SESSION-DATA", "EXT-X-SESSION-KEY",
                       "EXT-X-MEDIA", "EXT-X-STREAM-INF", "EXT-X-I-FRAME-STREAM-INF",
                       "EXT-X-IMAGE-STREAM-INF"};
  const char *attr[] = {"SERVER-URI", "URI", "URI", "URI", "", "URI", "URI"};
  for (int i = 0; i < 7 && i < c.n; i++) {
    CHECK_INT(c.recs[i].cls, cls[i]);
    CHECK_STR(c.recs[i].url, url[i]);
    CHECK_STR(c.recs[i].tag, tag[i]);
    CHECK_STR(c.recs[i].attr, attr[i]);
    CHECK_INT(c.recs[i].flags & HG_HLS_URI_QUOTED, i == 4 ? 0 : HG_HLS_URI_QUOTED);
  }
  /* The variant sees its STREAM-INF attributes, for per-variant decisions. */
  CHECK_STR(c.recs[4].attrs, "BANDWIDTH=1280000,CODECS=\"avc1.4d401f,mp4a.40.2\",AUDIO=\"aac\"");
  CHECK_INT(c.recs[4].line, 8);
  CHECK_STR(out.data,
            "#EXTM3U\n"
            "#EXT-X-CONTENT-STEERING:SERVER-URI=\"M0\",PATHWAY-ID=\"A\"\n"
            "#EXT-X-SESSION-DATA:DATA-ID=\"com.x\",URI=\"M1\"\n"
            "#EXT-X-SESSION-KEY:METHOD=AES-128,URI=\"M2\"\n"
            "#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"aac\",NAME=\"en\",URI=\"M3\"\n"
            "#EXT-X-MEDIA:TYPE=CLOSED-CAPTIONS,GROUP-ID=\"cc\",NAME=\"cc\",INSTREAM-ID=\"CC1\"\n"
            "#EXT-X-STREAM-INF:BANDWIDTH=1280000,CODECS=\"avc1.4d401f,mp4a.40.2\",AUDIO=\"aac\"\n"
            "M4\n"
            "#EXT-X-I-FRAME-STREAM-INF:BANDWIDTH=86000,URI=\"M5\"\n"
            "#EXT-X-IMAGE-STREAM-INF:BANDWIDTH=16460,URI=\"M6\"\n");
  CHECK_INT(st.uris, 7);
  CHECK_INT(st.replaced, 7);
  CHECK_INT(st.by_class[HG_HLS_PLAYLIST], 2);
  hg_buf_free(&out);
}

HG_TEST(every_media_carrier) {
  const char *pl =
      "#EXTM3U\n"
      "#EXT-X-TARGETDURATION:4\n"
      "#EXT-X-KEY:METHOD=AES-128,URI=\"../keys/k1.bin\",IV=0x0123\n"
      "#EXT-X-MAP:URI=\"init.mp4\"\n"
      "#EXTINF:4.0,\n"
      "seg1.m4s\n"
      "#EXT-X-PART:DURATION=1.0,URI=\"seg2.part1.m4s\",INDEPENDENT=YES\n"
      "#EXT-X-DATERANGE:ID=\"ad\",CLASS=\"com.apple.hls.interstitial\",START-DATE=\"2024-01-01T00:00:00Z\","
      "X-ASSET-URI=\"https://ads.example/ad.m3u8\",X-ASSET-LIST=\"/list.json?x=1\",X-RESTRICT=\"SKIP,JUMP\"\n"
      "#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"seg2.part2.m4s\"\n"
      "#EXT-X-RENDITION-REPORT:URI=\"../720p/index.m3u8\",LAST-MSN=2,LAST-PART=1\n";
  tctx_t c = {0};
  all(&c, A_MARK);
  hg_buf_t out;
  CHECK_INT(rw(pl, "https://o.example/v/480p/index.m3u8", &c, &out, NULL), 0);
  CHECK_INT(c.n, 8);
  hg_hls_class_t cls[] = {HG_HLS_KEY, HG_HLS_MAP, HG_HLS_SEGMENT, HG_HLS_PART, HG_HLS_ASSET,
                          HG_HLS_ASSET_LIST, HG_HLS_PRELOAD_HINT, HG_HLS_RENDITION_REPORT};
  const char *url[] = {"https://o.example/v/keys/k1.bin", "https://o.example/v/480p/init.mp4",
                       "https://o.example/v/480p/seg1.m4s",
                       "https://o.example/v/480p/seg2.part1.m4s", "https://ads.example/ad.m3u8",
                       "https://o.example/list.json?x=1",
                       "https://o.example/v/480p/seg2.part2.m4s",
                       "https://o.example/v/720p/index.m3u8"};
  for (int i = 0; i < 8 && i < c.n; i++) {
    CHECK_INT(c.recs[i].cls, cls[i]);
    CHECK_STR(c.recs[i].url, url[i]);
  }
  CHECK_STR(c.recs[2].tag, "EXTINF");
  CHECK_STR(c.recs[2].attrs, "4.0,");
  CHECK_STR(c.recs[4].attr, "X-ASSET-URI");
  CHECK_STR(c.recs[5].attr, "X-ASSET-LIST");
  CHECK_STR(out.data,
            "#EXTM3U\n"
            "#EXT-X-TARGETDURATION:4\n"
            "#EXT-X-KEY:METHOD=AES-128,URI=\"M0\",IV=0x0123\n"
            "#EXT-X-MAP:URI=\"M1\"\n"
            "#EXTINF:4.0,\n"
            "M2\n"
            "#EXT-X-PART:DURATION=1.0,URI=\"M3\",INDEPENDENT=YES\n"
            "#EXT-X-DATERANGE:ID=\"ad\",CLASS=\"com.apple.hls.interstitial\",START-DATE=\"2024-01-01T00:00:00Z\","
            "X-ASSET-URI=\"M4\",X-ASSET-LIST=\"M5\",X-RESTRICT=\"SKIP,JUMP\"\n"
            "#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"M6\"\n"
            "#EXT-X-RENDITION-REPORT:URI=\"M7\",LAST-MSN=2,LAST-PART=1\n");
  hg_buf_free(&out);
}

HG_TEST(tags_between_extinf_and_uri) {
  const char *pl =
      "#EXTM3U\n"
      "#EXTINF:5.005,\n"
      "#EXT-X-MAP:URI=\"init.mp4\"\n"
      "#EXT-X-PROGRAM-DATE-TIME:2021-11-10T03:25:49.015Z\n"
      "# a comment\n"
      "\n"
      "#EXT-X-CUSTOM-URI:http://not.a.carrier/x\n"
      "3.mp4\n"
      "#EXTINF:4,\n"
      "#EXT-X-BYTERANGE:100@0\n"
      "4.mp4\n";
  tctx_t c = {0};
  all(&c, A_MARK);
  expect(pl, BASE, &c,
         "#EXTM3U\n"
         "#EXTINF:5.005,\n"
         "#EXT-X-MAP:URI=\"M0\"\n"
         "#EXT-X-PROGRAM-DATE-TIME:2021-11-10T03:25:49.015Z\n"
         "# a comment\n"
         "\n"
         "#EXT-X-CUSTOM-URI:http://not.a.carrier/x\n"
         "M1\n"
         "#EXTINF:4,\n"
         "#EXT-X-BYTERANGE:100@0\n"
         "M2\n");
  CHECK_INT(c.n, 3);
  CHECK_INT(c.recs[0].cls, HG_HLS_MAP);
  CHECK_INT(c.recs[1].cls, HG_HLS_SEGMENT);
  CHECK_STR(c.recs[1].attrs, "5.005,");
  CHECK_INT(c.recs[1].flags, 0);
  CHECK_INT(c.recs[2].flags, HG_HLS_URI_BYTERANGE);
  CHECK_INT(c.recs[1].line, 8);
}

HG_TEST(daterange_with_asset_uri_and_list) {
  const char *pl =
      "#EXTM3U\n"
      "#EXT-X-DATERANGE:ID=\"i1\",CLASS=\"com.apple.hls.interstitial\",START-DATE=\"2024-01-12T10:00:10Z\","
      "DURATION=15.0,X-ASSET-URI=\"ad/main.m3u8?id=1\",X-ASSET-LIST=\"https://ads.example/list.json\","
      "X-RESTRICT=\"SKIP,JUMP\"\n"
      "#EXT-X-DATERANGE:ID=\"ad3\",START-DATE=\"2016-06-13T11:15:00Z\",X-AD-URL=\"http://ads.example/beacon\"\n";
  tctx_t c = {0};
  all(&c, A_ABSOLUTE);
  c.action[HG_HLS_ASSET_LIST] = A_PROXY;
  expect(pl, "https://o.example/live/x.m3u8", &c,
         "#EXTM3U\n"
         "#EXT-X-DATERANGE:ID=\"i1\",CLASS=\"com.apple.hls.interstitial\",START-DATE=\"2024-01-12T10:00:10Z\","
         "DURATION=15.0,X-ASSET-URI=\"https://o.example/live/ad/main.m3u8?id=1\","
         "X-ASSET-LIST=\"https://gw.example/proxy?url=https%3A%2F%2Fads.example%2Flist.json\","
         "X-RESTRICT=\"SKIP,JUMP\"\n"
         "#EXT-X-DATERANGE:ID=\"ad3\",START-DATE=\"2016-06-13T11:15:00Z\",X-AD-URL=\"http://ads.example/beacon\"\n");
  CHECK_INT(c.n, 2);
  CHECK_INT(c.recs[0].cls, HG_HLS_ASSET);
  CHECK_INT(c.recs[1].cls, HG_HLS_ASSET_LIST);

  /* Dropping either URI drops the interstitial (the whole tag line). */
  c.action[HG_HLS_ASSET_LIST] = A_DROP;
  expect(pl, "https://o.example/live/x.m3u8", &c,
         "#EXTM3U\n"
         "#EXT-X-DATERANGE:ID=\"ad3\",START-DATE=\"2016-06-13T11:15:00Z\",X-AD-URL=\"http://ads.example/beacon\"\n");
  CHECK_INT(c.n, 2);
}

HG_TEST(session_key_matches_media_key_when_proxied) {
  const char *master =
      "#EXTM3U\n"
      "#EXT-X-SESSION-KEY:METHOD=AES-128,URI=\"keys/k1.bin\"\n"
      "#EXT-X-STREAM-INF:BANDWIDTH=1\n"
      "720p/index.m3u8\n";
  const char *media =
      "#EXTM3U\n"
      "#EXT-X-KEY:METHOD=AES-128,URI=\"../keys/./k1.bin\"\n"
      "#EXTINF:4,\n"
      "s1.ts\n";
  tctx_t c = {0};
  all(&c, A_PROXY);
  hg_buf_t a, b;
  CHECK_INT(rw(master, "https://o.example/vod/master.m3u8?token=abc", &c, &a, NULL), 0);
  char session[512];
  cpy(session, sizeof(session), c.recs[0].url, strlen(c.recs[0].url));
  CHECK_INT(rw(media, "https://o.example/vod/720p/index.m3u8", &c, &b, NULL), 0);
  CHECK_STR(session, "https://o.example/vod/keys/k1.bin");
  CHECK_STR(c.recs[0].url, session);
  const char *want = "URI=\"https://gw.example/proxy?url=https%3A%2F%2Fo.example%2Fvod%2Fkeys%2Fk1.bin\"";
  CHECK(strstr(a.data, want) != NULL);
  CHECK(strstr(b.data, want) != NULL);
  hg_buf_free(&a);
  hg_buf_free(&b);
}

HG_TEST(byterange_segments_and_maps) {
  const char *pl =
      "#EXTM3U\n"
      "#EXT-X-VERSION:6\n"
      "#EXT-X-BYTERANGE:10000@24000\n"
      "#EXT-X-MAP:URI=\"main.mp4\",BYTERANGE=\"812@0\"\n"
      "#EXTINF:4.000,\n"
      "main.mp4\n"
      "#EXTINF:4.000,\n"
      "#EXT-X-BYTERANGE:30000\n"
      "main.mp4\n"
      "#EXTINF:4.000,\n"
      "other.mp4\n"
      "#EXT-X-PART:DURATION=1.02,URI=\"main.mp4\",BYTERANGE=20000@0\n"
      "#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"main.mp4\",BYTERANGE-START=20000\n";
  tctx_t c = {0};
  all(&c, A_ABSOLUTE);
  expect(pl, "http://o.example/a/b.m3u8", &c,
         "#EXTM3U\n"
         "#EXT-X-VERSION:6\n"
         "#EXT-X-BYTERANGE:10000@24000\n"
         "#EXT-X-MAP:URI=\"http://o.example/a/main.mp4\",BYTERANGE=\"812@0\"\n"
         "#EXTINF:4.000,\n"
         "http://o.example/a/main.mp4\n"
         "#EXTINF:4.000,\n"
         "#EXT-X-BYTERANGE:30000\n"
         "http://o.example/a/main.mp4\n"
         "#EXTINF:4.000,\n"
         "http://o.example/a/other.mp4\n"
         "#EXT-X-PART:DURATION=1.02,URI=\"http://o.example/a/main.mp4\",BYTERANGE=20000@0\n"
         "#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"http://o.example/a/main.mp4\",BYTERANGE-START=20000\n");
  CHECK_INT(c.n, 6);
  unsigned want[] = {HG_HLS_URI_QUOTED | HG_HLS_URI_BYTERANGE, HG_HLS_URI_BYTERANGE,
                     HG_HLS_URI_BYTERANGE, 0, HG_HLS_URI_QUOTED | HG_HLS_URI_BYTERANGE,
                     HG_HLS_URI_QUOTED | HG_HLS_URI_BYTERANGE};
  for (int i = 0; i < 6; i++) CHECK_INT(c.recs[i].flags, want[i]);
}

HG_TEST(data_and_skd_keys_are_never_touched) {
  const char *pl =
      "#EXTM3U\n"
      "#EXT-X-SESSION-KEY:METHOD=SAMPLE-AES,URI=\"skd://a\",KEYFORMAT=\"com.apple.streamingkeydelivery\"\n"
      "#EXT-X-KEY:METHOD=SAMPLE-AES,URI=\"skd://assetid?keyId=1234\",KEYFORMAT=\"com.apple.streamingkeydelivery\"\n"
      "#EXT-X-KEY:METHOD=SAMPLE-AES,URI=\"data:text/plain;base64,YQo=\",KEYFORMAT=\"urn:uuid:edef8ba9\"\n"
      "#EXT-X-KEY:METHOD=SAMPLE-AES,URI=\"DATA:text/plain;charset=UTF-16;base64,UAIA\"\n"
      "#EXT-X-KEY:METHOD=AES-128,URI=\"HTTPS://keys.example/k\"\n"
      "#EXT-X-KEY:METHOD=NONE,URI=\"\"\n"
      "#EXTINF:4,\n"
      "C:\\HLS Video\\test1.ts\n"
      "#EXTINF:4,\n"
      "ftp://o.example/s.ts\n";
  tctx_t c = {0};
  all(&c, A_REPLACE);
  c.fixed = "X";
  hg_buf_t out;
  hg_hls_stats_t st;
  CHECK_INT(rw(pl, BASE, &c, &out, &st), 0);
  CHECK_INT(c.n, 1); /* only the HTTPS key */
  CHECK_STR(c.recs[0].url, "HTTPS://keys.example/k");
  CHECK_INT(st.foreign, 6);
  CHECK_INT(st.uris, 1);
  CHECK(strstr(out.data, "URI=\"X\"\n") != NULL);
  /* Everything else is byte for byte the input. */
  CHECK_INT(out.len, strlen(pl) - strlen("HTTPS://keys.example/k") + 1);
  hg_buf_free(&out);

  /* A relative URI against a non-http(s) base is not http(s) either. */
  CHECK_INT(rw("#EXTM3U\n#EXTINF:1,\na.ts\n", "file:///srv/x.m3u8", &c, &out, &st), 0);
  CHECK_INT(c.n, 0);
  CHECK_INT(st.foreign, 1);
  CHECK_STR(out.data, "#EXTM3U\n#EXTINF:1,\na.ts\n");
  hg_buf_free(&out);
}

HG_TEST(existing_queries_are_kept_and_token_added_once) {
  const char *pl =
      "#EXTM3U\n"
      "#EXT-X-STREAM-INF:BANDWIDTH=1\n"
      "chunklist.m3u8?wowzasessionid=1359287668\n"
      "#EXT-X-STREAM-INF:BANDWIDTH=2\n"
      "hi.m3u8?token=origin&a=1\n"
      "#EXT-X-STREAM-INF:BANDWIDTH=3\n"
      "x.m3u8?hdntl=exp=1~acl=/*~hmac=12&\n"
      "#EXT-X-STREAM-INF:BANDWIDTH=4\n"
      "y.m3u8#frag\n";
  tctx_t c = {0};
  all(&c, A_ABSOLUTE);
  expect(pl, "https://o.example/a/master.m3u8", &c,
         "#EXTM3U\n"
         "#EXT-X-STREAM-INF:BANDWIDTH=1\n"
         "https://o.example/a/chunklist.m3u8?wowzasessionid=1359287668\n"
         "#EXT-X-STREAM-INF:BANDWIDTH=2\n"
         "https://o.example/a/hi.m3u8?token=origin&a=1\n"
         "#EXT-X-STREAM-INF:BANDWIDTH=3\n"
         "https://o.example/a/x.m3u8?hdntl=exp=1~acl=/*~hmac=12&\n"
         "#EXT-X-STREAM-INF:BANDWIDTH=4\n"
         "https://o.example/a/y.m3u8#frag\n");
  all(&c, A_TOKEN);
  expect(pl, "https://o.example/a/master.m3u8", &c,
         "#EXTM3U\n"
         "#EXT-X-STREAM-INF:BANDWIDTH=1\n"
         "https://o.example/a/chunklist.m3u8?wowzasessionid=1359287668&token=T0K\n"
         "#EXT-X-STREAM-INF:BANDWIDTH=2\n"
         "https://o.example/a/hi.m3u8?token=T0K&a=1\n"
         "#EXT-X-STREAM-INF:BANDWIDTH=3\n"
         "https://o.example/a/x.m3u8?hdntl=exp=1~acl=/*~hmac=12&token=T0K\n"
         "#EXT-X-STREAM-INF:BANDWIDTH=4\n"
         "https://o.example/a/y.m3u8?token=T0K#frag\n");
}

HG_TEST(relative_uris_against_a_base_with_a_query) {
  const char *pl =
      "#EXTM3U\n"
      "#EXTINF:1,\nseg.ts\n"
      "#EXTINF:1,\n../other/seg.ts\n"
      "#EXTINF:1,\n/root.ts\n"
      "#EXTINF:1,\n//cdn.example/c.ts\n"
      "#EXTINF:1,\n?only=query\n"
      "#EXTINF:1,\n./a/../b/./c.ts?x=1\n"
      "#EXTINF:1,\nhttp://abs.example/p.ts\n";
  tctx_t c = {0};
  all(&c, A_ABSOLUTE);
  expect(pl, "https://o.example/a/b/index.m3u8?token=abc&e=9", &c,
         "#EXTM3U\n"
         "#EXTINF:1,\nhttps://o.example/a/b/seg.ts\n"
         "#EXTINF:1,\nhttps://o.example/a/other/seg.ts\n"
         "#EXTINF:1,\nhttps://o.example/root.ts\n"
         "#EXTINF:1,\nhttps://cdn.example/c.ts\n"
         "#EXTINF:1,\nhttps://o.example/a/b/index.m3u8?only=query\n"
         "#EXTINF:1,\nhttps://o.example/a/b/b/c.ts?x=1\n"
         "#EXTINF:1,\nhttp://abs.example/p.ts\n");
}

/* ---- Byte-exactness ---------------------------------------------------------------- */

HG_TEST(crlf_playlists) {
  const char *pl =
      "#EXTM3U\r\n"
      "#EXT-X-KEY:METHOD=AES-128,URI=\"k.bin\"\r\n"
      "#EXTINF:4,\r\n"
      "a.ts\r\n"
      "\r\n"
      "#EXTINF:4,\r\n"
      "b.ts\r\n"
      "#EXT-X-ENDLIST\r\n";
  tctx_t c = {0};
  all(&c, A_KEEP);
  expect(pl, BASE, &c, pl);
  CHECK_INT(c.n, 3);
  CHECK_STR(c.recs[1].raw, "a.ts");
  all(&c, A_MARK);
  expect(pl, BASE, &c,
         "#EXTM3U\r\n"
         "#EXT-X-KEY:METHOD=AES-128,URI=\"M0\"\r\n"
         "#EXTINF:4,\r\n"
         "M1\r\n"
         "\r\n"
         "#EXTINF:4,\r\n"
         "M2\r\n"
         "#EXT-X-ENDLIST\r\n");
  c.action[HG_HLS_SEGMENT] = A_DROP;
  expect(pl, BASE, &c,
         "#EXTM3U\r\n"
         "#EXT-X-KEY:METHOD=AES-128,URI=\"M0\"\r\n"
         "\r\n"
         "#EXT-X-ENDLIST\r\n");
}

HG_TEST(bom_comments_blank_lines_and_no_final_newline) {
  const char *pl =
      "\xEF\xBB\xBF# made by hand\n"
      "\n"
      "#EXTM3U\n"
      "#EXT-X-UNKNOWN-THING:A=\"x.ts\"\n"
      "#WV-VIDEO-RESOLUTION 320 x 192\n"
      "  \t\n"
      "#EXTINF:2,  title \n"
      "  spaced.ts\t\n"
      "#EXTINF:2,\n"
      "last.ts";
  tctx_t c = {0};
  all(&c, A_KEEP);
  expect(pl, BASE, &c, pl);
  CHECK_INT(c.n, 2);
  all(&c, A_MARK);
  expect(pl, BASE, &c,
         "\xEF\xBB\xBF# made by hand\n"
         "\n"
         "#EXTM3U\n"
         "#EXT-X-UNKNOWN-THING:A=\"x.ts\"\n"
         "#WV-VIDEO-RESOLUTION 320 x 192\n"
         "  \t\n"
         "#EXTINF:2,  title \n"
         "  M0\t\n"
         "#EXTINF:2,\n"
         "M1");
  CHECK_STR(c.recs[0].raw, "spaced.ts");

  /* A BOM directly before #EXTM3U. */
  expect("\xEF\xBB\xBF#EXTM3U\n#EXTINF:1,\na.ts", BASE, &c, "\xEF\xBB\xBF#EXTM3U\n#EXTINF:1,\nM0");
}

HG_TEST(orphan_lines_are_left_alone) {
  const char *pl =
      "#EXTM3U\n"
      "#EXT-X-TARGETDURATION:5220\n"
      "#EXTINF:5220,\n"
      "http://media.example.com/entire.ts\n"
      "JUNK\n"
      "  #EXTINF:1,\n"
      "not-after-extinf.ts\n"
      "#EXTINF:6.0\n"
      "#EXT-X-ENDLIST\n";
  tctx_t c = {0};
  all(&c, A_MARK);
  expect(pl, BASE, &c,
         "#EXTM3U\n"
         "#EXT-X-TARGETDURATION:5220\n"
         "#EXTINF:5220,\n"
         "M0\n"
         "JUNK\n"
         "  #EXTINF:1,\n"
         "not-after-extinf.ts\n"
         "#EXTINF:6.0\n"
         "#EXT-X-ENDLIST\n");
  CHECK_INT(c.n, 1);
}

HG_TEST(lenient_attribute_spacing_and_several_uris_per_line) {
  const char *pl =
      "#EXTM3U\n"
      "#EXT-X-KEY: METHOD=AES-128, IV=0x1234, URI=\"https://example.com/key.bin\"\n"
      "#EXT-X-SESSION-DATA:DATA-ID=\"a,b\",VALUE=\"URI=\\\"no\\\"\",URI=\"one.json\"\n"
      "#EXT-X-MEDIA:URI=\"a.m3u8\",TYPE=AUDIO,URI=\"b.m3u8\"\n";
  tctx_t c = {0};
  all(&c, A_MARK);
  expect(pl, BASE, &c,
         "#EXTM3U\n"
         "#EXT-X-KEY: METHOD=AES-128, IV=0x1234, URI=\"M0\"\n"
         "#EXT-X-SESSION-DATA:DATA-ID=\"a,b\",VALUE=\"URI=\\\"no\\\"\",URI=\"M1\"\n"
         "#EXT-X-MEDIA:URI=\"M2\",TYPE=AUDIO,URI=\"M3\"\n");
}

/* Drops variants wider than 1280 px (reads RESOLUTION from the STREAM-INF). */
static int by_res(void *ud, const hg_hls_uri_t *u, hg_buf_t *repl) {
  (void)ud, (void)repl;
  hg_hls_attr_t a;
  if (u->cls == HG_HLS_PLAYLIST && u->attr == NULL &&
      hg_hls_attr_get(u->attrs, u->attrs_len, "RESOLUTION", 10, &a))
    return atoi(a.value) > 1280 ? HG_HLS_DROP : HG_HLS_KEEP;
  return HG_HLS_KEEP;
}

/* Drops the rendition named Deutsch, then defers to the class table. */
static int drop_de(void *ud, const hg_hls_uri_t *u, hg_buf_t *repl) {
  hg_hls_attr_t a;
  if (u->cls == HG_HLS_PLAYLIST && u->attr != NULL &&
      hg_hls_attr_get(u->attrs, u->attrs_len, "NAME", 4, &a) && a.value_len == 7 &&
      memcmp(a.value, "Deutsch", 7) == 0)
    return HG_HLS_DROP;
  return decide(ud, u, repl);
}

/* Drops every URI whose raw text starts with "drop". */
static int drop_named(void *ud, const hg_hls_uri_t *u, hg_buf_t *repl) {
  (void)ud, (void)repl;
  return u->raw_len >= 4 && memcmp(u->raw, "drop", 4) == 0 ? HG_HLS_DROP : HG_HLS_KEEP;
}

/* ---- Drop -------------------------------------------------------------------------- */

HG_TEST(drop_a_variant) {
  const char *pl =
      "#EXTM3U\n"
      "#EXT-X-VERSION:6\n"
      "#EXT-X-STREAM-INF:BANDWIDTH=7680000,RESOLUTION=1920x1080\n"
      "#EXT-X-VENDOR-HINT:for-hi\n"
      "# comment about hi\n"
      "#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"a\",NAME=\"x\",URI=\"audio.m3u8\"\n"
      "\n"
      "hi.m3u8\n"
      "#EXT-X-STREAM-INF:BANDWIDTH=1280000,RESOLUTION=640x360\n"
      "low.m3u8\n"
      "#EXT-X-STREAM-INF:BANDWIDTH=9000000,RESOLUTION=3840x2160\n"
      "uhd.m3u8";
  tctx_t c = {0};
  hg_buf_t out;
  hg_hls_stats_t st;
  /* Drop every variant wider than 1280 px, by its STREAM-INF attributes. */
  c.n = 0;
  out = (hg_buf_t)HG_BUF_INIT;
  all(&c, A_KEEP);
  c.action[HG_HLS_PLAYLIST] = A_DROP;
  CHECK_INT(hg_hls_rewrite(NULL, &out, pl, strlen(pl), BASE, strlen(BASE), by_res, &c, &st), 0);
  CHECK_STR(out.data,
            "#EXTM3U\n"
            "#EXT-X-VERSION:6\n"
            "#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"a\",NAME=\"x\",URI=\"audio.m3u8\"\n"
            "\n"
            "#EXT-X-STREAM-INF:BANDWIDTH=1280000,RESOLUTION=640x360\n"
            "low.m3u8\n");
  CHECK_INT(st.dropped, 2);
  CHECK_INT(st.uris, 4);
  hg_buf_free(&out);
}


HG_TEST(drop_a_rendition_and_an_iframe_variant) {
  const char *pl =
      "#EXTM3U\n"
      "#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"aac\",NAME=\"English\",URI=\"en.m3u8\"\n"
      "#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"aac\",NAME=\"Deutsch\",URI=\"de.m3u8\"\n"
      "#EXT-X-STREAM-INF:BANDWIDTH=1280000,AUDIO=\"aac\"\n"
      "low.m3u8\n"
      "#EXT-X-I-FRAME-STREAM-INF:BANDWIDTH=86000,URI=\"low/iframe.m3u8\"\n"
      "#EXT-X-IMAGE-STREAM-INF:BANDWIDTH=16460,URI=\"img.m3u8\"\n";
  tctx_t c = {0};
  all(&c, A_KEEP);
  c.action[HG_HLS_IFRAME_PLAYLIST] = A_DROP;
  c.action[HG_HLS_IMAGE_PLAYLIST] = A_DROP;
  hg_buf_t out = HG_BUF_INIT;
  CHECK_INT(hg_hls_rewrite(NULL, &out, pl, strlen(pl), BASE, strlen(BASE), drop_de, &c, NULL), 0);
  CHECK_STR(out.data,
            "#EXTM3U\n"
            "#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"aac\",NAME=\"English\",URI=\"en.m3u8\"\n"
            "#EXT-X-STREAM-INF:BANDWIDTH=1280000,AUDIO=\"aac\"\n"
            "low.m3u8\n");
  hg_buf_free(&out);
}


HG_TEST(drop_a_segment_with_its_tags) {
  const char *pl =
      "#EXTM3U\n"
      "#EXT-X-TARGETDURATION:4\n"
      "#EXT-X-MAP:URI=\"init.mp4\"\n"
      "#EXTINF:4,\n"
      "keep1.m4s\n"
      "#EXT-X-DISCONTINUITY\n"
      "#EXT-X-KEY:METHOD=AES-128,URI=\"k2.bin\"\n"
      "#EXT-X-PROGRAM-DATE-TIME:2024-01-01T00:00:04Z\n"
      "#EXT-X-BYTERANGE:100@0\n"
      "#EXT-X-CUE-OUT:30\n"
      "#EXT-X-PART:DURATION=1,URI=\"drop.p1.m4s\"\n"
      "#EXTINF:4,\n"
      "#EXT-X-BITRATE:5000\n"
      "#EXT-X-GAP\n"
      "#EXT-X-VENDOR:y\n"
      "# about drop\n"
      "drop.m4s\n"
      "#EXTINF:4,\n"
      "keep2.m4s\n"
      "#EXT-X-ENDLIST\n";
  tctx_t c = {0};
  all(&c, A_KEEP);
  hg_buf_t out = HG_BUF_INIT;
  hg_hls_stats_t st;
  CHECK_INT(hg_hls_rewrite(NULL, &out, pl, strlen(pl), BASE, strlen(BASE), drop_named, &c, &st), 0);
  CHECK_STR(out.data,
            "#EXTM3U\n"
            "#EXT-X-TARGETDURATION:4\n"
            "#EXT-X-MAP:URI=\"init.mp4\"\n"
            "#EXTINF:4,\n"
            "keep1.m4s\n"
            "#EXT-X-DISCONTINUITY\n"
            "#EXT-X-KEY:METHOD=AES-128,URI=\"k2.bin\"\n"
            "#EXT-X-CUE-OUT:30\n"
            "#EXT-X-BITRATE:5000\n"
            "#EXTINF:4,\n"
            "keep2.m4s\n"
            "#EXT-X-ENDLIST\n");
  CHECK_INT(st.dropped, 2); /* the part and the segment */
  hg_buf_free(&out);

  /* Dropping the last segment when it has no final newline. */
  const char *tail = "#EXTM3U\n#EXTINF:1,\na.ts\n#EXTINF:1,\ndrop.ts";
  CHECK_INT(hg_hls_rewrite(NULL, &out, tail, strlen(tail), BASE, strlen(BASE), drop_named, &c, NULL), 0);
  CHECK_STR(out.data, "#EXTM3U\n#EXTINF:1,\na.ts\n");
  hg_buf_free(&out);
}


HG_TEST(drop_other_attribute_carriers) {
  const char *pl =
      "#EXTM3U\n"
      "#EXT-X-CONTENT-STEERING:SERVER-URI=\"s.json\"\n"
      "#EXT-X-SESSION-DATA:DATA-ID=\"d\",URI=\"d.json\"\n"
      "#EXT-X-SESSION-KEY:METHOD=AES-128,URI=\"k.bin\"\n"
      "#EXT-X-STREAM-INF:BANDWIDTH=1\n"
      "v.m3u8\n"
      "#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"p.m4s\"\n"
      "#EXT-X-RENDITION-REPORT:URI=\"r.m3u8\"\n";
  tctx_t c = {0};
  all(&c, A_DROP);
  expect(pl, BASE, &c, "#EXTM3U\n");
  CHECK_INT(c.n, 6);
}

HG_TEST(drop_of_key_or_map_is_refused) {
  const char *pl = "#EXTM3U\n#EXT-X-KEY:METHOD=AES-128,URI=\"k.bin\"\n#EXTINF:1,\na.ts\n";
  tctx_t c = {0};
  all(&c, A_DROP);
  hg_buf_t out = HG_BUF_INIT;
  hg_buf_puts(&out, "prefix");
  c.n = 0;
  CHECK_INT(hg_hls_rewrite(NULL, &out, pl, strlen(pl), BASE, strlen(BASE), decide, &c, NULL), HG_EPOLICY);
  CHECK_STR(out.data, "prefix"); /* restored */
  const char *map = "#EXTM3U\n#EXT-X-MAP:URI=\"i.mp4\"\n";
  CHECK_INT(hg_hls_rewrite(NULL, &out, map, strlen(map), BASE, strlen(BASE), decide, &c, NULL), HG_EPOLICY);
  CHECK_STR(out.data, "prefix");
  hg_buf_free(&out);
}

/* ---- Variables ---------------------------------------------------------------------- */

HG_TEST(define_name_value_and_queryparam) {
  const char *pl =
      "#EXTM3U\n"
      "#EXT-X-DEFINE:NAME=\"host\",VALUE=\"cdn.example\"\n"
      "#EXT-X-DEFINE:QUERYPARAM=\"token\"\n"
      "#EXT-X-DEFINE:NAME=\"nested\",VALUE=\"{$host}\"\n"
      "#EXT-X-DEFINE:NAME=\"dup\",VALUE=\"1\"\n"
      "#EXT-X-DEFINE:NAME=\"dup\",VALUE=\"2\"\n"
      "#EXT-X-DEFINE:QUERYPARAM=\"absent\"\n"
      "#EXT-X-CONTENT-STEERING:SERVER-URI=\"https://{$host}/steer?t={$token}\"\n"
      "#EXT-X-STREAM-INF:BANDWIDTH=1\n"
      "https://{$host}/v1.m3u8?t={$token}\n"
      "#EXT-X-STREAM-INF:BANDWIDTH=2\n"
      "v2-{$nested}.m3u8\n"
      "#EXT-X-STREAM-INF:BANDWIDTH=3\n"
      "v3-{$dup}.m3u8\n"
      "#EXT-X-STREAM-INF:BANDWIDTH=4\n"
      "v4-{$absent}.m3u8\n"
      "#EXT-X-STREAM-INF:BANDWIDTH=5\n"
      "v5-{$later}.m3u8\n"
      "#EXT-X-DEFINE:NAME=\"later\",VALUE=\"x\"\n"
      "#EXT-X-STREAM-INF:BANDWIDTH=6\n"
      "v6-{$later}-{not-a-ref}-{$.m3u8\n";
  tctx_t c = {0};
  all(&c, A_MARK);
  hg_buf_t out;
  hg_hls_stats_t st;
  CHECK_INT(rw(pl, "https://o.example/m.m3u8?a=1&token=a%2Bb&x", &c, &out, &st), 0);
  CHECK_INT(c.n, 3);
  CHECK_STR(c.recs[0].url, "https://cdn.example/steer?t=a%2Bb");
  CHECK_STR(c.recs[0].raw, "https://{$host}/steer?t={$token}");
  CHECK_STR(c.recs[1].url, "https://cdn.example/v1.m3u8?t=a%2Bb");
  CHECK_STR(c.recs[2].url, "https://o.example/v6-x-%7Bnot-a-ref%7D-%7B$.m3u8");
  CHECK_INT(st.unresolved, 4);
  /* The raw spans (with the references) are what is replaced; the rest is untouched. */
  CHECK(strstr(out.data, "SERVER-URI=\"M0\"\n") != NULL);
  CHECK(strstr(out.data, "\nM1\n") != NULL);
  CHECK(strstr(out.data, "\nv2-{$nested}.m3u8\n") != NULL);
  CHECK(strstr(out.data, "\nv5-{$later}.m3u8\n") != NULL);
  CHECK(strstr(out.data, "\nM2") != NULL);
  hg_buf_free(&out);
}

HG_TEST(import_in_a_media_playlist_leaves_uris_untouched) {
  const char *pl =
      "#EXTM3U\n"
      "#EXT-X-DEFINE:IMPORT=\"mvp\"\n"
      "#EXT-X-DEFINE:NAME=\"p\",VALUE=\"part-\"\n"
      "#EXT-X-KEY:METHOD=SAMPLE-AES,URI=\"skd://{$mvp}\"\n"
      "#EXT-X-MAP:URI=\"{$mvp}.mp4\"\n"
      "#EXTINF:4,\n"
      "a{$mvp}.mp4\n"
      "#EXT-X-PART:DURATION=1,URI=\"{$p}4-1.mp4\"\n";
  tctx_t c = {0};
  all(&c, A_ABSOLUTE);
  hg_buf_t out;
  hg_hls_stats_t st;
  CHECK_INT(rw(pl, BASE, &c, &out, &st), 0);
  CHECK_INT(c.n, 1);
  CHECK_STR(c.recs[0].url, "https://origin.example.com/v/part-4-1.mp4");
  CHECK_INT(st.foreign, 1);
  CHECK_INT(st.unresolved, 2);
  CHECK(strstr(out.data, "URI=\"{$mvp}.mp4\"") != NULL);
  CHECK(strstr(out.data, "\na{$mvp}.mp4\n") != NULL);
  CHECK(strstr(out.data, "URI=\"https://origin.example.com/v/part-4-1.mp4\"") != NULL);
  hg_buf_free(&out);
}

/* ---- Unusual URIs and replacements ------------------------------------------------- */

HG_TEST(uris_with_spaces_unicode_and_invalid_bytes) {
  const char *pl =
      "#EXTM3U\n"
      "#EXT-X-KEY:METHOD=AES-128,URI=\"[KEY]\",IV=[IV]\n"
      "#EXTINF:6,\n"
      "180724_Allison VLOG-v3_00001.ts\n"
      "#EXTINF:2,\n"
      "sample\xE3\x80\x80_240p.ts\n"
      "#EXTINF:2,\n"
      "a#b#c.ts\n"
      "#EXTINF:2,\n"
      "http://bad port:x/a.ts\n"
      "#EXTINF:2,\n"
      "http:no-host.ts\n"
      "#EXTINF:2,\n"
      "HTTPS:///no-host.ts\n";
  tctx_t c = {0};
  all(&c, A_KEEP);
  hg_buf_t out;
  hg_hls_stats_t st;
  CHECK_INT(rw(pl, "https://o.example/d/x.m3u8", &c, &out, &st), 0);
  CHECK_STR(out.data, pl); /* KEEP is always byte-exact */
  CHECK_INT(c.n, 2);
  CHECK_STR(c.recs[0].url, "https://o.example/d/180724_Allison%20VLOG-v3_00001.ts");
  CHECK_STR(c.recs[0].raw, "180724_Allison VLOG-v3_00001.ts");
  CHECK_STR(c.recs[1].url, "https://o.example/d/sample%E3%80%80_240p.ts");
  CHECK_INT(st.unresolved, 5); /* [KEY], a second '#', a bad port, two without a host */
  hg_buf_free(&out);
}

HG_TEST(replacements_never_break_the_structure) {
  const char *pl = "#EXTM3U\n#EXT-X-MAP:URI=\"i.mp4\"\n#EXTINF:1,\na.ts\n";
  tctx_t c = {0};
  all(&c, A_REPLACE);
  c.fixed = "x\"y\r\nz w";
  expect(pl, BASE, &c, "#EXTM3U\n#EXT-X-MAP:URI=\"x%22y%0D%0Az%20w\"\n#EXTINF:1,\nx\"y%0D%0Az%20w\n");
  c.fixed = "#frag";
  expect(pl, BASE, &c, "#EXTM3U\n#EXT-X-MAP:URI=\"#frag\"\n#EXTINF:1,\n%23frag\n");
  c.fixed = "";
  hg_buf_t out;
  CHECK_INT(rw(pl, BASE, &c, &out, NULL), HG_EPOLICY);
  CHECK_INT(out.len, 0);
  hg_buf_free(&out);
}

/* ---- Errors and reuse -------------------------------------------------------------- */

HG_TEST(errors) {
  tctx_t c = {0};
  hg_buf_t out;
  CHECK_INT(rw("<html></html>", BASE, &c, &out, NULL), HG_EPARSE);
  CHECK_INT(rw("", BASE, &c, &out, NULL), HG_EPARSE);
  CHECK_INT(rw("#EXTM3U\n", "relative/base.m3u8", &c, &out, NULL), HG_EINVAL);
  CHECK_INT(rw("#EXTM3U\n", "http://bad host/x", &c, &out, NULL), HG_EINVAL);
  all(&c, A_FAIL);
  hg_buf_t keep = HG_BUF_INIT;
  hg_buf_puts(&keep, "abc");
  const char *pl = "#EXTM3U\n#EXTINF:1,\na.ts\n#EXTINF:1,\nb.ts\n";
  c.n = 0;
  CHECK_INT(hg_hls_rewrite(NULL, &keep, pl, strlen(pl), BASE, strlen(BASE), decide, &c, NULL), HG_EBUDGET);
  CHECK_INT(c.n, 1); /* aborted at the first URI */
  CHECK_STR(keep.data, "abc");
  all(&c, 99);
  CHECK_INT(hg_hls_rewrite(NULL, &keep, pl, strlen(pl), BASE, strlen(BASE), decide, &c, NULL), HG_EPOLICY);
  CHECK_INT(hg_hls_rewrite(NULL, &keep, pl, strlen(pl), BASE, strlen(BASE), NULL, &c, NULL), HG_EINVAL);
  hg_buf_free(&keep);
}

HG_TEST(rewriter_is_reusable_and_appends) {
  hg_hls_rewriter_t *r = hg_hls_rewriter_new();
  CHECK(r != NULL);
  tctx_t c = {0};
  all(&c, A_ABSOLUTE);
  hg_buf_t out = HG_BUF_INIT;
  const char *a = "#EXTM3U\n#EXT-X-DEFINE:NAME=\"v\",VALUE=\"1\"\n#EXTINF:1,\ns{$v}.ts\n";
  const char *b = "#EXTM3U\n#EXTINF:1,\ns{$v}.ts\n"; /* v is not defined here */
  for (int i = 0; i < 3; i++) {
    hg_buf_clear(&out);
    c.n = 0;
    CHECK_INT(hg_hls_rewrite(r, &out, a, strlen(a), BASE, strlen(BASE), decide, &c, NULL), 0);
    CHECK_STR(out.data, "#EXTM3U\n#EXT-X-DEFINE:NAME=\"v\",VALUE=\"1\"\n#EXTINF:1,\nhttps://origin.example.com/v/s1.ts\n");
    c.n = 0;
    CHECK_INT(hg_hls_rewrite(r, &out, b, strlen(b), BASE, strlen(BASE), decide, &c, NULL), 0);
    CHECK_INT(c.n, 0);
  }
  CHECK(strstr(out.data, "s1.ts\n#EXTM3U\n#EXTINF:1,\ns{$v}.ts\n") != NULL);
  hg_hls_rewriter_free(r);
  hg_hls_rewriter_free(NULL);
  hg_buf_free(&out);
}

HG_TEST(large_playlist_one_pass) {
  hg_buf_t pl = HG_BUF_INIT;
  hg_buf_puts(&pl, "#EXTM3U\n#EXT-X-TARGETDURATION:4\n");
  for (int i = 0; i < 100000; i++) hg_buf_printf(&pl, "#EXTINF:4.000,\nseg_%06d.ts\n", i);
  tctx_t c = {0};
  all(&c, A_ABSOLUTE);
  hg_buf_t out = HG_BUF_INIT;
  hg_hls_stats_t st;
  CHECK_INT(hg_hls_rewrite(NULL, &out, pl.data, pl.len, BASE, strlen(BASE), decide, &c, &st), 0);
  CHECK_INT(st.uris, 100000);
  CHECK_INT(st.by_class[HG_HLS_SEGMENT], 100000);
  CHECK(out.len == pl.len + 100000 * strlen("https://origin.example.com/v/"));
  hg_buf_free(&pl);
  hg_buf_free(&out);
}

/* Tiny relative URIs under a long base URL multiply the input: the limit stops the rewrite
 * (HG_ETOOBIG, output restored) after at most one line past it. */
HG_TEST(output_limit_stops_amplification) {
  hg_buf_t base = HG_BUF_INIT, pl = HG_BUF_INIT, out = HG_BUF_INIT;
  hg_buf_puts(&base, "https://origin.example.com/");
  for (int i = 0; i < 6000; i++) hg_buf_putc(&base, 'a');
  hg_buf_puts(&base, "/x.m3u8");
  hg_buf_puts(&pl, "#EXTM3U\n");
  for (int i = 0; i < 20000; i++) hg_buf_puts(&pl, "#EXTINF:1,\nb\n");
  tctx_t c = {0};
  all(&c, A_ABSOLUTE);
  hg_hls_rewriter_t *rw = hg_hls_rewriter_new();
  hg_buf_puts(&out, "keep");
  hg_hls_rewriter_limit(rw, 1 << 20);
  CHECK_INT(hg_hls_rewrite(rw, &out, pl.data, pl.len, base.data, base.len, decide, &c, NULL), HG_ETOOBIG);
  CHECK_INT((int)out.len, 4); /* restored */
  CHECK(out.cap < (2u << 20) + base.len * 2); /* it stopped near the limit */
  hg_hls_rewriter_limit(rw, 0); /* no limit: the same playlist rewrites */
  CHECK_INT(hg_hls_rewrite(rw, &out, pl.data, pl.len, base.data, base.len, decide, &c, NULL), 0);
  CHECK(out.len > 20000 * base.len);
  hg_hls_rewriter_free(rw);
  hg_buf_free(&base);
  hg_buf_free(&pl);
  hg_buf_free(&out);
}

int main(void) {
  RUN(class_names_round_trip);
  RUN(output_limit_stops_amplification);
  RUN(detects_playlists);
  RUN(parses_attribute_lists);
  RUN(every_multivariant_carrier);
  RUN(every_media_carrier);
  RUN(tags_between_extinf_and_uri);
  RUN(daterange_with_asset_uri_and_list);
  RUN(session_key_matches_media_key_when_proxied);
  RUN(byterange_segments_and_maps);
  RUN(data_and_skd_keys_are_never_touched);
  RUN(existing_queries_are_kept_and_token_added_once);
  RUN(relative_uris_against_a_base_with_a_query);
  RUN(crlf_playlists);
  RUN(bom_comments_blank_lines_and_no_final_newline);
  RUN(orphan_lines_are_left_alone);
  RUN(lenient_attribute_spacing_and_several_uris_per_line);
  RUN(drop_a_variant);
  RUN(drop_a_rendition_and_an_iframe_variant);
  RUN(drop_a_segment_with_its_tags);
  RUN(drop_other_attribute_carriers);
  RUN(drop_of_key_or_map_is_refused);
  RUN(define_name_value_and_queryparam);
  RUN(import_in_a_media_playlist_leaves_uris_untouched);
  RUN(uris_with_spaces_unicode_and_invalid_bytes);
  RUN(replacements_never_break_the_structure);
  RUN(errors);
  RUN(rewriter_is_reusable_and_appends);
  RUN(large_playlist_one_pass);
  return hgtest_done();
}
