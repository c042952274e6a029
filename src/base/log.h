/* log.h — operational log (stderr, text) and access log (stdout, one JSON line each).
 *
 * Both are safe to call from any thread: each line goes out in a single write(2), so
 * lines from different workers never interleave (up to PIPE_BUF on pipes).
 */
#ifndef HG_BASE_LOG_H
#define HG_BASE_LOG_H

#include <stddef.h>

#include "base/buf.h"

typedef enum { HG_LOG_DEBUG, HG_LOG_INFO, HG_LOG_WARN, HG_LOG_ERROR } hg_log_level_t;

/* Lines below `level` are dropped. Call before starting threads. */
void hg_log_set_level(hg_log_level_t level);

/* Names the calling thread in its log lines ("main", "w1", …); `name` must outlive it. */
void hg_log_set_thread(const char *name);

/* Writes "<UTC time> [<level>] <thread>: <message>\n" to stderr. Any thread. */
void hg_log(hg_log_level_t level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Writes one access-log line (the caller's complete JSON, without newline) to stdout,
 * through the calling thread's buffer when buffering is on. Any thread. */
void hg_log_access(const char *line, size_t n);

/* Buffers access-log lines per thread, up to `bytes` each (0: a write per line). Call
 * before the threads that log start. */
void hg_log_access_buffer(size_t bytes);

/* Writes out the calling thread's buffered lines (a timer's job: lines wait at most its
 * interval). hg_log_access_end also frees the buffer: call it before the thread ends. */
void hg_log_access_flush(void);
void hg_log_access_end(void);

/* Appends the request target s[0..n) to `out` with the values of secret-bearing query
 * parameters (token, signatures, credentials, keys) replaced by "REDACTED", so access
 * logs never carry a usable token. Names are compared percent-decoded (once or more)
 * and case-insensitively; a value that is itself a URL or query (percent-encoded once
 * or more, '+' for space) is decoded, redacted the same way (up to 4 levels deep) and
 * re-encoded; a URL carried in the path likewise. Parameters without secrets are kept
 * byte for byte. Returns 0 or HG_ENOMEM (out unchanged). Any thread. */
int hg_log_redact_target(hg_buf_t *out, const char *s, size_t n);

/* Appends the free text msg[0..n) with hg_log_redact_target's rules applied to every
 * word (split on white space) that holds '?' or '='. hg_log applies it to
 * every message. Returns 0 or HG_ENOMEM (out unchanged). Any thread. */
int hg_log_redact_text(hg_buf_t *out, const char *msg, size_t n);

/* Appends an RFC 3339 UTC timestamp with milliseconds for the wall clock now. */
int hg_log_timestamp(hg_buf_t *out);

#endif
