/* url_chars.h — RFC 3986 character classes shared by the url module (private).
 *
 * One 256-entry table, so every scanner classifies a byte with one load and a mask
 * (§2 and appendix A of the RFC). Bytes >= 0x80 and controls are in no class.
 */
#ifndef HG_URL_URL_CHARS_H
#define HG_URL_URL_CHARS_H

enum {
  HG__C_UNRES = 0x01,  /* unreserved: ALPHA DIGIT - . _ ~ */
  HG__C_SUB = 0x02,    /* sub-delims: ! $ & ' ( ) * + , ; = */
  HG__C_COLAT = 0x04,  /* ':' and '@' (the rest of pchar) */
  HG__C_SLASH = 0x08,  /* '/' */
  HG__C_QMARK = 0x10,  /* '?' */
  HG__C_HEX = 0x20,    /* HEXDIG */
  HG__C_SCHEME = 0x40, /* ALPHA DIGIT + - . (scheme after its first letter) */
  HG__C_GEN = 0x80     /* gen-delims: : / ? # [ ] @ */
};

extern const unsigned char hg__url_cls[256];

/* ALPHA (A-Z a-z). */
static inline int hg__url_is_alpha(unsigned char c) {
  return (unsigned char)((c | 0x20) - 'a') < 26;
}

/* Value of a hex digit already known to be one (HG__C_HEX). */
static inline unsigned hg__url_hexval(unsigned char c) {
  return c <= '9' ? (unsigned)(c - '0') : (unsigned)((c | 0x20) - 'a' + 10);
}

#endif
