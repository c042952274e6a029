/* actions.h — what a plan (lua/plan.h) does to one playlist URI: the class rule with its
 * parent-class fallback, proxy (prefix mapping or query style, signed child URLs),
 * presign (time buckets, presign.prefix), absolute, keep, drop, and the rule that a
 * preload hint is never presigned. Plain functions over a plan and a small context, so
 * that the gateway's rewrite (src/gateway/playlist.c) and the busted module
 * (src/lua/lhost.c) run the same code. The on_uri hook is not here: the caller decides
 * whether a hook overrides the class rule.
 */
#ifndef HG_LUA_ACTIONS_H
#define HG_LUA_ACTIONS_H

#include <stddef.h>
#include <stdint.h>

#include "base/buf.h"
#include "crypto/sigv4.h"
#include "hls/hls.h"
#include "lua/plan.h"

/* One rewrite's state. Zero it (HG_ACTIONS_INIT), set the clock, use it for one
 * playlist, then hg_actions_free. One thread at a time. */
typedef struct hg_actions_s {
  hg_buf_t tmp, tmp2;      /* scratch: bucket base URL, decoded key, mapped URL */
  hg_sigv4_t *signer;      /* created on the first presigned URI */
  int64_t presign_at;      /* signing time of presigned URLs (see hg_actions_clock) */
  int64_t presign_bucket;  /* seconds that signing time stays the same */
  int64_t sign_now;        /* time proxy.sign's exp is computed from; 0: time(NULL) */
  size_t proxied;          /* URIs made into gateway URLs (with the plan's params) */
} hg_actions_t;

#define HG_ACTIONS_INIT {HG_BUF_INIT, HG_BUF_INIT, NULL, 0, 0, 0, 0}

/* Sets the presign time from `now`: rounded down to a bucket (a tenth of presign.ttl,
 * at most 5 minutes, at least a second) so a hot playlist rewrites to the same bytes for
 * a while (SPEC §7) and its output can be cached until the bucket ends. */
void hg_actions_clock(hg_actions_t *a, const hg_plan_t *p, int64_t now);

/* The plan's rule for a class: its own, else its parent class's, else `default`. */
hg_action_t hg_actions_for_class(const hg_plan_t *p, hg_hls_class_t cls);

/* The action actually taken for `act` on a URI of class `cls`: a preload hint is
 * fetched by the player before it exists (SPEC §5), so it is never presigned — proxied
 * when the plan has a proxy, else written absolute. */
hg_action_t hg_actions_resolve(const hg_plan_t *p, hg_action_t act, hg_hls_class_t cls);

/* Applies a resolved action (keep, drop, absolute, proxy, presign) to `uri`, appending
 * a replacement to `out`. Returns an hg_hls_action_t, or a negative HG_E* code. */
int hg_actions_do(hg_actions_t *a, const hg_plan_t *p, hg_action_t act, const hg_hls_uri_t *uri,
                  hg_buf_t *out);

void hg_actions_free(hg_actions_t *a);

#endif
