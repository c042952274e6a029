/* attr.c — the HLS attribute-list parser (RFC 8216 §4.2), lenient like players.
 *
 * An attribute list is NAME=VALUE pairs separated by commas, where a VALUE may be a
 * "quoted-string" containing commas. Real playlists also put spaces after the colon or
 * the commas ("#EXT-X-KEY: METHOD=AES-128, URI=..."), so whitespace is skipped. Nothing
 * here allocates; spans point into the list.
 */
#include <string.h>

#include "hls/hls.h"
#include "hls/hls_internal.h"


/* Contract: see hls.h. The scan never goes backwards, so a whole iteration is linear. */
int hg_hls_attr_next(const char *s, size_t n, size_t *pos, hg_hls_attr_t *a) {
  size_t i = *pos;
  for (;;) {
    while (i < n && (hg__hls_is_ws(s[i]) || s[i] == ',')) i++;
    if (i >= n) {
      *pos = n;
      return 0;
    }
    size_t ns = i;
    while (i < n && s[i] != '=' && s[i] != ',') i++;
    if (i >= n || s[i] == ',') continue; /* a bare word: not an attribute */
    size_t ne = i;
    while (ne > ns && hg__hls_is_ws(s[ne - 1])) ne--;
    i++; /* '=' */
    while (i < n && hg__hls_is_ws(s[i])) i++;
    a->name = s + ns;
    a->name_len = ne - ns;
    if (i < n && s[i] == '"') {
      const char *q = memchr(s + i + 1, '"', n - i - 1);
      if (q == NULL) { /* unterminated: the rest of the list, flagged as not quoted */
        a->value = s + i + 1;
        a->value_len = n - i - 1;
        a->quoted = 0;
        *pos = n;
        return 1;
      }
      a->value = s + i + 1;
      a->value_len = (size_t)(q - (s + i + 1));
      a->quoted = 1;
      i = (size_t)(q - s) + 1;
      while (i < n && s[i] != ',') i++; /* ignore junk between the quote and the comma */
    } else {
      size_t vs = i;
      while (i < n && s[i] != ',') i++;
      size_t ve = i;
      while (ve > vs && hg__hls_is_ws(s[ve - 1])) ve--;
      a->value = s + vs;
      a->value_len = ve - vs;
      a->quoted = 0;
    }
    *pos = i;
    return 1;
  }
}

int hg_hls_attr_get(const char *s, size_t n, const char *name, size_t name_len,
                    hg_hls_attr_t *a) {
  size_t pos = 0;
  while (hg_hls_attr_next(s, n, &pos, a))
    if (a->name_len == name_len && memcmp(a->name, name, name_len) == 0) return 1;
  return 0;
}
