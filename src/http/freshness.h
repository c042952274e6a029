/* freshness.h — how long an origin lets a shared cache reuse its response (RFC 9111
 * §4.2.1, §5.2.2), read from Cache-Control, Expires, Date and Age.
 *
 * Pure: no I/O, no clock of its own (the caller passes `now`); any thread. The gateway is
 * a shared cache, so s-maxage wins over max-age, and `private` forbids storing exactly
 * as `no-store` does.
 */
#ifndef HG_HTTP_FRESHNESS_H
#define HG_HTTP_FRESHNESS_H

#include <stdint.h>

/* The origin's word on one response. */
typedef struct hg_freshness_s {
  int no_store;     /* no-store or private: never store, never share downstream */
  int has_limit;    /* the origin set a lifetime (max-age, s-maxage, Expires, no-cache) */
  int64_t limit_ms; /* that lifetime minus Age, >= 0 (no-cache and a past or invalid
                       Expires give 0); meaningful when has_limit */
} hg_freshness_t;

/* Fills `f` from the header values (each NULL when absent; NUL-terminated). `now_s` is
 * Unix time, used for Expires when there is no (valid) Date. Every field is written;
 * unknown directives are ignored, malformed numbers count as 0 (the safe reading). */
void hg_freshness_parse(const char *cache_control, const char *expires, const char *date,
                        const char *age, int64_t now_s, hg_freshness_t *f);

/* Parses an HTTP-date (IMF-fixdate, RFC 850 or asctime). Returns Unix seconds, or -1. */
int64_t hg_http_date_parse(const char *s);

#endif
