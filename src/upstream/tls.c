/* tls.c — mbedTLS 2.28 client sessions over memory buffers (see tls.h). */
#include "upstream/tls.h"

#include <mbedtls/error.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "base/log.h"

hg__tls_ctx_t *hg__tls_ctx_new(const char *ca_file, char *err, size_t errlen) {
  static const char pers[] = "hlsgate-upstream";
  hg__tls_ctx_t *ctx = calloc(1, sizeof(*ctx));
  if (ctx == NULL) {
    snprintf(err, errlen, "out of memory");
    return NULL;
  }
  mbedtls_ssl_config_init(&ctx->conf);
  mbedtls_x509_crt_init(&ctx->ca);
  mbedtls_entropy_init(&ctx->entropy);
  mbedtls_ctr_drbg_init(&ctx->drbg);
  int rc = mbedtls_ctr_drbg_seed(&ctx->drbg, mbedtls_entropy_func, &ctx->entropy,
                                 (const unsigned char *)pers, sizeof(pers) - 1);
  if (rc != 0) {
    snprintf(err, errlen, "TLS: cannot seed the random generator (-0x%04x)", (unsigned)-rc);
    goto fail;
  }
  /* A positive return means some certificates of the bundle were skipped (mbedTLS does
   * not support every algorithm in it); the rest are trusted. */
  rc = mbedtls_x509_crt_parse_file(&ctx->ca, HG__TLS_SYSTEM_CA);
  if (rc < 0)
    hg_log(HG_LOG_WARN, "upstream TLS: cannot load %s (-0x%04x); https origins will fail "
           "verification unless an extra CA file trusts them", HG__TLS_SYSTEM_CA, (unsigned)-rc);
  if (ca_file != NULL && ca_file[0] != '\0') {
    /* The operator's own CA file must load completely: a half-loaded file would fail
     * later, far from the cause. */
    rc = mbedtls_x509_crt_parse_file(&ctx->ca, ca_file);
    if (rc != 0) {
      if (rc < 0) {
        char m[128];
        mbedtls_strerror(rc, m, sizeof(m));
        snprintf(err, errlen, "TLS: cannot load CA file %s: %s", ca_file, m);
      } else {
        snprintf(err, errlen, "TLS: CA file %s: %d certificate(s) could not be parsed", ca_file,
                 rc);
      }
      goto fail;
    }
  }
  rc = mbedtls_ssl_config_defaults(&ctx->conf, MBEDTLS_SSL_IS_CLIENT, MBEDTLS_SSL_TRANSPORT_STREAM,
                                   MBEDTLS_SSL_PRESET_DEFAULT);
  if (rc != 0) {
    snprintf(err, errlen, "TLS: cannot configure (-0x%04x)", (unsigned)-rc);
    goto fail;
  }
  /* Security: the peer must present a chain to one of our CAs that names the host. */
  mbedtls_ssl_conf_authmode(&ctx->conf, MBEDTLS_SSL_VERIFY_REQUIRED);
  mbedtls_ssl_conf_ca_chain(&ctx->conf, &ctx->ca, NULL);
  mbedtls_ssl_conf_min_version(&ctx->conf, MBEDTLS_SSL_MAJOR_VERSION_3,
                               MBEDTLS_SSL_MINOR_VERSION_3); /* TLS 1.2 at least */
  mbedtls_ssl_conf_rng(&ctx->conf, mbedtls_ctr_drbg_random, &ctx->drbg);
  return ctx;
fail:
  hg__tls_ctx_free(ctx);
  return NULL;
}

void hg__tls_ctx_free(hg__tls_ctx_t *ctx) {
  if (ctx == NULL) return;
  mbedtls_ssl_config_free(&ctx->conf);
  mbedtls_x509_crt_free(&ctx->ca);
  mbedtls_ctr_drbg_free(&ctx->drbg);
  mbedtls_entropy_free(&ctx->entropy);
  free(ctx);
}

/* ---- memory BIO ---- */

/* Send BIO: ciphertext goes to `out`; the connection writes it with uv_write. */
static int bio_send(void *ud, const unsigned char *buf, size_t len) {
  hg__tls_t *t = ud;
  if (hg_buf_append(&t->out, buf, len) != 0) {
    t->oom = 1;
    return MBEDTLS_ERR_SSL_ALLOC_FAILED;
  }
  return (int)len;
}

/* Recv BIO: hands out received ciphertext; "nothing yet" is WANT_READ, and 0 (EOF) only
 * once the transport ended and everything buffered was consumed. */
static int bio_recv(void *ud, unsigned char *buf, size_t len) {
  hg__tls_t *t = ud;
  size_t avail = t->in.len - t->in_off;
  if (avail == 0) return t->eof ? 0 : MBEDTLS_ERR_SSL_WANT_READ;
  if (len > avail) len = avail;
  if (len > INT32_MAX) len = INT32_MAX;
  memcpy(buf, t->in.data + t->in_off, len);
  t->in_off += len;
  if (t->in_off == t->in.len) t->in_off = t->in.len = 0;
  return (int)len;
}

int hg__tls_init(hg__tls_t *t, hg__tls_ctx_t *ctx, const char *host) {
  memset(t, 0, sizeof(*t));
  mbedtls_ssl_init(&t->ssl);
  if (mbedtls_ssl_setup(&t->ssl, &ctx->conf) != 0) goto fail;
  char name[256];
  size_t n = strlen(host);
  if (n >= sizeof(name)) goto fail;
  memcpy(name, host, n + 1);
  if (n > 0 && name[n - 1] == '.') name[n - 1] = '\0';
  /* Security: sets both SNI and the name checked against the certificate. */
  if (mbedtls_ssl_set_hostname(&t->ssl, name) != 0) goto fail;
  mbedtls_ssl_set_bio(&t->ssl, t, bio_send, bio_recv, NULL);
  return 0;
fail:
  mbedtls_ssl_free(&t->ssl);
  memset(t, 0, sizeof(*t));
  return HG_ENOMEM;
}

void hg__tls_free(hg__tls_t *t) {
  mbedtls_ssl_free(&t->ssl);
  hg_buf_free(&t->in);
  hg_buf_free(&t->out);
}

char *hg__tls_in_reserve(hg__tls_t *t, size_t n, size_t *room) {
  if (t->in_off > 0 && t->in_off == t->in.len) t->in_off = t->in.len = 0;
  if (t->in_off > 0 && t->in_off >= t->in.len / 2) { /* compact: keep the buffer small */
    memmove(t->in.data, t->in.data + t->in_off, t->in.len - t->in_off);
    t->in.len -= t->in_off;
    t->in_off = 0;
  }
  if (hg_buf_reserve(&t->in, n) != 0) return NULL;
  *room = t->in.cap - t->in.len - 1; /* keep hg_buf's NUL slot */
  return t->in.data + t->in.len;
}

void hg__tls_in_commit(hg__tls_t *t, size_t k) {
  t->in.len += k;
  t->in.data[t->in.len] = '\0';
}

int hg__tls_handshake(hg__tls_t *t) {
  int rc = mbedtls_ssl_handshake(&t->ssl);
  if (rc == 0) {
    /* Belt and braces: REQUIRED authmode already fails the handshake on a bad chain. */
    if (mbedtls_ssl_get_verify_result(&t->ssl) != 0) return MBEDTLS_ERR_X509_CERT_VERIFY_FAILED;
    return 0;
  }
  if (rc == MBEDTLS_ERR_SSL_WANT_READ || rc == MBEDTLS_ERR_SSL_WANT_WRITE) return 1;
  return rc;
}

int hg__tls_read(hg__tls_t *t, char *buf, size_t len, int *eof) {
  *eof = 0;
  int rc = mbedtls_ssl_read(&t->ssl, (unsigned char *)buf, len);
  if (rc > 0) return rc;
  if (rc == MBEDTLS_ERR_SSL_WANT_READ || rc == MBEDTLS_ERR_SSL_WANT_WRITE) return 0;
  /* A close_notify, or the transport ending without one (many servers do that after
   * a close-delimited body; HTTP framing tells truncation apart). */
  if (rc == 0 || rc == MBEDTLS_ERR_SSL_PEER_CLOSE_NOTIFY || rc == MBEDTLS_ERR_SSL_CONN_EOF) {
    *eof = 1;
    return 0;
  }
  return rc;
}

int hg__tls_write(hg__tls_t *t, const char *buf, size_t len) {
  while (len > 0) {
    int rc = mbedtls_ssl_write(&t->ssl, (const unsigned char *)buf, len);
    if (rc < 0) return rc; /* WANT_WRITE cannot happen: the send BIO never blocks */
    buf += rc;
    len -= (size_t)rc;
  }
  return 0;
}

int hg__tls_has_pending(const hg__tls_t *t) {
  return t->in.len > t->in_off || mbedtls_ssl_get_bytes_avail(&t->ssl) > 0;
}

int hg__tls_describe(hg__tls_t *t, int rc, char *out, size_t outlen) {
  uint32_t flags = mbedtls_ssl_get_verify_result(&t->ssl);
  if (rc == MBEDTLS_ERR_X509_CERT_VERIFY_FAILED && flags != 0 && flags != (uint32_t)-1) {
    static const struct {
      uint32_t bit;
      const char *what;
    } reasons[] = {
        {MBEDTLS_X509_BADCERT_NOT_TRUSTED, "unknown CA"},
        {MBEDTLS_X509_BADCERT_CN_MISMATCH, "hostname mismatch"},
        {MBEDTLS_X509_BADCERT_EXPIRED, "expired"},
        {MBEDTLS_X509_BADCERT_FUTURE, "not yet valid"},
        {MBEDTLS_X509_BADCERT_REVOKED, "revoked"},
        {MBEDTLS_X509_BADCERT_KEY_USAGE | MBEDTLS_X509_BADCERT_EXT_KEY_USAGE |
             MBEDTLS_X509_BADCERT_NS_CERT_TYPE, "key usage not allowed"},
        {MBEDTLS_X509_BADCERT_BAD_MD | MBEDTLS_X509_BADCERT_BAD_PK | MBEDTLS_X509_BADCERT_BAD_KEY,
         "unacceptable algorithm or key"},
        {MBEDTLS_X509_BADCERT_MISSING, "no certificate"},
    };
    hg_buf_t b = HG_BUF_INIT;
    hg_buf_puts(&b, "certificate verify failed (");
    size_t start = b.len;
    uint32_t left = flags;
    for (size_t i = 0; i < sizeof(reasons) / sizeof(reasons[0]); i++) {
      if (!(flags & reasons[i].bit)) continue;
      if (b.len > start) hg_buf_puts(&b, ", ");
      hg_buf_puts(&b, reasons[i].what);
      left &= ~reasons[i].bit;
    }
    if (left) hg_buf_printf(&b, "%sflags 0x%x", b.len > start ? ", " : "", (unsigned)left);
    hg_buf_putc(&b, ')');
    snprintf(out, outlen, "%s", b.data ? b.data : "certificate verify failed");
    hg_buf_free(&b);
    return 1;
  }
  if (rc == MBEDTLS_ERR_X509_CERT_VERIFY_FAILED) {
    snprintf(out, outlen, "certificate verify failed");
    return 1;
  }
  if (t->oom || rc == MBEDTLS_ERR_SSL_ALLOC_FAILED) {
    snprintf(out, outlen, "out of memory");
    return 0;
  }
  char m[160];
  mbedtls_strerror(rc, m, sizeof(m));
  snprintf(out, outlen, "%s (-0x%04x)", m, (unsigned)-rc);
  return 0;
}
