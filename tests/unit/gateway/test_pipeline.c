/* Unit tests for the request pipeline (gateway/pipeline.c and its parts) driven on its
 * own: a real policy, a real loop, the file origin as the source and the shared cache,
 * with a fake HTTP transaction standing in for the server (this file defines the
 * hg_http_* response functions the pipeline calls, so the server is not linked in).
 * Covers the walk of docs/architecture.md from plan to response: sniffing, rewriting with
 * the plan's actions, relaying, content types, Cache-Control, errors, HEAD.
 */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <uv.h>

#include "hgtest.h"

#include "base/arena.h"
#include "base/buf.h"
#include "gateway/pipeline.h"
#include "http/server.h"
#include "lua/policy.h"
#include "store/cache.h"

/* ---- a fake transaction: records what the pipeline answers ---- */

struct hg_http_txn_s {
  int status, done, complete, streamed;
  hg_buf_t head; /* "Name: value\n" lines */
  hg_buf_t body;
};

static void record_head(hg_http_txn_t *t, const hg_response_t *res) {
  t->status = res->status;
  for (size_t i = 0; i < res->nheaders; i++)
    hg_buf_printf(&t->head, "%.*s: %.*s\n", (int)res->headers[i].name_len, res->headers[i].name,
                  (int)res->headers[i].value_len, res->headers[i].value);
}

int hg_http_respond(hg_http_txn_t *t, const hg_response_t *res) {
  record_head(t, res);
  if (res->body) hg_buf_append(&t->body, res->body, res->body_len);
  if (res->body_release) res->body_release(res->body_ref); /* the server's promise */
  t->done = t->complete = 1;
  return 0;
}

int hg_http_stream_start(hg_http_txn_t *t, const hg_response_t *res, int64_t clen, hg_http_drain_cb d, void *ud) {
  (void)clen, (void)d, (void)ud;
  record_head(t, res);
  t->streamed = 1;
  return 0;
}

int hg_http_stream_write_ref(hg_http_txn_t *t, const char *data, size_t len, void (*release)(void *),
                             void *ref) {
  hg_buf_append(&t->body, data, len);
  if (release) release(ref);
  return 0;
}

int hg_http_stream_write_file(hg_http_txn_t *t, const char *data, size_t len, int fd, int64_t off,
                              void (*release)(void *), void *ref) {
  (void)fd, (void)off;
  return hg_http_stream_write_ref(t, data, len, release, ref);
}

int hg_http_stream_write(hg_http_txn_t *t, char *data, size_t len) {
  return hg_http_stream_write_ref(t, data, len, free, data);
}

size_t hg_http_stream_queued(const hg_http_txn_t *t) {
  (void)t;
  return 0; /* a client that keeps up */
}

void hg_http_stream_end(hg_http_txn_t *t, int complete) {
  t->done = 1;
  t->complete = complete;
}

/* ---- fixture ---- */

static char dir[64];
static uv_loop_t loop;
static hg_cache_t *cache;
static hg_pipeline_ctx_t ctx;
static hg_policy_t *policy;

static void put(const char *name, const char *body, size_t len) {
  char path[128];
  snprintf(path, sizeof(path), "%s/%s", dir, name);
  FILE *f = fopen(path, "wb");
  fwrite(body, 1, len, f);
  fclose(f);
}

static int setup(void) {
  snprintf(dir, sizeof(dir), "/tmp/hg-pipeline-XXXXXX");
  if (mkdtemp(dir) == NULL) return -1;
  const char *vod = "#EXTM3U\n#EXT-X-TARGETDURATION:4\n#EXTINF:4,\nseg.ts\n#EXT-X-ENDLIST\n";
  const char *live = "#EXTM3U\n#EXT-X-TARGETDURATION:4\n#EXT-X-MEDIA-SEQUENCE:9\n#EXTINF:4,\nseg.ts\n";
  char ts[3760];
  memset(ts, 0x47, sizeof(ts));
  put("vod.m3u8", vod, strlen(vod));
  put("live.m3u8", live, strlen(live));
  put("seg.ts", ts, sizeof(ts));
  put("page.html", "<script>alert(1)</script>", 25);
  char policy_src[1024];
  snprintf(policy_src, sizeof(policy_src),
           "return { on_request = function(req)\n"
           "  return { origin = { type = 'file', root = '%s', path = req.path:sub(2) },\n"
           "           rewrite = { default = 'proxy' },\n"
           "           proxy = { from = 'http://file.invalid/', to = '/v/', params = { token = 'T' } },\n"
           "           cache_ttl = 60, private = req.query.private ~= nil }\n"
           "end }\n", dir);
  put("policy.lua", policy_src, strlen(policy_src));
  char path[128], err[256];
  snprintf(path, sizeof(path), "%s/policy.lua", dir);
  hg_policy_src_t *src = hg_policy_src_read(path, err, sizeof(err));
  hg_policy_limits_t lim = {(size_t)64 << 20, 10000000};
  policy = src ? hg_policy_new(src, &lim, err, sizeof(err)) : NULL;
  if (src) hg_policy_src_release(src);
  if (policy == NULL) {
    fprintf(stderr, "policy: %s\n", err);
    return -1;
  }
  uv_loop_init(&loop);
  cache = hg_cache_new((size_t)16 << 20, (size_t)4 << 20);
  return hg_pipeline_ctx_init(&ctx, &loop, cache, NULL, (size_t)1 << 20, err, sizeof(err));
}

static void teardown(void) {
  hg_pipeline_ctx_close(&ctx);
  uv_run(&loop, UV_RUN_DEFAULT); /* close callbacks */
  uv_loop_close(&loop);
  hg_cache_free(cache);
  hg_policy_release(policy);
  char cmd[128];
  snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
  if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
}

/* Runs one request through policy and pipeline; the answer lands in *t. */
static void run(const char *method, const char *target, hg_http_txn_t *t) {
  memset(t, 0, sizeof(*t));
  hg_request_t req;
  memset(&req, 0, sizeof(req));
  req.arena = hg_arena_new(4096);
  req.method = method;
  req.target = target;
  req.target_len = strlen(target);
  req.path_len = strcspn(target, "?");
  snprintf(req.id, sizeof(req.id), "req%zu", req.target_len);
  snprintf(req.client, sizeof(req.client), "127.0.0.1");
  hg_response_t res;
  hg_plan_t plan;
  memset(&res, 0, sizeof(res));
  int kind = hg_policy_on_request(policy, &req, &res, &plan);
  CHECK_INT(kind, HG_PLAN_FETCH);
  if (kind == HG_PLAN_FETCH) {
    hg_pipeline_run(&ctx, t, &req, policy, &plan);
    for (int i = 0; !t->done && i < 10000; i++) uv_run(&loop, UV_RUN_ONCE);
  }
  CHECK(t->done);
  hg_arena_free(req.arena);
}

static int has(const hg_http_txn_t *t, const char *line) {
  return t->head.data && strstr(t->head.data, line) != NULL;
}

static void done(hg_http_txn_t *t) {
  hg_buf_free(&t->head);
  hg_buf_free(&t->body);
}

/* ---- tests ---- */

HG_TEST(playlist_is_rewritten_with_the_plan_actions) {
  hg_http_txn_t t;
  run("GET", "/vod.m3u8", &t);
  CHECK_INT(t.status, 200);
  CHECK(!t.streamed || t.complete);
  CHECK(has(&t, "Content-Type: application/vnd.apple.mpegurl\n"));
  CHECK(t.body.data && strstr(t.body.data, "\n/v/seg.ts?token=T\n") != NULL);
  CHECK(has(&t, "Cache-Control: public, max-age=60\n")); /* VOD: the policy's TTL */
  done(&t);
  run("GET", "/vod.m3u8?private=1", &t);
  CHECK(has(&t, "Cache-Control: private, max-age=60\n")); /* token-bearing output */
  done(&t);
}

HG_TEST(live_playlist_is_fresh_for_half_its_target) {
  hg_http_txn_t t;
  run("GET", "/live.m3u8", &t);
  CHECK_INT(t.status, 200);
  CHECK(has(&t, "Cache-Control: public, max-age=2\n"));
  CHECK(t.body.data && strstr(t.body.data, "#EXT-X-MEDIA-SEQUENCE:9\n") != NULL);
  done(&t);
}

HG_TEST(media_is_relayed_byte_for_byte) {
  hg_http_txn_t t;
  run("GET", "/seg.ts", &t);
  CHECK_INT(t.status, 200);
  CHECK(t.streamed && t.complete);
  CHECK_INT(t.body.len, 3760);
  CHECK(t.body.data && (unsigned char)t.body.data[0] == 0x47 && (unsigned char)t.body.data[3759] == 0x47);
  CHECK(has(&t, "Content-Type: video/mp2t\n"));
  CHECK(has(&t, "X-Content-Type-Options: nosniff\n"));
  done(&t);
  run("HEAD", "/seg.ts", &t);
  CHECK_INT(t.status, 200);
  CHECK_INT(t.body.len, 0);
  done(&t);
}

HG_TEST(html_is_an_attachment_in_a_sandbox) {
  hg_http_txn_t t;
  run("GET", "/page.html", &t);
  CHECK_INT(t.status, 200);
  CHECK(has(&t, "Content-Disposition: attachment"));
  CHECK(has(&t, "Content-Security-Policy: sandbox\n"));
  done(&t);
}

HG_TEST(errors_are_json_with_the_request_id) {
  hg_http_txn_t t;
  run("GET", "/missing.ts", &t);
  CHECK_INT(t.status, 404);
  CHECK(t.body.data && strstr(t.body.data, "\"request_id\":\"req11\"") != NULL);
  done(&t);
  run("GET", "/../policy.lua", &t); /* traversal out of the file root */
  CHECK_INT(t.status, 400);
  done(&t);
}

int main(void) {
  if (setup() != 0) {
    fprintf(stderr, "setup failed\n");
    return 1;
  }
  RUN(playlist_is_rewritten_with_the_plan_actions);
  RUN(live_playlist_is_fresh_for_half_its_target);
  RUN(media_is_relayed_byte_for_byte);
  RUN(html_is_an_attachment_in_a_sandbox);
  RUN(errors_are_json_with_the_request_id);
  teardown();
  return hgtest_done();
}
