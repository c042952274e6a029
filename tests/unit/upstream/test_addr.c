/* test_addr.c — SSRF address classes and host allowlist patterns (pure). */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>

#include "hgtest.h"
#include "upstream/addr.h"
#include "upstream/client.h"

static int cls(const char *ip) {
  struct sockaddr_storage ss;
  memset(&ss, 0, sizeof(ss));
  if (strchr(ip, ':')) {
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
    s6->sin6_family = AF_INET6;
    if (inet_pton(AF_INET6, ip, &s6->sin6_addr) != 1) return -1;
  } else {
    struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
    s4->sin_family = AF_INET;
    if (inet_pton(AF_INET, ip, &s4->sin_addr) != 1) return -1;
  }
  return hg_upstream_addr_class((struct sockaddr *)&ss);
}

HG_TEST(ipv4_classes) {
  CHECK_INT(cls("127.0.0.1"), HG_ADDR_LOOPBACK);
  CHECK_INT(cls("127.255.255.254"), HG_ADDR_LOOPBACK);
  CHECK_INT(cls("10.0.0.1"), HG_ADDR_PRIVATE);
  CHECK_INT(cls("172.16.0.1"), HG_ADDR_PRIVATE);
  CHECK_INT(cls("172.31.255.255"), HG_ADDR_PRIVATE);
  CHECK_INT(cls("172.32.0.1"), 0);
  CHECK_INT(cls("172.15.255.255"), 0);
  CHECK_INT(cls("192.168.1.1"), HG_ADDR_PRIVATE);
  CHECK_INT(cls("100.64.0.1"), HG_ADDR_PRIVATE); /* CGNAT */
  CHECK_INT(cls("100.127.255.255"), HG_ADDR_PRIVATE);
  CHECK_INT(cls("100.128.0.1"), 0);
  CHECK_INT(cls("169.254.169.254"), HG_ADDR_LINKLOCAL); /* cloud metadata */
  CHECK_INT(cls("169.254.0.1"), HG_ADDR_LINKLOCAL);
  CHECK_INT(cls("0.0.0.0"), HG_ADDR_UNSPECIFIED);
  CHECK_INT(cls("0.1.2.3"), HG_ADDR_UNSPECIFIED);
  CHECK_INT(cls("224.0.0.1"), HG_ADDR_OTHER);
  CHECK_INT(cls("239.255.255.250"), HG_ADDR_OTHER);
  CHECK_INT(cls("255.255.255.255"), HG_ADDR_OTHER);
  CHECK_INT(cls("240.0.0.1"), HG_ADDR_OTHER);
  CHECK_INT(cls("192.0.2.1"), HG_ADDR_OTHER);
  CHECK_INT(cls("198.51.100.7"), HG_ADDR_OTHER);
  CHECK_INT(cls("203.0.113.9"), HG_ADDR_OTHER);
  CHECK_INT(cls("198.18.0.1"), HG_ADDR_OTHER);
  CHECK_INT(cls("8.8.8.8"), 0);
  CHECK_INT(cls("1.1.1.1"), 0);
  CHECK_INT(cls("93.184.216.34"), 0);
  CHECK_INT(cls("192.169.0.1"), 0);
}

HG_TEST(ipv6_classes) {
  CHECK_INT(cls("::1"), HG_ADDR_LOOPBACK);
  CHECK_INT(cls("::"), HG_ADDR_UNSPECIFIED);
  CHECK_INT(cls("fc00::1"), HG_ADDR_PRIVATE);
  CHECK_INT(cls("fd12:3456::1"), HG_ADDR_PRIVATE);
  CHECK_INT(cls("fe80::1"), HG_ADDR_LINKLOCAL);
  CHECK_INT(cls("febf::1"), HG_ADDR_LINKLOCAL);
  CHECK_INT(cls("ff02::1"), HG_ADDR_OTHER);
  CHECK_INT(cls("2001:db8::1"), HG_ADDR_OTHER);
  CHECK_INT(cls("2606:4700:4700::1111"), 0);
  CHECK_INT(cls("2a00:1450:4001::200e"), 0);
}

HG_TEST(ipv4_mapped_and_embedded) {
  /* IPv4-mapped addresses are judged as the IPv4 address they reach. */
  CHECK_INT(cls("::ffff:127.0.0.1"), HG_ADDR_LOOPBACK);
  CHECK_INT(cls("::ffff:10.1.2.3"), HG_ADDR_PRIVATE);
  CHECK_INT(cls("::ffff:169.254.169.254"), HG_ADDR_LINKLOCAL);
  CHECK_INT(cls("::ffff:0.0.0.0"), HG_ADDR_UNSPECIFIED);
  CHECK_INT(cls("::ffff:100.64.1.1"), HG_ADDR_PRIVATE);
  CHECK_INT(cls("::ffff:8.8.8.8"), 0);
  CHECK_INT(cls("64:ff9b::7f00:1"), HG_ADDR_LOOPBACK);  /* NAT64 of 127.0.0.1 */
  CHECK_INT(cls("64:ff9b::808:808"), 0);                /* NAT64 of 8.8.8.8 */
  CHECK_INT(cls("2002:a00:1::"), HG_ADDR_PRIVATE);      /* 6to4 of 10.0.0.1 */
  CHECK_INT(cls("::127.0.0.1"), HG_ADDR_OTHER);         /* deprecated IPv4-compatible */
}

HG_TEST(unknown_family) {
  struct sockaddr sa;
  memset(&sa, 0, sizeof(sa));
  sa.sa_family = AF_UNIX;
  CHECK_INT(hg_upstream_addr_class(&sa), HG_ADDR_OTHER);
  CHECK_INT(hg_upstream_addr_class(NULL), HG_ADDR_OTHER);
}

HG_TEST(class_names) {
  CHECK_STR(hg__upstream_class_name(HG_ADDR_LOOPBACK), "loopback");
  CHECK_STR(hg__upstream_class_name(HG_ADDR_PRIVATE), "private");
  CHECK_STR(hg__upstream_class_name(HG_ADDR_LINKLOCAL), "link-local");
  CHECK_STR(hg__upstream_class_name(HG_ADDR_UNSPECIFIED), "unspecified");
  CHECK_STR(hg__upstream_class_name(HG_ADDR_OTHER), "reserved");
  CHECK_STR(hg__upstream_class_name(0), "public");
}

static int m(const char *pat, const char *host) {
  return hg__upstream_host_match(pat, host, strlen(host));
}

HG_TEST(host_patterns) {
  CHECK_INT(m("*.example.com", "a.example.com"), 1);
  CHECK_INT(m("*.example.com", "a.b.example.com"), 1);
  CHECK_INT(m("*.example.com", "example.com"), 0);
  CHECK_INT(m("*.example.com", "evilexample.com"), 0);
  CHECK_INT(m("*.example.com", "example.com.evil.net"), 0);
  CHECK_INT(m("*.example.com", ".example.com"), 0);
  CHECK_INT(m("*.Example.COM", "A.EXAMPLE.com"), 1);
  CHECK_INT(m("example.com", "EXAMPLE.com"), 1);
  CHECK_INT(m("example.com", "example.com."), 1);
  CHECK_INT(m("example.com.", "example.com"), 1);
  CHECK_INT(m("example.com", "a.example.com"), 0);
  CHECK_INT(m("example.com", "example.co"), 0);
  CHECK_INT(m("*", "anything.test"), 1);
  CHECK_INT(m("", "example.com"), 0);
  CHECK_INT(m("*.", "example.com"), 0);
  CHECK_INT(m("127.0.0.1", "127.0.0.1"), 1);
  CHECK_INT(m("*.0.0.1", "127.0.0.1"), 1); /* plain string match: allowlists name hosts */
}

HG_TEST(host_allowlist) {
  const char *pats[] = {"cdn.example.net", "*.s3.amazonaws.com"};
  CHECK_INT(hg__upstream_host_allowed(NULL, 0, "any.host", 8), 1);
  CHECK_INT(hg__upstream_host_allowed(pats, 2, "cdn.example.net", 15), 1);
  CHECK_INT(hg__upstream_host_allowed(pats, 2, "bucket.s3.amazonaws.com", 23), 1);
  CHECK_INT(hg__upstream_host_allowed(pats, 2, "s3.amazonaws.com", 16), 0);
  CHECK_INT(hg__upstream_host_allowed(pats, 2, "evil.net", 8), 0);
  CHECK_INT(hg__upstream_host_allowed(pats, 0, "cdn.example.net", 15), 0); /* empty list */
}

HG_TEST(addr_names) {
  struct sockaddr_in6 s6;
  memset(&s6, 0, sizeof(s6));
  s6.sin6_family = AF_INET6;
  inet_pton(AF_INET6, "::ffff:127.0.0.1", &s6.sin6_addr);
  char buf[64];
  hg__upstream_addr_name((struct sockaddr *)&s6, buf, sizeof(buf));
  CHECK_STR(buf, "::ffff:127.0.0.1");
  struct sockaddr sa;
  memset(&sa, 0, sizeof(sa));
  sa.sa_family = AF_UNIX;
  hg__upstream_addr_name(&sa, buf, sizeof(buf));
  CHECK_STR(buf, "?");
}

int main(void) {
  RUN(ipv4_classes);
  RUN(ipv6_classes);
  RUN(ipv4_mapped_and_embedded);
  RUN(unknown_family);
  RUN(class_names);
  RUN(host_patterns);
  RUN(host_allowlist);
  RUN(addr_names);
  return hgtest_done();
}
