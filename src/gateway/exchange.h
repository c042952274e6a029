/* exchange.h — what the files of the request pipeline share (not an API): the exchange
 * (one request's walk from origin to client, owned by its worker's loop) and the
 * functions each part offers the others. pipeline.c: lifetime, responses, source events;
 * origin.c: sources; relay.c: sniffing and relaying; playlist.c: rewriting; cached.c:
 * the caches. Loop thread only, except where a comment says otherwise.
 */
#ifndef HG_GATEWAY_EXCHANGE_H
#define HG_GATEWAY_EXCHANGE_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>
#include <zlib.h>

#include "base/buf.h"
#include "gateway/live.h"
#include "gateway/pipeline.h"
#include "hls/hls.h"
#include "lua/actions.h"
#include "upstream/file.h"

#define SNIFF_MAX 1024        /* bytes that decide playlist or not */
/* Pause the source once this much waits for the client: what a viewer that stops reading
 * costs in memory (plus at most one source chunk, 64 KiB; nginx keeps ~64 KiB too). The
 * kernel's socket buffers keep the pipe full for a fast viewer. */
#define RELAY_HIGH (64 << 10)
#define ERRBODY_MAX 8192
/* Security (amplification): a rewrite may write at most OUT_RATIO bytes per input byte
 * plus OUT_SLACK, and never more than OUT_MAX_MULT × --max-playlist. Legitimate rewrites
 * stay far below: a 29-byte "#EXTINF:4,\nseg_000001.ts\n" entry proxied with a 400-byte
 * token or presigned (~450 bytes) grows ~16×; tiny relative URIs under a 6 KB base URL
 * grow ~450× and are refused (502) after a few MB instead of 121 MB. */
#define OUT_RATIO 32
#define OUT_SLACK (64u << 10)
#define OUT_MAX_MULT 4
/* Bytes of playlist bodies buffered for rewriting, all workers together, at most
 * HELD_MULT × --max-playlist (128 MiB by default): N concurrent max-size playlists
 * cannot take N × max. Past it a request is answered 503 with Retry-After. */
#define HELD_MULT 8
#define LLHLS_TIMEOUT_MS 30000 /* room for 3 × a target duration of up to 10 s */

enum { M_SNIFF, M_BUFFER, M_RELAY, M_ERRBODY, M_DONE };
enum { X_RESPONSE = 1, X_SOURCE = 2 };

typedef struct hg_exchange_s {
  hg_pipeline_ctx_t *ctx;
  hg_http_txn_t *txn;
  hg_request_t *req;
  hg_policy_t *policy;
  hg_plan_t plan;
  unsigned live;             /* X_RESPONSE | X_SOURCE: what still refers to the exchange */
  int feeding;               /* hg__x_feed_obj loops running (each may end the exchange) */
  int mode;
  int head_only;
  /* the origin's response */
  int status;
  int64_t clen;
  hg_header_t up_headers[8]; /* the upstream headers worth relaying */
  size_t nup;
  const char *ctype;
  const char *final_url;
  uint64_t raw_id;          /* the cache object body and final_url came from (its id), or 0 */
  const char *origin_name; /* for messages: "s3 bucket b", "https://host:port", "file" */
  hg_buf_t body;
  uint64_t up_start;
  /* sources: at most one is running */
  hg_fetch_t *fetch;
  hg_file_fetch_t *file;
  int paused;
  hg_buf_t tmp;
  /* cache */
  hg_cache_fill_t *fill;     /* we fetch for the cache: tee the body */
  hg_buf_t tee;
  int tee_failed;            /* too big or not a 200: not stored */
  hg_cache_waiter_t waiter;  /* we wait for another request's fill */
  struct hg_exchange_s *wnext;
  int waiting_output;        /* the wait is for a rewritten playlist (else a raw object) */
  hg_cache_fill_t *out_fill; /* we rewrite for the output cache */
  /* output cache keys (hg__x_output_key): for this viewer's output, and for output that
   * is the same for every viewer; in keybuf/skeybuf (a frozen plan keeps their stem) */
  const char *okey, *skey;
  size_t okey_len, skey_len;
  hg_buf_t keybuf, skeybuf;
  hg_actions_t act;          /* the rewrite's per-URI actions: presign clock and signer,
                                URIs proxied (lua/actions.h) */
  /* freshness (SPEC §5, §7) */
  hg_directives_t dir;       /* LL-HLS directives forwarded to the origin */
  const char *up_cc, *up_expires, *up_date, *up_age; /* the origin's word on reuse */
  int64_t obj_left_ms;       /* answered from the cache: how long the object stays fresh */
  int no_store;              /* the origin forbids storing or sharing the answer */
  hg_hls_info_t info;        /* what the playlist in `body` says of itself */
  int info_done;
  size_t held;               /* bytes of x->body counted in g_held */
  /* Content-Encoding: relayed as sent; only a gzip playlist is decoded (to rewrite it) */
  const char *cenc;          /* the origin's Content-Encoding, or NULL */
  z_stream *gz;              /* decoding a gzip playlist into x->body */
  int gz_end;                /* the gzip stream ended */
  uint64_t buffer_until;     /* loop time by which a buffered body must be complete */
  hg_buf_t out_body;         /* a rewritten playlist, handed to the server as is by hg__x_respond */
  hg_cache_obj_t *cobj;      /* a cached object being fed as the source (retained) */
  size_t coff;               /* bytes of it fed so far */
} exchange_t;

/* pipeline.c */
int hg__x_hold(exchange_t *x, size_t n);
void hg__x_unhold(exchange_t *x);
void hg__x_release(exchange_t *x, unsigned what);
void hg__x_add_plan_headers(exchange_t *x, hg_response_t *res);
void hg__x_respond(exchange_t *x, hg_response_t *res);
void hg__x_respond_error(exchange_t *x, int status, const char *msg);
const hg_hls_info_t *hg__x_body_info(exchange_t *x);
uint64_t hg__x_answer_ttl(exchange_t *x, const hg_hls_info_t *info);
int hg__x_plan_has_header(const exchange_t *x, const char *name);
void hg__x_add_cache_control(exchange_t *x, hg_response_t *res, uint64_t ttl_ms);
void hg__x_respond_upstream_error(exchange_t *x, int err, const char *msg);
void hg__x_src_head(exchange_t *x, int status, int64_t clen);
void hg__x_keep_header(exchange_t *x, const char *name, size_t nlen, const char *value, size_t vlen);
void hg__x_src_data(exchange_t *x, char *data, size_t len);
hg_cache_obj_t *hg__x_end_fill(exchange_t *x, int ok);
void hg__x_src_done(exchange_t *x, int err, const char *msg);

/* origin.c */
void hg__x_source_pause(exchange_t *x);
void hg__x_source_resume(exchange_t *x);
void hg__x_source_abort(exchange_t *x);
void hg__x_start_source(exchange_t *x);

/* relay.c */
int hg__x_gz_body(exchange_t *x, const char *in, size_t len);
void hg__x_buffer_failed(exchange_t *x, int rc, int final);
int hg__x_sniff(exchange_t *x, int final);

/* playlist.c */
void hg__x_respond_playlist(exchange_t *x, hg_response_t *res, uint64_t ttl_ms);
void hg__x_respond_busy(exchange_t *x);
void hg__x_rewrite_and_respond(exchange_t *x);

/* cached.c */
void hg__x_serve_obj(exchange_t *x, hg_cache_obj_t *o);
void hg__x_feed_obj(exchange_t *x);
void hg__x_on_cache_notify(hg_cache_waiter_t *w);
void hg__x_on_wake(uv_async_t *a);
void hg__x_output_key(exchange_t *x);
void hg__x_serve_output(exchange_t *x, hg_cache_obj_t *o);
void hg__x_fetch_raw(exchange_t *x);

#endif
