/* message.c — helpers over requests and responses (see message.h). */
#include "http/message.h"

#include <string.h>
#include <strings.h>

#include "base/buf.h"
#include "base/error.h"

const hg_header_t *hg_request_header(const hg_request_t *req, const char *name) {
  size_t n = strlen(name);
  for (size_t i = 0; i < req->nheaders; i++) {
    const hg_header_t *h = &req->headers[i];
    if (h->name_len == n && strncasecmp(h->name, name, n) == 0) return h;
  }
  return NULL;
}

int hg_response_add_header(hg_response_t *res, const char *name, size_t name_len,
                           const char *value, size_t value_len) {
  if (res->nheaders == sizeof(res->headers) / sizeof(res->headers[0])) return HG_ETOOBIG;
  hg_header_t *h = &res->headers[res->nheaders++];
  h->name = name, h->name_len = name_len;
  h->value = value, h->value_len = value_len;
  return 0;
}

int hg_error_json(hg_arena_t *arena, int status, const char *msg, const char *request_id,
                  const char **body, size_t *len) {
  hg_buf_t b = HG_BUF_INIT;
  int rc = hg_buf_puts(&b, "{\"error\":\"");
  if (!rc) rc = hg_buf_json_escape(&b, msg, strlen(msg));
  if (!rc) rc = hg_buf_printf(&b, "\",\"status\":%d", status);
  if (!rc && request_id && *request_id) {
    rc = hg_buf_puts(&b, ",\"request_id\":\"");
    if (!rc) rc = hg_buf_json_escape(&b, request_id, strlen(request_id));
    if (!rc) rc = hg_buf_putc(&b, '"');
  }
  if (!rc) rc = hg_buf_puts(&b, "}\n");
  *body = rc ? NULL : hg_arena_strndup(arena, b.data, b.len);
  *len = b.len;
  hg_buf_free(&b);
  return *body ? 0 : HG_ENOMEM;
}

int hg_response_error(hg_response_t *res, hg_arena_t *arena, int status, const char *msg,
                      const char *request_id) {
  const char *body;
  size_t len;
  if (hg_error_json(arena, status, msg, request_id, &body, &len) != 0) return HG_ENOMEM;
  res->status = status;
  res->nheaders = 0;
  res->body = body;
  res->body_len = len;
  return hg_response_add_header(res, "Content-Type", 12, "application/json", 16);
}

const char *hg_http_reason(int status) {
  switch (status) {
  case 100: return "Continue";
  case 200: return "OK";
  case 201: return "Created";
  case 204: return "No Content";
  case 206: return "Partial Content";
  case 301: return "Moved Permanently";
  case 302: return "Found";
  case 303: return "See Other";
  case 304: return "Not Modified";
  case 307: return "Temporary Redirect";
  case 308: return "Permanent Redirect";
  case 400: return "Bad Request";
  case 401: return "Unauthorized";
  case 403: return "Forbidden";
  case 404: return "Not Found";
  case 405: return "Method Not Allowed";
  case 408: return "Request Timeout";
  case 409: return "Conflict";
  case 410: return "Gone";
  case 411: return "Length Required";
  case 412: return "Precondition Failed";
  case 413: return "Content Too Large";
  case 414: return "URI Too Long";
  case 415: return "Unsupported Media Type";
  case 416: return "Range Not Satisfiable";
  case 429: return "Too Many Requests";
  case 431: return "Request Header Fields Too Large";
  case 500: return "Internal Server Error";
  case 501: return "Not Implemented";
  case 502: return "Bad Gateway";
  case 503: return "Service Unavailable";
  case 504: return "Gateway Timeout";
  default: return "Unknown";
  }
}
