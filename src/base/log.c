/* log.c — text operational log on stderr and JSON access log on stdout (see log.h). */
#include "base/log.h"

#include "base/error.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static hg_log_level_t min_level = HG_LOG_INFO;
static _Thread_local const char *thread_name = "main";

void hg_log_set_level(hg_log_level_t level) { min_level = level; }
void hg_log_set_thread(const char *name) { thread_name = name; }

/* Writes all of p[0..n) to fd, retrying short writes and EINTR. Errors are dropped:
 * a logger has nowhere to report its own failure. */
static void write_all(int fd, const char *p, size_t n) {
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      return;
    }
    p += w;
    n -= (size_t)w;
  }
}

int hg_log_timestamp(hg_buf_t *out) {
  /* Every access-log line has one: the formatted second is kept per thread and only the
   * milliseconds are written each time. */
  static _Thread_local time_t sec = -1;
  static _Thread_local char head[64]; /* "YYYY-MM-DDTHH:MM:SS." */
  static _Thread_local size_t hlen;
  struct timeval tv;
  gettimeofday(&tv, NULL);
  if (tv.tv_sec != sec) {
    struct tm tm;
    gmtime_r(&tv.tv_sec, &tm);
    int n = snprintf(head, sizeof(head), "%04d-%02d-%02dT%02d:%02d:%02d.", tm.tm_year + 1900,
                     tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
    hlen = n > 0 && (size_t)n < sizeof(head) ? (size_t)n : 0;
    sec = tv.tv_sec;
  }
  int ms = (int)(tv.tv_usec / 1000);
  char tail[5] = {(char)('0' + ms / 100), (char)('0' + ms / 10 % 10), (char)('0' + ms % 10), 'Z', 0};
  return hg_buf_append(out, head, hlen) || hg_buf_append(out, tail, 4) ? HG_ENOMEM : 0;
}

void hg_log(hg_log_level_t level, const char *fmt, ...) {
  static const char *names[] = {"debug", "info", "warn", "error"};
  if (level < min_level) return;
  char line[4096];
  hg_buf_t ts = HG_BUF_INIT;
  hg_log_timestamp(&ts);
  int off = snprintf(line, sizeof(line), "%s [%s] %s: ", ts.data ? ts.data : "-",
                     names[level], thread_name);
  hg_buf_free(&ts);
  if (off < 0 || (size_t)off >= sizeof(line)) off = 0;
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(line + off, sizeof(line) - (size_t)off - 1, fmt, ap); // NOLINT(clang-analyzer-valist.Uninitialized): va_start above
  va_end(ap);
  size_t len = (size_t)off + (n < 0 ? 0 : (size_t)n);
  if (len > sizeof(line) - 2) len = sizeof(line) - 2; /* truncated */
  /* Security: messages name URLs (origins, redirects, policy log lines); their secret
   * query parameters are redacted here, once for every caller. */
  size_t ml = len - (size_t)off;
  if (memchr(line + off, '=', ml) || memchr(line + off, '?', ml)) {
    hg_buf_t r = HG_BUF_INIT;
    if (hg_buf_append(&r, line, (size_t)off) == 0 && hg_log_redact_text(&r, line + off, ml) == 0 &&
        hg_buf_putc(&r, '\n') == 0) {
      write_all(STDERR_FILENO, r.data, r.len);
      hg_buf_free(&r);
      return;
    }
    hg_buf_free(&r);
    len = (size_t)off + (size_t)snprintf(line + off, sizeof(line) - (size_t)off, "(message dropped: out of memory)");
  }
  line[len++] = '\n';
  write_all(STDERR_FILENO, line, len);
}

/* Access-log buffering, like nginx's `access_log … buffer=`: each thread collects whole
 * lines and writes them in one write when its buffer is full, when it calls
 * hg_log_access_flush (the workers, every second and when they stop) — a write per line
 * would be one system call per request. The flushes of all threads take turns (a
 * write of more than PIPE_BUF bytes to a pipe could otherwise interleave with another
 * thread's): lines are never cut or mixed. */
static size_t abuf_size; /* 0: a write per line */
static pthread_mutex_t aflush_lock = PTHREAD_MUTEX_INITIALIZER;
static _Thread_local char *abuf;
static _Thread_local size_t alen;

void hg_log_access_buffer(size_t bytes) { abuf_size = bytes; }

static void write_lines(const char *p, size_t n) {
  pthread_mutex_lock(&aflush_lock);
  write_all(STDOUT_FILENO, p, n);
  pthread_mutex_unlock(&aflush_lock);
}

void hg_log_access_flush(void) {
  if (alen) write_lines(abuf, alen);
  alen = 0;
}

void hg_log_access_end(void) {
  hg_log_access_flush();
  free(abuf);
  abuf = NULL;
}

void hg_log_access(const char *line, size_t n) {
  if (abuf_size && abuf == NULL) abuf = malloc(abuf_size); /* NULL: unbuffered after all */
  if (abuf && n < abuf_size) {
    if (alen + n + 1 > abuf_size) hg_log_access_flush();
    memcpy(abuf + alen, line, n);
    abuf[alen + n] = '\n';
    alen += n + 1;
    return;
  }
  /* Unbuffered, or a line longer than the buffer: one write for line + newline (copied
   * when small, else two writes under the lock). */
  hg_log_access_flush(); /* what came before goes first */
  char tmp[2048];
  if (n < sizeof(tmp)) {
    memcpy(tmp, line, n);
    tmp[n] = '\n';
    write_lines(tmp, n + 1);
  } else {
    pthread_mutex_lock(&aflush_lock);
    write_all(STDOUT_FILENO, line, n);
    write_all(STDOUT_FILENO, "\n", 1);
    pthread_mutex_unlock(&aflush_lock);
  }
}

/* Security: query parameter names whose values are credentials, compared after
 * percent-decoding (the query decoder accepts `%74oken=` as `token=`, so the log must
 * too) and case-insensitively: these exact names, and any name ending in one of the
 * suffixes (access_token, refresh_token, api_key, client_secret, X-Goog-Signature, …). */
static int is_secret_name(const char *name, size_t n) {
  static const char *const exact[] = {"token", "access_token", "jwt", "key", "sig",
                                      "signature", "password", "passwd", "secret", "auth",
                                      "authorization", "hdnts", "hmac", "apikey", "session",
                                      "X-Amz-Signature", "X-Amz-Credential",
                                      "X-Amz-Security-Token", "Key-Pair-Id", "Policy",
                                      "cookie", "headers" /* the open proxy's per-stream headers */};
  static const char *const suffix[] = {"token", "secret", "signature", "password", "_key",
                                       "-key", "credential", "_sig", "-sig"};
  for (size_t i = 0; i < sizeof(exact) / sizeof(exact[0]); i++)
    if (strlen(exact[i]) == n && strncasecmp(exact[i], name, n) == 0) return 1;
  for (size_t i = 0; i < sizeof(suffix) / sizeof(suffix[0]); i++) {
    size_t k = strlen(suffix[i]);
    if (n >= k && strncasecmp(suffix[i], name + n - k, k) == 0) return 1;
  }
  return 0;
}

static int hexval(int c) {
  if (c >= '0' && c <= '9') return c - '0';
  c |= 0x20;
  return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* Appends s[0..n) percent-decoded ('+' as a space) to out. Sets *more when the result
 * still holds a %XX escape (a value encoded twice). */
static int decode_once(hg_buf_t *out, const char *s, size_t n, int *more) {
  *more = 0;
  if (hg_buf_reserve(out, n)) return HG_ENOMEM; /* decoding never grows */
  char *d = out->data + out->len;
  for (size_t i = 0; i < n; i++) {
    int hi, lo;
    char c = s[i];
    if (c == '%' && i + 2 < n && (hi = hexval((unsigned char)s[i + 1])) >= 0 &&
        (lo = hexval((unsigned char)s[i + 2])) >= 0) {
      c = (char)(hi * 16 + lo);
      i += 2;
    } else if (c == '+') {
      c = ' ';
    }
    *d++ = c;
  }
  out->len = (size_t)(d - out->data);
  out->data[out->len] = '\0';
  for (size_t i = 0; i + 2 < out->len && !*more; i++)
    if (out->data[i] == '%' && hexval((unsigned char)out->data[i + 1]) >= 0 &&
        hexval((unsigned char)out->data[i + 2]) >= 0)
      *more = 1;
  return 0;
}

#define REDACT_DEPTH 4 /* nested URLs / encodings looked into */

static int redact(hg_buf_t *out, const char *s, size_t n, int depth, int *changed);

/* Appends s[0..n) percent-encoded (all but unreserved characters and "/:@"), so a
 * rewritten nested value cannot end the outer parameter. */
static int encode_value(hg_buf_t *out, const char *s, size_t n) {
  static const char hex[] = "0123456789ABCDEF";
  int rc = 0;
  for (size_t i = 0; rc == 0 && i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
        strchr("-._~/:@", c) != NULL) {
      if (c != 0) {
        rc = hg_buf_putc(out, (char)c);
        continue;
      }
    }
    char e[3] = {'%', hex[c >> 4], hex[c & 15]};
    rc = hg_buf_append(out, e, 3);
  }
  return rc;
}

/* The decoded form of a name or value: decoded up to REDACT_DEPTH times while escapes
 * remain (`%2574oken` is `token` encoded twice). */
static int decode_all(hg_buf_t *dec, const char *s, size_t n) {
  hg_buf_t tmp = HG_BUF_INIT;
  int more = 1, rc = 0;
  hg_buf_clear(dec);
  rc = hg_buf_append(dec, s, n);
  for (int k = 0; rc == 0 && more && k < REDACT_DEPTH; k++) {
    hg_buf_clear(&tmp);
    rc = decode_once(&tmp, dec->data ? dec->data : "", dec->len, &more);
    hg_buf_clear(dec);
    if (rc == 0) rc = hg_buf_append(dec, tmp.data ? tmp.data : "", tmp.len);
  }
  hg_buf_free(&tmp);
  return rc;
}

/* Whether v[0..n) may decode (REDACT_DEPTH times) to something with '?' or '=': it
 * holds one, or an escape of one ("%3F", "%3D"), or an escaped '%' ("%25…", an escape
 * of an escape). Security: when it says no, the decoded value has no parameter to
 * redact; it errs towards yes. */
static int may_hold_query(const char *v, size_t n) {
  for (size_t i = 0; i < n; i++) {
    char c = v[i];
    if (c == '?' || c == '=') return 1;
    if (c == '%' && i + 2 < n) {
      char a = v[i + 1], b = (char)(v[i + 2] | 0x20);
      if ((a == '3' && (b == 'f' || b == 'd')) || (a == '2' && b == '5')) return 1;
    }
  }
  return 0;
}

/* One query parameter p[0..n): appended as is, with its value replaced by REDACTED when
 * the decoded name is a secret, or with its value decoded, redacted and re-encoded when
 * it holds a URL or query carrying a secret. */
static int redact_param(hg_buf_t *out, const char *p, size_t n, int depth, int *changed) {
  const char *eq = memchr(p, '=', n);
  size_t nl = eq ? (size_t)(eq - p) : n;
  /* The common case, on every request: a plain name, and a value that cannot hold a
   * query however often it is decoded (an encoded URL without one, as the open proxy's
   * url=), need no copy. */
  if (memchr(p, '%', nl) == NULL && memchr(p, '+', nl) == NULL && (eq == NULL || !may_hold_query(eq + 1, n - nl - 1))) {
    if (eq && is_secret_name(p, nl)) {
      *changed = 1;
      return hg_buf_append(out, p, nl + 1) || hg_buf_puts(out, "REDACTED") ? HG_ENOMEM : 0;
    }
    return hg_buf_append(out, p, n);
  }
  hg_buf_t dec = HG_BUF_INIT, sub = HG_BUF_INIT;
  int rc = decode_all(&dec, p, nl);
  if (rc == 0 && eq && is_secret_name(dec.data ? dec.data : "", dec.len)) {
    rc = hg_buf_append(out, p, nl + 1);
    if (rc == 0) rc = hg_buf_puts(out, "REDACTED");
    *changed = 1;
  } else if (rc == 0 && eq && depth < REDACT_DEPTH) {
    const char *v = eq + 1;
    size_t vl = n - nl - 1;
    int inner = 0;
    rc = decode_all(&dec, v, vl);
    if (rc == 0 && dec.data && (dec.len != vl || memcmp(dec.data, v, vl) != 0 ||
                                memchr(dec.data, '?', dec.len) || memchr(dec.data, '=', dec.len)))
      rc = redact(&sub, dec.data ? dec.data : "", dec.len, depth + 1, &inner);
    if (rc == 0 && inner) {
      rc = hg_buf_append(out, p, nl + 1);
      if (rc == 0) rc = encode_value(out, sub.data ? sub.data : "", sub.len);
      *changed = 1;
    } else if (rc == 0) {
      rc = hg_buf_append(out, p, n);
    }
  } else if (rc == 0) {
    rc = hg_buf_append(out, p, n);
  }
  hg_buf_free(&dec);
  hg_buf_free(&sub);
  return rc;
}

/* A target, URL or bare query s[0..n): the part before the first '?' is kept (when
 * there is no '?', the whole is a query if it holds '='); the query is redacted
 * parameter by parameter. A fragment is treated as part of the last value. */
static int redact(hg_buf_t *out, const char *s, size_t n, int depth, int *changed) {
  const char *q = memchr(s, '?', n);
  const char *p = s;
  int rc = 0;
  if (q != NULL) {
    rc = hg_buf_append(out, s, (size_t)(q - s) + 1);
    p = q + 1;
  } else if (memchr(s, '=', n) == NULL) {
    return hg_buf_append(out, s, n);
  }
  const char *end = s + n;
  while (rc == 0 && p < end) {
    const char *amp = memchr(p, '&', (size_t)(end - p));
    const char *pe = amp ? amp : end;
    rc = redact_param(out, p, (size_t)(pe - p), depth, changed);
    if (rc == 0 && amp) rc = hg_buf_putc(out, '&');
    p = amp ? amp + 1 : end;
  }
  return rc;
}

int hg_log_redact_target(hg_buf_t *out, const char *s, size_t n) {
  size_t start = out->len;
  int changed = 0, rc;
  const char *q = memchr(s, '?', n);
  size_t pl = q ? (size_t)(q - s) : n;
  /* A URL carried in the path (`/proxy/https%3A%2F%2Fo%2Fa%3Ftoken%3D…`): when the
   * decoded path holds a query with a secret, log the path decoded and redacted. */
  hg_buf_t dec = HG_BUF_INIT, sub = HG_BUF_INIT;
  /* Only "%3F" (or an escaped '%', "%25…", for deeper encodings) can decode to '?':
   * other paths are kept as they are without a copy. */
  int maybe = 0;
  for (size_t i = 0; i + 2 < pl && !maybe; i++)
    maybe = s[i] == '%' && ((s[i + 1] == '3' && (s[i + 2] | 0x20) == 'f') || (s[i + 1] == '2' && s[i + 2] == '5'));
  rc = maybe ? decode_all(&dec, s, pl) : 0;
  if (rc == 0 && dec.data && memchr(dec.data, '?', dec.len) != NULL)
    rc = redact(&sub, dec.data, dec.len, 1, &changed);
  if (rc == 0 && changed) {
    rc = encode_value(out, sub.data ? sub.data : "", sub.len);
  } else if (rc == 0) {
    rc = hg_buf_append(out, s, pl);
  }
  hg_buf_free(&dec);
  hg_buf_free(&sub);
  if (rc == 0 && q) rc = redact(out, q, n - pl, 0, &changed);
  if (rc) {
    out->len = start;
    if (out->data) out->data[start] = '\0';
  }
  return rc;
}

/* Appends msg[0..n) with every URL or query in it redacted (see log.h). */
int hg_log_redact_text(hg_buf_t *out, const char *msg, size_t n) {
  size_t start = out->len;
  int rc = 0;
  const char *p = msg, *end = msg + n;
  while (rc == 0 && p < end) {
    /* words are split on white space only (a quote or bracket may sit inside a hostile
     * value); a word with '?' or '=' may carry a secret */
    const char *w = p;
    while (w < end && *w != ' ' && *w != '\t' && *w != '\r' && *w != '\n') w++;
    size_t wl = (size_t)(w - p);
    if (wl && (memchr(p, '?', wl) || memchr(p, '=', wl) || memchr(p, '%', wl))) {
      int changed = 0;
      rc = redact(out, p, wl, 0, &changed);
    } else {
      rc = hg_buf_append(out, p, wl);
    }
    if (rc == 0 && w < end) rc = hg_buf_putc(out, *w++);
    p = w;
  }
  if (rc) {
    out->len = start;
    if (out->data) out->data[start] = '\0';
  }
  return rc;
}
