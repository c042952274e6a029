/* info.c — what a playlist says about its own freshness (see hls.h). */
#include <stdint.h>
#include <string.h>

#include "hls/hls.h"
#include "hls/hls_internal.h"

/* Seconds as written ("6", "2.002", "0.33334") to ms, rounded down; 0 when unreadable.
 * Saturates instead of overflowing: a hostile "TARGETDURATION:99999999999" is huge,
 * never negative. */
static unsigned seconds_ms(const char *s, size_t n) {
  uint64_t ms = 0;
  size_t i = 0;
  while (i < n && hg__hls_is_ws(s[i])) i++;
  if (i == n || s[i] < '0' || s[i] > '9') return 0;
  for (; i < n && s[i] >= '0' && s[i] <= '9'; i++)
    if ((ms = ms * 10 + (uint64_t)(s[i] - '0')) > UINT32_MAX / 1000) return UINT32_MAX;
  ms *= 1000;
  if (i < n && s[i] == '.')
    for (uint64_t scale = 100; ++i < n && s[i] >= '0' && s[i] <= '9' && scale; scale /= 10)
      ms += (uint64_t)(s[i] - '0') * scale;
  return ms > UINT32_MAX ? UINT32_MAX : (unsigned)ms;
}

static int starts(const char *l, size_t n, const char *tag, size_t tn) {
  return n >= tn && memcmp(l, tag, tn) == 0;
}

void hg_hls_info(const char *b, size_t n, hg_hls_info_t *info) {
  memset(info, 0, sizeof(*info));
  if (!hg_hls_is_playlist(b, n)) return;
  info->playlist = 1;
  for (size_t p = 0; p < n;) {
    const char *nl = memchr(b + p, '\n', n - p);
    size_t e = nl ? (size_t)(nl - b) : n;
    const char *l = b + p;
    size_t ln = e - p;
    p = e + 1;
    if (ln < 5 || memcmp(l, "#EXT", 4) != 0) continue; /* URI lines, comments, blanks */
    if (starts(l, ln, "#EXTINF:", 8) || starts(l, ln, "#EXT-X-PART:", 12)) {
      info->media = 1;
    } else if (starts(l, ln, "#EXT-X-TARGETDURATION:", 22)) {
      info->media = 1;
      info->target_ms = seconds_ms(l + 22, ln - 22);
    } else if (starts(l, ln, "#EXT-X-ENDLIST", 14)) {
      info->endlist = 1;
    } else if (starts(l, ln, "#EXT-X-PART-INF:", 16)) {
      hg_hls_attr_t a;
      if (hg_hls_attr_get(l + 16, ln - 16, "PART-TARGET", 11, &a))
        info->part_target_ms = seconds_ms(a.value, a.value_len);
    } else if (starts(l, ln, "#EXT-X-SERVER-CONTROL:", 22)) {
      hg_hls_attr_t a;
      if (hg_hls_attr_get(l + 22, ln - 22, "CAN-BLOCK-RELOAD", 16, &a))
        info->can_block_reload = a.value_len == 3 && memcmp(a.value, "YES", 3) == 0;
    }
  }
  info->live = info->media && !info->endlist;
}

unsigned hg_hls_reuse_ms(const hg_hls_info_t *info) {
  if (!info->live) return UINT32_MAX;
  unsigned t = info->part_target_ms ? info->part_target_ms : info->target_ms;
  return t ? t / 2 : 1000;
}
