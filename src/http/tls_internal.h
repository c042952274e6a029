/* tls_internal.h — what tls.c (listener configurations) shares with tls_conn.c
 * (connections) and h2.c. One thread (the server's loop) only. */
#ifndef HG_HTTP_TLS_INTERNAL_H
#define HG_HTTP_TLS_INTERNAL_H

#include <mbedtls/ctr_drbg.h>
#include <mbedtls/entropy.h>
#include <mbedtls/pk.h>
#include <mbedtls/ssl.h>
#include <mbedtls/x509_crt.h>

#include "http/tls.h"

/* One set of loaded certificates and the configuration built on them. Connections hold
 * a reference, so a reload never pulls a certificate out from under a handshake. */
typedef struct hg__htls_gen_s {
  int refs;
  mbedtls_ssl_config conf;
  mbedtls_entropy_context entropy;
  mbedtls_ctr_drbg_context drbg;
  size_t n;
  mbedtls_x509_crt crt[8];
  mbedtls_pk_context key[8];
} hg__htls_gen_t;

struct hg_http_tls_s {
  const char *const *certs;
  const char *const *keys;
  size_t n;
  hg__htls_gen_t *cur;
};

void hg__htls_gen_retain(hg__htls_gen_t *g);
void hg__htls_gen_release(hg__htls_gen_t *g);

#endif
