/* live.h — what the pipeline needs to serve live and LL-HLS playlists right (SPEC §5, §7):
 * the LL-HLS delivery directives a player appends to a gateway URL, and how long an
 * answer may be reused (by the gateway's cache and by a CDN in front of it).
 *
 * Plain functions over request data; the loop thread of the request calls them.
 */
#ifndef HG_GATEWAY_LIVE_H
#define HG_GATEWAY_LIVE_H

#include <stddef.h>
#include <stdint.h>

#include "base/buf.h"
#include "crypto/sigv4.h"
#include "hls/hls.h"
#include "http/freshness.h"
#include "http/message.h"

#define HG_DIRECTIVES_MAX 5

/* The LL-HLS delivery directives of one request (_HLS_msn, _HLS_part, _HLS_skip and the
 * steering parameters _HLS_pathway, _HLS_primary_id), each at most once, in that fixed
 * order so that equal requests make equal cache keys. */
typedef struct hg_directives_s {
  hg_sigv4_kv_t kv[HG_DIRECTIVES_MAX]; /* decoded names and values (arena) */
  size_t n;
  const char *query;  /* "_HLS_msn=7&_HLS_part=1", re-encoded (arena); "" when n == 0 */
  size_t query_len;
} hg_directives_t;

/* Reads the directives from the request target's query (names compared after decoding,
 * so "%5FHLS_msn" counts; the first of a repeated name wins). Every field is written.
 * Returns 0 or HG_ENOMEM. */
int hg_directives_read(const hg_request_t *req, hg_directives_t *d);

/* Appends url[0..n) with the directives added to its query (before a fragment, which is
 * dropped: it never goes to an origin). A URL that already carries a directive is
 * appended unchanged: the policy chose. Returns 0 or HG_ENOMEM. */
int hg_directives_apply(const hg_directives_t *d, hg_buf_t *out, const char *url, size_t n);

/* How long one answer may be reused, in ms: the policy's TTL, for a live media playlist
 * no more than hg_hls_reuse_ms (or the policy's `live_ttl_ms` when >= 0), and never more
 * than the origin allows (`origin` NULL: the policy ignores the origin's word). `info`
 * is NULL for a body that is not a playlist. */
uint64_t hg_live_ttl_ms(uint64_t policy_ms, int64_t live_ttl_ms, const hg_hls_info_t *info,
                        const hg_freshness_t *origin);

/* Writes the Cache-Control value (SPEC §7) for an answer reusable for `ttl_ms` into
 * buf[0..n) and returns buf: "no-store" when the origin forbids storing, else
 * "public, max-age=N" or, for output bound to a viewer, "private, max-age=N" (N in whole
 * seconds, rounded down, so a live playlist's is never more than half its target). */
const char *hg_live_cache_control(char *buf, size_t n, uint64_t ttl_ms, int priv, int no_store);

#endif
