/* sigv4.c — AWS SigV4 header signing and presigning for S3 (see sigv4.h).
 *
 * The canonical request is never materialised: its parts are streamed into SHA-256
 * straight from where they already are (the encoded path and query inside the output
 * URL, the canonical headers in the signer's scratch buffer). The derived signing key
 * is cached per date as a precomputed HMAC state, and everything that depends only on
 * the credentials (encoded access key, session token, scope tail) is built once in
 * hg_sigv4_new. A presign therefore costs one SHA-256 of ~300 bytes plus one HMAC of
 * ~130 bytes, and no allocation once the buffers have grown.
 *
 * S3 rules (VECTORS.md §1.5): the path is UriEncoded once and never normalised; query
 * names and values are UriEncoded and sorted; presigns sign UNSIGNED-PAYLOAD and put
 * the session token in the (signed) query; header signing adds x-amz-content-sha256.
 */
#include "crypto/sigv4.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <mbedtls/platform_util.h>

#include "base/error.h"
#include "crypto/hash.h"
#include "crypto/sigv4_internal.h"

#define CACHE_SLOTS 4 /* dates kept: today, yesterday around midnight, test clocks */

struct hg_sigv4_s {
  char *ak;           /* access key */
  char *ak_enc;       /* UriEncode(access key), for X-Amz-Credential */
  char *token;        /* session token or NULL */
  char *token_enc;    /* UriEncode(session token) or NULL */
  char *tail;         /* "/region/service/aws4_request" */
  char *tail_enc;     /* "%2Fregion%2Fservice%2Faws4_request" */
  size_t ak_len, ak_enc_len, token_len, token_enc_len, tail_len, tail_enc_len;
  char region[64], service[64];
  hg_hmac_key_t ksecret; /* HMAC state of "AWS4" + secret: the root of the derivation */
  struct {
    char date[8];
    int used;
    unsigned stamp;
    hg_hmac_key_t k; /* HMAC state of the derived signing key */
  } cache[CACHE_SLOTS];
  unsigned tick;
  int64_t last_t;      /* memo of the last formatted time */
  char last_iso[17];
  hg_buf_t scratch;    /* encoded params, canonical headers (reused) */
};

/* ---- encoding ---------------------------------------------------------------------- */

static const char HEX[] = "0123456789ABCDEF";

static int unreserved(unsigned char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
         c == '-' || c == '_' || c == '.' || c == '~';
}

static size_t encoded_len(const char *s, size_t n, int keep_slash) {
  size_t k = n;
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (!unreserved(c) && !(keep_slash && c == '/')) k += 2;
  }
  return k;
}

/* Writes UriEncode(s) at out (room checked by the caller); returns bytes written. */
static size_t encode_to(char *out, const char *s, size_t n, int keep_slash) {
  size_t o = 0;
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (unreserved(c) || (keep_slash && c == '/')) {
      out[o++] = (char)c;
    } else {
      out[o++] = '%';
      out[o++] = HEX[c >> 4];
      out[o++] = HEX[c & 15];
    }
  }
  return o;
}

int hg_sigv4_uri_encode(hg_buf_t *out, const char *s, size_t n, int keep_slash) {
  size_t k = encoded_len(s, n, keep_slash);
  int rc = hg_buf_reserve(out, k);
  if (rc) return rc;
  out->len += encode_to(out->data + out->len, s, n, keep_slash);
  out->data[out->len] = '\0';
  return 0;
}

static char *encode_dup(const char *s, size_t n, int keep_slash, size_t *len) {
  size_t k = encoded_len(s, n, keep_slash);
  char *p = malloc(k + 1);
  if (p == NULL) return NULL;
  encode_to(p, s, n, keep_slash);
  p[k] = '\0';
  *len = k;
  return p;
}

/* ---- time ---------------------------------------------------------------------------- */

#define MAX_TIME INT64_C(253402300799) /* 9999-12-31T23:59:59Z */

/* Days since 1970-01-01 → civil date (H. Hinnant's algorithm; no locks, unlike
 * gmtime_r, which takes glibc's tz lock). */
static void civil(int64_t days, int *y, int *m, int *d) {
  days += 719468;
  int64_t era = days / 146097;
  int64_t doe = days - era * 146097;
  int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  int64_t yy = yoe + era * 400;
  int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  int64_t mp = (5 * doy + 2) / 153;
  *d = (int)(doy - (153 * mp + 2) / 5 + 1);
  *m = (int)(mp < 10 ? mp + 3 : mp - 9);
  *y = (int)(yy + (*m <= 2));
}

static int64_t days_from_civil(int y, int m, int d) {
  y -= m <= 2;
  int64_t era = y / 400;
  int64_t yoe = y - era * 400;
  int64_t doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
  int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + doe - 719468;
}

static void put2(char *p, int v) {
  p[0] = (char)('0' + v / 10);
  p[1] = (char)('0' + v % 10);
}

int hg_sigv4_format_time(int64_t t, char out[17]) {
  if (t < 0 || t > MAX_TIME) return HG_EINVAL;
  int y, m, d;
  int64_t days = t / 86400, secs = t % 86400;
  civil(days, &y, &m, &d);
  put2(out, y / 100);
  put2(out + 2, y % 100);
  put2(out + 4, m);
  put2(out + 6, d);
  out[8] = 'T';
  put2(out + 9, (int)(secs / 3600));
  put2(out + 11, (int)(secs / 60 % 60));
  put2(out + 13, (int)(secs % 60));
  out[15] = 'Z';
  out[16] = '\0';
  return 0;
}

static int num(const char *s, int n, int *v) {
  *v = 0;
  for (int i = 0; i < n; i++) {
    if (s[i] < '0' || s[i] > '9') return -1;
    *v = *v * 10 + (s[i] - '0');
  }
  return 0;
}

int hg_sigv4_parse_time(const char *s, size_t n, int64_t *t) {
  int y, mo, d, h, mi, se;
  if (n == 16 && s[8] == 'T' && s[15] == 'Z') { /* 20130524T000000Z */
    if (num(s, 4, &y) || num(s + 4, 2, &mo) || num(s + 6, 2, &d) || num(s + 9, 2, &h) ||
        num(s + 11, 2, &mi) || num(s + 13, 2, &se))
      return HG_EPARSE;
  } else if (n == 20 && s[4] == '-' && s[7] == '-' && s[10] == 'T' && s[13] == ':' &&
             s[16] == ':' && s[19] == 'Z') { /* 2013-05-24T00:00:00Z */
    if (num(s, 4, &y) || num(s + 5, 2, &mo) || num(s + 8, 2, &d) || num(s + 11, 2, &h) ||
        num(s + 14, 2, &mi) || num(s + 17, 2, &se))
      return HG_EPARSE;
  } else {
    return HG_EPARSE;
  }
  static const int mdays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  if (y < 1970 || mo < 1 || mo > 12 || d < 1 || d > mdays[mo - 1] || h > 23 || mi > 59 ||
      se > 59)
    return HG_EPARSE;
  int leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
  if (mo == 2 && d == 29 && !leap) return HG_EPARSE;
  *t = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + se;
  return 0;
}

/* ---- signer ---------------------------------------------------------------------------- */

static int scope_word_ok(const char *s) {
  size_t n = strlen(s);
  if (n == 0 || n > 63) return 0;
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
          c == '-' || c == '_'))
      return 0;
  }
  return 1;
}

hg_sigv4_t *hg_sigv4_new(const hg_sigv4_config_t *cfg) {
  if (cfg == NULL || cfg->access_key == NULL || cfg->secret_key == NULL ||
      !cfg->access_key[0] || !cfg->secret_key[0])
    return NULL;
  const char *region = cfg->region ? cfg->region : "us-east-1";
  const char *service = cfg->service ? cfg->service : "s3";
  if (!scope_word_ok(region) || !scope_word_ok(service)) return NULL;
  /* security: the access key goes into a header value; refuse control characters */
  for (const char *p = cfg->access_key; *p; p++)
    if ((unsigned char)*p < 0x20 || *p == 0x7f) return NULL;
  if (cfg->session_token)
    for (const char *p = cfg->session_token; *p; p++)
      if ((unsigned char)*p < 0x20 || *p == 0x7f) return NULL;

  hg_sigv4_t *s = calloc(1, sizeof(*s));
  if (s == NULL) return NULL;
  s->last_t = -1;
  snprintf(s->region, sizeof(s->region), "%s", region);
  snprintf(s->service, sizeof(s->service), "%s", service);
  s->ak_len = strlen(cfg->access_key);
  s->ak = strdup(cfg->access_key);
  s->ak_enc = encode_dup(cfg->access_key, s->ak_len, 0, &s->ak_enc_len);
  int ok = s->ak && s->ak_enc;
  if (cfg->session_token && cfg->session_token[0]) {
    s->token_len = strlen(cfg->session_token);
    s->token = strdup(cfg->session_token);
    s->token_enc = encode_dup(cfg->session_token, s->token_len, 0, &s->token_enc_len);
    ok = ok && s->token && s->token_enc;
  }
  hg_buf_t t = HG_BUF_INIT;
  ok = ok && !hg_buf_printf(&t, "/%s/%s/aws4_request", region, service);
  if (ok) {
    s->tail_len = t.len;
    s->tail = hg_buf_steal(&t, NULL);
    s->tail_enc = encode_dup(s->tail, s->tail_len, 0, &s->tail_enc_len);
    ok = s->tail_enc != NULL;
  }
  hg_buf_free(&t);
  if (ok) {
    /* kSecret = "AWS4" + secret; only its HMAC state is kept */
    size_t sl = strlen(cfg->secret_key);
    char *k = malloc(sl + 4);
    ok = k != NULL;
    if (ok) {
      memcpy(k, "AWS4", 4);
      memcpy(k + 4, cfg->secret_key, sl);
      ok = hg_hmac_key_init(&s->ksecret, HG_HASH_SHA256, k, sl + 4) == 0;
      mbedtls_platform_zeroize(k, sl + 4); /* security */
      free(k);
    }
  }
  if (!ok) {
    hg_sigv4_free(s);
    return NULL;
  }
  return s;
}

void hg_sigv4_free(hg_sigv4_t *s) {
  if (s == NULL) return;
  free(s->ak);
  free(s->ak_enc);
  if (s->token) mbedtls_platform_zeroize(s->token, s->token_len);
  free(s->token);
  if (s->token_enc) mbedtls_platform_zeroize(s->token_enc, s->token_enc_len);
  free(s->token_enc);
  free(s->tail);
  free(s->tail_enc);
  hg_buf_free(&s->scratch);
  mbedtls_platform_zeroize(s, sizeof(*s)); /* security: derived keys */
  free(s);
}

/* Returns the HMAC state of the signing key for `date` (8 chars), deriving and caching
 * it on a miss: kSigning = HMAC(HMAC(HMAC(HMAC("AWS4"+secret, date), region), service),
 * "aws4_request"). */
static const hg_hmac_key_t *signing_key(hg_sigv4_t *s, const char *date) {
  unsigned tick = ++s->tick;
  int victim = 0;
  for (int i = 0; i < CACHE_SLOTS; i++) {
    if (s->cache[i].used && memcmp(s->cache[i].date, date, 8) == 0) {
      s->cache[i].stamp = tick;
      return &s->cache[i].k;
    }
    if (!s->cache[i].used || s->cache[i].stamp < s->cache[victim].stamp) victim = i;
    if (!s->cache[i].used) break;
  }
  unsigned char k1[32], k2[32];
  hg_hmac_key_t hk;
  const char *words[3] = {s->region, s->service, "aws4_request"};
  const void *part[1] = {date};
  size_t len = 8;
  hg_hmac_key_mac(&s->ksecret, part, &len, 1, k1); /* kDate */
  for (int i = 0; i < 3; i++) {
    hg_hmac_key_init(&hk, HG_HASH_SHA256, k1, 32);
    part[0] = words[i];
    len = strlen(words[i]);
    hg_hmac_key_mac(&hk, part, &len, 1, k2);
    memcpy(k1, k2, 32);
  }
  hg_hmac_key_init(&s->cache[victim].k, HG_HASH_SHA256, k1, 32);
  memcpy(s->cache[victim].date, date, 8);
  s->cache[victim].used = 1;
  s->cache[victim].stamp = tick;
  /* security: intermediate keys */
  mbedtls_platform_zeroize(k1, sizeof(k1));
  mbedtls_platform_zeroize(k2, sizeof(k2));
  hg_hmac_key_wipe(&hk);
  return &s->cache[victim].k;
}

/* ---- canonical request ----------------------------------------------------------------- */

/* A span in the scratch buffer, by offset (the buffer may move while it grows). */
typedef struct {
  size_t off, len;
} span_t;

typedef struct {
  span_t name, value;
  size_t order; /* input position: keeps duplicate headers in the order sent */
} pair_t;

static int cmp_span(const char *base, span_t a, span_t b) {
  size_t n = a.len < b.len ? a.len : b.len;
  int c = memcmp(base + a.off, base + b.off, n);
  if (c) return c;
  return a.len < b.len ? -1 : a.len > b.len;
}

/* Insertion sort by (name, value) or (name, order): n is small and usually presorted. */
static void sort_pairs(const char *base, pair_t *p, size_t n, int by_value) {
  for (size_t i = 1; i < n; i++) {
    pair_t x = p[i];
    size_t j = i;
    while (j > 0) {
      int c = cmp_span(base, p[j - 1].name, x.name);
      if (c == 0) c = by_value ? cmp_span(base, p[j - 1].value, x.value)
                               : (p[j - 1].order > x.order ? 1 : -1);
      if (c <= 0) break;
      p[j] = p[j - 1];
      j--;
    }
    p[j] = x;
  }
}

static int sb_put(hg_buf_t *b, span_t *sp, const char *p, size_t n) {
  sp->off = b->len;
  sp->len = n;
  return hg_buf_append(b, p, n);
}

static int sb_enc(hg_buf_t *b, span_t *sp, const char *p, size_t n) {
  sp->off = b->len;
  int rc = hg_sigv4_uri_encode(b, p, n, 0);
  sp->len = b->len - sp->off;
  return rc;
}

static int is_tchar(unsigned char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
         (c && strchr("!#$%&'*+-.^_`|~", c));
}

/* Appends a header value trimmed and with runs of spaces/tabs folded to one space
 * (SigV4 "Trimall"). Returns 0, HG_EINVAL for CR/LF/NUL (header injection) or ENOMEM. */
static int put_trimmed(hg_buf_t *b, span_t *sp, const char *v, size_t n) {
  sp->off = b->len;
  int rc = hg_buf_reserve(b, n);
  if (rc) return rc;
  char *o = b->data + b->len;
  size_t k = 0;
  int pend_space = 0;
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)v[i];
    if (c == '\r' || c == '\n' || c == '\0') return HG_EINVAL;
    if (c == ' ' || c == '\t') {
      pend_space = k > 0;
      continue;
    }
    if (pend_space) o[k++] = ' ', pend_space = 0;
    o[k++] = (char)c;
  }
  b->len += k;
  b->data[b->len] = '\0';
  sp->len = k;
  return 0;
}

static int is_reserved_header(const char *lname, size_t n) {
  static const char *const names[] = {"host", "authorization", "x-amz-date",
                                      "x-amz-content-sha256", "x-amz-security-token"};
  for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
    if (strlen(names[i]) == n && memcmp(names[i], lname, n) == 0) return 1;
  return 0;
}

/* The whole signing computation. Appends the URL to `url` (if non-NULL); on success
 * fills sig_hex (64 hex + NUL) and, for header mode, the signed-header list span in the
 * scratch buffer. */
static int sign_core(hg_sigv4_t *s, const creq_t *r, hg_buf_t *url, char sig_hex[65],
                     span_t *signed_list, char iso[17]) {
  if (r->npath == 0 || r->path_len[0] == 0 || r->path[0][0] != '/') return HG_EINVAL;
  if (r->nquery > HG_SIGV4_MAX_PARAMS || r->nheaders > HG_SIGV4_MAX_HEADERS) return HG_ETOOBIG;
  if (r->presign && (r->expires < 1 || r->expires > HG_SIGV4_MAX_EXPIRES)) return HG_EINVAL;
  for (const char *m = r->method; *m; m++)
    if (!is_tchar((unsigned char)*m)) return HG_EINVAL;
  if (!r->method[0] || r->host_len == 0) return HG_EINVAL;
  for (size_t i = 0; i < r->host_len; i++) {
    unsigned char c = (unsigned char)r->host[i];
    if (c <= 0x20 || c == 0x7f || c == '/' || c == '?' || c == '#' || c == '@')
      return HG_EINVAL; /* security: the host is both a header value and URL authority */
  }
  for (const char *p = r->payload; *p; p++)
    if ((unsigned char)*p < 0x20) return HG_EINVAL;

  /* Date: the per-signer memo avoids reformatting for every segment of a playlist. */
  if (r->time != s->last_t) {
    if (hg_sigv4_format_time(r->time, s->last_iso)) return HG_EINVAL;
    s->last_t = r->time;
  }
  memcpy(iso, s->last_iso, 17);

  hg_buf_t *sb = &s->scratch;
  hg_buf_clear(sb);
  int rc = 0;

  /* Canonical headers: lowercased names, trimmed values, sorted; duplicates joined. */
  pair_t hp[HG_SIGV4_MAX_HEADERS + 4];
  size_t nh = 0;
  rc = rc ? rc : sb_put(sb, &hp[nh].name, "host", 4);
  rc = rc ? rc : put_trimmed(sb, &hp[nh].value, r->host, r->host_len);
  hp[nh].order = nh, nh++;
  for (size_t i = 0; i < r->nheaders && !rc; i++) {
    const hg_sigv4_kv_t *h = &r->headers[i];
    if (h->name_len == 0) return HG_EINVAL;
    hp[nh].name.off = sb->len;
    hp[nh].name.len = h->name_len;
    if ((rc = hg_buf_append(sb, h->name, h->name_len))) break;
    char *ln = sb->data + hp[nh].name.off;
    for (size_t k = 0; k < h->name_len; k++) {
      if (!is_tchar((unsigned char)ln[k])) return HG_EINVAL;
      if (ln[k] >= 'A' && ln[k] <= 'Z') ln[k] = (char)(ln[k] - 'A' + 'a');
    }
    if (is_reserved_header(ln, h->name_len)) return HG_EINVAL;
    rc = put_trimmed(sb, &hp[nh].value, h->value ? h->value : "", h->value ? h->value_len : 0);
    hp[nh].order = nh, nh++;
  }
  if (!r->presign) {
    if (r->content_sha256 && !rc) {
      rc = sb_put(sb, &hp[nh].name, "x-amz-content-sha256", 20);
      rc = rc ? rc : sb_put(sb, &hp[nh].value, r->payload, strlen(r->payload));
      hp[nh].order = nh, nh++;
    }
    rc = rc ? rc : sb_put(sb, &hp[nh].name, "x-amz-date", 10);
    rc = rc ? rc : sb_put(sb, &hp[nh].value, iso, 16);
    hp[nh].order = nh, nh++;
    if (s->token && !rc) {
      rc = sb_put(sb, &hp[nh].name, "x-amz-security-token", 20);
      rc = rc ? rc : sb_put(sb, &hp[nh].value, s->token, s->token_len);
      hp[nh].order = nh, nh++;
    }
  }
  if (rc) return rc;
  sort_pairs(sb->data, hp, nh, 0);

  /* Canonical header block and signed-header list, in scratch. They are copied from
   * scratch into scratch, so reserve everything first: no realloc may move the source. */
  size_t need = 0;
  for (size_t i = 0; i < nh; i++) need += 2 * hp[i].name.len + hp[i].value.len + 3;
  need *= 4; /* room for the encoded list (';' becomes %3B) */
  if ((rc = hg_buf_reserve(sb, need))) return rc;
  span_t cheaders, slist, slist_enc;
  cheaders.off = sb->len;
  for (size_t i = 0; i < nh && !rc; i++) {
    int first = i == 0 || cmp_span(sb->data, hp[i - 1].name, hp[i].name) != 0;
    int last = i + 1 == nh || cmp_span(sb->data, hp[i + 1].name, hp[i].name) != 0;
    if (first) {
      rc = hg_buf_append(sb, sb->data + hp[i].name.off, hp[i].name.len);
      rc = rc ? rc : hg_buf_putc(sb, ':');
    } else {
      rc = hg_buf_putc(sb, ',');
    }
    rc = rc ? rc : hg_buf_append(sb, sb->data + hp[i].value.off, hp[i].value.len);
    if (last && !rc) rc = hg_buf_putc(sb, '\n');
  }
  cheaders.len = sb->len - cheaders.off;
  slist.off = sb->len;
  for (size_t i = 0; i < nh && !rc; i++) {
    if (i > 0 && cmp_span(sb->data, hp[i - 1].name, hp[i].name) == 0) continue;
    if (i > 0) rc = hg_buf_putc(sb, ';');
    rc = rc ? rc : hg_buf_append(sb, sb->data + hp[i].name.off, hp[i].name.len);
  }
  slist.len = sb->len - slist.off;
  slist_enc.off = sb->len;
  if (!rc && r->presign) rc = hg_sigv4_uri_encode(sb, sb->data + slist.off, slist.len, 0);
  slist_enc.len = sb->len - slist_enc.off;
  if (rc) return rc;

  /* Query parameters: encoded, then sorted by name and value. */
  pair_t qp[HG_SIGV4_MAX_PARAMS + 6];
  size_t nq = 0;
  for (size_t i = 0; i < r->nquery && !rc; i++) {
    const hg_sigv4_kv_t *q = &r->query[i];
    if (r->presign && q->name_len >= 6 && strncasecmp(q->name, "x-amz-", 6) == 0)
      return HG_EINVAL; /* the signer owns X-Amz-* in a presign */
    rc = sb_enc(sb, &qp[nq].name, q->name, q->name_len);
    rc = rc ? rc : sb_enc(sb, &qp[nq].value, q->value ? q->value : "", q->value ? q->value_len : 0);
    qp[nq].order = nq, nq++;
  }
  if (r->presign && !rc) {
    char exp[16]; /* decimal expires, without snprintf on the hot path */
    size_t en = 0;
    for (uint32_t v = r->expires; v; v /= 10) exp[en++] = (char)('0' + v % 10);
    for (size_t i = 0; i < en / 2; i++) {
      char t = exp[i];
      exp[i] = exp[en - 1 - i];
      exp[en - 1 - i] = t;
    }
    rc = sb_put(sb, &qp[nq].name, "X-Amz-Algorithm", 15);
    rc = rc ? rc : sb_put(sb, &qp[nq].value, "AWS4-HMAC-SHA256", 16);
    nq++;
    rc = rc ? rc : sb_put(sb, &qp[nq].name, "X-Amz-Credential", 16);
    qp[nq].value.off = sb->len;
    rc = rc ? rc : hg_buf_append(sb, s->ak_enc, s->ak_enc_len);
    rc = rc ? rc : hg_buf_append(sb, "%2F", 3);
    rc = rc ? rc : hg_buf_append(sb, iso, 8);
    rc = rc ? rc : hg_buf_append(sb, s->tail_enc, s->tail_enc_len);
    qp[nq].value.len = sb->len - qp[nq].value.off;
    nq++;
    rc = rc ? rc : sb_put(sb, &qp[nq].name, "X-Amz-Date", 10);
    rc = rc ? rc : sb_put(sb, &qp[nq].value, iso, 16);
    nq++;
    rc = rc ? rc : sb_put(sb, &qp[nq].name, "X-Amz-Expires", 13);
    rc = rc ? rc : sb_put(sb, &qp[nq].value, exp, en);
    nq++;
    if (s->token) {
      rc = rc ? rc : sb_put(sb, &qp[nq].name, "X-Amz-Security-Token", 20);
      rc = rc ? rc : sb_put(sb, &qp[nq].value, s->token_enc, s->token_enc_len);
      nq++;
    }
    rc = rc ? rc : sb_put(sb, &qp[nq].name, "X-Amz-SignedHeaders", 19);
    qp[nq].value = slist_enc;
    nq++;
  }
  if (rc) return rc;
  sort_pairs(sb->data, qp, nq, 1);

  /* URL: [scheme://host] + encoded path + [?canonical query]. Its path and query are
   * exactly the canonical URI and query, so they are hashed from there. */
  hg_buf_t tmp = HG_BUF_INIT;
  hg_buf_t *u = url ? url : &tmp;
  size_t ustart = u->len;
  if (r->scheme) {
    rc = hg_buf_puts(u, r->scheme);
    rc = rc ? rc : hg_buf_append(u, "://", 3);
    rc = rc ? rc : hg_buf_append(u, r->host, r->host_len);
  }
  size_t path_off = u->len;
  for (int i = 0; i < r->npath && !rc; i++)
    rc = hg_sigv4_uri_encode(u, r->path[i], r->path_len[i], 1);
  size_t path_end = u->len;
  if (nq && !rc) rc = hg_buf_putc(u, '?');
  size_t q_off = u->len;
  for (size_t i = 0; i < nq && !rc; i++) {
    if (i) rc = hg_buf_putc(u, '&');
    rc = rc ? rc : hg_buf_append(u, sb->data + qp[i].name.off, qp[i].name.len);
    rc = rc ? rc : hg_buf_putc(u, '=');
    rc = rc ? rc : hg_buf_append(u, sb->data + qp[i].value.off, qp[i].value.len);
  }
  size_t q_end = u->len;
  if (rc) {
    u->len = ustart;
    if (u->data) u->data[ustart] = '\0';
    hg_buf_free(&tmp);
    return rc;
  }

  /* Canonical request, streamed into SHA-256. */
  unsigned char h[32];
  char hex[65];
  hg_sha256_t c;
  hg_sha256_init(&c);
#define UPD(p, n) hg_sha256_update(&c, (p), (n))
  UPD(r->method, strlen(r->method));
  UPD("\n", 1);
  UPD(u->data + path_off, path_end - path_off);
  UPD("\n", 1);
  UPD(u->data + q_off, q_end - q_off);
  UPD("\n", 1);
  UPD(sb->data + cheaders.off, cheaders.len);
  UPD("\n", 1);
  UPD(sb->data + slist.off, slist.len);
  UPD("\n", 1);
  UPD(r->payload, strlen(r->payload));
#undef UPD
  hg_sha256_final(&c, h);
  hg_hex(h, 32, hex);

  /* String to sign: algorithm, time, scope, hash of the canonical request. */
  char sts[17 + 17 + 8 + 256 + 64];
  size_t k = 0;
  memcpy(sts + k, "AWS4-HMAC-SHA256\n", 17), k += 17;
  memcpy(sts + k, iso, 16), k += 16;
  sts[k++] = '\n';
  memcpy(sts + k, iso, 8), k += 8;
  memcpy(sts + k, s->tail, s->tail_len), k += s->tail_len; /* tail <= 1+63+1+63+13 */
  sts[k++] = '\n';
  memcpy(sts + k, hex, 64), k += 64;
  const void *part[1] = {sts};
  unsigned char mac[32];
  hg_hmac_key_mac(signing_key(s, iso), part, &k, 1, mac);
  hg_hex(mac, 32, sig_hex);
  mbedtls_platform_zeroize(mac, sizeof(mac));
  if (signed_list) *signed_list = slist;
  hg_buf_free(&tmp);
  return 0;
}

static int creq_from(const hg_sigv4_req_t *req, creq_t *r, int presign) {
  if (req == NULL || req->method == NULL || req->host == NULL || req->path == NULL)
    return HG_EINVAL;
  memset(r, 0, sizeof(*r));
  r->method = req->method;
  r->scheme = req->scheme;
  r->host = req->host;
  r->host_len = strlen(req->host);
  r->path[0] = req->path;
  r->path_len[0] = req->path_len;
  r->npath = 1;
  r->query = req->query;
  r->nquery = req->nquery;
  r->headers = req->headers;
  r->nheaders = req->nheaders;
  r->time = req->time;
  r->expires = req->expires;
  r->presign = presign;
  r->content_sha256 = !(req->flags & HG_SIGV4_NO_CONTENT_SHA256);
  r->payload = req->payload_hash
                   ? req->payload_hash
                   : presign ? HG_SIGV4_UNSIGNED_PAYLOAD : HG_SIGV4_EMPTY_SHA256;
  if ((r->nquery && !r->query) || (r->nheaders && !r->headers)) return HG_EINVAL;
  return 0;
}

int hg__sigv4_presign(hg_sigv4_t *s, const creq_t *r, hg_buf_t *url) {
  size_t start = url->len;
  char sig[65], iso[17];
  int rc = sign_core(s, r, url, sig, NULL, iso);
  if (rc) return rc;
  rc = hg_buf_append(url, "&X-Amz-Signature=", 17);
  rc = rc ? rc : hg_buf_append(url, sig, 64);
  if (rc) {
    url->len = start;
    if (url->data) url->data[start] = '\0';
  }
  return rc;
}

int hg__sigv4_sign_headers(hg_sigv4_t *s, const creq_t *r, hg_buf_t *url, hg_buf_t *authz,
                           hg_sigv4_auth_t *out) {
  size_t ustart = url ? url->len : 0, astart = authz->len;
  char sig[65];
  span_t slist;
  int rc = sign_core(s, r, url, sig, &slist, out->amz_date);
  if (rc) return rc;
  rc = hg_buf_append(authz, "AWS4-HMAC-SHA256 Credential=", 28);
  rc = rc ? rc : hg_buf_append(authz, s->ak, s->ak_len);
  rc = rc ? rc : hg_buf_putc(authz, '/');
  rc = rc ? rc : hg_buf_append(authz, out->amz_date, 8);
  rc = rc ? rc : hg_buf_append(authz, s->tail, s->tail_len);
  rc = rc ? rc : hg_buf_append(authz, ", SignedHeaders=", 16);
  rc = rc ? rc : hg_buf_append(authz, s->scratch.data + slist.off, slist.len);
  rc = rc ? rc : hg_buf_append(authz, ", Signature=", 12);
  rc = rc ? rc : hg_buf_append(authz, sig, 64);
  if (rc) {
    authz->len = astart;
    if (authz->data) authz->data[astart] = '\0';
    if (url) {
      url->len = ustart;
      if (url->data) url->data[ustart] = '\0';
    }
    return rc;
  }
  out->content_sha256 = r->content_sha256 ? r->payload : NULL;
  out->security_token = s->token;
  return 0;
}

int hg_sigv4_presign(hg_sigv4_t *s, const hg_sigv4_req_t *req, hg_buf_t *url) {
  creq_t r;
  if (s == NULL || url == NULL || creq_from(req, &r, 1)) return HG_EINVAL;
  return hg__sigv4_presign(s, &r, url);
}

int hg_sigv4_sign(hg_sigv4_t *s, const hg_sigv4_req_t *req, hg_buf_t *url, hg_buf_t *authz,
                  hg_sigv4_auth_t *out) {
  creq_t r;
  if (s == NULL || authz == NULL || out == NULL || creq_from(req, &r, 0)) return HG_EINVAL;
  return hg__sigv4_sign_headers(s, &r, url, authz, out);
}
