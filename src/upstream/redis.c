/* redis.c — the Redis client (see redis.h).
 *
 * Each pooled connection is a slot: DOWN (retry allowed from retry_at), RESOLVING,
 * CONNECTING, READY. A socket attempt is a separately allocated `sock_t` so a failed
 * connection can be dropped at once while libuv still holds its handle: the slot just
 * forgets it (owner = NULL) and starts a new one later. Calls queue on a slot in the order
 * their bytes were written; Redis answers in that order, so replies are matched to calls
 * by position (pipelining). A call that times out or is cancelled stays in the queue,
 * without a callback, until its replies have been read and dropped.
 */
#include "upstream/redis.h"

#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/error.h"
#include "base/log.h"

#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 5000

enum { C_DOWN, C_RESOLVING, C_CONNECTING, C_READY };

typedef struct rconn_s rconn_t;

typedef struct sock_s {
  rconn_t *owner; /* NULL once abandoned: its callbacks only clean up */
  uv_getaddrinfo_t gai;
  uv_tcp_t tcp;
  uv_connect_t creq;
  int tcp_open;
  redisReader *reader;
} sock_t;

struct hg_redis_call_s {
  hg_redis_t *r;
  hg_redis_call_t *next;              /* the slot's queue */
  hg_redis_call_t *all_prev, *all_next; /* every call not yet answered */
  hg_redis_cb cb;                     /* NULL once answered or cancelled */
  void *ud;
  size_t ncmds, nreplies;
  void **replies;
  uv_timer_t timer;
  int timer_open;
  int in_queue;
  int internal; /* AUTH / SELECT on connect */
  int err;
  char msg[160];
};

struct rconn_s {
  hg_redis_t *r;
  int state;
  sock_t *sock;
  hg_redis_call_t *head, *tail;
  size_t inflight;
  hg_buf_t outq; /* bytes written before the connection was up */
  uint64_t retry_at, backoff_ms;
  uv_timer_t ctimer; /* connect timeout */
};

struct hg_redis_s {
  uv_loop_t *loop;
  hg_redis_config_t cfg;
  rconn_t conns[HG_REDIS_MAX_POOL];
  hg_redis_call_t *all;
  size_t ready;
  uint64_t errors;
  int closing, handles;
};

/* ---- URL ---- */

int hg_redis_parse_url(const char *url, hg_redis_config_t *cfg, char *err, size_t errlen) {
  if (strncmp(url, "rediss://", 9) == 0) {
    snprintf(err, errlen, "rediss:// (TLS) is not supported: use redis:// on a private network");
    return HG_EINVAL;
  }
  if (strncmp(url, "redis://", 8) != 0) {
    snprintf(err, errlen, "the Redis URL must start with redis://");
    return HG_EINVAL;
  }
  const char *p = url + 8, *end = p + strcspn(p, "/?#");
  const char *at = NULL;
  for (const char *q = p; q < end; q++)
    if (*q == '@') at = q; /* the last '@': a password may hold one */
  cfg->user[0] = cfg->password[0] = '\0';
  if (at) {
    const char *colon = memchr(p, ':', (size_t)(at - p));
    size_t ulen = colon ? (size_t)(colon - p) : 0;
    const char *pw = colon ? colon + 1 : p;
    size_t plen = (size_t)(at - pw);
    if (ulen >= sizeof(cfg->user) || plen >= sizeof(cfg->password)) {
      snprintf(err, errlen, "Redis user or password too long");
      return HG_EINVAL;
    }
    memcpy(cfg->user, p, ulen);
    cfg->user[ulen] = '\0';
    memcpy(cfg->password, pw, plen);
    cfg->password[plen] = '\0';
    p = at + 1;
  }
  const char *hend;
  if (*p == '[') {
    hend = memchr(p, ']', (size_t)(end - p));
    if (hend == NULL) {
      snprintf(err, errlen, "unterminated [IPv6] host in the Redis URL");
      return HG_EINVAL;
    }
    p++;
  } else {
    hend = memchr(p, ':', (size_t)(end - p));
    if (hend == NULL) hend = end;
  }
  size_t hlen = (size_t)(hend - p);
  if (hlen == 0 || hlen >= sizeof(cfg->host)) {
    snprintf(err, errlen, "the Redis URL has no host");
    return HG_EINVAL;
  }
  memcpy(cfg->host, p, hlen);
  cfg->host[hlen] = '\0';
  const char *rest = *hend == ']' ? hend + 1 : hend;
  cfg->port = 6379;
  if (rest < end && *rest == ':') {
    char *e;
    long port = strtol(rest + 1, &e, 10);
    if (e != end || port < 1 || port > 65535) {
      snprintf(err, errlen, "bad port in the Redis URL");
      return HG_EINVAL;
    }
    cfg->port = (int)port;
  } else if (rest != end) {
    snprintf(err, errlen, "bad host in the Redis URL");
    return HG_EINVAL;
  }
  cfg->db = 0;
  if (*end == '/' && end[1] != '\0') {
    char *e;
    long db = strtol(end + 1, &e, 10);
    if (*e != '\0' || db < 0 || db > 100000) {
      snprintf(err, errlen, "bad database number in the Redis URL");
      return HG_EINVAL;
    }
    cfg->db = (int)db;
  } else if (*end != '\0' && strcmp(end, "/") != 0) {
    snprintf(err, errlen, "unexpected '%c' in the Redis URL", *end);
    return HG_EINVAL;
  }
  return 0;
}

/* ---- calls ---- */

static void call_maybe_free(hg_redis_call_t *c) {
  if (c->timer_open || c->in_queue) return;
  for (size_t i = 0; i < c->nreplies; i++) freeReplyObject(c->replies[i]);
  free(c->replies);
  free(c);
}

static void on_call_timer_close(uv_handle_t *h) {
  hg_redis_call_t *c = h->data;
  c->timer_open = 0;
  call_maybe_free(c);
}

/* Answers a call once (unless cancelled); stops its timer. */
static void call_answer(hg_redis_call_t *c, int err, const char *msg) {
  hg_redis_cb cb = c->cb;
  c->cb = NULL;
  if (c->all_prev) c->all_prev->all_next = c->all_next;
  else if (c->r->all == c) c->r->all = c->all_next;
  if (c->all_next) c->all_next->all_prev = c->all_prev;
  c->all_prev = c->all_next = NULL;
  if (!uv_is_closing((uv_handle_t *)&c->timer)) uv_close((uv_handle_t *)&c->timer, on_call_timer_close);
  if (cb) cb(c->ud, err ? NULL : c->replies, c->ncmds, err, msg);
}

static void on_call_timer(uv_timer_t *t) {
  hg_redis_call_t *c = t->data;
  if (c->err) call_answer(c, c->err, c->msg);
  else call_answer(c, HG_ETIMEOUT, "redis call timed out");
}

void hg_redis_cancel(hg_redis_call_t *c) {
  if (c == NULL || c->cb == NULL) return;
  c->cb = NULL;
  call_answer(c, 0, NULL);
}

/* ---- connections ---- */

static void on_sock_close(uv_handle_t *h) {
  sock_t *s = h->data;
  redisReaderFree(s->reader);
  free(s);
}

/* Drops the slot's connection and fails its queue; a reconnect waits for the backoff. */
static void conn_fail(rconn_t *k, int err, const char *msg) {
  hg_redis_t *r = k->r;
  sock_t *s = k->sock;
  if (k->state == C_READY && r->ready) r->ready--;
  k->sock = NULL;
  k->state = C_DOWN;
  if (!r->closing) {
    r->errors++;
    hg_log(HG_LOG_WARN, "redis %s:%d: %s", r->cfg.host, r->cfg.port, msg);
  }
  k->retry_at = uv_now(r->loop) + k->backoff_ms;
  k->backoff_ms = k->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : k->backoff_ms * 2;
  uv_timer_stop(&k->ctimer);
  hg_buf_clear(&k->outq);
  if (s) {
    s->owner = NULL;
    if (s->tcp_open) uv_close((uv_handle_t *)&s->tcp, on_sock_close);
    else uv_cancel((uv_req_t *)&s->gai); /* on_resolved frees it */
  }
  hg_redis_call_t *c = k->head;
  k->head = k->tail = NULL;
  k->inflight = 0;
  while (c) { /* answered from the loop, never from inside a send or a read callback */
    hg_redis_call_t *next = c->next;
    c->in_queue = 0;
    if (c->cb) {
      c->err = err ? err : HG_EUPSTREAM;
      snprintf(c->msg, sizeof(c->msg), "%s", msg);
      uv_timer_start(&c->timer, on_call_timer, 0, 0);
    } else if (c->internal) {
      call_answer(c, 0, NULL);
    }
    call_maybe_free(c);
    c = next;
  }
}

typedef struct wreq_s {
  uv_write_t req;
  sock_t *s;
  char *data;
} wreq_t;

static void on_write(uv_write_t *req, int status) {
  wreq_t *w = req->data;
  sock_t *s = w->s;
  free(w->data);
  free(w);
  if (status < 0 && s->owner) conn_fail(s->owner, status, uv_strerror(status));
}

/* Writes (or, before the connection is up, queues) bytes; takes `data` (malloc'd). */
static void conn_write(rconn_t *k, char *data, size_t len) {
  if (k->state != C_READY) {
    if (hg_buf_append(&k->outq, data, len) != 0) conn_fail(k, HG_ENOMEM, "out of memory");
    free(data);
    return;
  }
  wreq_t *w = malloc(sizeof(*w));
  if (w == NULL) {
    free(data);
    conn_fail(k, HG_ENOMEM, "out of memory");
    return;
  }
  w->s = k->sock;
  w->data = data;
  w->req.data = w;
  uv_buf_t b = uv_buf_init(data, (unsigned)len);
  int rc = uv_write(&w->req, (uv_stream_t *)&k->sock->tcp, &b, 1, on_write);
  if (rc < 0) {
    free(data);
    free(w);
    conn_fail(k, rc, uv_strerror(rc));
  }
}

static void enqueue(rconn_t *k, hg_redis_call_t *c) {
  c->in_queue = 1;
  c->next = NULL;
  if (k->tail) k->tail->next = c;
  else k->head = c;
  k->tail = c;
  k->inflight++;
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf) {
  (void)h;
  (void)hint;
  buf->base = malloc(16384);
  buf->len = buf->base ? 16384 : 0;
}

/* A complete set of replies for the call at the head of the queue. Returns 0, or -1 when
 * the connection was dropped meanwhile. */
static int deliver(rconn_t *k, sock_t *s) {
  hg_redis_call_t *c = k->head;
  k->head = c->next;
  if (k->head == NULL) k->tail = NULL;
  k->inflight--;
  c->in_queue = 0;
  if (c->internal) {
    for (size_t i = 0; i < c->nreplies; i++) {
      redisReply *rep = c->replies[i];
      if (rep->type == REDIS_REPLY_ERROR) {
        char msg[160];
        snprintf(msg, sizeof(msg), "AUTH/SELECT refused: %.*s", (int)(rep->len > 100 ? 100 : rep->len), rep->str);
        call_answer(c, 0, NULL);
        call_maybe_free(c);
        conn_fail(k, HG_EUPSTREAM, msg);
        return -1;
      }
    }
    k->backoff_ms = BACKOFF_MIN_MS;
    call_answer(c, 0, NULL);
  } else if (c->cb) {
    k->backoff_ms = BACKOFF_MIN_MS;
    call_answer(c, 0, NULL); /* runs the callback: may send, cancel, or fail this slot */
  }
  call_maybe_free(c);
  return s->owner == k ? 0 : -1;
}

static void on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf) {
  sock_t *s = st->data;
  rconn_t *k = s->owner;
  if (k == NULL || nread < 0) {
    free(buf->base);
    if (k) conn_fail(k, nread == UV_EOF ? UV_ECONNRESET : (int)nread, nread == UV_EOF ? "connection closed by redis" : uv_strerror((int)nread));
    return;
  }
  int rc = redisReaderFeed(s->reader, buf->base, (size_t)nread);
  free(buf->base);
  if (rc != REDIS_OK) {
    conn_fail(k, HG_EUPSTREAM, "redis protocol error");
    return;
  }
  for (;;) {
    void *reply = NULL;
    if (redisReaderGetReply(s->reader, &reply) != REDIS_OK) {
      conn_fail(k, HG_EUPSTREAM, "redis protocol error");
      return;
    }
    if (reply == NULL) return;
    hg_redis_call_t *c = k->head;
    if (c == NULL) {
      freeReplyObject(reply);
      conn_fail(k, HG_EUPSTREAM, "unexpected reply from redis");
      return;
    }
    c->replies[c->nreplies++] = reply;
    if (c->nreplies == c->ncmds && deliver(k, s) != 0) return;
  }
}

static void on_connect(uv_connect_t *req, int status) {
  sock_t *s = req->data;
  rconn_t *k = s->owner;
  if (k == NULL) return;
  if (status < 0) {
    char msg[160];
    snprintf(msg, sizeof(msg), "cannot connect: %s", uv_strerror(status));
    conn_fail(k, status, msg);
    return;
  }
  uv_timer_stop(&k->ctimer);
  uv_tcp_nodelay(&s->tcp, 1);
  k->state = C_READY;
  k->r->ready++;
  int rc = uv_read_start((uv_stream_t *)&s->tcp, on_alloc, on_read);
  if (rc < 0) {
    conn_fail(k, rc, uv_strerror(rc));
    return;
  }
  if (k->outq.len) {
    size_t len;
    char *data = hg_buf_steal(&k->outq, &len);
    conn_write(k, data, len);
  }
}

static void on_resolved(uv_getaddrinfo_t *gai, int status, struct addrinfo *res) {
  sock_t *s = gai->data;
  rconn_t *k = s->owner;
  if (k == NULL) {
    if (res) uv_freeaddrinfo(res);
    redisReaderFree(s->reader);
    free(s);
    return;
  }
  if (status < 0 || res == NULL) {
    if (res) uv_freeaddrinfo(res);
    char msg[320];
    snprintf(msg, sizeof(msg), "cannot resolve %s: %s", k->r->cfg.host, uv_strerror(status));
    k->sock = NULL; /* nothing of libuv's holds s any more */
    redisReaderFree(s->reader);
    free(s);
    conn_fail(k, status < 0 ? status : UV_EAI_NONAME, msg);
    return;
  }
  uv_tcp_init(k->r->loop, &s->tcp);
  s->tcp.data = s;
  s->tcp_open = 1;
  s->creq.data = s;
  k->state = C_CONNECTING;
  int rc = uv_tcp_connect(&s->creq, &s->tcp, res->ai_addr, on_connect);
  uv_freeaddrinfo(res);
  if (rc < 0) conn_fail(k, rc, uv_strerror(rc));
}

static void on_connect_timeout(uv_timer_t *t) {
  rconn_t *k = t->data;
  if (k->state == C_RESOLVING || k->state == C_CONNECTING) conn_fail(k, HG_ETIMEOUT, "connect timed out");
}

/* Formats commands into one malloc'd buffer. Returns it (length in *len) or NULL. */
static char *format(size_t ncmds, const int *argc, const char *const *argv, const size_t *lens,
                    size_t *len) {
  hg_buf_t b = HG_BUF_INIT;
  size_t at = 0;
  for (size_t i = 0; i < ncmds; i++) {
    char *cmd = NULL;
    int n = redisFormatCommandArgv(&cmd, argc[i], (const char **)(argv + at), lens + at);
    at += (size_t)argc[i];
    if (n < 0 || hg_buf_append(&b, cmd, (size_t)n) != 0) {
      free(cmd);
      hg_buf_free(&b);
      return NULL;
    }
    free(cmd);
  }
  return hg_buf_steal(&b, len);
}

static hg_redis_call_t *call_new(hg_redis_t *r, size_t ncmds) {
  hg_redis_call_t *c = calloc(1, sizeof(*c));
  if (c == NULL) return NULL;
  c->replies = calloc(ncmds ? ncmds : 1, sizeof(void *));
  if (c->replies == NULL) {
    free(c);
    return NULL;
  }
  c->r = r;
  c->ncmds = ncmds;
  uv_timer_init(r->loop, &c->timer);
  c->timer.data = c;
  c->timer_open = 1;
  return c;
}

/* Starts a socket for a DOWN slot, with AUTH and SELECT queued first. */
static int conn_start(rconn_t *k) {
  hg_redis_t *r = k->r;
  sock_t *s = calloc(1, sizeof(*s));
  if (s == NULL || (s->reader = redisReaderCreate()) == NULL) {
    free(s);
    return HG_ENOMEM;
  }
  s->owner = k;
  s->gai.data = s;
  k->sock = s;
  k->state = C_RESOLVING;
  /* AUTH, then SELECT: one internal call, written in one piece ahead of any caller's. */
  const char *argv[5];
  size_t lens[5];
  int argc[2];
  size_t ncmds = 0, nargs = 0;
  char dbs[16];
  if (r->cfg.password[0]) { /* Security: the password goes to Redis only, never to a log */
    argv[nargs] = "AUTH", lens[nargs++] = 4;
    if (r->cfg.user[0]) argv[nargs] = r->cfg.user, lens[nargs] = strlen(r->cfg.user), nargs++;
    argv[nargs] = r->cfg.password, lens[nargs] = strlen(r->cfg.password), nargs++;
    argc[ncmds++] = (int)nargs;
  }
  if (r->cfg.db) {
    snprintf(dbs, sizeof(dbs), "%d", r->cfg.db);
    argv[nargs] = "SELECT", lens[nargs++] = 6;
    argv[nargs] = dbs, lens[nargs++] = strlen(dbs);
    argc[ncmds++] = 2;
  }
  if (ncmds) {
    size_t n;
    char *cmds = format(ncmds, argc, argv, lens, &n);
    hg_redis_call_t *c = cmds ? call_new(r, ncmds) : NULL;
    if (c) {
      c->internal = 1;
      enqueue(k, c);
      conn_write(k, cmds, n);
    } else {
      free(cmds);
    }
  }
  char port[8];
  snprintf(port, sizeof(port), "%d", r->cfg.port);
  struct addrinfo hints;
  memset(&hints, 0, sizeof(hints));
  hints.ai_socktype = SOCK_STREAM;
  uv_timer_start(&k->ctimer, on_connect_timeout, r->cfg.connect_timeout_ms, 0);
  int rc = uv_getaddrinfo(r->loop, &s->gai, on_resolved, r->cfg.host, port, &hints);
  if (rc < 0) {
    k->sock = NULL;
    redisReaderFree(s->reader);
    free(s);
    conn_fail(k, rc, uv_strerror(rc));
    return rc;
  }
  return 0;
}

/* The slot for a new call: an idle open one, else a new connection while the pool has
 * room (and its backoff allows), else the least busy open one; NULL when none is up. */
static rconn_t *pick(hg_redis_t *r) {
  rconn_t *best = NULL;
  uint64_t now = uv_now(r->loop);
  for (size_t i = 0; i < r->cfg.pool; i++) {
    rconn_t *k = &r->conns[i];
    if (k->state != C_DOWN && (best == NULL || k->inflight < best->inflight)) best = k;
  }
  if (best && best->inflight == 0) return best;
  for (size_t i = 0; i < r->cfg.pool; i++) {
    rconn_t *k = &r->conns[i];
    if (k->state == C_DOWN && k->retry_at <= now && conn_start(k) == 0) return k;
  }
  return best;
}

hg_redis_call_t *hg_redis_send(hg_redis_t *r, size_t ncmds, const int *argc,
                               const char *const *argv, const size_t *lens, uint64_t timeout_ms,
                               hg_redis_cb cb, void *ud) {
  if (r == NULL || r->closing || ncmds == 0) return NULL;
  size_t len;
  char *bytes = format(ncmds, argc, argv, lens, &len);
  if (bytes == NULL) return NULL;
  hg_redis_call_t *c = call_new(r, ncmds);
  if (c == NULL) {
    free(bytes);
    return NULL;
  }
  c->cb = cb;
  c->ud = ud;
  c->all_next = r->all;
  if (r->all) r->all->all_prev = c;
  r->all = c;
  uint64_t t = r->cfg.timeout_ms;
  if (timeout_ms && timeout_ms < t) t = timeout_ms;
  uv_update_time(r->loop);
  rconn_t *k = pick(r);
  if (k == NULL) { /* answered from the loop, never from here */
    free(bytes);
    c->err = UV_ECONNREFUSED;
    snprintf(c->msg, sizeof(c->msg), "redis unavailable (reconnecting)");
    uv_timer_start(&c->timer, on_call_timer, 0, 0);
    return c;
  }
  enqueue(k, c);
  uv_timer_start(&c->timer, on_call_timer, t, 0);
  conn_write(k, bytes, len); /* a failure fails the slot: c is answered from the loop */
  return c;
}

/* ---- client ---- */

hg_redis_t *hg_redis_new(uv_loop_t *loop, const hg_redis_config_t *cfg) {
  hg_redis_t *r = calloc(1, sizeof(*r));
  if (r == NULL) return NULL;
  r->loop = loop;
  r->cfg = *cfg;
  if (r->cfg.pool == 0) r->cfg.pool = 2;
  if (r->cfg.pool > HG_REDIS_MAX_POOL) r->cfg.pool = HG_REDIS_MAX_POOL;
  if (r->cfg.timeout_ms == 0) r->cfg.timeout_ms = 1000;
  if (r->cfg.connect_timeout_ms == 0) r->cfg.connect_timeout_ms = 1000;
  for (size_t i = 0; i < r->cfg.pool; i++) {
    rconn_t *k = &r->conns[i];
    k->r = r;
    k->backoff_ms = BACKOFF_MIN_MS;
    uv_timer_init(loop, &k->ctimer);
    k->ctimer.data = k;
    r->handles++;
  }
  return r;
}

static void on_ctimer_close(uv_handle_t *h) {
  rconn_t *k = h->data;
  hg_redis_t *r = k->r;
  if (--r->handles == 0) free(r);
}

void hg_redis_close(hg_redis_t *r) {
  if (r == NULL || r->closing) return;
  r->closing = 1;
  for (size_t i = 0; i < r->cfg.pool; i++) conn_fail(&r->conns[i], UV_ECANCELED, "closing");
  while (r->all) call_answer(r->all, UV_ECANCELED, "closing");
  for (size_t i = 0; i < r->cfg.pool; i++) {
    hg_buf_free(&r->conns[i].outq);
    uv_close((uv_handle_t *)&r->conns[i].ctimer, on_ctimer_close);
  }
}

size_t hg_redis_connections(const hg_redis_t *r) { return r ? r->ready : 0; }
uint64_t hg_redis_errors(const hg_redis_t *r) { return r ? r->errors : 0; }
