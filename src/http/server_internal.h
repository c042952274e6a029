/* server_internal.h — what the three files of the HTTP server share (not an API):
 * server.c (connections, reading, timers, accepting, draining), request.c (request
 * parsing: llhttp callbacks, strict framing, request ids) and response.c (serializing
 * and writing responses, the access log). One thread (the server's loop) only.
 */
#ifndef HG_HTTP_SERVER_INTERNAL_H
#define HG_HTTP_SERVER_INTERNAL_H

#include <llhttp.h>
#include <stdint.h>
#include <time.h>
#include <uv.h>

#include "base/buf.h"
#include "http/server.h"
#include "http/tls.h"

#define READ_CHUNK 65536 /* the loop's shared read buffer */
#define MAX_HEADERS 100
#define URI_GRACE (64 * 1024) /* target bytes counted past --max-uri before 414 at once */
#define MAX_PIPELINED (128 * 1024) /* unparsed input kept while a response is written */

enum { S_IDLE, S_READING, S_BUSY, S_WRITING };

struct hg_http_txn_s {
  struct conn_s *conn;
  struct h2_stream_s *h2; /* NULL on HTTP/1.x: the txn is the connection's (h2.c) */
  hg_request_t req;
};

typedef struct conn_s {
  uv_tcp_t tcp;
  uv_timer_t timer;
  hg_http_server_t *srv;
  struct conn_s *prev, *next;
  llhttp_t parser;
  int state;
  int handles;     /* open libuv handles (tcp, timer) */
  int accepted;    /* counted in the connection gauge */
  int closing;     /* close started */
  int close_after; /* close once the current response is written */
  int reading;
  hg_buf_t in;     /* read buffer; bytes before in_off are consumed */
  size_t in_off;
  hg_buf_t out;    /* serialized response head (and body, for buffered responses) */
  /* response being written */
  int pending;     /* uv_write requests in flight */
  size_t queued;   /* body bytes in flight */
  int ended;       /* the handler finished the response */
  int head_sent;   /* the head in c->out went out (with the first body piece) */
  int in_process;  /* inside hg__http_conn_process: a synchronous answer does not recurse */
  int no_sendfile; /* the transport is not a plain socket (TLS): bodies are written */
  int chunked;     /* body framed with chunked encoding */
  int body_allowed;
  int gone_notified;
  int status;      /* for the access log */
  size_t body_bytes;
  hg_http_drain_cb drain;
  void *drain_ud;
  void (*gone_cb)(void *ud); /* hg_http_txn_on_gone, while BUSY */
  void *gone_ud;
  /* per-request parse state */
  hg_http_txn_t txn;
  hg_buf_t url, field, value, body;
  size_t url_total;  /* target bytes seen, kept or not (on_url) */
  size_t header_bytes;
  hg_header_t *hdrs;
  size_t nhdrs;
  int err_status;
  const char *err_msg;
  int head_scan;   /* raw-byte check of the request head (obs-fold, space before ':') */
  int ext_resume;  /* llhttp 8.1 chunk-extension workaround: resume at the ';' */
  int ext_quoted;  /* the current chunk-extension value has a '"' in it */
  int nhost;       /* Host header fields seen */
  char peer[64];
  /* TLS and HTTP/2 connections only (NULL on plain HTTP/1.1: its path never looks further) */
  struct hg__htls_conn_s *tls; /* tls_conn.c */
  struct hg__h2_s *h2;         /* h2.c, once ALPN chose h2 */
} conn_t;

/* A listening socket; `tls` NULL for plain HTTP. */
typedef struct hg__listener_s {
  uv_tcp_t tcp; /* first: the handle is the listener */
  hg_http_tls_t *tls;
} hg__listener_t;

#define HG_LOGMEMO 64      /* entries (a power of two) */
#define HG_LOGMEMO_MAX 512 /* longest target kept */
typedef struct logmemo_s {
  char *target, *out; /* one block: the target, then its log "path" */
  size_t tlen, olen;
} logmemo_t;

struct hg_http_server_s {
  uv_loop_t *loop;
  hg_http_limits_t lim;
  hg_http_request_cb cb;
  void *ud;
  llhttp_settings_t settings;
  hg__listener_t *listeners[16];
  size_t nlisteners;
  size_t nopen_listeners;
  conn_t *conns;
  size_t nconns;
  int draining;
  uv_timer_t drain_timer;
  int drain_timer_open;
  void (*drain_done)(void *);
  void *drain_ud;
  uint64_t rng[2];
  time_t date_sec;
  char date[40];
  hg_http_observer_t obs;
  char *rbuf; /* every read lands here first: idle connections hold no buffer */
  hg_buf_t logline, logpath; /* the access-log line being built, reused */
  /* The access log's "path" of recent targets (redacted, JSON-escaped), by a hash of the
   * target: players ask for the same few URLs again and again (response.c). */
  logmemo_t logmemo[HG_LOGMEMO];
};

/* request.c */
void hg__http_txn_begin(conn_t *c);            /* fresh per-request state */
void hg__http_ensure_id(conn_t *c);            /* a request id for every answer */
/* Parses p[0..n) with the raw RFC 9112 checks and llhttp: llhttp's result, or HPE_USER
 * with the error set; whichever error comes first in the stream wins, however it was
 * split into reads. The server and the parser seam both go through it. */
llhttp_errno_t hg__http_execute(conn_t *c, const char *p, size_t n);
int hg__http_error_status(conn_t *c, llhttp_errno_t err, const char **msg);
void hg__http_settings_init(llhttp_settings_t *st);

int hg__http_valid_host(const char *v, size_t n);
int hg__http_sane_request_id(const char *v, size_t n);
void hg__http_new_id(hg_http_server_t *s, char id[33]);

/* response.c */
void hg__http_respond_error(conn_t *c, int status, const char *msg); /* and close after */
/* Tells a streaming handler (hg_http_stream_start's drain callback), once, that its
 * client is gone: it stops its source and ends the response, maybe at once (which may
 * free c: touch nothing after). */
void hg__http_notify_gone(conn_t *c, int status);
/* The access-log line of `req` (with its protocol) and the observer's request_done. */
void hg__http_access_log(hg_http_server_t *s, hg_request_t *req, int status, size_t bytes);
const char *hg__http_date(hg_http_server_t *s);
/* Response headers a handler may not set: the server's framing and hop-by-hop ones. */
int hg__http_is_hop_or_framing(const char *name, size_t n);

/* tls_conn.c: TLS connections. Reads decrypt into the HTTP/1.1 parser or HTTP/2. */
int hg__htls_conn_new(conn_t *c, hg_http_tls_t *t); /* 0 or HG_ENOMEM */
void hg__htls_conn_free(conn_t *c);
void hg__htls_on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf);
/* Encrypts bufs[0..n) into TLS records: *out (malloc'd, the caller writes and frees it)
 * of *outlen bytes. 0 or a negative code. */
int hg__htls_encrypt(conn_t *c, const uv_buf_t *bufs, unsigned n, char **out, size_t *outlen);

/* h2.c: HTTP/2 connections (nghttp2), entered after ALPN "h2". */
int hg__h2_start(conn_t *c);                          /* 0 or a negative code */
void hg__h2_recv(conn_t *c, const char *p, size_t n); /* decrypted input */
void hg__h2_eof(conn_t *c);
void hg__h2_drain(conn_t *c);                         /* GOAWAY, close when idle */
void hg__h2_closed(conn_t *c);                        /* the socket closed */
int hg__h2_held(const conn_t *c);                     /* streams a handler still holds */
void hg__h2_free(conn_t *c);
int hg__h2_respond(hg_http_txn_t *txn, const hg_response_t *res);
void hg__h2_on_gone(hg_http_txn_t *txn, void (*cb)(void *ud), void *ud); /* hg_http_txn_on_gone */
int hg__h2_stream_start(hg_http_txn_t *txn, const hg_response_t *res, int64_t clen, hg_http_drain_cb drain,
                        void *ud);
int hg__h2_stream_write_ref(hg_http_txn_t *txn, const char *data, size_t len, void (*release)(void *ref),
                            void *ref);
size_t hg__h2_stream_queued(const hg_http_txn_t *txn);
void hg__h2_stream_end(hg_http_txn_t *txn, int complete);

/* server.c */
void hg__http_conn_close(conn_t *c);
void hg__http_conn_maybe_free(conn_t *c);     /* frees it once no handle or handler holds it */
void hg__http_conn_process(conn_t *c);         /* parse buffered input, hand requests over */
void hg__http_start_reading(conn_t *c);
void hg__http_timer_start(conn_t *c, uint64_t ms);

#endif
