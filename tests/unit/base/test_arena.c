/* Unit tests for base/arena and base/error. */
#include "hgtest.h"

#include <stdint.h>

#include "base/arena.h"
#include "base/error.h"

HG_TEST(alloc_is_aligned_and_grows) {
  hg_arena_t *a = hg_arena_new(64);
  CHECK(a != NULL);
  for (int i = 0; i < 1000; i++) {
    void *p = hg_arena_alloc(a, (size_t)(i % 37) + 1);
    CHECK(p != NULL);
    CHECK(((uintptr_t)p % _Alignof(max_align_t)) == 0);
    memset(p, 0xab, (size_t)(i % 37) + 1);
  }
  void *big = hg_arena_alloc(a, 1 << 20);
  CHECK(big != NULL);
  memset(big, 0, 1 << 20);
  hg_arena_free(a);
}

HG_TEST(reset_keeps_first_chunk) {
  hg_arena_t *a = hg_arena_new(128);
  char *s = hg_arena_strndup(a, "hello world", 5);
  CHECK_STR(s, "hello");
  for (int i = 0; i < 100; i++) CHECK(hg_arena_alloc(a, 100) != NULL);
  CHECK(hg_arena_used(a) >= 10000);
  hg_arena_reset(a);
  CHECK_INT(hg_arena_used(a), 0);
  CHECK(hg_arena_alloc(a, 16) != NULL);
  hg_arena_free(a);
}

HG_TEST(overflow_is_refused) {
  hg_arena_t *a = hg_arena_new(0);
  CHECK(hg_arena_alloc(a, SIZE_MAX - 3) == NULL);
  hg_arena_free(a);
}

HG_TEST(strerror_covers_both_ranges) {
  CHECK_STR(hg_strerror(0), "ok");
  CHECK_STR(hg_strerror(HG_EBUDGET), "policy instruction budget exceeded");
  CHECK(strlen(hg_strerror(-2)) > 0); /* ENOENT */
  CHECK_STR(hg_strerror(-99999), "unknown error");
}

int main(void) {
  RUN(alloc_is_aligned_and_grows);
  RUN(reset_keeps_first_chunk);
  RUN(overflow_is_refused);
  RUN(strerror_covers_both_ranges);
  return hgtest_done();
}
