/* hls.h — HLS playlists: detect them and rewrite every URI they carry, in one pass.
 *
 * Pure C over buffers: no I/O, no Lua, no libuv, no global state; any thread (each
 * rewriter object belongs to one thread at a time). The rewriter finds every URI carrier
 * of SPEC §5, classifies and resolves each URI against the playlist's final URL, asks a
 * caller-supplied decision callback what to do with it, and splices the answer in. Every
 * byte that is not a rewritten URI (or a dropped entry) is copied unchanged. See
 * docs/playlist-rewriting.md for the full rules (carriers, classes, drop semantics).
 */
#ifndef HG_HLS_HLS_H
#define HG_HLS_HLS_H

#include <stddef.h>

#include "base/buf.h"

/* ---- URI classes ------------------------------------------------------------------ */

/* What a URI points at. The Lua names (hg_hls_class_name) are in parentheses. */
typedef enum hg_hls_class_e {
  HG_HLS_PLAYLIST = 0,      /* ("playlist") variant URI line after EXT-X-STREAM-INF, or
                               EXT-X-MEDIA URI (a rendition's media playlist) */
  HG_HLS_IFRAME_PLAYLIST,   /* ("iframe_playlist") EXT-X-I-FRAME-STREAM-INF URI */
  HG_HLS_IMAGE_PLAYLIST,    /* ("image_playlist") EXT-X-IMAGE-STREAM-INF URI */
  HG_HLS_RENDITION_REPORT,  /* ("rendition_report") EXT-X-RENDITION-REPORT URI (a media
                               playlist of another rendition) */
  HG_HLS_SEGMENT,           /* ("segment") URI line after EXTINF */
  HG_HLS_PART,              /* ("part") EXT-X-PART URI */
  HG_HLS_PRELOAD_HINT,      /* ("preload_hint") EXT-X-PRELOAD-HINT URI */
  HG_HLS_KEY,               /* ("key") EXT-X-KEY URI */
  HG_HLS_SESSION_KEY,       /* ("session_key") EXT-X-SESSION-KEY URI */
  HG_HLS_MAP,               /* ("map") EXT-X-MAP URI (init segment) */
  HG_HLS_SESSION_DATA,      /* ("session_data") EXT-X-SESSION-DATA URI (JSON) */
  HG_HLS_STEERING,          /* ("steering") EXT-X-CONTENT-STEERING SERVER-URI */
  HG_HLS_ASSET,             /* ("asset") EXT-X-DATERANGE X-ASSET-URI (interstitial) */
  HG_HLS_ASSET_LIST,        /* ("asset_list") EXT-X-DATERANGE X-ASSET-LIST (JSON) */
  HG_HLS_CLASS_COUNT
} hg_hls_class_t;

/* Returns the static lower-case name of `cls` ("segment", ...), or NULL when out of
 * range. Any thread. */
const char *hg_hls_class_name(hg_hls_class_t cls);

/* Returns the class named s[0..n) (exact, lower-case), or -1 if there is none. */
int hg_hls_class_parse(const char *s, size_t n);

/* Returns the class a per-class rule falls back to when the policy gives none for `cls`
 * (iframe_playlist, image_playlist, rendition_report -> playlist; session_key -> key;
 * part -> segment; asset_list -> asset), or -1 when there is no fallback. Lets a policy
 * that says {playlist = ..., key = ...} cover the specialised classes consistently (a
 * session key then becomes the same URL as the media playlists' key). */
int hg_hls_class_parent(hg_hls_class_t cls);

/* ---- Detection -------------------------------------------------------------------- */

/* Returns 1 if body[0..len) is a playlist per SPEC §5: after an optional UTF-8 BOM and
 * any blank lines or comment lines ('#' not followed by "EXT"), the first line is
 * "#EXTM3U" (optionally followed by whitespace and anything). Returns 0 otherwise.
 * Never reads past len. Any thread. */
int hg_hls_is_playlist(const char *body, size_t len);

/* ---- Live or not -------------------------------------------------------------------- */

/* What a playlist says about its own freshness (RFC 8216 §4.4, §6.2.2; LL-HLS §6.2.5.2).
 * Times are in milliseconds; 0 when the tag is absent or unreadable. */
typedef struct hg_hls_info_s {
  int playlist;          /* starts like a playlist (hg_hls_is_playlist) */
  int media;             /* a media playlist: EXTINF, EXT-X-TARGETDURATION or EXT-X-PART */
  int endlist;           /* EXT-X-ENDLIST: the playlist will not change (VOD, or ended) */
  int live;              /* media && !endlist: it changes, reload it */
  int can_block_reload;  /* EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES */
  unsigned target_ms;    /* EXT-X-TARGETDURATION */
  unsigned part_target_ms; /* EXT-X-PART-INF:PART-TARGET (LL-HLS) */
} hg_hls_info_t;

/* Fills `info` from body[0..len) by looking at tags at the start of lines only (linear,
 * no allocation; every field is written). Never fails. Any thread. */
void hg_hls_info(const char *body, size_t len, hg_hls_info_t *info);

/* Returns how long a copy of the playlist may be reused, in ms, per SPEC §5: half the
 * part target for LL-HLS, else half the target duration, for a live media playlist
 * (a live playlist without a readable target: 1000); UINT32_MAX (no limit of its own)
 * for VOD and multivariant playlists. */
unsigned hg_hls_reuse_ms(const hg_hls_info_t *info);

/* ---- Attribute lists -------------------------------------------------------------- */

/* One NAME=VALUE pair of an attribute list, as spans into the list. */
typedef struct hg_hls_attr_s {
  const char *name;  size_t name_len;
  const char *value; size_t value_len; /* without the quotes when quoted */
  int quoted;                          /* 1: value was a closed "quoted-string" */
} hg_hls_attr_t;

/* Iterates the attribute list list[0..len) (the text after "#EXT-X-FOO:"). *pos starts
 * at 0. Stores the next attribute and returns 1, or returns 0 at the end. Lenient like
 * players: whitespace around names, values and commas is skipped; commas inside quoted
 * strings do not split; a pair without '=' is skipped; an unterminated quoted string runs
 * to the end of the list with quoted == 0. Linear in len over a whole iteration. */
int hg_hls_attr_next(const char *list, size_t len, size_t *pos, hg_hls_attr_t *attr);

/* Finds the first attribute named name[0..name_len) (case-sensitive). Returns 1 and
 * fills *attr, or 0 if absent. */
int hg_hls_attr_get(const char *list, size_t len, const char *name, size_t name_len,
                    hg_hls_attr_t *attr);

/* ---- Rewriting -------------------------------------------------------------------- */

/* What the decision callback answers (or a negative HG_E* code to abort). */
typedef enum hg_hls_action_e {
  HG_HLS_KEEP = 0,    /* leave the URI exactly as written */
  HG_HLS_REPLACE = 1, /* splice in the bytes the callback appended to `replacement` */
  HG_HLS_DROP = 2     /* remove the entry with the tags that belong to it */
} hg_hls_action_t;

enum {
  HG_HLS_URI_QUOTED = 1,   /* the URI sits in a quoted attribute (else a URI line) */
  HG_HLS_URI_BYTERANGE = 2 /* a sub-range is fetched: EXT-X-BYTERANGE before the segment,
                              or a BYTERANGE / BYTERANGE-START attribute */
};

/* One URI handed to the decision callback. Every pointer is valid only during the
 * call. Spans point into the body, except `url` (a NUL-terminated scratch buffer). */
typedef struct hg_hls_uri_s {
  hg_hls_class_t cls;
  const char *raw;   size_t raw_len;   /* the URI as written (before variable
                                          substitution), i.e. the span that a REPLACE
                                          overwrites */
  size_t offset;                       /* raw - body */
  size_t line;                         /* 1-based line number of raw */
  const char *url;   size_t url_len;   /* absolute http(s) URL: raw with EXT-X-DEFINE
                                          variables substituted, invalid bytes
                                          percent-encoded, resolved (RFC 3986 §5)
                                          against the base */
  const char *tag;   size_t tag_len;   /* the carrying tag without '#' ("EXT-X-KEY"); for
                                          URI lines the tag that introduced it ("EXTINF",
                                          "EXT-X-STREAM-INF") */
  const char *attr;  size_t attr_len;  /* "URI", "SERVER-URI", "X-ASSET-URI",
                                          "X-ASSET-LIST"; NULL for URI lines */
  const char *attrs; size_t attrs_len; /* the tag's value after ':' (an attribute list,
                                          for EXTINF "duration,title"); for a variant
                                          this is its EXT-X-STREAM-INF attributes
                                          (BANDWIDTH, RESOLUTION ...), raw */
  unsigned flags;                      /* HG_HLS_URI_* */
} hg_hls_uri_t;

/* The decision: called once per http(s) URI in document order (twice for a DATERANGE
 * with both X-ASSET-URI and X-ASSET-LIST). `replacement` is empty on entry. Returns
 * HG_HLS_KEEP, HG_HLS_REPLACE (after appending the new URI to `replacement`; must be
 * non-empty), HG_HLS_DROP, or a negative HG_E* code, which aborts the rewrite and is
 * returned by hg_hls_rewrite. Runs on the rewriting thread; must not touch the output
 * buffer. */
typedef int (*hg_hls_decide_cb)(void *ud, const hg_hls_uri_t *uri, hg_buf_t *replacement);

/* Counters of one rewrite (all zero when the body has no URI). */
typedef struct hg_hls_stats_s {
  size_t uris;       /* handed to the callback */
  size_t replaced;   /* answered HG_HLS_REPLACE */
  size_t dropped;    /* answered HG_HLS_DROP */
  size_t foreign;    /* non-http(s) (data:, skd:// ...): left alone, never resolved */
  size_t unresolved; /* left alone: a {$var} with no usable definition, or a reference
                        that is not a URI even after escaping (e.g. "[KEY]") */
  size_t by_class[HG_HLS_CLASS_COUNT]; /* `uris` per class */
} hg_hls_stats_t;

/* Scratch memory reused across rewrites (grows to the largest playlist seen, then
 * stops allocating). One owner thread at a time. */
typedef struct hg_hls_rewriter_s hg_hls_rewriter_t;

/* Returns a new rewriter (caller frees with hg_hls_rewriter_free), or NULL on OOM. */
hg_hls_rewriter_t *hg_hls_rewriter_new(void);

/* Frees a rewriter and its scratch memory. NULL is a no-op. */
void hg_hls_rewriter_free(hg_hls_rewriter_t *rw);

/* Bounds the output of the rewrites that follow on `rw`: once one has produced more than
 * `max_out` bytes (checked after each line, so it overshoots by at most one line) it
 * stops with HG_ETOOBIG. 0 = no limit (the default). The rewriter's own scratch memory
 * is bounded by the longest line. */
void hg_hls_rewriter_limit(hg_hls_rewriter_t *rw, size_t max_out);

/* Rewrites the playlist body[0..len), appending the result to `out`, in one linear
 * pass. `base` is the playlist's final absolute URL (after redirects); relative URIs
 * resolve against it and EXT-X-DEFINE QUERYPARAM reads its query. `rw` may be NULL (a
 * temporary one is used). `stats` may be NULL; when given it is filled in (also on
 * failure, up to the failing URI).
 * Returns 0, or: HG_EPARSE (not a playlist, see hg_hls_is_playlist), HG_EINVAL (no
 * callback, or base is not an absolute URL), HG_EPOLICY (the callback answered DROP for
 * a key or a map, REPLACE with an empty replacement, or an unknown action: a policy
 * bug), HG_ENOMEM, HG_ETOOBIG (past the limit set with hg_hls_rewriter_limit), or the
 * callback's own negative code. On failure `out` is restored to its length on entry.
 * Any thread. */
int hg_hls_rewrite(hg_hls_rewriter_t *rw, hg_buf_t *out, const char *body, size_t len,
                   const char *base, size_t base_len, hg_hls_decide_cb decide, void *ud,
                   hg_hls_stats_t *stats);

/* The `absolute` action for a decision callback: appends uri->url to `replacement` and
 * returns HG_HLS_REPLACE (or HG_ENOMEM). */
int hg_hls_absolute(const hg_hls_uri_t *uri, hg_buf_t *replacement);

#endif
