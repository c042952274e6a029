/* log.c — text operational log on stderr and JSON access log on stdout (see log.h). */
#include "base/log.h"

#include <errno.h>
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
  struct timeval tv;
  struct tm tm;
  gettimeofday(&tv, NULL);
  gmtime_r(&tv.tv_sec, &tm);
  return hg_buf_printf(out, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                       tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                       (int)(tv.tv_usec / 1000));
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
  line[len++] = '\n';
  write_all(STDERR_FILENO, line, len);
}

void hg_log_access(const char *line, size_t n) {
  /* One write for line + newline: copy when small, else two writes (rare). */
  char tmp[2048];
  if (n < sizeof(tmp)) {
    memcpy(tmp, line, n);
    tmp[n] = '\n';
    write_all(STDOUT_FILENO, tmp, n + 1);
  } else {
    write_all(STDOUT_FILENO, line, n);
    write_all(STDOUT_FILENO, "\n", 1);
  }
}

/* Security: query parameter names whose values are credentials. Matched
 * case-insensitively; anything starting with "x-amz-" other than harmless ones is
 * treated as a signature component too. */
static int is_secret_param(const char *name, size_t n) {
  static const char *secrets[] = {"token", "access_token", "jwt", "key", "sig",
                                  "signature", "password", "secret", "auth"};
  for (size_t i = 0; i < sizeof(secrets) / sizeof(secrets[0]); i++) {
    if (strlen(secrets[i]) == n && strncasecmp(secrets[i], name, n) == 0) return 1;
  }
  static const char *amz[] = {"X-Amz-Signature", "X-Amz-Credential", "X-Amz-Security-Token"};
  for (size_t i = 0; i < sizeof(amz) / sizeof(amz[0]); i++) {
    if (strlen(amz[i]) == n && strncasecmp(amz[i], name, n) == 0) return 1;
  }
  return 0;
}

int hg_log_redact_target(hg_buf_t *out, const char *s, size_t n) {
  const char *q = memchr(s, '?', n);
  size_t start = out->len;
  if (q == NULL) return hg_buf_append(out, s, n);
  int rc = hg_buf_append(out, s, (size_t)(q - s) + 1);
  const char *p = q + 1, *end = s + n;
  while (rc == 0 && p < end) {
    const char *amp = memchr(p, '&', (size_t)(end - p));
    const char *pe = amp ? amp : end;
    const char *eq = memchr(p, '=', (size_t)(pe - p));
    if (eq != NULL && is_secret_param(p, (size_t)(eq - p))) {
      rc = hg_buf_append(out, p, (size_t)(eq - p) + 1);
      if (rc == 0) rc = hg_buf_puts(out, "REDACTED");
    } else {
      rc = hg_buf_append(out, p, (size_t)(pe - p));
    }
    if (rc == 0 && amp) rc = hg_buf_putc(out, '&');
    p = amp ? amp + 1 : end;
  }
  if (rc) {
    out->len = start;
    if (out->data) out->data[start] = '\0';
  }
  return rc;
}
