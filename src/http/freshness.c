/* freshness.c — an origin's Cache-Control / Expires, read as a shared cache must. */
#define _GNU_SOURCE /* strptime, timegm */
#include "http/freshness.h"

#include <string.h>
#include <strings.h>
#include <time.h>

int64_t hg_http_date_parse(const char *s) {
  static const char *const formats[] = {
      "%a, %d %b %Y %H:%M:%S GMT", /* IMF-fixdate, the one origins should send */
      "%A, %d-%b-%y %H:%M:%S GMT", /* RFC 850 */
      "%a %b %e %H:%M:%S %Y",      /* asctime */
  };
  if (s == NULL) return -1;
  while (*s == ' ' || *s == '\t') s++;
  for (size_t i = 0; i < sizeof(formats) / sizeof(formats[0]); i++) {
    struct tm tm;
    memset(&tm, 0, sizeof(tm));
    const char *end = strptime(s, formats[i], &tm);
    if (end == NULL) continue;
    while (*end == ' ' || *end == '\t') end++;
    if (*end) continue;
    time_t t = timegm(&tm);
    return t < 0 ? -1 : (int64_t)t;
  }
  return -1;
}

/* A delta-seconds value (RFC 9111 §1.2.2): digits, saturating; anything else is 0, so a
 * malformed max-age makes the response stale rather than fresh forever. */
static int64_t delta_seconds(const char *s, size_t n) {
  if (n >= 2 && s[0] == '"' && s[n - 1] == '"') s++, n -= 2; /* tolerated, as browsers do */
  if (n == 0) return 0;
  int64_t v = 0;
  for (size_t i = 0; i < n; i++) {
    if (s[i] < '0' || s[i] > '9') return 0;
    if (v < (int64_t)1 << 40) v = v * 10 + (s[i] - '0');
  }
  return v;
}

void hg_freshness_parse(const char *cc, const char *expires, const char *date, const char *age,
                        int64_t now_s, hg_freshness_t *f) {
  memset(f, 0, sizeof(*f));
  int64_t max_age = -1, s_maxage = -1;
  int no_cache = 0;
  for (const char *p = cc; p && *p;) {
    p += strspn(p, " \t,");
    size_t n = strcspn(p, ",");
    const char *eq = memchr(p, '=', n);
    size_t nlen = eq ? (size_t)(eq - p) : n;
    while (nlen && (p[nlen - 1] == ' ' || p[nlen - 1] == '\t')) nlen--;
    const char *v = eq ? eq + 1 : NULL;
    size_t vlen = eq ? n - (size_t)(v - p) : 0;
    while (v && vlen && (*v == ' ' || *v == '\t')) v++, vlen--;
    while (v && vlen && (v[vlen - 1] == ' ' || v[vlen - 1] == '\t')) vlen--;
#define IS(name) (nlen == sizeof(name) - 1 && strncasecmp(p, name, nlen) == 0)
    if (IS("no-store") || IS("private")) f->no_store = 1;
    else if (IS("no-cache")) no_cache = 1;
    else if (IS("max-age")) max_age = delta_seconds(v, vlen);
    else if (IS("s-maxage")) s_maxage = delta_seconds(v, vlen);
#undef IS
    p += n;
  }
  int64_t life = -1;
  if (no_cache) life = 0;
  else if (s_maxage >= 0) life = s_maxage;
  else if (max_age >= 0) life = max_age;
  else if (expires) {
    /* An invalid Expires (e.g. "0") means already expired (RFC 9111 §5.3). */
    int64_t e = hg_http_date_parse(expires), d = hg_http_date_parse(date);
    life = e < 0 ? 0 : e - (d >= 0 ? d : now_s);
    if (life < 0) life = 0;
  }
  if (life < 0) return;
  if (age) life -= delta_seconds(age, strlen(age));
  f->has_limit = 1;
  f->limit_ms = life > 0 ? life * 1000 : 0;
}
