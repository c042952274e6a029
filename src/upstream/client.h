/* client.h — the HTTP/1.1 upstream client: async DNS, TLS (mbedTLS, verified against the
 * system CA bundle plus an optional extra CA file, with SNI), keep-alive pooling per
 * origin, bounded redirects, SSRF checks on every resolved address, gzip decoding,
 * timeouts, and a streamed body with pause/resume for backpressure.
 *
 * One hg_upstream_t per worker loop; everything here runs on that loop's thread.
 */
#ifndef HG_UPSTREAM_CLIENT_H
#define HG_UPSTREAM_CLIENT_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "base/header.h"

typedef struct hg_upstream_s hg_upstream_t;
typedef struct hg_fetch_s hg_fetch_t;

/* Per-worker client settings (copied). */
typedef struct hg_upstream_config_s {
  const char *ca_file;          /* extra PEM CA file trusted besides the system bundle, or NULL */
  size_t max_idle_per_origin;   /* pooled keep-alive connections per scheme://host:port (default 8) */
  size_t max_conns_per_origin;  /* concurrent connections per origin; 0 = unlimited */
  uint64_t idle_timeout_ms;     /* pooled connection lifetime while idle (default 30000) */
} hg_upstream_config_t;

/* Returns a client for `loop`, or NULL (OOM, unreadable CA file; see err). The caller
 * owns it; hg_upstream_close it before closing the loop (the loop must then run once
 * more for the close callbacks). Loop thread. */
hg_upstream_t *hg_upstream_new(uv_loop_t *loop, const hg_upstream_config_t *cfg, char *err,
                               size_t errlen);
/* Every fetch not yet ended gets its on_done during this call: UV_ECANCELED, or the
 * result it already had if on_done was only pending. Idle connections are closed. */
void hg_upstream_close(hg_upstream_t *u);

/* SSRF classes an address may fall in. A fetch may only connect to addresses whose
 * class is 0 or allowed by its `allow` mask. */
enum {
  HG_ADDR_LOOPBACK = 1 << 0,    /* 127.0.0.0/8, ::1 */
  HG_ADDR_PRIVATE = 1 << 1,     /* RFC 1918, fc00::/7, 100.64.0.0/10 (CGNAT) */
  HG_ADDR_LINKLOCAL = 1 << 2,   /* 169.254.0.0/16 (incl. 169.254.169.254 metadata), fe80::/10 */
  HG_ADDR_UNSPECIFIED = 1 << 3, /* 0.0.0.0/8, :: */
  HG_ADDR_OTHER = 1 << 4,       /* multicast, broadcast, reserved, documentation ranges */
  HG_ADDR_ALL = 0x1f,
};

/* Classifies a socket address (IPv4-mapped IPv6 is classified as its IPv4 address).
 * Returns a bitmask of HG_ADDR_* (0 = public). Pure; any thread. */
int hg_upstream_addr_class(const struct sockaddr *sa);

enum { HG_FETCH_GZIP_DECODE = 1, HG_FETCH_GZIP_RAW = 2 };

typedef struct hg_fetch_opts_s {
  const char *method;          /* "GET" (default) or "HEAD"; anything else: start fails */
  const char *url;             /* absolute http(s) URL */
  const hg_header_t *headers;  /* extra request headers (Host, Connection, Accept-Encoding
                                * and Content-Length are the client's) */
                               /* A name that is not a token or a value with CR, LF or NUL
                                * makes the start fail. User-Agent defaults to
                                * "hlsgate/<version>". A redirect to another origin drops
                                * Authorization, Proxy-Authorization and Cookie. */
  size_t nheaders;
  int allow;                   /* HG_ADDR_* classes allowed (0 = public addresses only) */
  const char *const *allow_hosts; /* NULL = any host; else host patterns ("*.example.com") */
                               /* (case-insensitive; exactly "*" matches any host; a non-NULL
                                * empty list allows none) */
  size_t nallow_hosts;
  int max_redirects;           /* 0 = do not follow; each hop re-checks hosts and addresses */
  int accept_gzip;             /* HG_FETCH_GZIP_DECODE: send Accept-Encoding: gzip and
                                  decode transparently; HG_FETCH_GZIP_RAW: send it and
                                  deliver the bytes as sent, Content-Encoding and
                                  Content-Length included (the caller decodes what it must);
                                  0: ask for identity (an origin may still encode) */
  uint64_t connect_timeout_ms; /* DNS + TCP + TLS handshake (default 5000) */
  uint64_t read_timeout_ms;    /* between bytes (default 10000); suspended while paused */
  uint64_t total_timeout_ms;   /* whole exchange incl. body (0 = none) */
} hg_fetch_opts_t;

/* Response head as received from the final hop (after redirects). */
typedef struct hg_fetch_head_s {
  int status;
  const hg_header_t *headers;  /* valid during the on_head callback only */
  size_t nheaders;
  int64_t content_length;      /* -1 when unknown (chunked, close-delimited, or gzip-decoded) */
                               /* (HEAD: the length the origin announced; 204/304: 0) */
  const char *final_url;       /* valid until the fetch ends */
} hg_fetch_head_t;

typedef struct hg_fetch_cbs_s {
  /* The response head arrived (after redirects). Return 0 to receive the body, or a
   * negative code to abort: on_done then runs with that code. */
  int (*on_head)(void *ud, hg_fetch_t *f, const hg_fetch_head_t *head);
  /* A body chunk (decoded). The callee owns `data` and must free() it. It may call
   * hg_fetch_pause to stop reading until hg_fetch_resume. */
  void (*on_data)(void *ud, hg_fetch_t *f, char *data, size_t len);
  /* Exactly once, last: 0 after the whole body, or a negative code: UV_E* for
   * connection errors, HG_ETIMEOUT, HG_EDENIED (SSRF / host not allowed), HG_EUPSTREAM
   * (malformed response, TLS verification failure, too many redirects, bad gzip), or the
   * value on_head returned. `msg` says which origin and why, with no secret in it;
   * valid during the callback only. The fetch is freed after on_done returns.
   * It never runs from inside hg_fetch_start or hg_fetch_resume: always from the loop
   * (or from hg_upstream_close). */
  void (*on_done)(void *ud, hg_fetch_t *f, int err, const char *msg);
} hg_fetch_cbs_t;

/* Starts a fetch. Returns it, or NULL with nothing started (bad URL, OOM: then no
 * callback will run). Strings in opts are copied. Loop thread. */
hg_fetch_t *hg_fetch_start(hg_upstream_t *u, const hg_fetch_opts_t *opts,
                           const hg_fetch_cbs_t *cbs, void *ud);

/* Flow control for the body (idempotent). Loop thread. */
void hg_fetch_pause(hg_fetch_t *f);
void hg_fetch_resume(hg_fetch_t *f);

/* Cancels a fetch: no callback runs after this returns, the connection is closed (never
 * pooled) and the fetch freed. Loop thread. */
void hg_fetch_abort(hg_fetch_t *f);

/* ---- test seam: the response parser alone (tests/fuzz/fuzz_upstream_response.c) ---- */

/* What hg__upstream_parse saw. */
typedef struct hg__parsed_s {
  int rc;            /* 0: one whole response; HG_EUPSTREAM: malformed or truncated */
  int status;        /* final status (interim 1xx skipped), 0 if none */
  int64_t clen;      /* Content-Length, -1 for chunked / close-delimited */
  size_t nheaders;   /* headers kept (trailers are not) */
  size_t header_bytes;
  size_t body_len;   /* raw body bytes (chunk framing removed; gzip left as is) */
  uint64_t body_hash;/* FNV-1a of the body */
  int keepalive;
} hg__parsed_t;

/* Parses data[0..len) as the response to a GET (HEAD when `head`) with the callbacks and
 * limits a fetch uses, fed in pieces that end at the ascending offsets cuts[0..ncuts)
 * and then at len; the end of the data is the peer's EOF. Any thread; no I/O. */
void hg__upstream_parse(const char *data, size_t len, const size_t *cuts, size_t ncuts, int head,
                        hg__parsed_t *out);

#endif
