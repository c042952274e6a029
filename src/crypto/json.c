/* json.c — strict JSON validator/reader (see json.h).
 *
 * One recursive-descent pass validates everything. Duplicate member names are found by
 * keeping the names of every object still open on a small stack in the parser state
 * (bounded by HG_JSON_MAX_KEYS) and comparing each new name with its siblings after
 * unescaping: a verifier that let "alg" appear twice would let an attacker choose which
 * one other parsers see (RFC 7515 §4, VECTORS.md §2.3 T11–T13).
 */
#include "crypto/json.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"

typedef struct {
  const char *p, *end;
  const char *why;
  hg_json_val_t keys[HG_JSON_MAX_KEYS];
  size_t nkeys;
} parser_t;

static int fail(parser_t *ps, const char *why) {
  if (ps->why == NULL) ps->why = why;
  return HG_EPARSE;
}

static void skip_ws(parser_t *ps) {
  while (ps->p < ps->end &&
         (*ps->p == ' ' || *ps->p == '\t' || *ps->p == '\n' || *ps->p == '\r'))
    ps->p++;
}

static int hexval(unsigned char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

/* Reads 4 hex digits at p (p+4 <= end checked by caller). Returns the value or -1. */
static long hex4(const char *p) {
  long v = 0;
  for (int i = 0; i < 4; i++) {
    int d = hexval((unsigned char)p[i]);
    if (d < 0) return -1;
    v = v << 4 | d;
  }
  return v;
}

/* Length of the valid UTF-8 sequence at p (1..4), or 0 if invalid (overlong forms,
 * surrogates and code points above U+10FFFF are invalid, RFC 3629). */
static size_t utf8_len(const unsigned char *p, const unsigned char *end) {
  unsigned c = p[0];
  if (c < 0x80) return 1;
  size_t n;
  unsigned min, cp;
  if (c >= 0xc2 && c <= 0xdf) n = 2, min = 0x80, cp = c & 0x1f;
  else if (c >= 0xe0 && c <= 0xef) n = 3, min = 0x800, cp = c & 0x0f;
  else if (c >= 0xf0 && c <= 0xf4) n = 4, min = 0x10000, cp = c & 0x07;
  else return 0;
  if ((size_t)(end - p) < n) return 0;
  for (size_t i = 1; i < n; i++) {
    if ((p[i] & 0xc0) != 0x80) return 0;
    cp = cp << 6 | (p[i] & 0x3f);
  }
  if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return 0;
  return n;
}

/* Parses a string starting at the opening quote; out gets the span inside the quotes. */
static int parse_string(parser_t *ps, hg_json_val_t *out) {
  const char *p = ps->p + 1, *end = ps->end;
  const char *start = p;
  while (p < end) {
    unsigned char c = (unsigned char)*p;
    if (c == '"') {
      out->type = HG_JSON_STRING;
      out->p = start;
      out->n = (size_t)(p - start);
      ps->p = p + 1;
      return 0;
    }
    if (c < 0x20) return fail(ps, "malformed JSON");
    if (c == '\\') {
      if (p + 1 >= end) return fail(ps, "malformed JSON");
      char e = p[1];
      if (e == 'u') {
        if (end - p < 6) return fail(ps, "malformed JSON");
        long u = hex4(p + 2);
        if (u < 0) return fail(ps, "malformed JSON");
        p += 6;
        if (u >= 0xdc00 && u <= 0xdfff) return fail(ps, "malformed JSON"); /* lone low */
        if (u >= 0xd800 && u <= 0xdbff) {                                     /* needs a low */
          if (end - p < 6 || p[0] != '\\' || p[1] != 'u') return fail(ps, "malformed JSON");
          long lo = hex4(p + 2);
          if (lo < 0xdc00 || lo > 0xdfff) return fail(ps, "malformed JSON");
          p += 6;
        }
        continue;
      }
      if (!strchr("\"\\/bfnrt", e) || e == '\0') return fail(ps, "malformed JSON");
      p += 2;
      continue;
    }
    size_t k = utf8_len((const unsigned char *)p, (const unsigned char *)end);
    if (k == 0) return fail(ps, "malformed JSON");
    p += k;
  }
  return fail(ps, "malformed JSON");
}

static int digits(parser_t *ps) {
  const char *s = ps->p;
  while (ps->p < ps->end && *ps->p >= '0' && *ps->p <= '9') ps->p++;
  return ps->p > s;
}

static int parse_number(parser_t *ps, hg_json_val_t *out) {
  const char *s = ps->p;
  if (ps->p < ps->end && *ps->p == '-') ps->p++;
  if (ps->p < ps->end && *ps->p == '0') {
    ps->p++;
  } else if (!digits(ps)) {
    return fail(ps, "malformed JSON");
  }
  if (ps->p < ps->end && *ps->p == '.') {
    ps->p++;
    if (!digits(ps)) return fail(ps, "malformed JSON");
  }
  if (ps->p < ps->end && (*ps->p == 'e' || *ps->p == 'E')) {
    ps->p++;
    if (ps->p < ps->end && (*ps->p == '+' || *ps->p == '-')) ps->p++;
    if (!digits(ps)) return fail(ps, "malformed JSON");
  }
  out->type = HG_JSON_NUMBER;
  out->p = s;
  out->n = (size_t)(ps->p - s);
  return 0;
}

static int literal(parser_t *ps, const char *word, hg_json_type_t t, hg_json_val_t *out) {
  size_t n = strlen(word);
  if ((size_t)(ps->end - ps->p) < n || memcmp(ps->p, word, n) != 0)
    return fail(ps, "malformed JSON");
  out->type = t;
  out->p = ps->p;
  out->n = n;
  ps->p += n;
  return 0;
}

/* Byte iterator over a decoded JSON string (the span is known to be valid). */
typedef struct {
  const char *p, *end;
  unsigned char pend[4];
  int npend, ipend;
} striter_t;

static void si_init(striter_t *it, const hg_json_val_t *v) {
  it->p = v->p;
  it->end = v->p + v->n;
  it->npend = it->ipend = 0;
}

/* Next decoded byte, or -1 at the end. */
static int si_next(striter_t *it) {
  if (it->ipend < it->npend) return it->pend[it->ipend++];
  if (it->p >= it->end) return -1;
  unsigned char c = (unsigned char)*it->p;
  if (c != '\\') {
    it->p++;
    return c;
  }
  char e = it->p[1];
  it->p += 2;
  switch (e) {
  case 'b': return '\b';
  case 'f': return '\f';
  case 'n': return '\n';
  case 'r': return '\r';
  case 't': return '\t';
  case 'u': break;
  default: return (unsigned char)e; /* " \ / */
  }
  unsigned long cp = (unsigned long)hex4(it->p);
  it->p += 4;
  if (cp >= 0xd800 && cp <= 0xdbff) {
    unsigned long lo = (unsigned long)hex4(it->p + 2);
    it->p += 6;
    cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
  }
  /* UTF-8 encode into pend; return the first byte */
  if (cp < 0x80) return (int)cp;
  if (cp < 0x800) {
    it->pend[0] = (unsigned char)(0x80 | (cp & 0x3f));
    it->npend = 1;
    it->ipend = 0;
    return (int)(0xc0 | (cp >> 6));
  }
  if (cp < 0x10000) {
    it->pend[0] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
    it->pend[1] = (unsigned char)(0x80 | (cp & 0x3f));
    it->npend = 2;
    it->ipend = 0;
    return (int)(0xe0 | (cp >> 12));
  }
  it->pend[0] = (unsigned char)(0x80 | ((cp >> 12) & 0x3f));
  it->pend[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
  it->pend[2] = (unsigned char)(0x80 | (cp & 0x3f));
  it->npend = 3;
  it->ipend = 0;
  return (int)(0xf0 | (cp >> 18));
}

static int str_eq_vals(const hg_json_val_t *a, const hg_json_val_t *b) {
  /* fast path: no escapes in either, compare raw bytes */
  if (!memchr(a->p, '\\', a->n) && !memchr(b->p, '\\', b->n))
    return a->n == b->n && memcmp(a->p, b->p, a->n) == 0;
  striter_t x, y;
  si_init(&x, a);
  si_init(&y, b);
  for (;;) {
    int c = si_next(&x), d = si_next(&y);
    if (c != d) return 0;
    if (c < 0) return 1;
  }
}

int hg__json_str_eq(const hg_json_val_t *v, const char *lit, size_t n) {
  if (v->type != HG_JSON_STRING) return 0;
  striter_t it;
  si_init(&it, v);
  for (size_t i = 0; i < n; i++)
    if (si_next(&it) != (unsigned char)lit[i]) return 0;
  return si_next(&it) < 0;
}

int hg__json_str_decode(const hg_json_val_t *v, char *out, size_t cap, size_t *len) {
  striter_t it;
  si_init(&it, v);
  size_t o = 0;
  int c;
  while ((c = si_next(&it)) >= 0) {
    if (o + 1 >= cap) return HG_ETOOBIG;
    out[o++] = (char)c;
  }
  if (cap == 0) return HG_ETOOBIG;
  out[o] = '\0';
  if (len) *len = o;
  return 0;
}

static int parse_value(parser_t *ps, int depth, hg_json_val_t *out);

static int parse_object(parser_t *ps, int depth, hg_json_val_t *out) {
  const char *start = ps->p;
  size_t base = ps->nkeys; /* this object's names are keys[base..nkeys) */
  ps->p++;
  skip_ws(ps);
  if (ps->p < ps->end && *ps->p == '}') {
    ps->p++;
  } else {
    for (;;) {
      skip_ws(ps);
      if (ps->p >= ps->end || *ps->p != '"') return fail(ps, "malformed JSON");
      hg_json_val_t key, val;
      int rc = parse_string(ps, &key);
      if (rc) return rc;
      for (size_t i = base; i < ps->nkeys; i++)
        if (str_eq_vals(&ps->keys[i], &key)) return fail(ps, "duplicate member name");
      if (ps->nkeys == HG_JSON_MAX_KEYS) return fail(ps, "JSON has too many members");
      ps->keys[ps->nkeys++] = key;
      skip_ws(ps);
      if (ps->p >= ps->end || *ps->p != ':') return fail(ps, "malformed JSON");
      ps->p++;
      rc = parse_value(ps, depth + 1, &val);
      if (rc) return rc;
      skip_ws(ps);
      if (ps->p < ps->end && *ps->p == ',') {
        ps->p++;
        continue;
      }
      if (ps->p < ps->end && *ps->p == '}') {
        ps->p++;
        break;
      }
      return fail(ps, "malformed JSON");
    }
  }
  ps->nkeys = base;
  out->type = HG_JSON_OBJECT;
  out->p = start;
  out->n = (size_t)(ps->p - start);
  return 0;
}

static int parse_array(parser_t *ps, int depth, hg_json_val_t *out) {
  const char *start = ps->p;
  ps->p++;
  skip_ws(ps);
  if (ps->p < ps->end && *ps->p == ']') {
    ps->p++;
  } else {
    for (;;) {
      hg_json_val_t val;
      int rc = parse_value(ps, depth + 1, &val);
      if (rc) return rc;
      skip_ws(ps);
      if (ps->p < ps->end && *ps->p == ',') {
        ps->p++;
        continue;
      }
      if (ps->p < ps->end && *ps->p == ']') {
        ps->p++;
        break;
      }
      return fail(ps, "malformed JSON");
    }
  }
  out->type = HG_JSON_ARRAY;
  out->p = start;
  out->n = (size_t)(ps->p - start);
  return 0;
}

static int parse_value(parser_t *ps, int depth, hg_json_val_t *out) {
  if (depth > HG_JSON_MAX_DEPTH) return fail(ps, "JSON nested too deeply");
  skip_ws(ps);
  if (ps->p >= ps->end) return fail(ps, "malformed JSON");
  switch (*ps->p) {
  case '{': return parse_object(ps, depth, out);
  case '[': return parse_array(ps, depth, out);
  case '"': return parse_string(ps, out);
  case 't': return literal(ps, "true", HG_JSON_TRUE, out);
  case 'f': return literal(ps, "false", HG_JSON_FALSE, out);
  case 'n': return literal(ps, "null", HG_JSON_NULL, out);
  default: return parse_number(ps, out);
  }
}

int hg__json_parse(const char *s, size_t n, hg_json_val_t *out, const char **why) {
  parser_t ps;
  ps.p = s;
  ps.end = s + n;
  ps.why = NULL;
  ps.nkeys = 0;
  int rc = s ? parse_value(&ps, 0, out) : fail(&ps, "malformed JSON");
  if (rc == 0) {
    skip_ws(&ps);
    if (ps.p != ps.end) rc = fail(&ps, "malformed JSON"); /* trailing bytes */
  }
  if (why) *why = rc ? ps.why : NULL;
  return rc;
}

int hg__json_object_each(const hg_json_val_t *obj, hg__json_member_fn fn, void *ud) {
  if (obj->type != HG_JSON_OBJECT) return HG_EINVAL;
  /* The text was validated by hg__json_parse, so the parser only walks it here; the
   * name stack is reset per member since duplicates were already ruled out. */
  parser_t ps;
  ps.p = obj->p + 1;
  ps.end = obj->p + obj->n;
  ps.why = NULL;
  ps.nkeys = 0;
  skip_ws(&ps);
  if (*ps.p == '}') return 0;
  for (;;) {
    hg_json_val_t key, val;
    skip_ws(&ps);
    if (parse_string(&ps, &key)) return HG_EPARSE;
    skip_ws(&ps);
    ps.p++; /* ':' */
    if (parse_value(&ps, 1, &val)) return HG_EPARSE;
    ps.nkeys = 0;
    int rc = fn(ud, &key, &val);
    if (rc) return rc;
    skip_ws(&ps);
    if (*ps.p == '}') return 0;
    ps.p++; /* ',' */
  }
}

int hg__json_number(const hg_json_val_t *v, double *out) {
  if (v->type != HG_JSON_NUMBER) return HG_EINVAL;
  /* Fast, locale-free and exact for the common case (NumericDates such as
   * 1300819380.5): an integer mantissa below 2^53 scaled by 10^-k with k <= 22 is
   * correctly rounded by one IEEE division. Anything else goes through strtod. */
  const char *p = v->p, *end = v->p + v->n;
  int neg = 0, frac = 0, exact = 1;
  uint64_t m = 0;
  if (p < end && *p == '-') neg = 1, p++;
  for (; p < end && *p != 'e' && *p != 'E'; p++) {
    if (*p == '.') {
      frac = -1;
      continue;
    }
    if (m > (UINT64_C(1) << 53) / 10) {
      exact = 0;
      break;
    }
    m = m * 10 + (uint64_t)(*p - '0');
    if (frac) frac--;
  }
  if (exact && p == end && m <= (UINT64_C(1) << 53)) {
    static const double p10[] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                                 1e8,  1e9,  1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
                                 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};
    int k = frac ? -(frac + 1) : 0; /* digits after the point */
    if (k <= 22) {
      double d = (double)m / p10[k];
      *out = neg ? -d : d;
      return 0;
    }
  }
  char tmp[64];
  if (v->n >= sizeof(tmp)) return HG_EPARSE;
  memcpy(tmp, v->p, v->n);
  tmp[v->n] = '\0';
  double d = strtod(tmp, NULL);
  if (!isfinite(d)) return HG_EPARSE;
  *out = d;
  return 0;
}
