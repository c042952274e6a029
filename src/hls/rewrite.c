/* rewrite.c — the one-pass playlist rewriter (see hls.h, docs/playlist-rewriting.md).
 *
 * The body is read line by line, once. Each line is copied to the output as it is met,
 * except for the spans of the URIs the decision callback replaces, and except for the
 * lines of an entry it drops. A variant or a segment is only complete at its URI line,
 * which can come several lines after the tags that belong to it; rather than buffering
 * those lines, the output ranges of the ones that would go with the entry are remembered
 * ("chunks" of the open region) and cut out of the output if the URI line is dropped.
 * Nothing is allocated per line: every scratch buffer lives in the rewriter and is
 * reused, so a rewriter that has seen a playlist of this size does not allocate at all.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "hls/hls.h"
#include "hls/hls_internal.h"
#include "url/url.h"

/* More EXT-X-DEFINE variables than this are ignored (their references then stay
 * unresolved), which bounds the linear variable lookup. */
#define MAX_VARS 256

typedef struct var_s { /* an EXT-X-DEFINE variable; spans into the body or the base */
  const char *name;
  size_t name_len;
  const char *val;
  size_t val_len;
  int bad; /* defined twice, or its value holds a reference: never substituted */
} var_t;

typedef struct edit_s { /* a replaced URI of the current line */
  size_t start, end;    /* span in the body */
  size_t roff, rlen;    /* replacement bytes in rw->lrepl */
} edit_t;

typedef struct chunk_s { /* output range of a line that goes with the open entry */
  size_t start, end;
} chunk_t;

struct hg_hls_rewriter_s {
  hg_buf_t sub;   /* a URI with variables substituted */
  hg_buf_t enc;   /* ... with invalid bytes percent-encoded */
  hg_buf_t abs;   /* ... resolved against the base */
  hg_buf_t repl;  /* the callback's replacement */
  hg_buf_t lrepl; /* sanitized replacements of the current line */
  var_t *vars;
  size_t nvars, cvars;
  edit_t *edits;
  size_t nedits, cedits;
  chunk_t *chunks;
  size_t nchunks, cchunks;
  size_t max_out; /* output bytes one rewrite may produce (0 = no limit) */
};

/* Tags the rewriter knows. A tag that is not in this table is "unknown": kept as is, and
 * dropped with a variant or segment only when it sits after the EXTINF/STREAM-INF. */
enum {
  T_UNKNOWN = 0,
  T_KNOWN,      /* playlist-level or applies onwards: never dropped with an entry */
  T_OWNED,      /* belongs to the next segment (PROGRAM-DATE-TIME, GAP, TILES) */
  T_BYTERANGE,  /* owned, and makes the segment a sub-range */
  T_EXTINF,
  T_STREAM_INF,
  T_DEFINE,
  T_MEDIA,
  T_IFRAME,
  T_IMAGE,
  T_KEY,
  T_SESSION_KEY,
  T_MAP,
  T_PART, /* owned, and carries a URI */
  T_PRELOAD,
  T_RREPORT,
  T_SESSION_DATA,
  T_STEERING,
  T_DATERANGE
};

static const struct {
  const char *name;
  unsigned char len, id;
} tags[] = {
#define TAG(s, id) {s, sizeof(s) - 1, id}
    TAG("EXTINF", T_EXTINF),
    TAG("EXT-X-PART", T_PART),
    TAG("EXT-X-BYTERANGE", T_BYTERANGE),
    TAG("EXT-X-PROGRAM-DATE-TIME", T_OWNED),
    TAG("EXT-X-STREAM-INF", T_STREAM_INF),
    TAG("EXT-X-KEY", T_KEY),
    TAG("EXT-X-MAP", T_MAP),
    TAG("EXT-X-MEDIA", T_MEDIA),
    TAG("EXT-X-I-FRAME-STREAM-INF", T_IFRAME),
    TAG("EXT-X-IMAGE-STREAM-INF", T_IMAGE),
    TAG("EXT-X-SESSION-KEY", T_SESSION_KEY),
    TAG("EXT-X-PRELOAD-HINT", T_PRELOAD),
    TAG("EXT-X-RENDITION-REPORT", T_RREPORT),
    TAG("EXT-X-SESSION-DATA", T_SESSION_DATA),
    TAG("EXT-X-CONTENT-STEERING", T_STEERING),
    TAG("EXT-X-DATERANGE", T_DATERANGE),
    TAG("EXT-X-DEFINE", T_DEFINE),
    TAG("EXT-X-GAP", T_OWNED),
    TAG("EXT-X-TILES", T_OWNED),
    TAG("EXTM3U", T_KNOWN),
    TAG("EXT-X-VERSION", T_KNOWN),
    TAG("EXT-X-TARGETDURATION", T_KNOWN),
    TAG("EXT-X-MEDIA-SEQUENCE", T_KNOWN),
    TAG("EXT-X-DISCONTINUITY-SEQUENCE", T_KNOWN),
    TAG("EXT-X-DISCONTINUITY", T_KNOWN),
    TAG("EXT-X-ENDLIST", T_KNOWN),
    TAG("EXT-X-PLAYLIST-TYPE", T_KNOWN),
    TAG("EXT-X-I-FRAMES-ONLY", T_KNOWN),
    TAG("EXT-X-IMAGES-ONLY", T_KNOWN),
    TAG("EXT-X-PART-INF", T_KNOWN),
    TAG("EXT-X-SERVER-CONTROL", T_KNOWN),
    TAG("EXT-X-SKIP", T_KNOWN),
    TAG("EXT-X-INDEPENDENT-SEGMENTS", T_KNOWN),
    TAG("EXT-X-START", T_KNOWN),
    TAG("EXT-X-BITRATE", T_KNOWN),
    TAG("EXT-X-ALLOW-CACHE", T_KNOWN),
#undef TAG
};

static int tag_id(const char *s, size_t n) {
  for (size_t i = 0; i < sizeof(tags) / sizeof(tags[0]); i++)
    if (tags[i].len == n && memcmp(tags[i].name, s, n) == 0) return tags[i].id;
  return T_UNKNOWN;
}

static int eq(const char *s, size_t n, const char *lit) {
  return strlen(lit) == n && memcmp(s, lit, n) == 0;
}

/* The class of attribute `name` of a carrier tag, or -1 if it carries no URI. */
static int carrier_class(int id, const char *name, size_t n) {
  if (id == T_STEERING) return eq(name, n, "SERVER-URI") ? HG_HLS_STEERING : -1;
  if (id == T_DATERANGE) {
    if (eq(name, n, "X-ASSET-URI")) return HG_HLS_ASSET;
    if (eq(name, n, "X-ASSET-LIST")) return HG_HLS_ASSET_LIST;
    return -1;
  }
  if (!eq(name, n, "URI")) return -1;
  switch (id) {
  case T_MEDIA: return HG_HLS_PLAYLIST;
  case T_IFRAME: return HG_HLS_IFRAME_PLAYLIST;
  case T_IMAGE: return HG_HLS_IMAGE_PLAYLIST;
  case T_KEY: return HG_HLS_KEY;
  case T_SESSION_KEY: return HG_HLS_SESSION_KEY;
  case T_MAP: return HG_HLS_MAP;
  case T_PART: return HG_HLS_PART;
  case T_PRELOAD: return HG_HLS_PRELOAD_HINT;
  case T_RREPORT: return HG_HLS_RENDITION_REPORT;
  case T_SESSION_DATA: return HG_HLS_SESSION_DATA;
  default: return -1;
  }
}

/* ---- Small helpers ---------------------------------------------------------------- */

static int is_alpha(unsigned char c) { return (c | 0x20) >= 'a' && (c | 0x20) <= 'z'; }
static int is_digit(unsigned char c) { return c >= '0' && c <= '9'; }
static int is_var_char(unsigned char c) {
  return is_alpha(c) || is_digit(c) || c == '-' || c == '_';
}

/* Grows an array to hold `need` elements; returns the (maybe moved) array or NULL. */
static void *grow(void *p, size_t *cap, size_t need, size_t size) {
  if (need <= *cap) return p;
  size_t c = *cap ? *cap : 16;
  while (c < need) {
    if (c > SIZE_MAX / 2 / size) return NULL;
    c *= 2;
  }
  void *q = realloc(p, c * size);
  if (q == NULL) return NULL;
  *cap = c;
  return q;
}

/* Length of a URI scheme at the start of s (RFC 3986 §3.1: ALPHA *(ALPHA / DIGIT / "+"
 * / "-" / ".") ":"), or 0 when s does not start with one. */
static size_t scheme_len(const char *s, size_t n) {
  if (n == 0 || !is_alpha((unsigned char)s[0])) return 0;
  size_t j = 1;
  while (j < n && (is_alpha((unsigned char)s[j]) || is_digit((unsigned char)s[j]) ||
                   s[j] == '+' || s[j] == '-' || s[j] == '.'))
    j++;
  return j < n && s[j] == ':' ? j : 0;
}

static int is_http(const char *s, size_t n) {
  if (n != 4 && n != 5) return 0;
  const char *h = "https";
  for (size_t i = 0; i < n; i++)
    if ((s[i] | 0x20) != h[i]) return 0;
  return 1;
}

/* Whether the absolute URL s has a non-empty authority: "http:seg.ts" (a legal
 * reference that strict resolution keeps as is) or "https:///x" name no server. */
static int has_host(const char *s, size_t n) {
  size_t sl = scheme_len(s, n);
  if (sl == 0 || n - sl < 4 || s[sl + 1] != '/' || s[sl + 2] != '/') return 0;
  char c = s[sl + 3];
  return c != '/' && c != '?' && c != '#';
}

/* Whether s holds a well-formed variable reference "{$name}". */
static int has_ref(const char *s, size_t n) {
  for (size_t i = 0; i + 1 < n; i++) {
    if (s[i] != '{' || s[i + 1] != '$') continue;
    size_t j = i + 2;
    while (j < n && is_var_char((unsigned char)s[j])) j++;
    if (j > i + 2 && j < n && s[j] == '}') return 1;
  }
  return 0;
}

/* Byte classes for the per-byte scans (one table lookup per byte):
 *   ESC    hg_url_escape_invalid may change it (controls, space, non-ASCII,
 *          "<>\"{}|\\^`", and conservatively every '%');
 *   CTL    breaks any line of the playlist (controls, space, DEL): escaped in replacements;
 *   QUOTE  ends a quoted attribute: escaped in quoted replacements. */
enum { B_ESC = 1, B_CTL = 2, B_QUOTE = 4 };
static const unsigned char bclass[256] = {
    [0x00 ... 0x20] = B_ESC | B_CTL, [0x7f] = B_ESC | B_CTL, [0x80 ... 0xff] = B_ESC,
    ['"'] = B_ESC | B_QUOTE, ['%'] = B_ESC, ['<'] = B_ESC, ['>'] = B_ESC, ['\\'] = B_ESC,
    ['^'] = B_ESC, ['`'] = B_ESC, ['{'] = B_ESC, ['|'] = B_ESC, ['}'] = B_ESC,
};

/* Whether hg_url_escape_invalid could change s. */
static int needs_escape(const char *s, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (bclass[(unsigned char)s[i]] & B_ESC) return 1;
  return 0;
}

/* ---- The pass --------------------------------------------------------------------- */

enum { INTRO_NONE = 0, INTRO_SEGMENT, INTRO_VARIANT };

typedef struct st_s {
  hg_hls_rewriter_t *rw;
  hg_buf_t *out;
  const char *body;
  size_t len;
  const char *base;
  size_t base_len;
  int base_http;          /* relative references resolve to http(s) */
  const char *bq;         /* base query, for QUERYPARAM */
  size_t bq_len;
  int has_bq;
  hg_hls_decide_cb decide;
  void *ud;
  hg_hls_stats_t *stats;
  size_t out_start;       /* out->len on entry: this rewrite's output starts there */
  size_t lineno;
  /* The open entry: what the next URI line completes. */
  int intro;              /* INTRO_* */
  const char *intro_tag;  /* "EXTINF" / "EXT-X-STREAM-INF" and its value */
  size_t intro_tag_len;
  const char *intro_val;
  size_t intro_val_len;
  int byterange;          /* an EXT-X-BYTERANGE was seen for it */
} st_t;

/* Where a URI sits, for the callback. */
typedef struct where_s {
  const char *tag;
  size_t tag_len;
  const char *attr;
  size_t attr_len;
  const char *attrs;
  size_t attrs_len;
  unsigned flags;
} where_t;

static var_t *lookup(st_t *st, const char *name, size_t n) {
  hg_hls_rewriter_t *rw = st->rw;
  for (size_t i = 0; i < rw->nvars; i++)
    if (rw->vars[i].name_len == n && memcmp(rw->vars[i].name, name, n) == 0)
      return &rw->vars[i];
  return NULL;
}

/* EXT-X-DEFINE (RFC 8216bis §4.4.2.3): NAME/VALUE, or QUERYPARAM taken from the base
 * URL's query (the raw, still percent-encoded value: it is substituted into URIs, where
 * the encoded form is what the origin expects). IMPORT needs the parent playlist, which
 * a rewriter of one body does not have: it defines nothing, so its references stay
 * unresolved and those URIs are left untouched. A second definition of a name poisons
 * it (players reject such playlists), as does a value that itself holds a reference. */
static int define(st_t *st, const char *list, size_t n) {
  hg_hls_attr_t a, name = {0}, value = {0}, qp = {0};
  int has_name = 0, has_value = 0, has_qp = 0;
  size_t pos = 0;
  while (hg_hls_attr_next(list, n, &pos, &a)) {
    if (!a.quoted) continue;
    if (eq(a.name, a.name_len, "NAME")) name = a, has_name = 1;
    else if (eq(a.name, a.name_len, "VALUE")) value = a, has_value = 1;
    else if (eq(a.name, a.name_len, "QUERYPARAM")) qp = a, has_qp = 1;
  }
  const char *nm, *v = NULL;
  size_t nl, vl = 0;
  if (has_name && has_value) {
    nm = name.value, nl = name.value_len, v = value.value, vl = value.value_len;
  } else if (has_qp && !has_name) {
    nm = qp.value, nl = qp.value_len;
    if (!st->has_bq) return 0;
    hg_url_query_iter_t it;
    hg_url_param_t p;
    hg_url_query_iter(&it, st->bq, st->bq_len);
    while (hg_url_query_next(&it, &p)) {
      if (p.name_len == nl && memcmp(p.name, nm, nl) == 0) {
        v = p.value, vl = p.value_len;
        break;
      }
    }
    if (v == NULL) return 0;
  } else {
    return 0;
  }
  if (nl == 0) return 0;
  for (size_t i = 0; i < nl; i++)
    if (!is_var_char((unsigned char)nm[i])) return 0;
  var_t *old = lookup(st, nm, nl);
  if (old != NULL) {
    old->bad = 1;
    return 0;
  }
  hg_hls_rewriter_t *rw = st->rw;
  if (rw->nvars >= MAX_VARS) return 0;
  var_t *vars = grow(rw->vars, &rw->cvars, rw->nvars + 1, sizeof(*vars));
  if (vars == NULL) return HG_ENOMEM;
  rw->vars = vars;
  vars[rw->nvars++] = (var_t){nm, nl, v, vl, has_ref(v, vl)};
  return 0;
}

/* Appends s with every "{$name}" replaced by its value. Returns 0, 1 when a reference
 * has no usable definition (the URI must then stay untouched), or HG_ENOMEM. A "{$"
 * that does not form a reference is copied as is. */
static int substitute(st_t *st, const char *s, size_t n, hg_buf_t *out) {
  size_t i = 0, p = 0;
  int rc;
  while (i + 1 < n) {
    if (s[i] == '{' && s[i + 1] == '$') {
      size_t j = i + 2;
      while (j < n && is_var_char((unsigned char)s[j])) j++;
      if (j > i + 2 && j < n && s[j] == '}') {
        var_t *v = lookup(st, s + i + 2, j - i - 2);
        if (v == NULL || v->bad) return 1;
        if ((rc = hg_buf_append(out, s + p, i - p)) != 0 ||
            (rc = hg_buf_append(out, v->val, v->val_len)) != 0)
          return rc;
        i = p = j + 1;
        continue;
      }
    }
    i++;
  }
  return hg_buf_append(out, s + p, n - p);
}

/* Appends the callback's replacement to the current line's replacements, escaping what
 * would break the playlist's structure: controls and spaces always (a CR/LF would start a
 * new line), '"' inside a quoted attribute, and a leading '#' on a URI line (it would
 * turn into a comment). A valid URL has none of these, so a correct one is copied as is. */
static int put_replacement(hg_buf_t *b, const char *s, size_t n, int quoted) {
  static const char hex[] = "0123456789ABCDEF";
  unsigned mask = quoted ? B_CTL | B_QUOTE : B_CTL;
  int rc = hg_buf_reserve(b, n);
  if (rc) return rc;
  size_t i = 0;
  if (!quoted && n > 0 && s[0] == '#') {
    if ((rc = hg_buf_append(b, "%23", 3)) != 0) return rc;
    i = 1;
  }
  for (;;) {
    size_t k = i;
    while (k < n && !(bclass[(unsigned char)s[k]] & mask)) k++;
    if ((rc = hg_buf_append(b, s + i, k - i)) != 0) return rc;
    if (k == n) return 0;
    unsigned char c = (unsigned char)s[k];
    char esc[3] = {'%', hex[c >> 4], hex[c & 15]};
    if ((rc = hg_buf_append(b, esc, 3)) != 0) return rc;
    i = k + 1;
  }
}

/* Handles one URI at body[off .. off+n): classifies it as foreign or unresolved (left
 * untouched, the callback is not called), or resolves it and asks the callback. On
 * REPLACE, records an edit for the current line. Returns HG_HLS_KEEP/REPLACE/DROP or a
 * negative code. */
static int handle(st_t *st, int cls, size_t off, size_t n, const where_t *w) {
  hg_hls_rewriter_t *rw = st->rw;
  hg_hls_stats_t *stats = st->stats;
  const char *raw = st->body + off, *ref = raw;
  size_t ref_len = n;
  int rc;

  /* A literal non-http(s) scheme (data:, skd://): never substituted, never resolved. */
  size_t sl = scheme_len(ref, ref_len);
  if (sl && !is_http(ref, sl)) {
    stats->foreign++;
    return HG_HLS_KEEP;
  }
  if (memchr(ref, '{', ref_len) != NULL && has_ref(ref, ref_len)) {
    hg_buf_clear(&rw->sub);
    rc = substitute(st, ref, ref_len, &rw->sub);
    if (rc < 0) return rc;
    if (rc > 0) {
      stats->unresolved++;
      return HG_HLS_KEEP;
    }
    ref = rw->sub.data, ref_len = rw->sub.len;
    sl = scheme_len(ref, ref_len);
    if (sl && !is_http(ref, sl)) {
      stats->foreign++;
      return HG_HLS_KEEP;
    }
  }
  if (sl == 0 && !st->base_http) {
    stats->foreign++;
    return HG_HLS_KEEP;
  }
  /* Players fetch "seg 1.ts" as "seg%201.ts" (WHATWG URL); do the same, so a URI a
   * player can fetch is never left relative to the wrong base. */
  if (needs_escape(ref, ref_len)) {
    hg_buf_clear(&rw->enc);
    if ((rc = hg_url_escape_invalid(&rw->enc, ref, ref_len)) != 0) return rc;
    ref = rw->enc.data, ref_len = rw->enc.len;
  }
  hg_buf_clear(&rw->abs);
  rc = hg_url_resolve(&rw->abs, st->base, st->base_len, ref, ref_len);
  if (rc == HG_EPARSE || (rc == 0 && !has_host(rw->abs.data, rw->abs.len))) {
    stats->unresolved++;
    return HG_HLS_KEEP;
  }
  if (rc) return rc;

  hg_hls_uri_t u = {
      .cls = (hg_hls_class_t)cls,
      .raw = raw, .raw_len = n, .offset = off, .line = st->lineno,
      .url = rw->abs.data, .url_len = rw->abs.len,
      .tag = w->tag, .tag_len = w->tag_len,
      .attr = w->attr, .attr_len = w->attr_len,
      .attrs = w->attrs, .attrs_len = w->attrs_len,
      .flags = w->flags,
  };
  hg_buf_clear(&rw->repl);
  stats->uris++;
  stats->by_class[cls]++;
  rc = st->decide(st->ud, &u, &rw->repl);
  if (rc < 0) return rc;
  switch (rc) {
  case HG_HLS_KEEP:
    return HG_HLS_KEEP;
  case HG_HLS_DROP:
    /* Without its key or init section the rest of the playlist cannot play. */
    if (cls == HG_HLS_KEY || cls == HG_HLS_MAP) return HG_EPOLICY;
    stats->dropped++;
    return HG_HLS_DROP;
  case HG_HLS_REPLACE: {
    if (rw->repl.len == 0) return HG_EPOLICY;
    edit_t *e = grow(rw->edits, &rw->cedits, rw->nedits + 1, sizeof(*e));
    if (e == NULL) return HG_ENOMEM;
    rw->edits = e;
    size_t roff = rw->lrepl.len;
    rc = put_replacement(&rw->lrepl, rw->repl.data, rw->repl.len, (w->flags & HG_HLS_URI_QUOTED) != 0);
    if (rc) return rc;
    e[rw->nedits++] = (edit_t){off, off + n, roff, rw->lrepl.len - roff};
    stats->replaced++;
    return HG_HLS_REPLACE;
  }
  default:
    return HG_EPOLICY;
  }
}

/* Copies the line body[ls..le) to the output with the current line's edits applied. A
 * `droppable` line goes with the open entry: its output range is remembered. */
static int emit(st_t *st, size_t ls, size_t le, int droppable) {
  hg_hls_rewriter_t *rw = st->rw;
  hg_buf_t *out = st->out;
  size_t start = out->len, p = ls;
  int rc;
  for (size_t i = 0; i < rw->nedits; i++) {
    const edit_t *e = &rw->edits[i];
    if ((rc = hg_buf_append(out, st->body + p, e->start - p)) != 0 ||
        (rc = hg_buf_append(out, rw->lrepl.data + e->roff, e->rlen)) != 0)
      return rc;
    p = e->end;
  }
  rw->nedits = 0;
  hg_buf_clear(&rw->lrepl);
  if ((rc = hg_buf_append(out, st->body + p, le - p)) != 0) return rc;
  /* Security: tiny relative URIs under a long base URL multiply the input; stop at the
   * limit, checked per line, so the output never exceeds it by more than one line. */
  if (rw->max_out && out->len - st->out_start > rw->max_out) return HG_ETOOBIG;
  if (droppable) {
    chunk_t *c = grow(rw->chunks, &rw->cchunks, rw->nchunks + 1, sizeof(*c));
    if (c == NULL) return HG_ENOMEM;
    rw->chunks = c;
    c[rw->nchunks++] = (chunk_t){start, out->len};
  }
  return 0;
}

/* Closes the open entry (after its URI line, or when a new one starts). */
static void region_reset(st_t *st) {
  st->rw->nchunks = 0;
  st->intro = INTRO_NONE;
  st->byterange = 0;
}

/* Cuts the remembered lines of the open entry out of the output, closing the gaps. */
static void region_cut(st_t *st) {
  hg_hls_rewriter_t *rw = st->rw;
  hg_buf_t *out = st->out;
  size_t n = rw->nchunks;
  if (n == 0) return;
  const chunk_t *c = rw->chunks;
  size_t w = c[0].start;
  for (size_t i = 0; i < n; i++) {
    size_t from = c[i].end, to = i + 1 < n ? c[i + 1].start : out->len;
    memmove(out->data + w, out->data + from, to - from);
    w += to - from;
  }
  out->len = w;
  out->data[w] = '\0';
}

/* A tag carrying URIs in attributes: each carrier attribute (several per line are
 * fine) is handled in order; the line is removed if any answer is DROP. */
static int carrier_line(st_t *st, int id, size_t ls, size_t le, const char *name, size_t name_len,
                        const char *val, size_t val_len) {
  hg_hls_rewriter_t *rw = st->rw;
  where_t w = {name, name_len, NULL, 0, val, val_len, HG_HLS_URI_QUOTED};
  hg_hls_attr_t a;
  size_t pos = 0;
  if (id == T_MAP || id == T_PART || id == T_PRELOAD) {
    while (hg_hls_attr_next(val, val_len, &pos, &a))
      if (eq(a.name, a.name_len, "BYTERANGE") || eq(a.name, a.name_len, "BYTERANGE-START"))
        w.flags |= HG_HLS_URI_BYTERANGE;
    pos = 0;
  }
  rw->nedits = 0;
  hg_buf_clear(&rw->lrepl);
  int drop = 0;
  while (hg_hls_attr_next(val, val_len, &pos, &a)) {
    int cls = carrier_class(id, a.name, a.name_len);
    if (cls < 0 || !a.quoted || a.value_len == 0) continue;
    w.attr = a.name, w.attr_len = a.name_len;
    int rc = handle(st, cls, (size_t)(a.value - st->body), a.value_len, &w);
    if (rc < 0) return rc;
    if (rc == HG_HLS_DROP) drop = 1;
  }
  if (drop) {
    rw->nedits = 0;
    hg_buf_clear(&rw->lrepl);
    return 0;
  }
  return emit(st, ls, le, id == T_PART);
}

/* A URI line [us, ue) (trimmed) of the line [ls, le). */
static int uri_line(st_t *st, size_t ls, size_t us, size_t ue, size_t le) {
  if (st->intro == INTRO_NONE) { /* no EXTINF/STREAM-INF: players ignore it, so do we */
    int rc = emit(st, ls, le, 0);
    region_reset(st);
    return rc;
  }
  int seg = st->intro == INTRO_SEGMENT;
  where_t w = {st->intro_tag, st->intro_tag_len, NULL, 0, st->intro_val, st->intro_val_len,
               seg && st->byterange ? HG_HLS_URI_BYTERANGE : 0};
  st->rw->nedits = 0;
  hg_buf_clear(&st->rw->lrepl);
  int rc = handle(st, seg ? HG_HLS_SEGMENT : HG_HLS_PLAYLIST, us, ue - us, &w);
  if (rc < 0) return rc;
  if (rc == HG_HLS_DROP) {
    st->rw->nedits = 0;
    region_cut(st);
  } else {
    rc = emit(st, ls, le, 0);
  }
  region_reset(st);
  return rc < 0 ? rc : 0;
}

/* A "#EXT..." line: [cs, ce) is its content, [ls, le) the whole line. */
static int tag_line(st_t *st, size_t ls, size_t cs, size_t ce, size_t le) {
  const char *b = st->body;
  const char *name = b + cs + 1, *colon = memchr(name, ':', ce - cs - 1);
  size_t name_len = colon ? (size_t)(colon - name) : ce - cs - 1;
  const char *val = colon ? colon + 1 : b + ce;
  size_t val_len = (size_t)(b + ce - val);
  int id = tag_id(name, name_len);
  switch (id) {
  case T_EXTINF:
  case T_STREAM_INF:
    /* A new entry. An EXTINF keeps the segment tags met before it (BYTERANGE, PDT,
     * PART ...); an earlier entry that never got its URI line is abandoned. */
    if (st->intro != INTRO_NONE || id == T_STREAM_INF) region_reset(st);
    st->intro = id == T_EXTINF ? INTRO_SEGMENT : INTRO_VARIANT;
    st->intro_tag = name, st->intro_tag_len = name_len;
    st->intro_val = val, st->intro_val_len = val_len;
    return emit(st, ls, le, 1);
  case T_BYTERANGE:
    st->byterange = 1;
    return emit(st, ls, le, 1);
  case T_OWNED:
    return emit(st, ls, le, 1);
  case T_DEFINE: {
    int rc = define(st, val, val_len);
    return rc ? rc : emit(st, ls, le, 0);
  }
  case T_KNOWN:
    return emit(st, ls, le, 0);
  case T_UNKNOWN:
    return emit(st, ls, le, st->intro != INTRO_NONE);
  default:
    return carrier_line(st, id, ls, le, name, name_len, val, val_len);
  }
}

static int line(st_t *st, size_t ls, size_t cs, size_t ce, size_t le) {
  const char *b = st->body;
  st->lineno++;
  if (cs < ce && b[cs] == '#') {
    if (ce - cs >= 4 && memcmp(b + cs, "#EXT", 4) == 0) return tag_line(st, ls, cs, ce, le);
    return emit(st, ls, le, st->intro != INTRO_NONE); /* a comment */
  }
  size_t us = cs, ue = ce;
  while (us < ue && hg__hls_is_ws(b[us])) us++;
  while (ue > us && hg__hls_is_ws(b[ue - 1])) ue--;
  if (us == ue) return emit(st, ls, le, 0);                            /* blank */
  if (b[us] == '#') return emit(st, ls, le, st->intro != INTRO_NONE); /* indented comment */
  return uri_line(st, ls, us, ue, le);
}

static void rewriter_release(hg_hls_rewriter_t *rw) {
  hg_buf_free(&rw->sub);
  hg_buf_free(&rw->enc);
  hg_buf_free(&rw->abs);
  hg_buf_free(&rw->repl);
  hg_buf_free(&rw->lrepl);
  free(rw->vars);
  free(rw->edits);
  free(rw->chunks);
}

hg_hls_rewriter_t *hg_hls_rewriter_new(void) { return calloc(1, sizeof(hg_hls_rewriter_t)); }

void hg_hls_rewriter_limit(hg_hls_rewriter_t *rw, size_t max_out) { rw->max_out = max_out; }

void hg_hls_rewriter_free(hg_hls_rewriter_t *rw) {
  if (rw == NULL) return;
  rewriter_release(rw);
  free(rw);
}

/* Contract: see hls.h. Lines end at LF; a CR before it (or before the end) is part of
 * the terminator, so CRLF bodies are parsed alike and copied unchanged. */
int hg_hls_rewrite(hg_hls_rewriter_t *rw, hg_buf_t *out, const char *body, size_t len,
                   const char *base, size_t base_len, hg_hls_decide_cb decide, void *ud,
                   hg_hls_stats_t *stats) {
  hg_hls_stats_t local_stats;
  if (stats == NULL) stats = &local_stats;
  memset(stats, 0, sizeof(*stats));
  if (decide == NULL || base == NULL || (body == NULL && len > 0)) return HG_EINVAL;
  if (!hg_hls_is_playlist(body, len)) return HG_EPARSE;
  hg_url_t bu;
  if (hg_url_parse(base, base_len, &bu) != 0 || !bu.has_scheme) return HG_EINVAL;

  hg_hls_rewriter_t tmp;
  if (rw == NULL) {
    memset(&tmp, 0, sizeof(tmp));
    rw = &tmp;
  }
  rw->nvars = rw->nedits = rw->nchunks = 0;
  hg_buf_clear(&rw->lrepl);

  st_t st = {
      .rw = rw, .out = out, .body = body, .len = len, .base = base, .base_len = base_len,
      .base_http = is_http(bu.scheme, bu.scheme_len),
      .bq = bu.query, .bq_len = bu.query_len, .has_bq = bu.has_query,
      .decide = decide, .ud = ud, .stats = stats, .out_start = out->len,
  };
  size_t start_len = out->len;
  size_t want = len + len / 4;
  if (rw->max_out && want > rw->max_out) want = rw->max_out;
  int rc = hg_buf_reserve(out, want);
  size_t pos = 0;
  while (rc == 0 && pos < len) {
    const char *nl = memchr(body + pos, '\n', len - pos);
    size_t le = nl ? (size_t)(nl - body) + 1 : len;
    size_t ce = nl ? le - 1 : len;
    if (ce > pos && body[ce - 1] == '\r') ce--;
    size_t cs = pos;
    if (pos == 0 && len >= 3 && memcmp(body, "\xEF\xBB\xBF", 3) == 0) cs = 3 <= ce ? 3 : ce;
    rc = line(&st, pos, cs, ce, le);
    pos = le;
  }
  if (rc) {
    out->len = start_len;
    if (out->data) out->data[start_len] = '\0';
  }
  if (rw == &tmp) rewriter_release(&tmp);
  return rc;
}
