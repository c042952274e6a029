/* relay.c — deciding what a body is and relaying it (see exchange.h): the first bytes
 * say playlist or not (SPEC §5); a playlist is buffered (bounded, gzip decoded with a
 * bound), anything else is relayed as it arrives with backpressure, served inline only
 * when a player needs it inline (content types, nosniff).
 */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "base/buf.h"
#include "base/error.h"
#include "base/log.h"
#include "crypto/hash.h"
#include "crypto/sigv4.h"
#include "gateway/exchange.h"
#include "gateway/live.h"
#include "upstream/file.h"
#include "url/url.h"

#include <zlib.h>

static void on_drain(void *ud, int status);
static int is_generic_type(const char *t);
static const char *relay_type(const exchange_t *x);
static void media_type(const char *ct, char *mt, size_t cap);
static int is_media_type(const char *mt);
static int type_allowed(const exchange_t *x, const char *mt);
static void start_relay(exchange_t *x);
static void relay_or_refuse(exchange_t *x, int final);
static int whole_range(const exchange_t *x);
static int is_gzip(const char *enc);
static int gunzip(z_stream *z, const char *in, size_t len, hg_buf_t *out, size_t max, int *end);

static void on_drain(void *ud, int status) {
  exchange_t *x = ud;
  if (status < 0) { /* the client is gone: stop the source, end our side */
    if (x->mode == M_RELAY) {
      x->mode = M_DONE;
      hg__x_source_abort(x);
      hg_http_stream_end(x->txn, 0);
      hg__x_release(x, X_RESPONSE);
    }
    return;
  }
  if (x->paused) hg__x_source_resume(x);
}

static int is_generic_type(const char *t) {
  return t == NULL || *t == '\0' || strncasecmp(t, "application/octet-stream", 24) == 0 ||
         strncasecmp(t, "binary/octet-stream", 19) == 0;
}

/* The type a relayed body goes out with: the origin's, else the plan's or a guess from
 * the name when the origin says nothing better, else application/octet-stream (never
 * none: a browser would hg__x_sniff). */
static const char *relay_type(const exchange_t *x) {
  const char *ctype = x->ctype;
  if (is_generic_type(ctype)) {
    const char *guess = x->plan.content_type ? x->plan.content_type
                                             : hg_file_type(x->final_url, strlen(x->final_url));
    if (guess) ctype = guess;
  }
  return ctype && *ctype ? ctype : "application/octet-stream";
}

/* The media type of a Content-Type value, lower-cased, without parameters or spaces. */
static void media_type(const char *ct, char *mt, size_t cap) {
  size_t n = 0;
  for (; *ct && *ct != ';' && n + 1 < cap; ct++)
    if (*ct != ' ' && *ct != '\t') mt[n++] = (char)((*ct >= 'A' && *ct <= 'Z') ? *ct + 32 : *ct);
  mt[n] = '\0';
}

/* Media a player consumes and no browser runs as a document: no CSP needed. */
static int is_media_type(const char *mt) {
  return strncmp(mt, "video/", 6) == 0 || strncmp(mt, "audio/", 6) == 0 ||
         strcmp(mt, "application/mp4") == 0 || strcmp(mt, "application/vnd.apple.mpegurl") == 0 ||
         strcmp(mt, "application/x-mpegurl") == 0;
}

/* Security: what a player needs inline (SPEC §9 relay): media, keys and opaque segments,
 * subtitles, images (not SVG: it runs script), JSON (content steering, asset lists), plus
 * the plan's content_types.allow. HTML, XHTML, XML, SVG, JavaScript… are not: served from
 * the gateway's origin they would run there. */
static int type_allowed(const exchange_t *x, const char *mt) {
  static const char *const exact[] = {"application/octet-stream", "binary/octet-stream", "text/vtt",
                                      "application/ttml+xml", "application/json"};
  if (is_media_type(mt)) return 1;
  if (strncmp(mt, "image/", 6) == 0 && !strstr(mt, "svg") && !strstr(mt, "xml")) return 1;
  for (size_t i = 0; i < sizeof(exact) / sizeof(exact[0]); i++)
    if (strcmp(mt, exact[i]) == 0) return 1;
  for (size_t i = 0; i < x->plan.nct_allow; i++) {
    const char *a = x->plan.ct_allow[i];
    size_t n = strlen(a);
    if (n >= 2 && a[n - 1] == '*' && a[n - 2] == '/' ? strncasecmp(mt, a, n - 1) == 0 : strcasecmp(mt, a) == 0)
      return 1;
  }
  return 0;
}

/* Starts relaying: the head now (the upstream's status, type and validators, plus the
 * plan's headers), then the sniffed bytes and everything that follows. */
static void start_relay(exchange_t *x) {
  hg_response_t res;
  memset(&res, 0, sizeof(res));
  res.status = x->status;
  const char *ctype = relay_type(x);
  char mt[128];
  media_type(ctype, mt, sizeof(mt));
  int inline_ok = type_allowed(x, mt);
  hg_response_add_header(&res, "Content-Type", 12, ctype, strlen(ctype));
  hg__x_add_cache_control(x, &res, hg__x_answer_ttl(x, NULL));
  /* Security: the type is the one we chose, never a sniffed one; anything a browser could
   * render as a document runs in a sandbox (no script, opaque origin) if navigated to. */
  hg_response_add_header(&res, "X-Content-Type-Options", 22, "nosniff", 7);
  if (!is_media_type(mt) && !hg__x_plan_has_header(x, "Content-Security-Policy")) /* the policy's own CSP wins */
    hg_response_add_header(&res, "Content-Security-Policy", 23, "sandbox", 7);
  /* The encoding passes through with the bytes as the origin sent them (issue 11: a
   * decoded gzip bomb would amplify); what we ask the origin for follows the viewer's
   * Accept-Encoding, so caches must key on it. */
  if (x->cenc) hg_response_add_header(&res, "Content-Encoding", 16, x->cenc, strlen(x->cenc));
  if (x->cenc || x->plan.origin == HG_ORIGIN_HTTP) hg_response_add_header(&res, "Vary", 4, "Accept-Encoding", 15);
  for (size_t i = 0; i < x->nup; i++)
    hg_response_add_header(&res, x->up_headers[i].name, x->up_headers[i].name_len,
                           x->up_headers[i].value, x->up_headers[i].value_len);
  if (x->plan.disposition_name || !inline_ok) {
    hg_buf_clear(&x->tmp);
    hg_buf_puts(&x->tmp, inline_ok ? "inline" : "attachment");
    if (x->plan.disposition_name) hg_buf_puts(&x->tmp, "; filename=\"");
    for (const char *c = x->plan.disposition_name; c && *c; c++)
      if (*c != '"' && *c != '\\' && (unsigned char)*c >= 0x20) hg_buf_putc(&x->tmp, *c);
    if (x->plan.disposition_name) hg_buf_putc(&x->tmp, '"');
    const char *v = hg_arena_strndup(x->req->arena, x->tmp.data, x->tmp.len);
    if (v) hg_response_add_header(&res, "Content-Disposition", 19, v, x->tmp.len);
  }
  hg__x_add_plan_headers(x, &res);
  x->mode = M_RELAY;
  hg_http_stream_start(x->txn, &res, x->clen, on_drain, x);
  if (x->head_only) { /* the head is all a HEAD needs: stop the source */
    x->mode = M_DONE;
    hg__x_source_abort(x);
    hg_http_stream_end(x->txn, 1);
    hg__x_release(x, X_RESPONSE);
    return;
  }
  if (x->body.len) { /* the sniffed bytes go first */
    size_t n;
    char *p = hg_buf_steal(&x->body, &n);
    hg_http_stream_write(x->txn, p, n);
  }
}

/* Relays the body, or refuses it (403) when its type may not be served inline and the
 * plan says content_types.otherwise = "refuse". */
static void relay_or_refuse(exchange_t *x, int final) {
  char mt[128];
  media_type(relay_type(x), mt, sizeof(mt));
  if (x->plan.ct_refuse && !type_allowed(x, mt)) {
    if (!final) hg__x_source_abort(x);
    hg_buf_clear(&x->tmp);
    hg_buf_printf(&x->tmp, "content type not allowed: %s", mt);
    const char *msg = hg_arena_strndup(x->req->arena, x->tmp.data, x->tmp.len);
    hg__x_respond_error(x, 403, msg ? msg : "content type not allowed");
    return;
  }
  start_relay(x);
}

/* A 206 whose Content-Range covers the whole object ("bytes 0-N-1/N", the answer to the
 * "Range: bytes=0-" that ffmpeg and others send even for playlists) is the full body:
 * it may be a playlist and is then rewritten and answered 200. */
static int whole_range(const exchange_t *x) {
  if (x->status != 206) return 0;
  for (size_t i = 0; i < x->nup; i++) {
    if (strcmp(x->up_headers[i].name, "Content-Range") != 0) continue;
    long long a, b, total;
    char star;
    if (sscanf(x->up_headers[i].value, "bytes %lld-%lld/%lld%c", &a, &b, &total, &star) != 3) return 0;
    return a == 0 && b == total - 1;
  }
  return 0;
}

static int is_gzip(const char *enc) {
  return enc && (strcasecmp(enc, "gzip") == 0 || strcasecmp(enc, "x-gzip") == 0);
}

/* Decodes gzip `in` into `out` (concatenated members too), stopping once `out` holds more
 * than `max` bytes, 64 KiB of output at a time so a bomb never gets further than that.
 * *end tells whether the input so far ends a member. Returns 0, HG_ETOOBIG, HG_EUPSTREAM
 * (not gzip) or HG_ENOMEM. */
static int gunzip(z_stream *z, const char *in, size_t len, hg_buf_t *out, size_t max, int *end) {
  z->next_in = (Bytef *)in;
  z->avail_in = (uInt)len;
  for (;;) {
    if (*end && z->avail_in > 0) { /* another member follows */
      inflateReset(z);
      *end = 0;
    }
    if (hg_buf_reserve(out, 65536) != 0) return HG_ENOMEM;
    uInt room = 65536;
    z->next_out = (Bytef *)out->data + out->len;
    z->avail_out = room;
    int zr = inflate(z, Z_NO_FLUSH);
    out->len += room - z->avail_out;
    out->data[out->len] = '\0';
    if (out->len > max) return HG_ETOOBIG;
    if (zr == Z_STREAM_END) {
      *end = 1;
      if (z->avail_in == 0) return 0;
    } else if (zr == Z_BUF_ERROR || (zr == Z_OK && z->avail_in == 0 && z->avail_out > 0)) {
      return 0; /* needs more input */
    } else if (zr != Z_OK) {
      return HG_EUPSTREAM;
    }
  }
}

/* Decodes more of a gzip playlist into x->body, counting it against --max-playlist (the
 * decoded size is what we hg__x_hold) and the process budget. Returns 0 or an HG_E* code. */
int hg__x_gz_body(exchange_t *x, const char *in, size_t len) {
  if (x->gz == NULL) {
    if ((x->gz = calloc(1, sizeof(*x->gz))) == NULL) return HG_ENOMEM;
    if (inflateInit2(x->gz, 16 + MAX_WBITS) != Z_OK) {
      free(x->gz);
      x->gz = NULL;
      return HG_ENOMEM;
    }
  }
  size_t before = x->body.len;
  int rc = gunzip(x->gz, in, len, &x->body, x->ctx->max_playlist, &x->gz_end);
  if (rc == 0 && hg__x_hold(x, x->body.len - before) != 0) rc = HG_EBUDGET;
  return rc;
}

/* Ends a playlist that cannot be buffered; the source ends here unless `final` (then
 * hg__x_src_done does). */
void hg__x_buffer_failed(exchange_t *x, int rc, int final) {
  if (!final) hg__x_source_abort(x);
  if (rc == HG_EBUDGET) hg__x_respond_busy(x);
  else if (rc == HG_ETOOBIG) hg__x_respond_upstream_error(x, rc, "playlist larger than the limit");
  else if (rc == HG_EUPSTREAM) hg__x_respond_upstream_error(x, rc, "bad response: invalid gzip body");
  else if (rc == HG_ETIMEOUT) hg__x_respond_upstream_error(x, rc, "playlist body not complete in time");
  else hg__x_respond_error(x, 500, "out of memory");
}

/* Decides from the bytes so far (all of them when `final`) whether this is a playlist.
 * A gzip body is judged on its first decoded bytes (SPEC §5); a body in an encoding we
 * do not decode is relayed as it is. Returns 1 when decided. */
int hg__x_sniff(exchange_t *x, int final) {
  hg_buf_t dec = HG_BUF_INIT;
  const char *view = x->body.data;
  size_t n = x->body.len, i = 0;
  int gzip = is_gzip(x->cenc), decided = final;
  if (gzip) {
    z_stream z;
    int end = 0;
    memset(&z, 0, sizeof(z));
    if (inflateInit2(&z, 16 + MAX_WBITS) != Z_OK) return hg__x_buffer_failed(x, HG_ENOMEM, final), 1;
    int rc = gunzip(&z, x->body.data, x->body.len, &dec, SNIFF_MAX, &end);
    inflateEnd(&z);
    /* A gzip header may hg__x_hold any amount of name or comment: judge after 64 KiB at most. */
    if (rc == HG_ETOOBIG || x->body.len >= 65536) decided = 1;
    else if (rc != 0) hg_buf_clear(&dec), decided = 1; /* not gzip after all: relay it */
    view = dec.data;
    n = dec.len;
  }
  const unsigned char *p = (const unsigned char *)view;
  if (n >= 3 && p[0] == 0xef && p[1] == 0xbb && p[2] == 0xbf) i = 3;
  while (i < n && (p[i] == ' ' || p[i] == '\t' || p[i] == '\r' || p[i] == '\n')) i++;
  /* Media bytes (0x47 sync, ISO boxes, ID3…) never start with '#': relay at once. */
  int maybe = (x->status == 200 || whole_range(x)) && (i == n || p[i] == '#') && (!x->cenc || gzip);
  if (maybe && !decided && n < SNIFF_MAX) {
    hg_buf_free(&dec);
    return 0;
  }
  int playlist = maybe && hg_hls_is_playlist(view ? view : "", n);
  hg_buf_free(&dec);
  if (playlist) {
    x->mode = M_BUFFER;
    int rc;
    if (gzip) { /* from here x->body holds the decoded playlist */
      size_t rawlen;
      char *raw = hg_buf_steal(&x->body, &rawlen);
      rc = hg__x_gz_body(x, raw, rawlen);
      free(raw);
    } else {
      rc = hg__x_hold(x, x->body.len) != 0 ? HG_EBUDGET : 0;
    }
    if (rc == 0 && final && gzip && !x->gz_end) rc = HG_EUPSTREAM; /* a truncated gzip body */
    if (rc) {
      hg__x_buffer_failed(x, rc, final);
      return 1;
    }
    if (final) hg__x_rewrite_and_respond(x);
  } else {
    relay_or_refuse(x, final);
  }
  return 1;
}
