/* addr.c — SSRF address classes and host allowlist patterns for the upstream client.
 *
 * Security: these functions decide whether the gateway may connect somewhere. They err
 * on the side of refusing: every range that is not ordinary public unicast gets a
 * class, and IPv6 forms that embed an IPv4 address (IPv4-mapped, NAT64, 6to4) are
 * classified by the IPv4 address they lead to.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "upstream/addr.h"
#include "upstream/client.h"

/* Classifies an IPv4 address given in host byte order. */
static int class_v4(uint32_t a) {
  uint32_t o1 = a >> 24, o2 = (a >> 16) & 0xff, o3 = (a >> 8) & 0xff;
  if (o1 == 127) return HG_ADDR_LOOPBACK;
  if (o1 == 0) return HG_ADDR_UNSPECIFIED; /* 0.0.0.0/8: "this host" — Linux connects locally */
  if (o1 == 10) return HG_ADDR_PRIVATE;
  if (o1 == 172 && (o2 & 0xf0) == 16) return HG_ADDR_PRIVATE;
  if (o1 == 192 && o2 == 168) return HG_ADDR_PRIVATE;
  if (o1 == 100 && (o2 & 0xc0) == 64) return HG_ADDR_PRIVATE; /* 100.64.0.0/10 CGNAT */
  if (o1 == 169 && o2 == 254) return HG_ADDR_LINKLOCAL;       /* incl. 169.254.169.254 */
  if (o1 >= 224) return HG_ADDR_OTHER;                         /* multicast, 240/4, broadcast */
  if (o1 == 192 && o2 == 0 && (o3 == 0 || o3 == 2)) return HG_ADDR_OTHER; /* IETF, TEST-NET-1 */
  if (o1 == 198 && (o2 & 0xfe) == 18) return HG_ADDR_OTHER;   /* 198.18.0.0/15 benchmarking */
  if (o1 == 198 && o2 == 51 && o3 == 100) return HG_ADDR_OTHER; /* TEST-NET-2 */
  if (o1 == 203 && o2 == 0 && o3 == 113) return HG_ADDR_OTHER;  /* TEST-NET-3 */
  if (o1 == 192 && o2 == 88 && o3 == 99) return HG_ADDR_OTHER;  /* 6to4 relay anycast */
  return 0;
}

static uint32_t be32(const uint8_t *p) {
  return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static int class_v6(const uint8_t *b) {
  static const uint8_t zero[16];
  static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  static const uint8_t nat64[12] = {0, 0x64, 0xff, 0x9b, 0, 0, 0, 0, 0, 0, 0, 0};
  if (memcmp(b, zero, 15) == 0) {
    if (b[15] == 0) return HG_ADDR_UNSPECIFIED; /* :: */
    if (b[15] == 1) return HG_ADDR_LOOPBACK;    /* ::1 */
  }
  /* Security: ::ffff:127.0.0.1 reaches 127.0.0.1; judge it as the IPv4 address. */
  if (memcmp(b, mapped, 12) == 0) return class_v4(be32(b + 12));
  if (memcmp(b, zero, 12) == 0) return HG_ADDR_OTHER; /* deprecated IPv4-compatible ::/96 */
  /* NAT64 (64:ff9b::/96) and 6to4 (2002::/16) lead to the embedded IPv4 address. */
  if (memcmp(b, nat64, 12) == 0) return class_v4(be32(b + 12));
  if (b[0] == 0x20 && b[1] == 0x02) return class_v4(be32(b + 2));
  if ((b[0] & 0xfe) == 0xfc) return HG_ADDR_PRIVATE;                 /* fc00::/7 ULA */
  if (b[0] == 0xfe && (b[1] & 0xc0) == 0x80) return HG_ADDR_LINKLOCAL; /* fe80::/10 */
  if (b[0] == 0xfe && (b[1] & 0xc0) == 0xc0) return HG_ADDR_PRIVATE;   /* fec0::/10 site-local */
  if (b[0] == 0xff) return HG_ADDR_OTHER;                              /* multicast */
  if (b[0] == 0x20 && b[1] == 0x01 && b[2] == 0x0d && b[3] == 0xb8) return HG_ADDR_OTHER; /* doc */
  if (b[0] == 0x01 && b[1] == 0 && memcmp(b + 2, zero, 6) == 0) return HG_ADDR_OTHER; /* 100::/64 */
  return 0;
}

int hg_upstream_addr_class(const struct sockaddr *sa) {
  if (sa == NULL) return HG_ADDR_OTHER;
  if (sa->sa_family == AF_INET) {
    const struct sockaddr_in *s4 = (const struct sockaddr_in *)sa;
    return class_v4(ntohl(s4->sin_addr.s_addr));
  }
  if (sa->sa_family == AF_INET6) {
    const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;
    return class_v6(s6->sin6_addr.s6_addr);
  }
  return HG_ADDR_OTHER; /* unknown families are never "public" */
}

const char *hg__upstream_class_name(int cls) {
  if (cls & HG_ADDR_LOOPBACK) return "loopback";
  if (cls & HG_ADDR_LINKLOCAL) return "link-local";
  if (cls & HG_ADDR_PRIVATE) return "private";
  if (cls & HG_ADDR_UNSPECIFIED) return "unspecified";
  if (cls & HG_ADDR_OTHER) return "reserved";
  return "public";
}

static int lower(int c) { return c >= 'A' && c <= 'Z' ? c | 0x20 : c; }

static int eq_nocase(const char *a, const char *b, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (lower((unsigned char)a[i]) != lower((unsigned char)b[i])) return 0;
  return 1;
}

int hg__upstream_host_match(const char *pattern, const char *host, size_t host_len) {
  if (pattern == NULL || host == NULL) return 0;
  size_t plen = strlen(pattern);
  if (host_len > 0 && host[host_len - 1] == '.') host_len--;
  if (host_len == 0) return 0;
  if (plen == 1 && pattern[0] == '*') return 1; /* exactly "*": "*." is not a wildcard */
  if (plen > 0 && pattern[plen - 1] == '.') plen--;
  if (plen == 0 || (plen == 1 && pattern[0] == '*')) return 0;
  if (plen > 2 && pattern[0] == '*' && pattern[1] == '.') {
    /* "*.example.com": the host must end in ".example.com" with a non-empty label in
     * front, so "example.com" and "evilexample.com" do not match. */
    size_t slen = plen - 1; /* ".example.com" */
    return host_len > slen && eq_nocase(host + host_len - slen, pattern + 1, slen);
  }
  return host_len == plen && eq_nocase(host, pattern, plen);
}

int hg__upstream_host_allowed(const char *const *patterns, size_t n, const char *host,
                              size_t host_len) {
  if (patterns == NULL) return 1;
  for (size_t i = 0; i < n; i++)
    if (hg__upstream_host_match(patterns[i], host, host_len)) return 1;
  return 0;
}

void hg__upstream_addr_name(const struct sockaddr *sa, char *out, size_t outlen) {
  if (outlen == 0) return;
  const void *src = NULL;
  if (sa && sa->sa_family == AF_INET) src = &((const struct sockaddr_in *)sa)->sin_addr;
  else if (sa && sa->sa_family == AF_INET6) src = &((const struct sockaddr_in6 *)sa)->sin6_addr;
  if (src == NULL || inet_ntop(sa->sa_family, src, out, (socklen_t)outlen) == NULL)
    snprintf(out, outlen, "?");
}
