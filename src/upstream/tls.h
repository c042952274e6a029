/* tls.h — client-side TLS for the upstream client: mbedTLS 2.28 over memory buffers.
 *
 * mbedTLS never touches a socket here. The connection code reads ciphertext from its
 * libuv stream into `in` (hg__tls_in_reserve / hg__tls_in_commit), and after every TLS
 * call sends whatever ciphertext appeared in `out` with uv_write. The BIO callbacks
 * only move bytes between those buffers, so nothing ever blocks: "no data yet" is
 * MBEDTLS_ERR_SSL_WANT_READ, and the caller retries when the next read arrives.
 *
 * Security: every session verifies the peer's chain against the system CA bundle
 * (plus the optional extra CA file) and the expected host name (also sent as SNI);
 * authmode is REQUIRED and TLS 1.2 is the minimum. There is no "insecure" switch.
 *
 * One context per hg_upstream_t (per worker thread); sessions belong to one connection.
 * Everything runs on the owning loop's thread.
 */
#ifndef HG_UPSTREAM_TLS_H
#define HG_UPSTREAM_TLS_H

#include <stddef.h>

#include <mbedtls/ctr_drbg.h>
#include <mbedtls/entropy.h>
#include <mbedtls/ssl.h>
#include <mbedtls/x509_crt.h>

#include "base/buf.h"

#define HG__TLS_SYSTEM_CA "/etc/ssl/certs/ca-certificates.crt"

typedef struct hg__tls_ctx_s {
  mbedtls_ssl_config conf;
  mbedtls_x509_crt ca;
  mbedtls_entropy_context entropy;
  mbedtls_ctr_drbg_context drbg;
} hg__tls_ctx_t;

typedef struct hg__tls_s {
  mbedtls_ssl_context ssl;
  hg_buf_t in;      /* ciphertext received, not yet consumed by mbedTLS (from in_off) */
  size_t in_off;
  hg_buf_t out;     /* ciphertext produced, to be written to the socket */
  int eof;          /* the transport reached EOF: the recv BIO reports it after `in` drains */
  int oom;
} hg__tls_t;

/* Returns a context trusting the system bundle plus `ca_file` (PEM, may be NULL), or
 * NULL with a message in err: OOM, RNG failure, or a ca_file that cannot be read or
 * holds a certificate mbedTLS cannot parse. A missing system bundle is only logged
 * (plain-http upstreams still work; https then fails verification). Caller owns it. */
hg__tls_ctx_t *hg__tls_ctx_new(const char *ca_file, char *err, size_t errlen);
void hg__tls_ctx_free(hg__tls_ctx_t *ctx);

/* Initializes a client session in `t` for `host` (SNI and the name the certificate must
 * carry; a trailing '.' is dropped). Returns 0 or HG_ENOMEM; on failure `t` needs no
 * cleanup. `ctx` must outlive the session. */
int hg__tls_init(hg__tls_t *t, hg__tls_ctx_t *ctx, const char *host);
void hg__tls_free(hg__tls_t *t);

/* Makes room for at least `n` more ciphertext bytes at in.data + in.len and returns that
 * pointer and the room in *room (NULL on OOM); hg__tls_in_commit(t, k) then adds the k
 * bytes that were read there. */
char *hg__tls_in_reserve(hg__tls_t *t, size_t n, size_t *room);
void hg__tls_in_commit(hg__tls_t *t, size_t k);

/* Advances the handshake. Returns 0 when complete, 1 when it needs more input, or a
 * negative mbedTLS error. Output, if any, is in t->out. */
int hg__tls_handshake(hg__tls_t *t);

/* Decrypts up to `len` bytes. Returns the number of bytes (> 0), 0 when more input is
 * needed or the peer ended the stream (*eof set), or a negative mbedTLS error. */
int hg__tls_read(hg__tls_t *t, char *buf, size_t len, int *eof);

/* Encrypts all of buf[0..len) into t->out. Returns 0 or a negative mbedTLS error. */
int hg__tls_write(hg__tls_t *t, const char *buf, size_t len);

/* Returns 1 if received bytes remain that mbedTLS has not handed out yet (buffered
 * ciphertext or decrypted application data): such a connection must not be pooled. */
int hg__tls_has_pending(const hg__tls_t *t);

/* Describes a failed handshake or read (`rc` from the calls above) for error messages:
 * "certificate verify failed (unknown CA)", "certificate verify failed (hostname
 * mismatch)", "handshake failed: <mbedTLS text>", … Writes out[0..outlen). Also
 * returns 1 if the failure is a certificate verification failure, else 0. */
int hg__tls_describe(hg__tls_t *t, int rc, char *out, size_t outlen);

#endif
