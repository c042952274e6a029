/* hls.c — URI class names and fallbacks, playlist detection, the `absolute` action. */
#include <string.h>

#include "base/error.h"
#include "hls/hls.h"
#include "hls/hls_internal.h"

static const char *const class_names[HG_HLS_CLASS_COUNT] = {
    [HG_HLS_PLAYLIST] = "playlist",
    [HG_HLS_IFRAME_PLAYLIST] = "iframe_playlist",
    [HG_HLS_IMAGE_PLAYLIST] = "image_playlist",
    [HG_HLS_RENDITION_REPORT] = "rendition_report",
    [HG_HLS_SEGMENT] = "segment",
    [HG_HLS_PART] = "part",
    [HG_HLS_PRELOAD_HINT] = "preload_hint",
    [HG_HLS_KEY] = "key",
    [HG_HLS_SESSION_KEY] = "session_key",
    [HG_HLS_MAP] = "map",
    [HG_HLS_SESSION_DATA] = "session_data",
    [HG_HLS_STEERING] = "steering",
    [HG_HLS_ASSET] = "asset",
    [HG_HLS_ASSET_LIST] = "asset_list",
};

const char *hg_hls_class_name(hg_hls_class_t cls) {
  if ((int)cls < 0 || cls >= HG_HLS_CLASS_COUNT) return NULL;
  return class_names[cls];
}

int hg_hls_class_parse(const char *s, size_t n) {
  for (int i = 0; i < HG_HLS_CLASS_COUNT; i++)
    if (strlen(class_names[i]) == n && memcmp(class_names[i], s, n) == 0) return i;
  return -1;
}

/* The fallbacks keep related URIs consistent by default: a preload hint deliberately
 * has none (SPEC §5: never presigned, so it must not inherit the segment/part rule). */
int hg_hls_class_parent(hg_hls_class_t cls) {
  switch (cls) {
  case HG_HLS_IFRAME_PLAYLIST:
  case HG_HLS_IMAGE_PLAYLIST:
  case HG_HLS_RENDITION_REPORT: return HG_HLS_PLAYLIST;
  case HG_HLS_SESSION_KEY: return HG_HLS_KEY;
  case HG_HLS_PART: return HG_HLS_SEGMENT;
  case HG_HLS_ASSET_LIST: return HG_HLS_ASSET;
  default: return -1;
  }
}


/* Contract: see hls.h. Only the preamble is scanned: the first line that is neither
 * blank nor a comment decides. */
int hg_hls_is_playlist(const char *b, size_t n) {
  size_t p = 0;
  if (n >= 3 && memcmp(b, "\xEF\xBB\xBF", 3) == 0) p = 3;
  while (p < n) {
    const char *nl = memchr(b + p, '\n', n - p);
    size_t e = nl ? (size_t)(nl - b) : n;
    size_t ce = e;
    if (ce > p && b[ce - 1] == '\r') ce--;
    size_t q = p;
    while (q < ce && hg__hls_is_ws(b[q])) q++;
    if (q < ce) {
      if (ce - q >= 7 && memcmp(b + q, "#EXTM3U", 7) == 0)
        return ce - q == 7 || hg__hls_is_ws(b[q + 7]);
      if (b[q] != '#' || (ce - q >= 4 && memcmp(b + q, "#EXT", 4) == 0)) return 0;
    }
    p = e + 1;
  }
  return 0;
}

int hg_hls_absolute(const hg_hls_uri_t *uri, hg_buf_t *replacement) {
  int rc = hg_buf_append(replacement, uri->url, uri->url_len);
  return rc ? rc : HG_HLS_REPLACE;
}
