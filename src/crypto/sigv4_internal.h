/* sigv4_internal.h — what sigv4.c (the signer) and s3.c (S3 addressing) share: the
 * validated request both signing modes start from. Not an API. */
#ifndef HG_CRYPTO_SIGV4_INTERNAL_H
#define HG_CRYPTO_SIGV4_INTERNAL_H

#include <stdint.h>

#include "crypto/sigv4.h"

/* What both modes share once the request is validated. */
typedef struct {
  const char *method, *scheme, *host;
  size_t host_len;
  const char *path[4]; /* decoded path parts, concatenated */
  size_t path_len[4];
  int npath;
  const hg_sigv4_kv_t *query, *headers;
  size_t nquery, nheaders;
  const char *payload;
  int64_t time;
  uint32_t expires;
  int presign, content_sha256;
} creq_t;

/* Appends the presigned query (…&X-Amz-Signature=…) for `r` to url. 0 or an error;
 * url is left as it was on failure. Owner thread of `s`. */
int hg__sigv4_presign(hg_sigv4_t *s, const creq_t *r, hg_buf_t *url);

/* Signs `r` for header mode: the request-target in url (when not NULL), the
 * Authorization value in authz, the x-amz-* values in *out. 0 or an error. */
int hg__sigv4_sign_headers(hg_sigv4_t *s, const creq_t *r, hg_buf_t *url, hg_buf_t *authz,
                           hg_sigv4_auth_t *out);

#endif
