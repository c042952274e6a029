/* probe.c — what `hlsgate --check --probe` reaches (see probe.h). */
#include "gateway/probe.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <uv.h>

#include "base/buf.h"
#include "base/error.h"
#include "crypto/sigv4.h"
#include "upstream/client.h"

typedef struct probe_s {
  int status, done, err;
  char msg[256];
  hg_buf_t body; /* the start of an error body: S3's <Code> */
} probe_t;

static int on_head(void *ud, hg_fetch_t *f, const hg_fetch_head_t *head) {
  (void)f;
  ((probe_t *)ud)->status = head->status;
  return 0;
}

static void on_data(void *ud, hg_fetch_t *f, char *data, size_t len) {
  (void)f;
  probe_t *p = ud;
  if (p->body.len < 4096) hg_buf_append(&p->body, data, len < 4096 ? len : 4096);
  free(data);
}

static void on_done(void *ud, hg_fetch_t *f, int err, const char *msg) {
  (void)f;
  probe_t *p = ud;
  p->done = 1;
  p->err = err;
  snprintf(p->msg, sizeof(p->msg), "%s", msg ? msg : "");
}

static const char *env(const char *name, const char *def) {
  const char *v = getenv(name);
  return v && *v ? v : def;
}

/* S3's error code in an XML error body ("SignatureDoesNotMatch"), or "". */
static void s3_code(const hg_buf_t *b, char *code, size_t n) {
  code[0] = '\0';
  const char *open = b->data ? strstr(b->data, "<Code>") : NULL;
  const char *close = open ? strstr(open, "</Code>") : NULL;
  if (close) snprintf(code, n, "%.*s", (int)(close - open - 6), open + 6);
}

static int probe_demo(FILE *out) {
  const char *dir = env("HLSGATE_DEMO_DIR", "var/demo");
  struct stat st;
  if (stat(dir, &st) == 0 && S_ISDIR(st.st_mode)) {
    fprintf(out, "probe: S3_BUCKET is not set: /stream/hls/ serves the directory %s (found)\n", dir);
    return 0;
  }
  fprintf(out, "probe: S3_BUCKET is not set and HLSGATE_DEMO_DIR %s is not a directory: /stream/hls/ has "
               "nothing to serve\n", dir);
  return 1;
}

int hg_probe_run(FILE *out, const char *ca_file, unsigned timeout_ms) {
  if (env("HLSGATE_JWT_SECRET", NULL) == NULL)
    fprintf(out, "probe: HLSGATE_JWT_SECRET is not set: /stream/ answers 503\n");
  const char *bucket = env("S3_BUCKET", NULL);
  if (bucket == NULL) return probe_demo(out);
  const char *endpoint = env("S3_ENDPOINT", "https://s3.amazonaws.com");
  const char *ak = env("AWS_ACCESS_KEY_ID", NULL), *sk = env("AWS_SECRET_ACCESS_KEY", NULL);
  if (ak == NULL || sk == NULL) {
    fprintf(out, "probe: FAILED: S3_BUCKET is set but AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY are not\n");
    return 1;
  }
  const char *style = env("S3_PATH_STYLE", "true");
  hg_sigv4_config_t cfg = {ak, sk, env("AWS_SESSION_TOKEN", NULL), env("S3_REGION", "us-east-1"), "s3"};
  hg_sigv4_t *sv = hg_sigv4_new(&cfg);
  if (sv == NULL) {
    fprintf(out, "probe: FAILED: the credentials or S3_REGION are not usable (control characters?)\n");
    return 1;
  }
  /* A listing of at most one key: reaches the bucket with the gateway's credentials and
   * reads nothing the operator did not put there. */
  hg_sigv4_kv_t q[2] = {{"list-type", 9, "2", 1}, {"max-keys", 8, "1", 1}};
  hg_s3_req_t r;
  memset(&r, 0, sizeof(r));
  r.endpoint = endpoint;
  r.bucket = bucket;
  r.path_style = !(strcmp(style, "false") == 0 || strcmp(style, "0") == 0 || strcmp(style, "no") == 0);
  r.query = q;
  r.nquery = 2;
  r.time = (int64_t)time(NULL);
  hg_buf_t url = HG_BUF_INIT, host = HG_BUF_INIT, authz = HG_BUF_INIT;
  hg_sigv4_auth_t auth;
  int rc = hg_s3_sign(sv, &r, &url, &host, &authz, &auth);
  int bad = 1;
  if (rc != 0) {
    fprintf(out, "probe: FAILED: cannot sign for %s bucket %s: %s\n", endpoint, bucket, hg_strerror(rc));
  } else {
    uv_loop_t loop;
    uv_loop_init(&loop);
    char err[256];
    hg_upstream_config_t ucfg = {.ca_file = ca_file};
    hg_upstream_t *u = hg_upstream_new(&loop, &ucfg, err, sizeof(err));
    probe_t p;
    memset(&p, 0, sizeof(p));
    hg_header_t h[4];
    hg_fetch_opts_t o;
    memset(&o, 0, sizeof(o));
    o.url = url.data;
    o.headers = h;
    o.nheaders = hg_sigv4_auth_headers(&auth, &authz, h);
    o.allow = HG_ADDR_ALL; /* the operator's endpoint, as the gateway reaches it */
    o.connect_timeout_ms = o.read_timeout_ms = o.total_timeout_ms = timeout_ms;
    static const hg_fetch_cbs_t cbs = {on_head, on_data, on_done};
    hg_fetch_t *f = u ? hg_fetch_start(u, &o, &cbs, &p) : NULL;
    while (f && !p.done) uv_run(&loop, UV_RUN_ONCE);
    if (u) hg_upstream_close(u);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    char code[96];
    s3_code(&p.body, code, sizeof(code));
    if (u == NULL || f == NULL) {
      fprintf(out, "probe: FAILED: cannot start a request to %s: %s\n", endpoint, u ? "bad URL" : err);
    } else if (p.err) {
      fprintf(out, "probe: FAILED: %s is not reachable: %s\n", endpoint, p.msg[0] ? p.msg : hg_strerror(p.err));
    } else if (p.status == 200) {
      fprintf(out, "probe: OK: bucket %s at %s reached, credentials accepted (listing allowed)\n", bucket, endpoint);
      bad = 0;
    } else if (p.status == 403 && strcmp(code, "AccessDenied") == 0) {
      fprintf(out, "probe: OK: bucket %s at %s reached, credentials accepted; listing denied (fine: the "
                   "gateway needs s3:GetObject only)\n", bucket, endpoint);
      bad = 0;
    } else {
      const char *why = strcmp(code, "SignatureDoesNotMatch") == 0 ? ": AWS_SECRET_ACCESS_KEY (or S3_REGION) is wrong"
                        : strcmp(code, "InvalidAccessKeyId") == 0 ? ": AWS_ACCESS_KEY_ID is unknown to this endpoint"
                        : strcmp(code, "NoSuchBucket") == 0      ? ": S3_BUCKET does not exist there"
                        : strcmp(code, "AuthorizationHeaderMalformed") == 0 ? ": S3_REGION is wrong"
                                                                             : "";
      fprintf(out, "probe: FAILED: bucket %s at %s answered %d%s%s%s\n", bucket, endpoint, p.status,
              code[0] ? " " : "", code, why);
    }
    hg_buf_free(&p.body);
  }
  hg_buf_free(&url);
  hg_buf_free(&host);
  hg_buf_free(&authz);
  hg_sigv4_free(sv);
  return bad;
}
