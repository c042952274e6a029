/* jwt.c — HS256/384/512 JWS compact tokens (see jwt.h).
 *
 * Verification never lets the token choose anything security-relevant: the algorithm is
 * the caller's (RFC 8725 §3.1), keys come from the caller's list (kid only narrows it),
 * parsing is strict (one canonical base64url form, unique JSON names) so that no other
 * parser can read a different meaning out of a token we accepted, and MACs are compared
 * in constant time. The claims are parsed only after the MAC has been checked.
 */
#include "crypto/jwt.h"

#include <string.h>
#include <strings.h>

#include <mbedtls/platform_util.h>

#include "base/error.h"
#include "crypto/hash.h"
#include "crypto/json.h"

#define HEADER_MAX 2048 /* decoded header bytes; real headers are < 200 */

static const struct {
  const char *name;
  hg_hash_alg_t hash;
} algs[] = {
    [HG_JWT_HS256] = {"HS256", HG_HASH_SHA256},
    [HG_JWT_HS384] = {"HS384", HG_HASH_SHA384},
    [HG_JWT_HS512] = {"HS512", HG_HASH_SHA512},
};

static int alg_ok(hg_jwt_alg_t a) { return a >= HG_JWT_HS256 && a <= HG_JWT_HS512; }

hg_jwt_alg_t hg_jwt_alg_from_name(const char *name, size_t n) {
  for (int a = HG_JWT_HS256; a <= HG_JWT_HS512; a++)
    if (n == 5 && memcmp(name, algs[a].name, 5) == 0) return (hg_jwt_alg_t)a;
  return 0;
}

const char *hg_jwt_alg_name(hg_jwt_alg_t alg) { return alg_ok(alg) ? algs[alg].name : NULL; }

static int failr(const char **reason, const char *why, int code) {
  if (reason) *reason = why;
  return code;
}

/* What the claims walk collects: the registered time claims. */
typedef struct {
  double exp, nbf, iat;
  int has_exp, has_nbf, has_iat;
  const char *bad; /* first claim of the wrong type */
} claims_t;

static int claims_member(void *ud, const hg_json_val_t *key, const hg_json_val_t *val) {
  claims_t *c = ud;
  static const char *const names[] = {"exp", "nbf", "iat"};
  static const char *const bad[] = {"exp is not a number", "nbf is not a number",
                                    "iat is not a number"};
  double *dst[] = {&c->exp, &c->nbf, &c->iat};
  int *has[] = {&c->has_exp, &c->has_nbf, &c->has_iat};
  for (int i = 0; i < 3; i++) {
    if (!hg__json_str_eq(key, names[i], 3)) continue;
    /* RFC 7519 §2: a NumericDate is a JSON number ("1300819380" is not one, T14) */
    if (val->type != HG_JSON_NUMBER || hg__json_number(val, dst[i])) {
      if (!c->bad) c->bad = bad[i];
    } else {
      *has[i] = 1;
    }
  }
  return 0;
}

int hg_jwt_sign(hg_buf_t *out, hg_jwt_alg_t alg, const char *kid, const void *secret,
                size_t secret_len, const char *claims, size_t claims_len, const char **reason) {
  if (reason) *reason = NULL;
  if (!alg_ok(alg)) return failr(reason, "unsupported alg", HG_EINVAL);
  if (secret == NULL || secret_len == 0) return failr(reason, "empty key", HG_EINVAL);
  hg_json_val_t v;
  const char *why;
  if (hg__json_parse(claims, claims_len, &v, &why))
    return failr(reason, why, HG_EPARSE);
  if (v.type != HG_JSON_OBJECT) return failr(reason, "claims are not a JSON object", HG_EPARSE);
  /* Time claims of the wrong type would make verify refuse the token: refuse them here. */
  claims_t c;
  memset(&c, 0, sizeof(c));
  hg__json_object_each(&v, claims_member, &c);
  if (c.bad) return failr(reason, c.bad, HG_EPARSE);

  hg_buf_t hdr = HG_BUF_INIT;
  int rc = hg_buf_printf(&hdr, "{\"alg\":\"%s\",\"typ\":\"JWT\"", algs[alg].name);
  if (!rc && kid) {
    rc = hg_buf_puts(&hdr, ",\"kid\":\"");
    if (!rc) rc = hg_buf_json_escape(&hdr, kid, strlen(kid));
    if (!rc) rc = hg_buf_putc(&hdr, '"');
  }
  if (!rc) rc = hg_buf_putc(&hdr, '}');

  size_t start = out->len, hs = hg_hash_size(algs[alg].hash);
  size_t need = hg_base64_encoded_len(hdr.len, HG_BASE64URL) +
                hg_base64_encoded_len(claims_len, HG_BASE64URL) +
                hg_base64_encoded_len(hs, HG_BASE64URL) + 2;
  if (!rc) rc = hg_buf_reserve(out, need);
  if (!rc) {
    unsigned char mac[HG_HASH_MAX];
    char *p = out->data + start;
    size_t o = hg_base64_encode_to(p, hdr.data, hdr.len, HG_BASE64URL);
    p[o++] = '.';
    o += hg_base64_encode_to(p + o, claims, claims_len, HG_BASE64URL);
    rc = hg_hmac(algs[alg].hash, secret, secret_len, p, o, mac);
    if (!rc) {
      p[o++] = '.';
      o += hg_base64_encode_to(p + o, mac, hs, HG_BASE64URL);
      out->len = start + o;
    }
    mbedtls_platform_zeroize(mac, sizeof(mac));
  }
  hg_buf_free(&hdr);
  if (out->data) out->data[out->len] = '\0';
  return rc;
}

/* What the header walk collects. */
typedef struct {
  hg_json_val_t alg, kid;
  int has_alg, has_kid, has_crit;
  int bad_alg_type, bad_kid_type;
} header_t;

static int header_member(void *ud, const hg_json_val_t *key, const hg_json_val_t *val) {
  header_t *h = ud;
  if (hg__json_str_eq(key, "alg", 3)) {
    h->has_alg = 1;
    h->alg = *val;
    h->bad_alg_type = val->type != HG_JSON_STRING;
  } else if (hg__json_str_eq(key, "kid", 3)) {
    h->has_kid = 1;
    h->kid = *val;
    h->bad_kid_type = val->type != HG_JSON_STRING;
  } else if (hg__json_str_eq(key, "crit", 4)) {
    h->has_crit = 1;
  }
  return 0;
}

/* Strict base64url check of a whole segment (alphabet and canonical tail). */
static int b64url_decode_seg(unsigned char *out, size_t *out_len, const char *s, size_t n) {
  return hg_base64_decode_to(out, out_len, s, n, HG_BASE64URL);
}

static int url_char(unsigned char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
         c == '-' || c == '_';
}

/* Maps a JSON reader reason to the header/claims flavour. */
static const char *json_reason(const char *why, int header) {
  if (why && strcmp(why, "duplicate member name") == 0)
    return header ? "duplicate member in header" : "duplicate member in claims";
  if (why && strcmp(why, "JSON nested too deeply") == 0)
    return header ? "header nested too deeply" : "claims nested too deeply";
  if (why && strcmp(why, "JSON has too many members") == 0)
    return header ? "header has too many members" : "claims have too many members";
  return header ? "header is not valid JSON" : "claims are not valid JSON";
}

int hg_jwt_verify(const char *token, size_t n, const hg_jwt_verify_opts_t *o,
                  hg_buf_t *claims, const char **reason) {
  if (reason) *reason = NULL;
  if (o == NULL || !alg_ok(o->alg) || (o->keys == NULL && o->nkeys) || !(o->leeway >= 0))
    return failr(reason, "bad verify options", HG_EINVAL);
  if (token == NULL || n == 0) return failr(reason, "empty token", HG_EPARSE);
  if (n > HG_JWT_MAX_LEN) return failr(reason, "token too long", HG_EPARSE);

  /* Exactly three segments (RFC 7515 §7.1; a JWE has five). */
  const char *d1 = memchr(token, '.', n);
  const char *d2 = d1 ? memchr(d1 + 1, '.', (size_t)(token + n - d1 - 1)) : NULL;
  if (d1 == NULL || d2 == NULL || memchr(d2 + 1, '.', (size_t)(token + n - d2 - 1)))
    return failr(reason, "bad segment count", HG_EPARSE);
  const char *hseg = token, *pseg = d1 + 1, *sseg = d2 + 1;
  size_t hlen = (size_t)(d1 - token), plen = (size_t)(d2 - pseg), slen = (size_t)(token + n - sseg);

  /* Header: decode, parse, walk. */
  unsigned char hbuf[HEADER_MAX + 2];
  size_t hdec;
  if (hlen == 0) return failr(reason, "empty header", HG_EPARSE);
  if (hlen / 4 * 3 + 2 > HEADER_MAX) return failr(reason, "header too large", HG_EPARSE);
  if (b64url_decode_seg(hbuf, &hdec, hseg, hlen))
    return failr(reason, "malformed base64url in header", HG_EPARSE);
  hg_json_val_t hv;
  const char *why;
  if (hg__json_parse((const char *)hbuf, hdec, &hv, &why))
    return failr(reason, json_reason(why, 1), HG_EPARSE);
  if (hv.type != HG_JSON_OBJECT) return failr(reason, "header is not a JSON object", HG_EPARSE);
  header_t h;
  memset(&h, 0, sizeof(h));
  hg__json_object_each(&hv, header_member, &h);

  /* security: the caller pins the algorithm; the header only has to agree. */
  if (!h.has_alg) return failr(reason, "alg missing", HG_EBADALG);
  if (h.bad_alg_type) return failr(reason, "alg is not a string", HG_EBADALG);
  if (h.alg.n == 4 && strncasecmp(h.alg.p, "none", 4) == 0)
    return failr(reason, "alg none not allowed", HG_EBADALG);
  if (!hg__json_str_eq(&h.alg, algs[o->alg].name, 5))
    return failr(reason, "alg not allowed", HG_EBADALG);
  /* RFC 7515 §4.1.11: we implement no extension, so any crit (even []) is refused. */
  if (h.has_crit) return failr(reason, "crit header not supported", HG_EINVAL);
  if (h.has_kid && h.bad_kid_type) return failr(reason, "kid is not a string", HG_EPARSE);

  /* Signature: canonical base64url of exactly one MAC. */
  size_t hs = hg_hash_size(algs[o->alg].hash);
  unsigned char sig[HG_HASH_MAX + 2], mac[HG_HASH_MAX];
  size_t sdec;
  if (slen == 0) return failr(reason, "missing signature", HG_EBADSIG);
  for (size_t i = 0; i < slen; i++) /* alphabet first: '=', '+', '/', spaces (T20, T24, T25) */
    if (!url_char((unsigned char)sseg[i]))
      return failr(reason, "malformed base64url in signature", HG_EPARSE);
  if (slen != hg_base64_encoded_len(hs, HG_BASE64URL)) /* truncated or extended (T27) */
    return failr(reason, "bad signature length", HG_EBADSIG);
  if (b64url_decode_seg(sig, &sdec, sseg, slen) || sdec != hs) /* non-canonical tail (T26) */
    return failr(reason, "malformed base64url in signature", HG_EPARSE);

  /* Payload: decode into the caller's buffer now (strictness first), parse after MAC. */
  hg_buf_t scratch = HG_BUF_INIT;
  hg_buf_t *pb = claims ? claims : &scratch;
  size_t pstart = pb->len;
  int rc = hg_base64_decode(pb, pseg, plen, HG_BASE64URL);
  if (rc) {
    hg_buf_free(&scratch);
    return failr(reason, rc == HG_ENOMEM ? "out of memory" : "malformed base64url in payload",
                 rc);
  }

  /* MAC over "header.payload" against each candidate key. */
  int found_key = 0, ok = 0;
  for (size_t i = 0; i < o->nkeys && !ok; i++) {
    const hg_jwt_key_t *k = &o->keys[i];
    if (k->kid != NULL) {
      if (!h.has_kid || !hg__json_str_eq(&h.kid, k->kid, strlen(k->kid))) continue;
    }
    if (k->secret == NULL || k->secret_len == 0) continue;
    found_key = 1;
    if (hg_hmac(algs[o->alg].hash, k->secret, k->secret_len, token, (size_t)(d2 - token), mac))
      continue;
    ok = hg_ct_equal(mac, hs, sig, sdec); /* security: constant time */
  }
  mbedtls_platform_zeroize(mac, sizeof(mac));
  const char *fail_why = NULL;
  int fail_rc = 0;
  if (!found_key) {
    fail_why = h.has_kid ? "unknown kid" : "no key";
    fail_rc = HG_ENOKEY;
  } else if (!ok) {
    fail_why = "signature mismatch";
    fail_rc = HG_EBADSIG;
  }

  /* Claims. */
  claims_t c;
  memset(&c, 0, sizeof(c));
  if (!fail_rc) {
    hg_json_val_t cv;
    if (hg__json_parse(pb->data + pstart, pb->len - pstart, &cv, &why)) {
      fail_why = json_reason(why, 0);
      fail_rc = HG_EPARSE;
    } else if (cv.type != HG_JSON_OBJECT) {
      fail_why = "claims are not a JSON object";
      fail_rc = HG_EPARSE;
    } else {
      hg__json_object_each(&cv, claims_member, &c);
      if (c.bad) fail_why = c.bad, fail_rc = HG_EPARSE;
    }
  }

  /* Times (RFC 7519 §4.1.4–6): exp is "on or after", nbf is "before". */
  if (!fail_rc) {
    double now = o->now, lw = o->leeway;
    if (!c.has_exp && (o->flags & HG_JWT_REQUIRE_EXP))
      fail_why = "exp claim required", fail_rc = HG_EINVAL;
    else if (c.has_exp && now - lw >= c.exp)
      fail_why = "token expired", fail_rc = HG_EEXPIRED;
    else if (c.has_nbf && now + lw < c.nbf)
      fail_why = "token not yet valid (nbf)", fail_rc = HG_ENOTYET;
    else if (c.has_iat && now + lw < c.iat)
      fail_why = "token issued in the future (iat)", fail_rc = HG_ENOTYET;
    else if (o->max_age > 0 && !c.has_iat)
      fail_why = "iat claim required", fail_rc = HG_EINVAL;
    else if (o->max_age > 0 && now - lw - c.iat > o->max_age)
      fail_why = "token too old (max_age)", fail_rc = HG_EEXPIRED;
  }

  if (fail_rc) {
    pb->len = pstart;
    if (pb->data) pb->data[pstart] = '\0';
    hg_buf_free(&scratch);
    return failr(reason, fail_why, fail_rc);
  }
  hg_buf_free(&scratch);
  return 0;
}

typedef struct find_s {
  const char *const *names;
  size_t n;
  const char **vals;
  size_t *lens;
} find_t;

static int find_member(void *ud, const hg_json_val_t *key, const hg_json_val_t *val) {
  find_t *f = ud;
  for (size_t i = 0; i < f->n; i++) {
    if (!hg__json_str_eq(key, f->names[i], strlen(f->names[i]))) continue;
    int quoted = val->type == HG_JSON_STRING; /* p/n is the text between the quotes */
    f->vals[i] = val->p - quoted;
    f->lens[i] = val->n + 2 * (size_t)quoted;
  }
  return 0;
}

int hg_jwt_claims_find(const char *claims, size_t len, const char *const *names, size_t n,
                       const char **vals, size_t *lens) {
  for (size_t i = 0; i < n; i++) vals[i] = NULL, lens[i] = 0;
  hg_json_val_t v;
  const char *why;
  if (hg__json_parse(claims, len, &v, &why) || v.type != HG_JSON_OBJECT) return HG_EPARSE;
  find_t f = {names, n, vals, lens};
  return hg__json_object_each(&v, find_member, &f);
}
