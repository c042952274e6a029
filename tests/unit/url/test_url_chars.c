/* Checks the generated class table of url_chars.c against RFC 3986's ABNF sets (§2.2,
 * §2.3, §3.1, appendix A), written out here independently. */
#include "hgtest.h"

#include "url/url_chars.h"

static int in(const char *set, int c) { return c != 0 && strchr(set, c) != NULL; }

HG_TEST(class_table_matches_rfc_sets) {
  const char *alpha = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
  const char *digit = "0123456789";
  for (int c = 0; c < 256; c++) {
    int a = in(alpha, c), d = in(digit, c);
    int unres = a || d || in("-._~", c);
    int sub = in("!$&'()*+,;=", c);
    int hex = d || in("ABCDEFabcdef", c);
    int scheme = a || d || in("+-.", c);
    int gen = in(":/?#[]@", c);
    unsigned v = hg__url_cls[c];
    if (!!(v & HG__C_UNRES) != unres || !!(v & HG__C_SUB) != sub ||
        !!(v & HG__C_COLAT) != in(":@", c) || !!(v & HG__C_SLASH) != (c == '/') ||
        !!(v & HG__C_QMARK) != (c == '?') || !!(v & HG__C_HEX) != hex ||
        !!(v & HG__C_SCHEME) != scheme || !!(v & HG__C_GEN) != gen)
      fprintf(stderr, "  byte 0x%02x classified 0x%02x\n", c, v);
    CHECK(!!(v & HG__C_UNRES) == unres && !!(v & HG__C_SUB) == sub);
    CHECK(!!(v & HG__C_COLAT) == in(":@", c) && !!(v & HG__C_SLASH) == (c == '/'));
    CHECK(!!(v & HG__C_QMARK) == (c == '?') && !!(v & HG__C_HEX) == hex);
    CHECK(!!(v & HG__C_SCHEME) == scheme && !!(v & HG__C_GEN) == gen);
    CHECK(hg__url_is_alpha((unsigned char)c) == a);
    if (hex) CHECK_INT(hg__url_hexval((unsigned char)c), strtol((char[]){(char)c, 0}, NULL, 16));
  }
}

int main(void) {
  RUN(class_table_matches_rfc_sets);
  return hgtest_done();
}
