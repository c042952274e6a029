/* message.h — a parsed request and the response a policy or the core builds for it.
 *
 * Plain data shared by the HTTP server (which fills requests and writes responses) and
 * the policy host (which reads requests and fills responses). All strings live in the
 * request's arena and die with it; one thread (the connection's worker) owns both.
 */
#ifndef HG_HTTP_MESSAGE_H
#define HG_HTTP_MESSAGE_H

#include <stddef.h>
#include <stdint.h>

#include "base/arena.h"
#include "base/header.h"


typedef struct hg_request_s {
  hg_arena_t *arena;
  const char *method;    /* "GET", "HEAD", … (static string) */
  const char *target;    /* raw request target, NUL-terminated */
  size_t target_len;
  size_t path_len;       /* target[0..path_len) is the path; the query follows a '?' */
  hg_header_t *headers;
  size_t nheaders;
  const char *body;      /* NULL when there is none */
  size_t body_len;
  char id[33];           /* X-Request-Id: received if sane, else 16 random hex bytes */
  char client[64];       /* peer address, no port */
  int http_major, http_minor; /* 2.0 for HTTP/2 */
  int tls;               /* received over TLS (the scheme of URLs made for it: https) */
  uint64_t start_ns;     /* hrtime at the first byte */
  /* Set by handlers for the access log and metrics (NULL / 0 when not applicable). */
  const char *route;        /* route name ("stream", "proxy", "healthz", …) */
  const char *log_policy;   /* policy version that handled the request */
  const char *log_cache;    /* "hit", "miss", "stale", … */
  int log_upstream_status;
  double log_upstream_ms;
} hg_request_t;

typedef struct hg_response_s {
  int status;
  hg_header_t headers[32];
  size_t nheaders;
  const char *body; /* arena-owned or static; NULL for none */
  size_t body_len;
  /* Or a body the server borrows: it calls body_release(body_ref) once the body is
   * written or dropped (hg_http_respond: exactly once, whatever happens). */
  void (*body_release)(void *ref);
  void *body_ref;
} hg_response_t;

/* Returns the first header named `name` (ASCII case-insensitive) or NULL. */
const hg_header_t *hg_request_header(const hg_request_t *req, const char *name);

/* Sets (appends) a response header; both strings must outlive the response (arena or
 * static). Returns 0, or HG_ETOOBIG when the response has no room left. */
int hg_response_add_header(hg_response_t *res, const char *name, size_t name_len,
                           const char *value, size_t value_len);

/* Fills `res` with the SPEC §8 JSON error body {"error": msg, "status": N, "request_id": id}
 * (allocated in `arena`). Returns 0 or HG_ENOMEM. */
int hg_response_error(hg_response_t *res, hg_arena_t *arena, int status, const char *msg,
                      const char *request_id);

/* The same JSON error body alone, in `arena`: *body, *len. Returns 0 or HG_ENOMEM. */
int hg_error_json(hg_arena_t *arena, int status, const char *msg, const char *request_id,
                  const char **body, size_t *len);

/* Reason phrase for a status code ("OK", "Not Found", …; "Unknown" otherwise). */
const char *hg_http_reason(int status);

#endif
