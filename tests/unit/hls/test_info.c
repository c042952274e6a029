/* Unit tests for hls/info.c: live or VOD, target durations, reuse time (SPEC §5). */
#include <stdint.h>

#include "hgtest.h"

#include "hls/hls.h"

static hg_hls_info_t info_of(const char *s) {
  hg_hls_info_t i;
  hg_hls_info(s, strlen(s), &i);
  return i;
}

HG_TEST(live_media_playlist) {
  hg_hls_info_t i = info_of("#EXTM3U\n#EXT-X-TARGETDURATION:6\n#EXT-X-MEDIA-SEQUENCE:7\n"
                            "#EXTINF:6.0,\na.ts\n#EXTINF:6.0,\nb.ts\n");
  CHECK(i.playlist && i.media && i.live && !i.endlist);
  CHECK_INT(i.target_ms, 6000);
  CHECK_INT(hg_hls_reuse_ms(&i), 3000);
}

HG_TEST(vod_and_multivariant_have_no_limit_of_their_own) {
  hg_hls_info_t v = info_of("#EXTM3U\r\n#EXT-X-TARGETDURATION:10\r\n#EXTINF:10,\r\na.ts\r\n#EXT-X-ENDLIST\r\n");
  CHECK(v.media && v.endlist && !v.live);
  CHECK_INT(hg_hls_reuse_ms(&v), UINT32_MAX);
  hg_hls_info_t m = info_of("#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\nlow.m3u8\n");
  CHECK(m.playlist && !m.media && !m.live);
  CHECK_INT(hg_hls_reuse_ms(&m), UINT32_MAX);
}

HG_TEST(ll_hls_uses_the_part_target) {
  hg_hls_info_t i = info_of("#EXTM3U\n#EXT-X-TARGETDURATION:4\n"
                            "#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=3.0\n"
                            "#EXT-X-PART-INF:PART-TARGET=1.002\n#EXT-X-MEDIA-SEQUENCE:1\n"
                            "#EXT-X-PART:DURATION=1.0,URI=\"p1.mp4\"\n");
  CHECK(i.live && i.can_block_reload);
  CHECK_INT(i.part_target_ms, 1002);
  CHECK_INT(hg_hls_reuse_ms(&i), 501);
}

HG_TEST(tags_only_count_at_the_start_of_a_line) {
  /* A URI or a title that mentions ENDLIST does not end the stream. */
  hg_hls_info_t i = info_of("#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2,#EXT-X-ENDLIST\n"
                            "x#EXT-X-ENDLIST.ts\n");
  CHECK(i.live);
}

HG_TEST(hostile_numbers) {
  hg_hls_info_t i = info_of("#EXTM3U\n#EXT-X-TARGETDURATION:99999999999999999999\n#EXTINF:1,\na\n");
  CHECK_INT(i.target_ms, UINT32_MAX);
  i = info_of("#EXTM3U\n#EXT-X-TARGETDURATION:-5\n#EXTINF:1,\na\n");
  CHECK_INT(i.target_ms, 0);
  CHECK_INT(hg_hls_reuse_ms(&i), 1000); /* live without a usable target: one second */
  i = info_of("#EXTM3U\n#EXT-X-TARGETDURATION:0.000000000001\n#EXTINF:1,\na\n");
  CHECK_INT(i.target_ms, 0);
}

HG_TEST(not_a_playlist) {
  hg_hls_info_t i = info_of("\x47\x40\x00\x10 not a playlist #EXTINF:");
  CHECK(!i.playlist && !i.media && !i.live);
  hg_hls_info(NULL, 0, &i);
  CHECK(!i.playlist);
}

int main(void) {
  RUN(live_media_playlist);
  RUN(vod_and_multivariant_have_no_limit_of_their_own);
  RUN(ll_hls_uses_the_part_target);
  RUN(tags_only_count_at_the_start_of_a_line);
  RUN(hostile_numbers);
  RUN(not_a_playlist);
  return hgtest_done();
}
