/* listen.c — bound listening sockets (see listen.h). */
#include "gateway/listen.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include "base/error.h"

int hg_listen_socket(const char *hostport, int reuseport, int *port) {
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
  if (*port) p = *port;

  struct sockaddr_storage ss;
  memset(&ss, 0, sizeof(ss));
  if (uv_ip4_addr(host, (int)p, (struct sockaddr_in *)&ss) != 0 &&
      uv_ip6_addr(host, (int)p, (struct sockaddr_in6 *)&ss) != 0)
    return HG_EINVAL;
  socklen_t slen = ss.ss_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
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
  if (getsockname(fd, (struct sockaddr *)&ss, &slen) == 0)
    *port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                           : ((struct sockaddr_in *)&ss)->sin_port);
  return fd;
}
