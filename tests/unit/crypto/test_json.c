/* test_json.c — the strict JSON reader used for JWT headers and claims (RFC 8259). */
#include <math.h>
#include <string.h>

#include "base/error.h"
#include "crypto/json.h"
#include "hgtest.h"

static int parses(const char *s) {
  hg_json_val_t v;
  const char *why;
  return hg__json_parse(s, strlen(s), &v, &why) == 0;
}

static const char *why_of(const char *s) {
  hg_json_val_t v;
  const char *why = NULL;
  hg__json_parse(s, strlen(s), &v, &why);
  return why;
}

HG_TEST(accepts_valid) {
  static const char *const ok[] = {
      "{}", " { } ", "[]", "0", "-0", "1.5e10", "-1E-3", "\"\"", "true", "false", "null",
      "{\"a\":1,\"b\":[1,2,{\"c\":null}],\"d\":{\"e\":\"f\"}}",
      "{\"s\":\"\\\"\\\\\\/\\b\\f\\n\\r\\t\\u00e9\\ud83d\\ude00\"}",
      "{\"utf8\":\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\"}",
      /* RFC 7515 A.1 header and payload octets, CRLF and spaces included */
      "{\"typ\":\"JWT\",\r\n \"alg\":\"HS256\"}",
      "{\"iss\":\"joe\",\r\n \"exp\":1300819380,\r\n \"http://example.com/is_root\":true}",
      /* same names in different objects are fine */
      "{\"a\":{\"x\":1},\"b\":{\"x\":2}}",
  };
  for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
    if (!parses(ok[i])) fprintf(stderr, "rejected: %s (%s)\n", ok[i], why_of(ok[i]));
    CHECK(parses(ok[i]));
  }
}

HG_TEST(rejects_invalid) {
  static const char *const bad[] = {
      "", " ", "{", "}", "{\"a\"}", "{\"a\":}", "{\"a\":1,}", "[1,]", "[1 2]", "{a:1}",
      "{'a':1}", "01", "1.", ".5", "1e", "+1", "-", "NaN", "Infinity", "tru", "nul",
      "\"abc", "\"a\x01\"", "\"\\x\"", "\"\\u12\"", "\"\\u12g4\"",
      "\"\\ud800\"",        /* lone high surrogate */
      "\"\\udc00\"",        /* lone low surrogate */
      "\"\\ud800\\u0041\"", /* high + non-low */
      "\"\xc3\"", "\"\xc0\xaf\"", "\"\xed\xa0\x80\"", "\"\xf5\x80\x80\x80\"", "\"\xff\"",
      "\xef\xbb\xbf{}", /* BOM (VECTORS.md §2.3 T29) */
      "{} {}", "{}x", "/*c*/{}", "not json",
  };
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    if (parses(bad[i])) fprintf(stderr, "accepted: %s\n", bad[i]);
    CHECK(!parses(bad[i]));
  }
  /* embedded NUL is rejected (length-delimited input) */
  hg_json_val_t v;
  CHECK_INT(hg__json_parse("\"a\0b\"", 5, &v, NULL), HG_EPARSE);
}

HG_TEST(duplicates_and_limits) {
  CHECK_STR(why_of("{\"alg\":\"none\",\"alg\":\"HS256\"}"), "duplicate member name");
  CHECK_STR(why_of("{\"alg\":1,\"al\\u0067\":2}"), "duplicate member name"); /* after unescaping */
  CHECK_STR(why_of("{\"\\u00e9\":1,\"\xc3\xa9\":2}"), "duplicate member name");
  CHECK_STR(why_of("{\"a\":{\"b\":1,\"b\":2}}"), "duplicate member name"); /* nested too */
  CHECK(parses("{\"a\":1,\"A\":2,\"a \":3}"));
  char deep[200];
  memset(deep, '[', 40);
  memset(deep + 40, ']', 40);
  deep[80] = '\0';
  CHECK_STR(why_of(deep), "JSON nested too deeply");
  memset(deep, '[', 30);
  memset(deep + 30, ']', 30);
  deep[60] = '\0';
  CHECK(parses(deep));
  /* too many names open at once */
  char *many = malloc(300 * 12 + 10);
  size_t k = 0;
  many[k++] = '{';
  for (int i = 0; i < 300; i++) k += (size_t)sprintf(many + k, "%s\"k%d\":1", i ? "," : "", i);
  many[k++] = '}';
  many[k] = '\0';
  CHECK_STR(why_of(many), "JSON has too many members");
  free(many);
}

typedef struct {
  int n;
  int saw_exp;
  double exp;
} walk_t;

static int walker(void *ud, const hg_json_val_t *key, const hg_json_val_t *val) {
  walk_t *w = ud;
  w->n++;
  if (hg__json_str_eq(key, "exp", 3)) {
    w->saw_exp = 1;
    CHECK_INT(hg__json_number(val, &w->exp), 0);
  }
  return 0;
}

HG_TEST(walk_and_values) {
  const char *s = " {\"sub\" : \"u1\", \"nested\":{\"exp\":1}, \"arr\":[{\"exp\":2}],"
                  "\"exp\" : 1300819380.5 } ";
  hg_json_val_t v;
  CHECK_INT(hg__json_parse(s, strlen(s), &v, NULL), 0);
  CHECK_INT(v.type, HG_JSON_OBJECT);
  walk_t w = {0, 0, 0};
  CHECK_INT(hg__json_object_each(&v, walker, &w), 0);
  CHECK_INT(w.n, 4); /* nested members are skipped, not visited */
  CHECK(w.saw_exp && w.exp == 1300819380.5);

  static const struct {
    const char *s;
    double d;
  } nums[] = {{"0", 0}, {"-0", 0}, {"1300819380", 1300819380.0}, {"0.1", 0.1},
              {"-12.25", -12.25}, {"1e3", 1000}, {"2.5E-1", 0.25},
              {"123456789012345678901234567890", 123456789012345678901234567890.0},
              {"0.0000000000000000000000001", 1e-25}};
  for (size_t i = 0; i < sizeof(nums) / sizeof(nums[0]); i++) {
    hg_json_val_t n;
    double d = -1;
    CHECK_INT(hg__json_parse(nums[i].s, strlen(nums[i].s), &n, NULL), 0);
    CHECK_INT(hg__json_number(&n, &d), 0);
    CHECK(d == nums[i].d);
  }
  hg_json_val_t huge;
  CHECK_INT(hg__json_parse("1e999", 5, &huge, NULL), 0);
  double d;
  CHECK_INT(hg__json_number(&huge, &d), HG_EPARSE);

  hg_json_val_t str;
  const char *js = "\"a\\u00e9\\ud83d\\ude00\\n\"";
  CHECK_INT(hg__json_parse(js, strlen(js), &str, NULL), 0);
  char out[16];
  size_t len;
  CHECK_INT(hg__json_str_decode(&str, out, sizeof(out), &len), 0);
  CHECK_STR(out, "a\xc3\xa9\xf0\x9f\x98\x80\n");
  CHECK_INT((int)len, 8);
  CHECK_INT(hg__json_str_decode(&str, out, 5, &len), HG_ETOOBIG);
  CHECK(hg__json_str_eq(&str, "a\xc3\xa9\xf0\x9f\x98\x80\n", 8));
  CHECK(!hg__json_str_eq(&str, "a\xc3\xa9\xf0\x9f\x98\x80", 7));
  CHECK(!hg__json_str_eq(&str, "a\xc3\xa9\xf0\x9f\x98\x80\n!", 9));
}

int main(void) {
  RUN(accepts_valid);
  RUN(rejects_invalid);
  RUN(duplicates_and_limits);
  RUN(walk_and_values);
  return hgtest_done();
}
