/* file.h — the `file` origin: serves objects from a local directory with the same
 * head → data* → done callbacks as an upstream fetch (client.h), so the pipeline treats
 * every origin alike. Ranges (single "bytes=a-b", If-Range against our ETag) give
 * 206/416. Security: the resolved path (symlinks followed) must stay inside the root.
 *
 * Loop thread only. Callbacks receive NULL as their hg_fetch_t argument.
 */
#ifndef HG_UPSTREAM_FILE_H
#define HG_UPSTREAM_FILE_H

#include <uv.h>

#include "upstream/client.h"

typedef struct hg_file_fetch_s hg_file_fetch_t;

/* Starts reading `root`/`path` (`path` relative, already free of ".." segments; the
 * caller rejects those as bad requests). `range` and `if_range` are the client's header
 * values or NULL; `final_url` is reported in the head. A missing file, a directory or a
 * path that leads out of the root answers 404. Returns the fetch, or NULL with nothing
 * started (OOM). Strings are copied. */
hg_file_fetch_t *hg_file_fetch_start(uv_loop_t *loop, const char *root, const char *path,
                                     const char *range, const char *if_range,
                                     const char *final_url, const hg_fetch_cbs_t *cbs, void *ud);

/* Flow control and cancellation, as hg_fetch_pause/resume/abort: after abort no callback
 * runs and the fetch frees itself once its file is closed. */
void hg_file_fetch_pause(hg_file_fetch_t *f);
void hg_file_fetch_resume(hg_file_fetch_t *f);
void hg_file_fetch_abort(hg_file_fetch_t *f);

/* A Content-Type for a path's extension (".ts" → "video/mp2t"; a query or fragment is
 * ignored), or NULL. Static strings; any thread. */
const char *hg_file_type(const char *path, size_t n);

#endif
