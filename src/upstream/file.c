/* file.c — the local-directory origin (see file.h).
 *
 * One uv_fs_t walks the steps realpath(root) → realpath(path) → open → fstat → read… →
 * close; one request is in flight at a time. The fetch frees itself when it is over
 * (reported or aborted), no request is in flight and the file is closed.
 */
#include "upstream/file.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "base/buf.h"
#include "base/error.h"

#define CHUNK (64 * 1024)

enum { F_ROOT, F_PATH, F_OPEN, F_STAT, F_READ, F_CLOSE };

struct hg_file_fetch_s {
  uv_loop_t *loop;
  uv_fs_t req;
  int step;
  int busy;   /* an fs request is in flight */
  int over;   /* done reported, or aborted: no more callbacks */
  int paused;
  uv_file fd;
  char *root, *path, *range, *if_range, *final_url, *root_real;
  hg_buf_t full;
  int64_t off, end;
  char *buf;
  hg_fetch_cbs_t cbs;
  void *ud;
};

static void step_cb(uv_fs_t *req);
static void finish(hg_file_fetch_t *f, int err, const char *msg);
static void maybe_release(hg_file_fetch_t *f);

static void release(hg_file_fetch_t *f) {
  free(f->root);
  free(f->path);
  free(f->range);
  free(f->if_range);
  free(f->final_url);
  free(f->root_real);
  free(f->buf);
  hg_buf_free(&f->full);
  free(f);
}

/* Frees the fetch if nothing refers to it any more, closing the file first. */
static void maybe_release(hg_file_fetch_t *f) {
  if (!f->over || f->busy) return;
  if (f->fd >= 0) {
    f->step = F_CLOSE;
    f->busy = 1;
    if (uv_fs_close(f->loop, &f->req, f->fd, step_cb) == 0) return;
    f->busy = 0; /* could not queue it: close synchronously */
    uv_fs_t r;
    uv_fs_close(NULL, &r, f->fd, NULL);
    uv_fs_req_cleanup(&r);
    f->fd = -1;
  }
  release(f);
}

/* Reports the end (once) and lets the fetch go. */
static void finish(hg_file_fetch_t *f, int err, const char *msg) {
  f->over = 1;
  f->cbs.on_done(f->ud, NULL, err, msg);
  maybe_release(f);
}

/* Reports the head with the fetch pinned (the callback may abort it). Returns 0 to go
 * on, or non-zero when the fetch is over (aborted, or refused by on_head). */
static int report_head(hg_file_fetch_t *f, int status, int64_t len, hg_header_t *h, size_t nh) {
  hg_fetch_head_t hd = {status, h, nh, len, f->final_url};
  f->busy = 1;
  int rc = f->cbs.on_head(f->ud, NULL, &hd);
  f->busy = 0;
  if (f->over) {
    maybe_release(f);
    return 1;
  }
  if (rc) {
    finish(f, rc, "cancelled");
    return 1;
  }
  return 0;
}

/* Parses a single "bytes=a-b" range against `size`. Returns 1 (range set), 0 (no usable
 * Range: serve it all) or -1 (unsatisfiable). */
static int parse_range(const char *v, int64_t size, int64_t *from, int64_t *to) {
  if (v == NULL || strncmp(v, "bytes=", 6) != 0) return 0;
  const char *s = v + 6;
  if (strchr(s, ',')) return 0; /* several ranges: send everything */
  char *e;
  if (*s == '-') {
    long long suffix = strtoll(s + 1, &e, 10);
    if (*e || suffix <= 0) return 0;
    if (size == 0) return -1;
    *from = suffix >= size ? 0 : size - suffix;
    *to = size - 1;
    return 1;
  }
  long long a = strtoll(s, &e, 10), b = size - 1;
  if (e == s || *e != '-' || a < 0) return 0;
  if (e[1] != '\0') { /* "a-b"; "a-" runs to the end */
    const char *bs = e + 1;
    b = strtoll(bs, &e, 10);
    if (e == bs || *e) return 0;
  }
  if (a >= size) return -1;
  if (b >= size) b = size - 1;
  if (b < a) return 0;
  *from = a;
  *to = b;
  return 1;
}

const char *hg_file_type(const char *path, size_t n) {
  static const struct { const char *ext, *type; } types[] = {
      {".ts", "video/mp2t"}, {".m3u8", "application/vnd.apple.mpegurl"},
      {".m4s", "video/iso.segment"}, {".mp4", "video/mp4"}, {".m4a", "audio/mp4"},
      {".m4v", "video/mp4"}, {".aac", "audio/aac"}, {".mp3", "audio/mpeg"},
      {".vtt", "text/vtt"}, {".webvtt", "text/vtt"}, {".key", "application/octet-stream"},
      {".json", "application/json"}, {".jpg", "image/jpeg"}, {".png", "image/png"},
      {".html", "text/html; charset=utf-8"}, {".js", "text/javascript"},
  };
  size_t q = strcspn(path, "?#");
  if (q < n) n = q;
  for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
    size_t el = strlen(types[i].ext);
    if (n >= el && strncasecmp(path + n - el, types[i].ext, el) == 0) return types[i].type;
  }
  return NULL;
}

/* The file is open and regular: answer the head (200, 206 or 416). Returns 0 to go on
 * reading, or non-zero when the fetch is over. */
static int on_stat(hg_file_fetch_t *f, const uv_stat_t *st) {
  int64_t size = (int64_t)st->st_size, from = 0, to = size - 1;
  char etag[48], cr[80];
  snprintf(etag, sizeof(etag), "\"%llx-%llx\"", (unsigned long long)st->st_mtim.tv_sec, (unsigned long long)size);
  hg_header_t h[4];
  size_t nh = 0;
  h[nh++] = (hg_header_t){"ETag", 4, etag, strlen(etag)};
  h[nh++] = (hg_header_t){"Accept-Ranges", 13, "bytes", 5};
  /* If-Range: the range applies only to the representation the client already has. */
  int r = f->if_range && strcmp(f->if_range, etag) != 0 ? 0 : parse_range(f->range, size, &from, &to);
  if (r < 0) {
    snprintf(cr, sizeof(cr), "bytes */%lld", (long long)size);
    h[nh++] = (hg_header_t){"Content-Range", 13, cr, strlen(cr)};
    if (report_head(f, 416, 0, h, nh) == 0) finish(f, 0, NULL);
    return 1;
  }
  if (r > 0) {
    snprintf(cr, sizeof(cr), "bytes %lld-%lld/%lld", (long long)from, (long long)to, (long long)size);
    h[nh++] = (hg_header_t){"Content-Range", 13, cr, strlen(cr)};
  }
  const char *t = hg_file_type(f->path, strlen(f->path));
  if (t) h[nh++] = (hg_header_t){"Content-Type", 12, t, strlen(t)};
  f->off = from;
  f->end = to + 1;
  if (report_head(f, r > 0 ? 206 : 200, f->end - f->off, h, nh)) return 1;
  if (f->off >= f->end) {
    finish(f, 0, NULL);
    return 1;
  }
  return 0;
}

static void next(hg_file_fetch_t *f, int step) {
  f->step = step;
  f->busy = 1;
  int rc = 0;
  switch (step) {
  case F_ROOT: rc = uv_fs_realpath(f->loop, &f->req, f->root, step_cb); break;
  case F_PATH:
    hg_buf_clear(&f->full);
    rc = hg_buf_printf(&f->full, "%s/%s", f->root, f->path) ? UV_ENOMEM
                                                            : uv_fs_realpath(f->loop, &f->req, f->full.data, step_cb);
    break;
  case F_OPEN: rc = uv_fs_open(f->loop, &f->req, f->full.data, O_RDONLY | O_CLOEXEC, 0, step_cb); break;
  case F_STAT: rc = uv_fs_fstat(f->loop, &f->req, f->fd, step_cb); break;
  case F_READ: {
    int64_t left = f->end - f->off;
    uv_buf_t b = uv_buf_init(f->buf, (unsigned)(left < CHUNK ? left : CHUNK));
    rc = uv_fs_read(f->loop, &f->req, f->fd, &b, 1, f->off, step_cb);
    break;
  }
  }
  if (rc < 0) { /* could not even queue it */
    f->busy = 0;
    finish(f, rc, uv_strerror(rc));
  }
}

static void not_found(hg_file_fetch_t *f) {
  if (report_head(f, 404, 0, NULL, 0) == 0) finish(f, 0, NULL);
}

static void step_cb(uv_fs_t *req) {
  hg_file_fetch_t *f = req->data;
  int step = f->step;
  ssize_t res = req->result;
  f->busy = 0;
  int escaped = 0;
  if (step == F_ROOT && res >= 0) f->root_real = strdup(req->ptr);
  if (step == F_PATH && res >= 0) {
    /* Security: the resolved path must stay inside the resolved root. */
    const char *real = req->ptr, *root = f->root_real ? f->root_real : "/nonexistent";
    size_t rl = strcmp(root, "/") == 0 ? 0 : strlen(root);
    escaped = strncmp(real, root, rl) != 0 || (real[rl] != '/' && real[rl] != '\0');
    if (!escaped) {
      hg_buf_clear(&f->full);
      if (hg_buf_puts(&f->full, real) != 0) escaped = 1; /* never open half a path */
    }
  }
  if (step == F_OPEN && res >= 0) f->fd = (uv_file)res;
  uv_stat_t st = req->statbuf;
  uv_fs_req_cleanup(req);
  if (step == F_CLOSE) {
    f->fd = -1;
    release(f);
    return;
  }
  if (f->over) { /* aborted while this request was in flight */
    maybe_release(f);
    return;
  }
  if (res < 0 && step != F_READ) {
    if (res == UV_ENOENT || res == UV_ENOTDIR || res == UV_EISDIR || res == UV_ELOOP) not_found(f);
    else finish(f, (int)res, uv_strerror((int)res));
    return;
  }
  switch (step) {
  case F_ROOT: next(f, F_PATH); return;
  case F_PATH:
    if (escaped) not_found(f);
    else next(f, F_OPEN);
    return;
  case F_OPEN: next(f, F_STAT); return;
  case F_STAT:
    if (!S_ISREG(st.st_mode)) {
      not_found(f);
      return;
    }
    if (on_stat(f, &st)) return;
    if ((f->buf = malloc(CHUNK)) == NULL) finish(f, UV_ENOMEM, "out of memory");
    else next(f, F_READ);
    return;
  case F_READ: {
    if (res <= 0) { /* an error, or the file shrank under us */
      finish(f, res < 0 ? (int)res : HG_EUPSTREAM, res < 0 ? uv_strerror((int)res) : "file truncated");
      return;
    }
    char *chunk = malloc((size_t)res);
    if (chunk == NULL) {
      finish(f, UV_ENOMEM, "out of memory");
      return;
    }
    memcpy(chunk, f->buf, (size_t)res);
    f->off += res;
    f->busy = 1; /* keep us alive through the callback, which may abort */
    f->cbs.on_data(f->ud, NULL, chunk, (size_t)res);
    f->busy = 0;
    if (f->over) maybe_release(f);
    else if (f->off >= f->end) finish(f, 0, NULL);
    else if (!f->paused) next(f, F_READ);
    return;
  }
  }
}

hg_file_fetch_t *hg_file_fetch_start(uv_loop_t *loop, const char *root, const char *path,
                                     const char *range, const char *if_range,
                                     const char *final_url, const hg_fetch_cbs_t *cbs, void *ud) {
  hg_file_fetch_t *f = calloc(1, sizeof(*f));
  if (f == NULL) return NULL;
  f->loop = loop;
  f->fd = -1;
  f->cbs = *cbs;
  f->ud = ud;
  f->req.data = f;
  f->root = strdup(root);
  f->path = strdup(path);
  f->final_url = strdup(final_url);
  f->range = range ? strdup(range) : NULL;
  f->if_range = if_range ? strdup(if_range) : NULL;
  if (!f->root || !f->path || !f->final_url || (range && !f->range) || (if_range && !f->if_range)) {
    release(f);
    return NULL;
  }
  f->step = F_ROOT;
  f->busy = 1;
  if (uv_fs_realpath(loop, &f->req, f->root, step_cb) != 0) {
    release(f);
    return NULL;
  }
  return f;
}

void hg_file_fetch_pause(hg_file_fetch_t *f) { f->paused = 1; }

void hg_file_fetch_resume(hg_file_fetch_t *f) {
  f->paused = 0;
  if (!f->busy && !f->over && f->fd >= 0 && f->off < f->end && f->buf) next(f, F_READ);
}

void hg_file_fetch_abort(hg_file_fetch_t *f) {
  f->over = 1;
  maybe_release(f);
}
