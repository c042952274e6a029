/* fuzz_http.c — libFuzzer target for the HTTP request path without sockets.
 *
 * The input is a byte stream from a client. It is parsed with llhttp exactly as the
 * server does (HTTP_REQUEST, no lenient flags, the server's limits: target 8 KiB,
 * headers 16 KiB / 100 fields, body 64 KiB). Every complete request then goes through
 * what the server does with it away from the socket:
 *   - the access log's redaction (hg_log_redact_target) and the operational log's
 *     (hg_log_redact_text); property: a secret-named parameter's value (name decoded
 *     once and matched case-insensitively, an alphanumeric value of 6+ bytes occurring
 *     once in the target) never appears in either output; outputs stay within a bounded size;
 *   - the policy host: the request table (decoded query, headers, body) is built and a
 *     policy runs over it that echoes it as JSON and runs string.find with a pattern and
 *     subject taken from the request (headers X-P / X-S) through the sandbox. An unsound
 *     pattern-cost bound shows up as a libFuzzer timeout; the answer must be a valid
 *     response or a policy error, never a crash.
 * Seeds: tests/fuzz/corpus/fuzz_http/ (requests, smuggling attempts, encoded secrets).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <llhttp.h>

#include "base/buf.h"
#include "base/error.h"
#include "base/log.h"
#include "http/message.h"
#include "lua/policy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_TARGET 8192
#define MAX_HEADERS_BYTES 16384
#define MAX_FIELDS 100
#define MAX_BODY 65536

static const char POLICY[] =
    "local hg = require('hlsgate')\n"
    "return { on_request = function(req)\n"
    "  local p, s = req.headers['x-p'], req.headers['x-s'] or req.target\n"
    "  local found = p and select(2, pcall(string.find, s, p)) or nil\n"
    "  if req.query.status then return { status = tonumber(req.query.status) or 0, body = req.query.body } end\n"
    "  return hg.json(200, { q = req.query, h = req.headers, p = req.path, f = tostring(found),\n"
    "                        b = req.body and #req.body or 0 })\n"
    "end }\n";

static hg_policy_t *policy;

static hg_policy_t *get_policy(void) {
  if (policy) return policy;
  char path[] = "/tmp/fuzz_http_policy_XXXXXX";
  int fd = mkstemp(path);
  if (fd < 0 || write(fd, POLICY, sizeof(POLICY) - 1) != (ssize_t)(sizeof(POLICY) - 1)) abort();
  close(fd);
  char err[256];
  hg_policy_src_t *src = hg_policy_src_read(path, err, sizeof(err));
  unlink(path);
  if (src == NULL) abort();
  hg_policy_limits_t lim = {.memory = (size_t)32 << 20, .budget = 1000000};
  policy = hg_policy_new(src, &lim, err, sizeof(err));
  hg_policy_src_release(src);
  if (policy == NULL) {
    fprintf(stderr, "fuzz_http: %s\n", err);
    abort();
  }
  hg_log_set_level(HG_LOG_ERROR + 1); /* quiet: errors are expected */
  return policy;
}

typedef struct {
  hg_buf_t target, hbuf, body;
  size_t field_off[MAX_FIELDS], field_len[MAX_FIELDS], value_off[MAX_FIELDS], value_len[MAX_FIELDS];
  size_t nfields;
  int in_value;
  int too_big;
} msg_t;

static msg_t M;

static int on_message_begin(llhttp_t *p) {
  (void)p;
  hg_buf_clear(&M.target);
  hg_buf_clear(&M.hbuf);
  hg_buf_clear(&M.body);
  M.nfields = 0;
  M.in_value = 0;
  M.too_big = 0;
  return 0;
}

static int on_url(llhttp_t *p, const char *at, size_t len) {
  (void)p;
  if (M.target.len + len > MAX_TARGET) return -1; /* 414 */
  return hg_buf_append(&M.target, at, len) ? -1 : 0;
}

static int on_header_field(llhttp_t *p, const char *at, size_t len) {
  (void)p;
  if (M.in_value || M.nfields == 0) {
    if (M.nfields == MAX_FIELDS) return -1; /* 431 */
    M.field_off[M.nfields] = M.hbuf.len;
    M.field_len[M.nfields] = 0;
    M.value_off[M.nfields] = 0;
    M.value_len[M.nfields] = 0;
    M.nfields++;
    M.in_value = 0;
  }
  if (M.hbuf.len + len > MAX_HEADERS_BYTES) return -1;
  M.field_len[M.nfields - 1] += len;
  return hg_buf_append(&M.hbuf, at, len) ? -1 : 0;
}

static int on_header_value(llhttp_t *p, const char *at, size_t len) {
  (void)p;
  if (M.nfields == 0) return -1;
  if (!M.in_value) {
    M.in_value = 1;
    M.value_off[M.nfields - 1] = M.hbuf.len;
  }
  if (M.hbuf.len + len > MAX_HEADERS_BYTES) return -1;
  M.value_len[M.nfields - 1] += len;
  return hg_buf_append(&M.hbuf, at, len) ? -1 : 0;
}

static int on_body(llhttp_t *p, const char *at, size_t len) {
  (void)p;
  if (M.body.len + len > MAX_BODY) return -1; /* 413 */
  return hg_buf_append(&M.body, at, len) ? -1 : 0;
}

static int hexval(int c) {
  if (c >= '0' && c <= '9') return c - '0';
  c |= 0x20;
  return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* Decodes once, as the core's query decoder does. */
static size_t decode1(char *out, const char *s, size_t n) {
  size_t k = 0;
  for (size_t i = 0; i < n; i++) {
    int hi, lo;
    if (s[i] == '%' && i + 2 < n && (hi = hexval((unsigned char)s[i + 1])) >= 0 &&
        (lo = hexval((unsigned char)s[i + 2])) >= 0) {
      out[k++] = (char)(hi * 16 + lo);
      i += 2;
    } else {
      out[k++] = s[i] == '+' ? ' ' : s[i];
    }
  }
  return k;
}

static int secret_name(const char *s, size_t n) {
  static const char *const names[] = {"token", "access_token", "jwt", "key", "sig", "signature",
                                      "password", "x-amz-signature", "x-amz-credential",
                                      "x-amz-security-token"};
  for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
    if (strlen(names[i]) == n && strncasecmp(names[i], s, n) == 0) return 1;
  return 0;
}

static size_t count(const char *hay, size_t hn, const char *needle, size_t nn) {
  size_t c = 0;
  for (size_t i = 0; nn && i + nn <= hn; i++) c += memcmp(hay + i, needle, nn) == 0;
  return c;
}

/* The redaction property over the top-level query of the target. */
static void check_redaction(const char *t, size_t n) {
  hg_buf_t a = HG_BUF_INIT, b = HG_BUF_INIT;
  if (hg_log_redact_target(&a, t, n) != 0 || hg_log_redact_text(&b, t, n) != 0) abort();
  /* bounded: re-encoding a decoded nested value at most triples each byte per level */
  if (a.len > 81 * n + 64 || b.len > 81 * n + 64) abort();
  const char *q = memchr(t, '?', n);
  char name[MAX_TARGET];
  for (const char *p = q ? q + 1 : t + n, *end = t + n; p < end;) {
    const char *amp = memchr(p, '&', (size_t)(end - p));
    const char *pe = amp ? amp : end;
    const char *eq = memchr(p, '=', (size_t)(pe - p));
    if (eq) {
      size_t nl = decode1(name, p, (size_t)(eq - p));
      const char *v = eq + 1;
      size_t vl = (size_t)(pe - v);
      /* (a value that is part of the marker "REDACTED" is found in every output) */
      int alnum = 1;
      for (size_t i = 0; i < vl; i++)
        alnum &= (v[i] >= '0' && v[i] <= '9') || ((v[i] | 0x20) >= 'a' && (v[i] | 0x20) <= 'z');
      /* an alphanumeric value: nothing else in the output (names, "=REDACTED") can
       * spell it by accident */
      if (secret_name(name, nl) && alnum && vl >= 6 && count(t, n, v, vl) == 1 &&
          count("REDACTED", 8, v, vl) == 0 && count(v, vl, "REDACTED", 8) == 0) {
        int ws = memchr(t, ' ', n) || memchr(t, '\t', n) || memchr(t, '\r', n) || memchr(t, '\n', n);
        if (count(a.data, a.len, v, vl) || (!ws && count(b.data, b.len, v, vl))) {
          fprintf(stderr, "secret %.*s leaked: %.*s\n", (int)vl, v, (int)a.len, a.data);
          abort();
        }
      }
    }
    p = amp ? amp + 1 : end;
  }
  hg_buf_free(&a);
  hg_buf_free(&b);
}

static int on_message_complete(llhttp_t *p) {
  hg_buf_putc(&M.target, '\0'); /* NUL-terminated, as the server keeps it */
  M.target.len--;
  const char *t = M.target.data ? M.target.data : "";
  size_t tn = M.target.len;
  check_redaction(t, tn);

  hg_arena_t *arena = hg_arena_new(4096);
  hg_request_t req;
  memset(&req, 0, sizeof(req));
  req.arena = arena;
  req.method = llhttp_method_name((llhttp_method_t)p->method);
  req.target = t;
  req.target_len = tn;
  const char *qm = memchr(t, '?', tn);
  req.path_len = qm ? (size_t)(qm - t) : tn;
  hg_header_t hs[MAX_FIELDS];
  for (size_t i = 0; i < M.nfields; i++) {
    hs[i].name = M.hbuf.data + M.field_off[i];
    hs[i].name_len = M.field_len[i];
    hs[i].value = M.value_len[i] ? M.hbuf.data + M.value_off[i] : "";
    hs[i].value_len = M.value_len[i];
  }
  req.headers = hs;
  req.nheaders = M.nfields;
  req.body = M.body.len ? M.body.data : NULL;
  req.body_len = M.body.len;
  strcpy(req.id, "fuzz");
  strcpy(req.client, "127.0.0.1");
  req.http_major = p->http_major;
  req.http_minor = p->http_minor;
  hg_response_t res;
  memset(&res, 0, sizeof(res));
  hg_plan_t plan;
  memset(&plan, 0, sizeof(plan));
  hg_policy_task_t *task;
  int rc = hg_policy_on_request(get_policy(), &req, &res, &plan, NULL, NULL, &task);
  if (rc == HG_PLAN_RESPOND && (res.status < 100 || res.status > 599)) abort();
  if (rc == HG_PLAN_FETCH) hg_policy_plan_done(get_policy(), &plan);
  hg_arena_free(arena);
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static llhttp_settings_t settings;
  static int init;
  if (!init) {
    llhttp_settings_init(&settings);
    settings.on_message_begin = on_message_begin;
    settings.on_url = on_url;
    settings.on_header_field = on_header_field;
    settings.on_header_value = on_header_value;
    settings.on_body = on_body;
    settings.on_message_complete = on_message_complete;
    init = 1;
  }
  llhttp_t parser;
  llhttp_init(&parser, HTTP_REQUEST, &settings);
  llhttp_execute(&parser, (const char *)data, size);
  return 0;
}
