/* tls.h — TLS for the HTTP server's listeners (mbedTLS 2.28; docs/tls.md).
 *
 * One hg_http_tls_t is the TLS of one listener in one worker: certificate/key pairs
 * (the first the default, the others chosen by SNI from their names), TLS 1.2 only
 * (mbedTLS 2.28 has no TLS 1.3 server), ECDHE with AEAD ciphers only (RFC 9113 §9.2),
 * ALPN h2 then http/1.1. Reloading builds a new generation from the same files; new
 * handshakes use it while open connections keep the one they started with. Each object
 * is used by one thread (its worker); the main thread builds throwaway ones to check
 * files before telling the workers to reload.
 */
#ifndef HG_HTTP_TLS_H
#define HG_HTTP_TLS_H

#include <stddef.h>

typedef struct hg_http_tls_s hg_http_tls_t;

/* Loads `n` pairs of PEM files (certs[i] a chain, keys[i] its unencrypted key; the
 * arrays and strings must outlive the object: reloads read them again). Returns the
 * object, or NULL with a message naming the file in err[0..errlen). */
hg_http_tls_t *hg_http_tls_new(const char *const *certs, const char *const *keys, size_t n, char *err,
                               size_t errlen);

/* Reads the files again; on success new handshakes use them. On failure returns a
 * negative code with the message in err and keeps serving the previous certificates. */
int hg_http_tls_reload(hg_http_tls_t *t, char *err, size_t errlen);

/* Frees the object; connections still open keep their generation until they close. */
void hg_http_tls_free(hg_http_tls_t *t);

#endif
