/* jwt.h — JSON Web Tokens in JWS compact form with HMAC (HS256/HS384/HS512): sign, and
 * verify with the algorithm pinned by the caller, key ids for rotation, and exp/nbf/iat
 * checked with a leeway (RFC 7515, 7518 §3.2, 7519, 8725).
 *
 * Pure functions: no global state; any thread. Failures come with a short static reason
 * ("alg none not allowed", "crit header not supported", "bad segment count", ...) fit for
 * a log line or a 401 body; the reasons never contain token or key material.
 */
#ifndef HG_CRYPTO_JWT_H
#define HG_CRYPTO_JWT_H

#include <stddef.h>

#include "base/buf.h"

typedef enum hg_jwt_alg_e { HG_JWT_HS256 = 1, HG_JWT_HS384, HG_JWT_HS512 } hg_jwt_alg_t;

#define HG_JWT_MAX_LEN 16384 /* longest token verify accepts (bounds all the work) */

/* "HS256"/"HS384"/"HS512" (exact case, as on the wire) → alg; 0 for anything else,
 * "none" included. */
hg_jwt_alg_t hg_jwt_alg_from_name(const char *name, size_t n);

/* The wire name of `alg`, or NULL. Static. */
const char *hg_jwt_alg_name(hg_jwt_alg_t alg);

/* A verification key. `kid` NULL means "no key id": such a key is tried for every token.
 * A key with a kid is tried only for tokens whose header carries that kid. */
typedef struct hg_jwt_key_s {
  const char *kid;
  const void *secret;
  size_t secret_len;
} hg_jwt_key_t;

/* Appends a compact JWS to `out`: header {"alg":...,"typ":"JWT"[,"kid":...]}, payload
 * claims[0..claims_len) exactly as given, which must be a strict JSON object (so we never
 * mint a token we would refuse). Returns 0, HG_EINVAL (bad alg, empty secret; reason
 * set), HG_EPARSE (claims are not a strict JSON object; reason set) or HG_ENOMEM; `out`
 * is unchanged on failure. `reason` may be NULL. */
int hg_jwt_sign(hg_buf_t *out, hg_jwt_alg_t alg, const char *kid, const void *secret,
                size_t secret_len, const char *claims, size_t claims_len, const char **reason);

#define HG_JWT_REQUIRE_EXP 1u /* reject tokens without an exp claim */

typedef struct hg_jwt_verify_opts_s {
  hg_jwt_alg_t alg;          /* the only algorithm accepted: required */
  const hg_jwt_key_t *keys;  /* candidate keys, tried in order */
  size_t nkeys;
  double now;                /* current time, unix seconds */
  double leeway;             /* seconds of clock skew allowed on exp, nbf and iat (>= 0) */
  double max_age;            /* > 0: also reject when now - iat > max_age (iat required) */
  unsigned flags;            /* HG_JWT_REQUIRE_EXP */
} hg_jwt_verify_opts_t;

/* Verifies token[0..n) and, on success, appends its claims (the decoded payload, a
 * strict JSON object) to `claims` (which may be NULL). Checks, in order: length and
 * segment count, strict base64url of all three segments, the header (a JSON object with
 * unique names, a string `alg` equal to opts->alg, no `crit`, `kid` a string if
 * present), the MAC in constant time against each candidate key, the claims (a JSON
 * object with unique names; exp/nbf/iat numbers if present), then the times:
 * now - leeway >= exp, now + leeway < nbf, now + leeway < iat are rejected.
 * Returns 0, or HG_EPARSE (malformed), HG_EBADALG (alg missing, none or not the pinned
 * one), HG_EINVAL (crit, missing required claim, bad opts), HG_ENOKEY (no key for the
 * kid), HG_EBADSIG, HG_EEXPIRED, HG_ENOTYET, HG_ENOMEM; *reason (if non-NULL) gets a
 * static string on failure and NULL on success. `claims` is unchanged on failure. */
int hg_jwt_verify(const char *token, size_t n, const hg_jwt_verify_opts_t *opts,
                  hg_buf_t *claims, const char **reason);

/* For each of names[0..n) (NUL-terminated), the raw JSON text of that member of the claims
 * object claims[0..len) (as hg_jwt_verify appended it; compared after unescaping, strings
 * with their quotes) in vals[i], lens[i]; NULL, 0 when absent. Returns 0, or HG_EPARSE when
 * claims is not a JSON object. The spans point into claims. Pure; any thread. */
int hg_jwt_claims_find(const char *claims, size_t len, const char *const *names, size_t n,
                       const char **vals, size_t *lens);

#endif
