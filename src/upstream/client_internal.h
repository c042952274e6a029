/* client_internal.h — what the files of the upstream HTTP/1.1 client share (see client.h
 * for the API). Not for use outside src/upstream/.
 *
 * Objects, all owned by one hg_upstream_t and used on its loop's thread only:
 *
 *   fetch   one hg_fetch_start call. Walks hops (the URL, then each redirect): check
 *           the host allowlist → take a pooled connection, or take a connection slot,
 *           resolve, check every address (SSRF), connect, TLS handshake → send the
 *           request → parse the response. Owns a timer (connect/read/total timeouts).
 *   conn    one TCP connection (and its TLS session) to one origin. Belongs to the
 *           fetch using it, or to its origin's idle list while pooled.
 *   origin  per "scheme://host:port": counts connection slots (for
 *           max_conns_per_origin), holds the idle list and the fetches waiting for a slot.
 *
 * Callbacks to the user never run from inside llhttp or mbedTLS: the llhttp callbacks
 * only record events (head complete, body bytes, message complete) and pump() acts on
 * them between parser calls, re-checking the fetch state after every user callback, so
 * a callback may pause, resume or abort freely. on_done is always deferred to the
 * `kick` idle handle (never run from inside hg_fetch_start, hg_fetch_resume or another
 * callback), so it runs exactly once, last, from the loop.
 *
 * Memory: a conn is freed in the close callback of its last handle; a fetch when its
 * timer is closed and no getaddrinfo request is outstanding; the upstream when it is
 * closing and no conn, fetch or handle of its own is left.
 *
 * The files, along those objects:
 *
 *   fetch.c     the public API (hg_upstream_*, hg_fetch_*), a fetch's life: options, the
 *               kick queue, completion and release, timeouts
 *   hop.c       one hop: host allowlist → pool or slot → DNS → SSRF address check →
 *               connect; following a redirect to the next hop
 *   pool.c      origins: connection slots, waiters, the idle pool
 *   conn.c      one TCP/TLS connection: connect, handshake, reads, writes, the request
 *   response.c  the response: llhttp callbacks, pump() delivering head and (gzip) body,
 *               redirects seen; the parser test seam hg__upstream_parse
 */
#ifndef HG_UPSTREAM_CLIENT_INTERNAL_H
#define HG_UPSTREAM_CLIENT_INTERNAL_H

#include <llhttp.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <uv.h>
#include <zlib.h>

#include "base/buf.h"
#include "base/header.h"
#include "upstream/client.h"
#include "upstream/tls.h"
#include "url/url.h"

#define MAX_ADDRS 16

typedef struct origin_s origin_t;
typedef struct conn_s conn_t;

enum { C_CONNECTING, C_HANDSHAKE, C_ACTIVE, C_IDLE };
enum { F_START, F_WAIT, F_DNS, F_CONNECT, F_RESPONSE, F_FINISHED, F_DEAD };
enum { T_NONE, T_CONNECT, T_READ };

struct origin_s {
  origin_t *prev, *next;
  size_t nslots;          /* live conns + fetches resolving without a conn yet */
  int refs;               /* pins the origin while code iterates over it */
  conn_t *idle;           /* idle conns, most recently used first */
  size_t nidle;
  hg_fetch_t *waiters;    /* fetches waiting for a slot, FIFO (singly linked) */
  char key[300];          /* "https://host:port" */
};

struct conn_s {
  uv_tcp_t tcp;
  uv_timer_t idle_timer;
  uv_connect_t creq;
  hg_upstream_t *u;
  origin_t *origin;       /* set while the conn holds a slot of it */
  hg_fetch_t *fetch;      /* the fetch using it; NULL while idle */
  conn_t *iprev, *inext;  /* origin idle list */
  int state;
  int handles;            /* open libuv handles (tcp, idle_timer) */
  int closing, reading;
  int eof, rerr;          /* transport EOF / read error seen */
  int keepalive;          /* the last response allows another request */
  int writes;             /* uv_write requests in flight */
  int addr_class;         /* SSRF class of the peer: checked again before each reuse */
  int tls_on;
  hg__tls_t tls;
  llhttp_t parser;
  hg_buf_t rx;            /* plaintext for llhttp, consumed from rx_off */
  size_t rx_off;
};

typedef struct hidx_s {
  size_t n, nl, v, vl; /* offsets/lengths of a NUL-terminated name and value in hstore */
} hidx_t;

struct hg_fetch_s {
  hg_upstream_t *u;
  hg_fetch_t *prev, *next;   /* u->fetches: live (not yet released) fetches */
  hg_fetch_t *kprev, *knext; /* u's kick queue */
  hg_fetch_t *wnext;         /* origin waiters */
  int kicked;
  int listed;                /* in u->fetches */
  int state;
  hg_fetch_cbs_t cbs;
  void *ud;
  /* options (copied) */
  int head_method;
  hg_header_t *hdrs;         /* request headers; strings in hdr_mem */
  size_t nhdrs;
  char *hdr_mem;
  char **allow_hosts;        /* NULL = any */
  size_t nallow;
  int allow, max_redirects, accept_gzip;
  uint64_t connect_ms, read_ms, total_ms, total_due;
  /* current hop */
  hg_buf_t url;
  hg_url_origin_t org;
  char key[300];
  origin_t *origin;          /* set while holding a slot or waiting for one */
  int has_slot;
  int nredirects;
  uv_timer_t timer;
  int phase;
  int timer_closed;
  uv_getaddrinfo_t gai;
  int gai_pending;
  struct sockaddr_storage addrs[MAX_ADDRS];
  int naddrs, addr_idx;
  int last_err;
  conn_t *conn;
  int reused, retried;
  /* response */
  hg_buf_t hstore;
  hidx_t *hidx;
  size_t nh, hcap;
  hidx_t hcur;
  int hstate;                /* 0 between headers, 1 in a name, 2 in a value */
  int status;
  int64_t clen;
  int ev_head, ev_done, head_done, interim, discard;
  char perr[96];             /* why a llhttp callback refused the response */
  uint64_t resp_bytes;       /* plaintext response bytes parsed on this conn */
  hg_buf_t body;             /* raw (maybe gzip) body bytes not yet delivered */
  size_t body_off;
  z_stream gz;
  int gz_on, gz_end, gz_more;
  uint64_t gz_in;
  hg_buf_t next_url;         /* redirect target while draining the redirect response */
  int paused, in_pump, in_done;
  /* result */
  int err;
  char msg[512];
};

struct hg_upstream_s {
  uv_loop_t *loop;
  hg_upstream_config_t cfg;
  char *ca_file;
  hg__tls_ctx_t *tls;
  llhttp_settings_t settings;
  uv_idle_t kick;
  int kick_active, kick_closed;
  hg_fetch_t *kick_head, *kick_tail;
  hg_fetch_t *fetches;
  size_t nfetches;           /* allocated fetches (live or being freed) */
  origin_t *origins;
  size_t nconns;             /* allocated conns */
  int closing;
};

/* ---- fetch.c ---- */

/* Case-insensitive comparison of a (name, len) span with a C string. */
int hg__upstream_name_is(const char *name, size_t len, const char *want);
/* Forgets the response of the current attempt (head, body, gzip state). */
void hg__upstream_response_reset(hg_fetch_t *f);
/* Detaches and closes the fetch's connection (it is never pooled from here). */
void hg__upstream_fetch_drop_conn(hg_fetch_t *f);
void hg__upstream_fetch_maybe_free(hg_fetch_t *f);
/* Records the result and schedules on_done. */
void hg__upstream_fetch_finish(hg_fetch_t *f, int err);
/* Fails the fetch with `err` and a message "<origin>: <reason>". */
void hg__upstream_fetch_fail(hg_fetch_t *f, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Arms the fetch timer for `phase` (T_CONNECT, T_READ), capped by the total deadline. */
void hg__upstream_timer_arm(hg_fetch_t *f, int phase);
void hg__upstream_maybe_free(hg_upstream_t *u);

/* ---- hop.c ---- */

/* Starts the hop to f->url (already validated by hg_url_origin). */
void hg__upstream_hop_begin(hg_fetch_t *f);
/* Gets the hop a connection: pooled, new within the origin's limit, or a wait. */
void hg__upstream_hop_connect(hg_fetch_t *f, origin_t *o);
/* Resolves the hop's host. f holds a slot. */
void hg__upstream_hop_resolve(hg_fetch_t *f);
/* Connects to the next resolved address, or fails the fetch when none is left. */
void hg__upstream_hop_try_connect(hg_fetch_t *f);
/* Moves to the redirect target in f->next_url. */
void hg__upstream_follow_redirect(hg_fetch_t *f);

/* ---- pool.c ---- */

origin_t *hg__upstream_origin_get(hg_upstream_t *u, const char *key);
void hg__upstream_origin_maybe_free(hg_upstream_t *u, origin_t *o);
/* A slot of `o` became free: hand it to the first waiter, or free an unused origin. */
void hg__upstream_slot_release(hg_upstream_t *u, origin_t *o);
/* An idle conn of `o` that f may reuse, unpooled; or NULL. */
conn_t *hg__upstream_pool_take(origin_t *o, hg_fetch_t *f);
void hg__upstream_attach(hg_fetch_t *f, conn_t *c);
/* Hands the conn back after a complete response: pooled, or closed. */
void hg__upstream_conn_release(hg_fetch_t *f);

/* ---- conn.c ---- */

/* Closes a conn (idempotent): unpools it, gives back its slot, detaches its fetch. */
void hg__upstream_conn_close(conn_t *c);
/* Reads while someone wants bytes; stops otherwise (the backpressure). */
void hg__upstream_conn_update_reading(conn_t *c);
/* Sends ciphertext mbedTLS produced. Returns 0 or UV_E*. */
int hg__upstream_tls_flush(conn_t *c);
/* Opens a conn to `sa` for f, moving f's slot to it. Returns 0, UV_E* or HG_ENOMEM. */
int hg__upstream_conn_open(hg_fetch_t *f, const struct sockaddr *sa);
void hg__upstream_send_request(hg_fetch_t *f);
/* The conn broke before the response completed: retry once, or fail. */
void hg__upstream_conn_failed(hg_fetch_t *f, int err, const char *what);

/* ---- response.c ---- */

/* The llhttp callbacks of a response. */
void hg__upstream_settings_init(llhttp_settings_t *s);
/* Acts on parser events, delivers the body, reads more. */
void hg__upstream_pump(hg_fetch_t *f);

#endif
