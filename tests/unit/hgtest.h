/* hgtest.h — a tiny assertion kit for the C unit tests (one executable per unit).
 *
 *   HG_TEST(name) { CHECK(x == 1); CHECK_STR(a, b); CHECK_MEM(p, q, n); }
 *   int main(void) { RUN(name); return hgtest_done(); }
 *
 * A failed check prints file:line and the values, and the test goes on; the process
 * exits 1 if any check failed, so ctest reports the unit as failed.
 */
#ifndef HG_TESTS_HGTEST_H
#define HG_TESTS_HGTEST_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int hgtest_failures, hgtest_checks, hgtest_tests;

#define HG_TEST(name) static void name(void)
#define RUN(name)                                                        \
  do {                                                                   \
    int before_ = hgtest_failures;                                       \
    hgtest_tests++;                                                      \
    name();                                                              \
    printf("%s %s\n", hgtest_failures == before_ ? "ok  " : "FAIL", #name); \
  } while (0)

#define CHECK(cond)                                                      \
  do {                                                                   \
    hgtest_checks++;                                                     \
    if (!(cond)) {                                                       \
      hgtest_failures++;                                                 \
      fprintf(stderr, "%s:%d: CHECK(%s) failed\n", __FILE__, __LINE__, #cond); \
    }                                                                    \
  } while (0)

#define CHECK_INT(a, b)                                                  \
  do {                                                                   \
    long long a_ = (long long)(a), b_ = (long long)(b);                  \
    hgtest_checks++;                                                     \
    if (a_ != b_) {                                                      \
      hgtest_failures++;                                                 \
      fprintf(stderr, "%s:%d: %s == %lld, expected %lld\n", __FILE__, __LINE__, #a, a_, b_); \
    }                                                                    \
  } while (0)

#define CHECK_STR(a, b)                                                  \
  do {                                                                   \
    const char *a_ = (a), *b_ = (b);                                     \
    hgtest_checks++;                                                     \
    if (a_ == NULL || b_ == NULL || strcmp(a_, b_) != 0) {               \
      hgtest_failures++;                                                 \
      fprintf(stderr, "%s:%d: %s\n  got      \"%s\"\n  expected \"%s\"\n", __FILE__, \
              __LINE__, #a, a_ ? a_ : "(null)", b_ ? b_ : "(null)");    \
    }                                                                    \
  } while (0)

#define CHECK_MEM(a, b, n)                                               \
  do {                                                                   \
    hgtest_checks++;                                                     \
    if (memcmp((a), (b), (n)) != 0) {                                    \
      hgtest_failures++;                                                 \
      fprintf(stderr, "%s:%d: %s differs from %s\n", __FILE__, __LINE__, #a, #b); \
    }                                                                    \
  } while (0)

static inline int hgtest_done(void) {
  printf("%d tests, %d checks, %d failed\n", hgtest_tests, hgtest_checks, hgtest_failures);
  return hgtest_failures ? 1 : 0;
}

/* Reads a whole file into a malloc'd NUL-terminated buffer (caller frees); NULL on error. */
static inline char *hgtest_slurp(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  if (f == NULL) return NULL;
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *buf = malloc((size_t)n + 1);
  if (buf != NULL && fread(buf, 1, (size_t)n, f) != (size_t)n) {
    free(buf);
    buf = NULL;
  }
  fclose(f);
  if (buf != NULL) {
    buf[n] = '\0';
    if (len) *len = (size_t)n;
  }
  return buf;
}

#endif
