/* tls.c — listener TLS configurations: certificates, SNI, ciphers, reload (see tls.h). */
#include "http/tls.h"

#include <mbedtls/error.h>
#include <mbedtls/oid.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base/error.h"
#include "http/tls_internal.h"

/* Security: ECDHE (forward secrecy) with AEAD ciphers only, as RFC 9113 §9.2.2 asks of
 * HTTP/2 and current guidance of any TLS 1.2 server: no RSA key exchange, no CBC, no
 * SHA-1 MACs, no RC4/3DES/NULL/EXPORT. The server's order decides. */
static const int ciphersuites[] = {
    MBEDTLS_TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
    MBEDTLS_TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
    MBEDTLS_TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
    MBEDTLS_TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
    MBEDTLS_TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
    MBEDTLS_TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
    0,
};

/* ALPN in our order of preference (mbedTLS's server picks by its own list). */
static const char *alpn[] = {"h2", "http/1.1", NULL};

void hg__htls_gen_retain(hg__htls_gen_t *g) { g->refs++; }

void hg__htls_gen_release(hg__htls_gen_t *g) {
  if (g == NULL || --g->refs > 0) return;
  mbedtls_ssl_config_free(&g->conf);
  for (size_t i = 0; i < g->n; i++) {
    mbedtls_x509_crt_free(&g->crt[i]);
    mbedtls_pk_free(&g->key[i]);
  }
  mbedtls_ctr_drbg_free(&g->drbg);
  mbedtls_entropy_free(&g->entropy);
  free(g);
}

/* Does the DNS name `name` (n bytes) match `pat` ("example.com", "*.example.com": one
 * label, RFC 6125 §6.4.3)? Case-insensitive. */
static int name_matches(const unsigned char *pat, size_t pn, const char *name, size_t n) {
  if (pn >= 2 && pat[0] == '*' && pat[1] == '.') {
    const char *dot = memchr(name, '.', n);
    if (dot == NULL || dot == name) return 0;
    size_t rest = n - (size_t)(dot - name);
    return rest == pn - 1 && strncasecmp((const char *)pat + 1, dot, rest) == 0;
  }
  return pn == n && strncasecmp((const char *)pat, name, n) == 0;
}

/* Does certificate `crt` name `name`: its subjectAltName DNS names, else its CN? */
static int crt_names(const mbedtls_x509_crt *crt, const char *name, size_t n) {
  const mbedtls_x509_sequence *san = &crt->subject_alt_names;
  int has_san = 0;
  for (; san != NULL && san->buf.p != NULL; san = san->next) {
    if (san->buf.tag != (MBEDTLS_ASN1_CONTEXT_SPECIFIC | MBEDTLS_X509_SAN_DNS_NAME)) continue;
    has_san = 1;
    if (name_matches(san->buf.p, san->buf.len, name, n)) return 1;
  }
  if (has_san) return 0;
  for (const mbedtls_x509_name *nm = &crt->subject; nm != NULL; nm = nm->next)
    if (MBEDTLS_OID_CMP(MBEDTLS_OID_AT_CN, &nm->oid) == 0 && name_matches(nm->val.p, nm->val.len, name, n))
      return 1;
  return 0;
}

/* SNI: the first certificate that names the host; none → the default (the first pair,
 * set with mbedtls_ssl_conf_own_cert), as nginx's default server does. */
static int on_sni(void *ud, mbedtls_ssl_context *ssl, const unsigned char *name, size_t n) {
  hg__htls_gen_t *g = ud;
  for (size_t i = 0; i < g->n; i++)
    if (crt_names(&g->crt[i], (const char *)name, n)) return mbedtls_ssl_set_hs_own_cert(ssl, &g->crt[i], &g->key[i]);
  return 0;
}

static void mbed_err(char *err, size_t errlen, const char *what, const char *file, int rc) {
  char m[128];
  mbedtls_strerror(rc, m, sizeof(m));
  snprintf(err, errlen, "TLS: %s %s: %s", what, file, m);
}

static hg__htls_gen_t *gen_new(const hg_http_tls_t *t, char *err, size_t errlen) {
  static const char pers[] = "hlsgate-server";
  hg__htls_gen_t *g = calloc(1, sizeof(*g));
  if (g == NULL) {
    snprintf(err, errlen, "out of memory");
    return NULL;
  }
  g->refs = 1;
  mbedtls_ssl_config_init(&g->conf);
  mbedtls_entropy_init(&g->entropy);
  mbedtls_ctr_drbg_init(&g->drbg);
  int rc = mbedtls_ctr_drbg_seed(&g->drbg, mbedtls_entropy_func, &g->entropy, (const unsigned char *)pers,
                                 sizeof(pers) - 1);
  if (rc) {
    snprintf(err, errlen, "TLS: cannot seed the random generator (-0x%04x)", (unsigned)-rc);
    goto fail;
  }
  for (size_t i = 0; i < t->n && i < 8; i++) {
    mbedtls_x509_crt_init(&g->crt[i]);
    mbedtls_pk_init(&g->key[i]);
    g->n = i + 1;
    /* The whole chain must parse: a half-loaded chain fails handshakes later, far away. */
    if ((rc = mbedtls_x509_crt_parse_file(&g->crt[i], t->certs[i])) != 0) {
      if (rc > 0) snprintf(err, errlen, "TLS: certificate %s: %d certificate(s) could not be parsed", t->certs[i], rc);
      else mbed_err(err, errlen, "certificate", t->certs[i], rc);
      goto fail;
    }
    if ((rc = mbedtls_pk_parse_keyfile(&g->key[i], t->keys[i], NULL)) != 0) {
      mbed_err(err, errlen, "key", t->keys[i], rc);
      goto fail;
    }
    if (mbedtls_pk_check_pair(&g->crt[i].pk, &g->key[i]) != 0) {
      snprintf(err, errlen, "TLS: key %s does not match certificate %s", t->keys[i], t->certs[i]);
      goto fail;
    }
  }
  rc = mbedtls_ssl_config_defaults(&g->conf, MBEDTLS_SSL_IS_SERVER, MBEDTLS_SSL_TRANSPORT_STREAM,
                                   MBEDTLS_SSL_PRESET_DEFAULT);
  if (rc == 0) rc = mbedtls_ssl_conf_own_cert(&g->conf, &g->crt[0], &g->key[0]);
  if (rc == 0) rc = mbedtls_ssl_conf_alpn_protocols(&g->conf, alpn);
  if (rc) {
    snprintf(err, errlen, "TLS: cannot configure (-0x%04x)", (unsigned)-rc);
    goto fail;
  }
  mbedtls_ssl_conf_rng(&g->conf, mbedtls_ctr_drbg_random, &g->drbg);
  /* Security: TLS 1.2 at least (no 1.0/1.1); renegotiation stays off (the default). */
  mbedtls_ssl_conf_min_version(&g->conf, MBEDTLS_SSL_MAJOR_VERSION_3, MBEDTLS_SSL_MINOR_VERSION_3);
  mbedtls_ssl_conf_ciphersuites(&g->conf, ciphersuites);
  mbedtls_ssl_conf_sni(&g->conf, on_sni, g);
  return g;
fail:
  hg__htls_gen_release(g);
  return NULL;
}

hg_http_tls_t *hg_http_tls_new(const char *const *certs, const char *const *keys, size_t n, char *err,
                               size_t errlen) {
  if (n == 0 || n > 8) {
    snprintf(err, errlen, "TLS: 1 to 8 certificates per listener");
    return NULL;
  }
  hg_http_tls_t *t = calloc(1, sizeof(*t));
  if (t == NULL) {
    snprintf(err, errlen, "out of memory");
    return NULL;
  }
  t->certs = certs;
  t->keys = keys;
  t->n = n;
  t->cur = gen_new(t, err, errlen);
  if (t->cur == NULL) {
    free(t);
    return NULL;
  }
  return t;
}

int hg_http_tls_reload(hg_http_tls_t *t, char *err, size_t errlen) {
  hg__htls_gen_t *g = gen_new(t, err, errlen);
  if (g == NULL) return HG_EINVAL; /* the previous generation keeps serving */
  hg__htls_gen_release(t->cur);
  t->cur = g;
  return 0;
}

void hg_http_tls_free(hg_http_tls_t *t) {
  if (t == NULL) return;
  hg__htls_gen_release(t->cur);
  free(t);
}
