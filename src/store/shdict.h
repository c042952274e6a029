/* shdict.h — the policies' shared dictionary (SPEC §4 item 8): small string/number
 * values with TTLs, shared by every worker and surviving policy reloads (it lives in C,
 * outside the Lua states). Bounded: least recently used entries go first when full.
 *
 * Thread-safe (one mutex); every call may come from any thread.
 */
#ifndef HG_STORE_SHDICT_H
#define HG_STORE_SHDICT_H

#include <stddef.h>
#include <stdint.h>

#include "base/buf.h"

typedef struct hg_shdict_s hg_shdict_t;

typedef enum { HG_SHD_NONE = 0, HG_SHD_STRING, HG_SHD_NUMBER, HG_SHD_BOOL } hg_shd_type_t;

/* The process-wide dictionary (created on first use: 100,000 entries / 16 MiB). */
hg_shdict_t *hg_shdict_default(void);

/* A dictionary of at most `max_entries` and `max_bytes` (keys + values). NULL on OOM. */
hg_shdict_t *hg_shdict_new(size_t max_entries, size_t max_bytes);
void hg_shdict_free(hg_shdict_t *d);

/* Looks `key` up. Returns its type (HG_SHD_NONE when absent or expired); a string value
 * is appended to `str`, a number or boolean stored in *num. */
hg_shd_type_t hg_shdict_get(hg_shdict_t *d, const char *key, size_t klen, hg_buf_t *str, double *num);

/* Stores a value (ttl_ms 0: no expiry). `only_if_absent` makes it an add. Returns 0,
 * HG_EINVAL (exists, for an add), HG_ETOOBIG (larger than the whole dictionary) or
 * HG_ENOMEM. */
int hg_shdict_set(hg_shdict_t *d, const char *key, size_t klen, hg_shd_type_t type,
                  const char *str, size_t slen, double num, uint64_t ttl_ms, int only_if_absent);

/* Adds `delta` to a number (absent: starts from `init`, with ttl_ms for the new entry).
 * Returns 0 with the result in *out, HG_EINVAL when the value is not a number, HG_ENOMEM. */
int hg_shdict_incr(hg_shdict_t *d, const char *key, size_t klen, double delta, double init,
                   uint64_t ttl_ms, double *out);

/* Removes `key`. Returns 1 if it was there. */
int hg_shdict_delete(hg_shdict_t *d, const char *key, size_t klen);

#endif
