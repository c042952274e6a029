/* probe.h — `hlsgate --check --probe`: beyond compiling the policy, reach what the
 * shipped private-bucket recipe is configured to use (SPEC §9 environment: S3_ENDPOINT,
 * S3_BUCKET, S3_REGION, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN,
 * S3_PATH_STYLE; or HLSGATE_DEMO_DIR without a bucket) and say what works.
 */
#ifndef HG_GATEWAY_PROBE_H
#define HG_GATEWAY_PROBE_H

#include <stdio.h>

/* Probes with a signed bucket listing request (list-type=2, max-keys=1) on a loop of its
 * own, within `timeout_ms`; writes one line per finding to `out`. Returns 0 when the
 * bucket was reached with credentials it accepted (a listing denied with AccessDenied
 * counts: the gateway needs s3:GetObject only), else 1. Main thread, before workers. */
int hg_probe_run(FILE *out, const char *ca_file, unsigned timeout_ms);

#endif
