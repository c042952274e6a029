/* server.h — the HTTP/1.1 server side: accepts connections on a libuv loop, parses
 * requests with llhttp (keep-alive, pipelining, SPEC §8 limits) and writes responses.
 *
 * The server knows nothing of policies: each complete request is handed to the
 * request callback with a transaction (txn); whoever handles it answers exactly once
 * with hg_http_respond, now or later. Pipelined requests are answered in order: the
 * next one is parsed only after the current response is written. One server lives on
 * one loop and is used only by that loop's thread.
 */
#ifndef HG_HTTP_SERVER_H
#define HG_HTTP_SERVER_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "http/message.h"
#include "http/tls.h"

typedef struct hg_http_server_s hg_http_server_t;
typedef struct hg_http_txn_s hg_http_txn_t;

typedef struct hg_http_limits_s {
  size_t max_headers;            /* total header bytes (431), SPEC: 16 KiB */
  size_t max_uri;                /* request target bytes (414), SPEC: 8 KiB */
  size_t max_body;               /* request body bytes (413), SPEC: 64 KiB */
  uint64_t header_timeout_ms;    /* request started but incomplete → 408 */
  uint64_t keepalive_timeout_ms; /* idle between requests → silent close */
  uint64_t send_timeout_ms;      /* no write progress while responding → close */
} hg_http_limits_t;

/* Called once per complete request on the server's thread. `req` (and its arena) stays
 * valid until hg_http_respond returns. */
typedef void (*hg_http_request_cb)(void *ud, hg_http_txn_t *txn, hg_request_t *req);

/* Returns a server on `loop`, or NULL on OOM. Limits are copied. The caller owns it:
 * hg_http_server_drain, then hg_http_server_free once the drain callback ran. */
hg_http_server_t *hg_http_server_new(uv_loop_t *loop, const hg_http_limits_t *limits,
                                     hg_http_request_cb cb, void *ud);

/* Adopts `fd`, a bound TCP socket, and starts accepting on it. Returns 0 or a UV_E*
 * code (the fd is closed on failure too). */
int hg_http_server_listen_fd(hg_http_server_t *srv, int fd);

/* Like hg_http_server_listen_fd, serving TLS (HTTP/1.1 or HTTP/2 by ALPN) with `tls`,
 * which the server owns from now on (freed with the listener, on failure too). */
int hg_http_server_listen_tls(hg_http_server_t *srv, int fd, hg_http_tls_t *tls);

/* Reloads the certificates of every TLS listener (hg_http_tls_reload): new handshakes
 * use them, open connections keep theirs. Returns 0, or the first failure's code with
 * its message in err (that listener keeps its previous certificates). */
int hg_http_server_reload_tls(hg_http_server_t *srv, char *err, size_t errlen);

/* Graceful stop: closes the listeners, closes idle connections, lets in-flight requests
 * finish (their responses carry Connection: close), and calls `done` once no connection
 * is left. After `timeout_ms` the remaining connections are closed forcibly. */
void hg_http_server_drain(hg_http_server_t *srv, uint64_t timeout_ms,
                          void (*done)(void *ud), void *ud);

/* Ends a drain now: the remaining connections are closed as at its timeout. Nothing
 * happens when the server is not draining, or is done. Loop thread. */
void hg_http_server_drain_now(hg_http_server_t *srv);

/* Frees a drained server (after its done callback). */
void hg_http_server_free(hg_http_server_t *srv);

/* Optional observer of the server's life (metrics): request_done runs once per answered
 * request, right after its access-log line; connection runs with +1/-1 as client
 * connections open and close. On the server's thread. */
typedef struct hg_http_observer_s {
  void (*request_done)(void *ud, const hg_request_t *req, int status, size_t bytes);
  void (*connection)(void *ud, int delta);
  void *ud;
} hg_http_observer_t;

void hg_http_server_observe(hg_http_server_t *srv, const hg_http_observer_t *obs);

/* Sends `res` for `txn` (Content-Length, Date, X-Request-Id and Connection are the
 * server's; a policy's framing headers are ignored). HEAD and 204/304 get no body.
 * Ends the transaction: the request and its arena are gone after this returns.
 * Returns 0, or a negative code when the client is already gone (the txn still ends). */
int hg_http_respond(hg_http_txn_t *txn, const hg_response_t *res);

/* The same calls serve HTTP/1.1 and HTTP/2 (then a txn is a stream, and backpressure is
 * the stream's: its flow-control window and the connection's writes). */

/* Asks to be told, once, when the client goes away (EOF, a read error, a forced close;
 * on HTTP/2: the stream reset or the connection closed) before the request is answered: `cb(ud)` runs on the loop; the handler must still end
 * the txn (hg_http_respond then sends nothing and logs 499). NULL clears it. For handlers
 * that wait before answering (a policy suspended on a callout). Loop thread. */
void hg_http_txn_on_gone(hg_http_txn_t *txn, void (*cb)(void *ud), void *ud);

/* ---- streamed responses (relays) ----
 * stream_start sends the head; stream_write queues body chunks; stream_end finishes.
 * The caller keeps the txn until stream_end. Backpressure: when hg_http_stream_queued
 * is above the caller's high-water mark it stops its producer and waits for the drain
 * callback, which runs whenever every queued chunk has been written. */

/* Called when the write queue empties (status 0), or once with a negative status when
 * the client is gone (the caller must then stop producing and call stream_end). May be
 * NULL for a response written whole between stream_start and stream_end (a body handed
 * over without a copy). */
typedef void (*hg_http_drain_cb)(void *ud, int status);

/* Makes the status line and headers of `res` (its body is ignored); they go out with the
 * first body piece or at stream_end, in one write. `content_length` >= 0
 * frames the body with Content-Length; -1 streams it chunked (close-delimited for
 * HTTP/1.0 clients). Returns 0 or a negative code (client gone; still call stream_end). */
int hg_http_stream_start(hg_http_txn_t *txn, const hg_response_t *res, int64_t content_length,
                         hg_http_drain_cb drain, void *ud);

/* Queues `data` (malloc'd; the server owns and frees it from now on). Returns 0, or a
 * negative code when the client is gone (data is freed anyway). */
int hg_http_stream_write(hg_http_txn_t *txn, char *data, size_t len);

/* Like hg_http_stream_write for bytes the caller's object owns (a cached object): they are
 * written from where they are, and release(ref) runs once they are written or dropped —
 * also when this fails. Returns 0 or a negative code (client gone). */
int hg_http_stream_write_ref(hg_http_txn_t *txn, const char *data, size_t len,
                             void (*release)(void *ref), void *ref);

/* Like hg_http_stream_write_ref for bytes that are also the range [off, off+len) of file
 * `fd` (a cached object's memfd): on a plain connection they are sent with sendfile(2),
 * without a copy; otherwise (chunked, TLS, writes queued ahead) written from `data`.
 * release(ref) runs once they are sent or dropped. Returns 0 or a negative code. */
int hg_http_stream_write_file(hg_http_txn_t *txn, const char *data, size_t len, int fd, int64_t off,
                              void (*release)(void *ref), void *ref);

/* Bytes queued but not yet written to the client. */
size_t hg_http_stream_queued(const hg_http_txn_t *txn);

/* Ends the response. `complete` = 0 means the body was cut short (an upstream failed
 * mid-body): the connection is closed so the client sees the truncation. The txn is
 * gone after this returns. */
void hg_http_stream_end(hg_http_txn_t *txn, int complete);

/* ---- test seam: the request parser alone (tests/fuzz/fuzz_http_request.c) ---- */

/* One request as the handler would get it (strings hashed with FNV-1a). */
typedef struct hg__http_parsed_s {
  char method[16];
  size_t target_len, nheaders, body_len;
  uint64_t target_hash, host_hash, body_hash;
  int has_host, http_minor;
} hg__http_parsed_t;

/* Parses data[0..len) as what a client sends on one connection, with the server's
 * callbacks, strictness and limits (`lim`), fed in pieces ending at the ascending offsets
 * cuts[0..ncuts) and then len. Requests go to out[0..cap) (*nout of them); parsing stops
 * at the first error (*err_status: the status the server answers, else 0) or after a
 * request that closes the connection. Any thread; no I/O. */
void hg__http_parse(const char *data, size_t len, const size_t *cuts, size_t ncuts,
                    const hg_http_limits_t *lim, hg__http_parsed_t *out, size_t cap, size_t *nout,
                    int *err_status);

#endif
