/* json.h — a small strict JSON (RFC 8259) validator and reader, for JWT headers and
 * claims: internal to src/crypto (hg__ prefix).
 *
 * Strict means: exactly one value, optional surrounding whitespace, no BOM, no comments,
 * no trailing commas, valid UTF-8, no lone surrogate escapes, bounded nesting, and no
 * duplicate member names in any object (compared after unescaping, so "al\u0067" and
 * "alg" collide). Nothing is allocated: values are spans into the caller's text. Pure;
 * any thread.
 */
#ifndef HG_CRYPTO_JSON_H
#define HG_CRYPTO_JSON_H

#include <stddef.h>

typedef enum hg_json_type_e {
  HG_JSON_OBJECT = 1,
  HG_JSON_ARRAY,
  HG_JSON_STRING,
  HG_JSON_NUMBER,
  HG_JSON_TRUE,
  HG_JSON_FALSE,
  HG_JSON_NULL,
} hg_json_type_t;

/* A value: its type and raw text. For strings, p/n is the text between the quotes
 * (escapes not yet decoded). */
typedef struct hg_json_val_s {
  hg_json_type_t type;
  const char *p;
  size_t n;
} hg_json_val_t;

#define HG_JSON_MAX_DEPTH 32   /* nesting of arrays/objects */
#define HG_JSON_MAX_KEYS 256   /* member names open at once (duplicate detection) */

/* Called for each member of the top-level object, in order. Return 0 to go on, or a
 * negative code to stop the walk (returned by hg__json_object_each). */
typedef int (*hg__json_member_fn)(void *ud, const hg_json_val_t *key, const hg_json_val_t *val);

/* Validates s[0..n) as one strict JSON text and describes its top value in *out.
 * Returns 0, or HG_EPARSE with *why set to a static reason ("malformed JSON",
 * "duplicate member name", "JSON nested too deeply", "JSON has too many members"). */
int hg__json_parse(const char *s, size_t n, hg_json_val_t *out, const char **why);

/* Walks the members of `obj`, an object value returned by hg__json_parse (so already
 * valid). Returns 0 or the first non-zero result of fn. */
int hg__json_object_each(const hg_json_val_t *obj, hg__json_member_fn fn, void *ud);

/* 1 if the decoded string value `v` equals lit[0..n) byte for byte, else 0. */
int hg__json_str_eq(const hg_json_val_t *v, const char *lit, size_t n);

/* Decodes the string value `v` (UTF-8) into out[0..cap) plus a NUL; *len gets its length.
 * Returns 0, or HG_ETOOBIG when it does not fit. */
int hg__json_str_decode(const hg_json_val_t *v, char *out, size_t cap, size_t *len);

/* Converts the number value `v` to a double. Returns 0, or HG_EPARSE when
 * the value is not finite. */
int hg__json_number(const hg_json_val_t *v, double *out);

#endif
