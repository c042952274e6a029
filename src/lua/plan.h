/* plan.h — what a policy decided for one request, as plain data: where the bytes come
 * from (origin), how long to cache them, which headers to add, and what to do with each
 * URI class when the body is a playlist. Filled by the policy host (src/lua/policy.c)
 * from the table on_request returned; executed by the pipeline (src/gateway/pipeline.c),
 * whose playlist rewrites apply the per-URI actions of src/lua/actions.c.
 * Every string lives in the request's arena, or in a frozen plan's (below).
 */
#ifndef HG_LUA_PLAN_H
#define HG_LUA_PLAN_H

#include <stddef.h>
#include <stdint.h>

#include "base/arena.h"
#include "crypto/jwt.h"
#include "hls/hls.h"
#include "http/message.h"

typedef enum { HG_ORIGIN_FILE = 1, HG_ORIGIN_HTTP, HG_ORIGIN_S3 } hg_origin_kind_t;

/* The URL a file origin's objects resolve under when playlists are rewritten: file
 * "a/b.m3u8" is http://file.invalid/a/b.m3u8 (a proxy rule maps it back). */
#define HG_FILE_BASE_URL "http://file.invalid/"

/* S3 settings: for fetching (origin) and for presigning URIs in playlists. */
typedef struct hg_plan_s3_s {
  const char *endpoint;        /* "http://127.0.0.1:4568", "https://s3.eu-west-1.amazonaws.com" */
  const char *public_endpoint; /* endpoint written into presigned URLs (NULL: endpoint) */
  const char *region;
  const char *bucket;
  const char *access_key;
  const char *secret_key;
  const char *session_token;   /* or NULL */
  int path_style;
} hg_plan_s3_t;

/* Per-class actions. */
typedef enum {
  HG_ACT_UNSET = 0, /* fall back to the parent class, then to `default` */
  HG_ACT_KEEP,
  HG_ACT_DROP,
  HG_ACT_ABSOLUTE,
  HG_ACT_PROXY,
  HG_ACT_PRESIGN,
  HG_ACT_HOOK       /* call the plan's on_uri Lua function */
} hg_action_t;

typedef struct hg_plan_frozen_s hg_plan_frozen_t;

typedef struct hg_plan_s {
  hg_origin_kind_t origin;
  /* file: root directory and a path under it (re-checked: never escapes root) */
  const char *file_root;
  const char *file_path;
  /* http: URL, extra request headers, SSRF permissions, allowlist, redirects */
  const char *url;
  hg_header_t req_headers[16];
  size_t nreq_headers;
  int allow_private;           /* HG_ADDR_* mask allowed (0: public only) */
  const char **allow_hosts;
  size_t nallow_hosts;
  int max_redirects;
  /* s3: the object to fetch (with the settings in s3) */
  const char *s3_key;
  hg_plan_s3_t s3;
  int has_s3;                  /* s3 is set (origin s3, or presign settings) */
  /* response */
  hg_header_t headers[16];     /* added to every response of this request */
  size_t nheaders;
  const char *content_type;    /* used when the origin says nothing useful */
  const char *disposition_name;/* Content-Disposition: inline; filename="…" when set */
  uint64_t cache_ttl;          /* seconds; 0: do not cache */
  int64_t live_ttl_ms;         /* reuse of a live media playlist; -1: the content decides
                                  (half the target or part target, SPEC §5) */
  int ignore_origin_cache;     /* 1: the origin's Cache-Control/Expires do not bound reuse */
  uint64_t timeout_ms;         /* upstream read timeout (0: default) */
  /* playlists */
  hg_action_t actions[HG_HLS_CLASS_COUNT];
  hg_action_t default_action;
  /* proxy: either a prefix mapping (URLs under proxy_from become proxy_to + rest) or a
   * query style (proxy_prefix + percent-encoded absolute URL); then proxy_params. */
  const char *proxy_from;
  const char *proxy_to;
  const char *proxy_prefix;
  hg_header_t proxy_params[8]; /* name/value pairs set on proxied URLs */
  size_t nproxy_params;
  /* proxy.sign (query style only): each proxied URL also gets exp (now + ttl rounded up
   * to a multiple of ttl, so output stays identical, and cacheable, for a whole ttl) and
   * sig = base64url(HMAC-SHA256(secret, exp "\n" absolute URL)), which the recipe checks
   * (lua/hlsgate/open_proxy.lua). Security: the proxy then fetches only what it listed. */
  const char *proxy_sign_secret; /* NULL: not signed */
  size_t proxy_sign_secret_len;
  uint32_t proxy_sign_ttl;       /* seconds */
  uint32_t presign_ttl;        /* seconds */
  const char *presign_prefix;  /* only keys under it are presigned (NULL: any) */
  int hook_ref;                /* Lua registry ref of on_uri, or LUA_NOREF (-2) */
  int carries_token;           /* rewritten output is per-viewer: Cache-Control: private */
  /* content_types: relayed types served inline besides the built-in player types
   * ("type/subtype", or "type/" followed by a star); the others are sent as attachments, or refused (403). */
  const char **ct_allow;
  size_t nct_allow;
  int ct_refuse;
  /* The frozen plan (hg.plan) the fields above are a copy of, or NULL: the request holds a
   * reference to it (its strings), dropped by hg_policy_plan_done. */
  hg_plan_frozen_t *frozen;
} hg_plan_t;

/* A reuse rule's `token` (src/lua/reuse.c, docs/policy-api.md): the plan also answers
 * requests whose query parameter `param` is another JWT that verifies under `verify` and
 * has the same values of the named `claims`; its proxy param of that name then carries the
 * request's own token. Everything in the frozen plan's arena. */
typedef struct hg_reuse_token_s {
  const char *param;           /* the query parameter (decoded name) */
  hg_jwt_verify_opts_t verify; /* keys and options; `now` is each request's */
  const char **claims;         /* the claims the plan depends on */
  size_t nclaims;
} hg_reuse_token_t;

/* A frozen plan (hg.plan, docs/policy-api.md): a plan table converted once and returned
 * by any number of requests, so a hot answer does not read a table per request. It lives
 * in its own arena, drawn from its policy's Lua allocator (within the memory cap), and is
 * freed when both its userdata is collected and no request holds it. Owner thread of
 * that Lua state only. */
struct hg_plan_frozen_s {
  hg_plan_t plan;
  hg_arena_t *arena;         /* holds this struct and every string of `plan` */
  unsigned refs;             /* requests holding it */
  int collected;             /* its userdata is gone */
  const char *route;         /* the plan's `route` (metrics label), or NULL */
  /* hg.plan's reuse rule (src/lua/reuse.c): the request headers the plan depends on
   * (lower-case names), for how long, until when (unix seconds; 0: no limit). */
  const char **vary;
  size_t nvary;
  uint64_t reuse_ttl_ms;     /* 0: not to be reused */
  int64_t reuse_until;
  hg_reuse_token_t *token;   /* the rule's `token`, or NULL */
  /* What the pipeline derived from this plan alone (src/gateway/cached.c), kept for the
   * next request: the stem of its output cache keys (exchange.h). NULL until made; in the
   * arena. */
  const char *key_stem;
  size_t key_stem_len;
};

#endif
