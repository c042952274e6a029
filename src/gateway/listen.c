/* listen.c — bound listening sockets (see listen.h). */
#include "gateway/listen.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#include "base/error.h"

/* Parses "host:port" into `ss`; a non-zero `port` replaces the one given. */
static int parse_addr(const char *hostport, int port, struct sockaddr_storage *ss, socklen_t *slen) {
  char host[128];
  const char *colon = strrchr(hostport, ':');
  if (colon == NULL || colon == hostport) return HG_EINVAL;
  size_t hlen = (size_t)(colon - hostport);
  if (hostport[0] == '[' && hlen >= 2 && hostport[hlen - 1] == ']') hostport++, hlen -= 2;
  if (hlen >= sizeof(host)) return HG_EINVAL;
  memcpy(host, hostport, hlen);
  host[hlen] = '\0';
  char *end;
  long p = strtol(colon + 1, &end, 10);
  if (*end != '\0' || p < 0 || p > 65535 || end == colon + 1) return HG_EINVAL;
  if (port) p = port;
  memset(ss, 0, sizeof(*ss));
  if (uv_ip4_addr(host, (int)p, (struct sockaddr_in *)ss) != 0 &&
      uv_ip6_addr(host, (int)p, (struct sockaddr_in6 *)ss) != 0)
    return HG_EINVAL;
  *slen = ss->ss_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
  return 0;
}

static int bound_port(int fd) {
  struct sockaddr_storage ss;
  socklen_t slen = sizeof(ss);
  if (getsockname(fd, (struct sockaddr *)&ss, &slen) != 0) return 0;
  return ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                        : ((struct sockaddr_in *)&ss)->sin_port);
}

int hg_listen_socket(const char *hostport, int reuseport, int *port) {
  struct sockaddr_storage ss;
  socklen_t slen;
  int rc = parse_addr(hostport, *port, &ss, &slen);
  if (rc) return rc;
  int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return -errno;
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (reuseport) setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
  if (ss.ss_family == AF_INET6) setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
  if (bind(fd, (struct sockaddr *)&ss, slen) != 0 || listen(fd, 511) != 0) {
    int err = -errno;
    close(fd);
    return err;
  }
  *port = bound_port(fd);
  return fd;
}

int hg_listen_probe(const char *hostport, int *port) {
  struct sockaddr_storage ss;
  socklen_t slen;
  int rc = parse_addr(hostport, *port, &ss, &slen);
  if (rc) return rc;
  int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -errno;
  int one = 1;
  /* SO_REUSEADDR (TIME_WAIT leftovers of a previous run must not block a restart) but
   * no SO_REUSEPORT: Linux then refuses the bind while any other socket listens on an
   * overlapping address, whoever owns it, with or without SO_REUSEPORT. */
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (ss.ss_family == AF_INET6) setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
  rc = bind(fd, (struct sockaddr *)&ss, slen) == 0 ? 0 : -errno;
  if (rc == 0) *port = bound_port(fd);
  close(fd);
  return rc;
}

/* Parses one hex address of /proc/net/tcp{,6} into `out` (4 or 16 bytes, as the kernel
 * keeps them: each 32-bit word printed in host order). */
static int proc_addr(const char *hex, size_t words, unsigned char *out) {
  for (size_t w = 0; w < words; w++) {
    char part[9];
    memcpy(part, hex + w * 8, 8);
    part[8] = '\0';
    char *end;
    unsigned long v = strtoul(part, &end, 16);
    if (*end) return -1;
    uint32_t v32 = (uint32_t)v;
    memcpy(out + w * 4, &v32, 4);
  }
  return 0;
}

int hg_listen_foreign(const char *hostport, int port, const int *fds, size_t nfds) {
  struct sockaddr_storage ss;
  socklen_t slen;
  if (parse_addr(hostport, port, &ss, &slen) != 0) return 0;
  int v6 = ss.ss_family == AF_INET6;
  const unsigned char *ours = v6 ? (const unsigned char *)&((struct sockaddr_in6 *)&ss)->sin6_addr
                                 : (const unsigned char *)&((struct sockaddr_in *)&ss)->sin_addr;
  size_t alen = v6 ? 16 : 4;
  static const unsigned char any[16];
  FILE *f = fopen(v6 ? "/proc/net/tcp6" : "/proc/net/tcp", "re");
  if (f == NULL) return 0; /* no procfs: the probe alone decided */
  char line[512];
  int foreign = 0;
  if (fgets(line, sizeof(line), f) == NULL) line[0] = '\0'; /* the header */
  while (!foreign && fgets(line, sizeof(line), f)) {
    char local[64], st[8];
    unsigned long inode;
    if (sscanf(line, "%*s %63s %*s %7s %*s %*s %*s %*s %*s %lu", local, st, &inode) != 3) continue;
    char *colon = strchr(local, ':');
    unsigned char addr[16];
    if (strcmp(st, "0A") != 0 || colon == NULL || (size_t)(colon - local) != alen * 2 ||
        strtol(colon + 1, NULL, 16) != port || proc_addr(local, alen / 4, addr) != 0)
      continue;
    /* Overlapping: the same address, or a wildcard on either side. */
    if (memcmp(addr, ours, alen) != 0 && memcmp(addr, any, alen) != 0 && memcmp(ours, any, alen) != 0)
      continue;
    int mine = 0;
    for (size_t i = 0; i < nfds && !mine; i++) {
      struct stat sb;
      mine = fstat(fds[i], &sb) == 0 && (unsigned long)sb.st_ino == inode;
    }
    foreign = !mine;
  }
  fclose(f);
  return foreign;
}
