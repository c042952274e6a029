/* addr.h — internal helpers of the upstream client for SSRF and host checks: address
 * class names, host allowlist patterns, address formatting. Pure; any thread.
 *
 * (hg_upstream_addr_class itself is public, in client.h.)
 */
#ifndef HG_UPSTREAM_ADDR_H
#define HG_UPSTREAM_ADDR_H

#include <stddef.h>
#include <sys/socket.h>

/* Returns a static name for the most significant class bit in `cls` ("loopback",
 * "private", "link-local", "unspecified", "reserved"), or "public" for 0. */
const char *hg__upstream_class_name(int cls);

/* Returns 1 if host[0..host_len) matches `pattern`, else 0. ASCII case-insensitive;
 * one trailing '.' on either side is ignored. "*" matches any host; "*.example.com"
 * matches any name strictly below example.com ("a.example.com", "a.b.example.com") but
 * not "example.com" itself; anything else must match exactly. */
int hg__upstream_host_match(const char *pattern, const char *host, size_t host_len);

/* Returns 1 if `host` matches one of patterns[0..n), or if `patterns` is NULL (no
 * allowlist); 0 otherwise. */
int hg__upstream_host_allowed(const char *const *patterns, size_t n, const char *host,
                              size_t host_len);

/* Writes the numeric address of `sa` (no port) into out[0..outlen), NUL-terminated;
 * "?" for an unknown family. */
void hg__upstream_addr_name(const struct sockaddr *sa, char *out, size_t outlen);

#endif
