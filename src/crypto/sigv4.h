/* sigv4.h — AWS Signature Version 4 as S3 wants it: Authorization-header signing and
 * query-string presigning, with S3's single URI encoding and unnormalised paths, plus
 * S3 addressing (endpoint + bucket + key, path-style or virtual-hosted).
 *
 * A signer (hg_sigv4_t) holds one set of credentials for one region and service, and
 * caches the derived signing key per date, so presigning a 1,000-segment playlist
 * derives the key once and allocates nothing once the output buffer has grown.
 * Threads: a signer is NOT thread-safe (its cache and scratch buffer mutate on every
 * call); give each thread (each worker loop, each lua_State) its own signer. The
 * free functions (hg_sigv4_format_time, hg_sigv4_parse_time, hg_sigv4_uri_encode) are
 * pure; any thread.
 */
#ifndef HG_CRYPTO_SIGV4_H
#define HG_CRYPTO_SIGV4_H

#include <stddef.h>
#include <stdint.h>

#include "base/buf.h"
#include "base/header.h"

typedef struct hg_sigv4_s hg_sigv4_t;

#define HG_SIGV4_EMPTY_SHA256 "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
#define HG_SIGV4_UNSIGNED_PAYLOAD "UNSIGNED-PAYLOAD"
#define HG_SIGV4_MAX_EXPIRES 604800 /* 7 days: S3's limit for X-Amz-Expires */
#define HG_SIGV4_MAX_PARAMS 64      /* query parameters per request */
#define HG_SIGV4_MAX_HEADERS 32     /* extra signed headers per request */

typedef struct hg_sigv4_config_s {
  const char *access_key;    /* required */
  const char *secret_key;    /* required; only its derived HMAC state is kept */
  const char *session_token; /* temporary credentials, or NULL/"" */
  const char *region;        /* NULL: "us-east-1" */
  const char *service;       /* NULL: "s3" */
} hg_sigv4_config_t;

/* Creates a signer (copies what it needs from cfg). Returns NULL on bad input (empty
 * keys, a region/service outside [A-Za-z0-9_-]{1,63}) or out of memory. */
hg_sigv4_t *hg_sigv4_new(const hg_sigv4_config_t *cfg);

/* Frees a signer, wiping its key material. NULL is fine. */
void hg_sigv4_free(hg_sigv4_t *s);

/* A name/value pair: a query parameter (decoded bytes; the signer encodes them) or a
 * header to sign (value as sent; the signer trims and folds spaces for signing). */
typedef struct hg_sigv4_kv_s {
  const char *name;
  size_t name_len;
  const char *value; /* NULL is the same as "" */
  size_t value_len;
} hg_sigv4_kv_t;

#define HG_SIGV4_NO_CONTENT_SHA256 1u /* header mode: do not send/sign x-amz-content-sha256
                                         (generic SigV4; S3 requires it) */

/* A request to sign. */
typedef struct hg_sigv4_req_s {
  const char *method;           /* "GET", "HEAD", ... (as sent) */
  const char *scheme;           /* "https"/"http" to get an absolute URL; NULL for
                                   a request-target ("/path?query") */
  const char *host;             /* Host header value as sent, with a non-default port */
  const char *path;             /* DECODED path, starting with '/': UriEncoded once
                                   ('/' kept), never normalised (S3 rules) */
  size_t path_len;
  const hg_sigv4_kv_t *query;   /* extra query parameters (decoded), any order */
  size_t nquery;
  const hg_sigv4_kv_t *headers; /* extra headers to sign, sent by the caller as given;
                                   never host, authorization or the x-amz-* headers the
                                   signer adds itself (HG_EINVAL) */
  size_t nheaders;
  const char *payload_hash;     /* NULL: empty-body SHA-256 (header mode) or
                                   UNSIGNED-PAYLOAD (presign) */
  int64_t time;                 /* signing time, unix seconds */
  uint32_t expires;             /* presign: 1..HG_SIGV4_MAX_EXPIRES seconds */
  unsigned flags;               /* HG_SIGV4_NO_CONTENT_SHA256 */
} hg_sigv4_req_t;

/* Presigns: appends the URL ("scheme://host" if req->scheme, then the encoded path and
 * a query with the X-Amz-* parameters, the caller's parameters and X-Amz-Signature) to
 * `url`. Returns 0, HG_EINVAL (bad request: empty host or method, path not starting
 * with '/', expires out of range, time out of range), HG_ETOOBIG (too many params or
 * headers) or HG_ENOMEM; `url` is unchanged on failure. Owner thread of `s` only. */
int hg_sigv4_presign(hg_sigv4_t *s, const hg_sigv4_req_t *req, hg_buf_t *url);

/* The headers a header-signed request must carry besides the caller's own. */
typedef struct hg_sigv4_auth_s {
  char amz_date[17];          /* X-Amz-Date: "YYYYMMDDTHHMMSSZ" */
  const char *content_sha256; /* X-Amz-Content-Sha256 value, or NULL when not sent;
                                 points to req->payload_hash or a static string */
  const char *security_token; /* X-Amz-Security-Token value or NULL; owned by `s` */
} hg_sigv4_auth_t;

/* The headers a header-signed request sends, from a signing's results: authorization
 * (`authz`), x-amz-date, and x-amz-content-sha256 / x-amz-security-token when present,
 * in that order, as lower-case names. Writes them to out[0..4) (pointing into authz and
 * auth, which must outlive them) and returns how many. One builder for every caller. */
size_t hg_sigv4_auth_headers(const hg_sigv4_auth_t *auth, const hg_buf_t *authz, hg_header_t out[4]);

/* Signs for the Authorization header: appends the request URL (as in presign, without
 * signature parameters) to `url` (may be NULL), the Authorization value to `authz`,
 * and fills `out`. The request must be sent with exactly: Host = req->host, the fields
 * of `out`, req->headers, and Authorization. Returns as hg_sigv4_presign; the buffers
 * are unchanged on failure. Owner thread of `s` only. */
int hg_sigv4_sign(hg_sigv4_t *s, const hg_sigv4_req_t *req, hg_buf_t *url, hg_buf_t *authz,
                  hg_sigv4_auth_t *out);

/* S3 addressing. */
typedef struct hg_s3_req_s {
  const char *endpoint;  /* "https://s3.eu-west-1.amazonaws.com", "http://127.0.0.1:4568"
                            (scheme optional: https); no path. A default port (:443 for
                            https, :80 for http) is dropped, any other is kept and signed */
  const char *bucket;    /* path-style: [A-Za-z0-9._-]{1,255}; virtual-hosted: a DNS label
                            set [a-z0-9.-] */
  const char *key;       /* object key, raw bytes (UTF-8); NULL/empty: the bucket itself */
  size_t key_len;
  int path_style;        /* 1: scheme://host/bucket/key; 0: scheme://bucket.host/key */
  const char *method;    /* NULL: "GET" */
  const hg_sigv4_kv_t *query;   /* extra parameters (e.g. response-content-type) */
  size_t nquery;
  const hg_sigv4_kv_t *headers; /* extra headers to sign (header mode, e.g. range) */
  size_t nheaders;
  const char *payload_hash;     /* header mode; NULL: empty-body SHA-256 */
  int64_t time;
  uint32_t expires;
} hg_s3_req_t;

/* Presigned URL of an S3 object (UNSIGNED-PAYLOAD, X-Amz-SignedHeaders=host), appended
 * to `url`. Returns as hg_sigv4_presign, plus HG_EINVAL for a bad endpoint or bucket.
 * Owner thread of `s` only. */
int hg_s3_presign(hg_sigv4_t *s, const hg_s3_req_t *req, hg_buf_t *url);

/* Header-signed S3 request: the URL to fetch goes to `url`, its Host header value to
 * `host`, the Authorization value to `authz`; `out` as in hg_sigv4_sign (x-amz-content-
 * sha256 always sent). Returns as hg_s3_presign. Owner thread of `s` only. */
int hg_s3_sign(hg_sigv4_t *s, const hg_s3_req_t *req, hg_buf_t *url, hg_buf_t *host,
               hg_buf_t *authz, hg_sigv4_auth_t *out);

/* Writes unix time t as "YYYYMMDDTHHMMSSZ" (ISO 8601 basic) plus NUL. Returns 0, or
 * HG_EINVAL outside years 1970..9999. */
int hg_sigv4_format_time(int64_t t, char out[17]);

/* Parses "YYYYMMDDTHHMMSSZ" or "YYYY-MM-DDTHH:MM:SSZ" (UTC only) into unix seconds.
 * Returns 0 or HG_EPARSE. */
int hg_sigv4_parse_time(const char *s, size_t n, int64_t *t);

/* Appends UriEncode(s[0..n)) as S3 defines it: every byte except A-Z a-z 0-9 - _ . ~
 * (and '/' when keep_slash) as %XX with uppercase hex. Returns 0 or HG_ENOMEM. */
int hg_sigv4_uri_encode(hg_buf_t *out, const char *s, size_t n, int keep_slash);

#endif
