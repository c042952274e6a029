/* idle_conns.c — opens N keep-alive connections to HOST:PORT, makes one request on each
 * (GET PATH, HTTP/1.1, keep-alive), reads the whole answer, then holds all of them idle
 * for SECONDS. bench/run.sh reads the server's VmRSS before and
 * while they are held: bytes per idle keep-alive connection (SPEC §11).
 *
 *   cc -O2 -o idle_conns idle_conns.c
 *   idle_conns HOST PORT N PATH SECONDS
 *
 * Prints "open N" once every connection has its answer, then "alive M" (connections the
 * server has not closed) when it stops. Needs `ulimit -n` above N. Loopback only by use.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

typedef struct {
  int fd;
  int state; /* 0 connecting, 1 sent, 2 answered (idle), 3 closed */
  size_t got;
} conn_t;

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Complete when the headers ended and Content-Length bytes of body followed. */
static int answered(const char *b, size_t n) {
  const char *end = memmem(b, n, "\r\n\r\n", 4);
  if (!end) return 0;
  const char *cl = strcasestr(b, "\r\ncontent-length:");
  size_t body = cl && cl < end ? strtoul(cl + 17, NULL, 10) : 0;
  return (size_t)(end + 4 - b) + body <= n;
}

int main(int argc, char **argv) {
  if (argc != 6) {
    fprintf(stderr, "usage: idle_conns HOST PORT N PATH SECONDS\n");
    return 2;
  }
  const char *host = argv[1];
  int port = atoi(argv[2]), n = atoi(argv[3]);
  double hold = atof(argv[5]);
  char req[512];
  int reqlen = snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: %s:%d\r\nConnection: keep-alive\r\n\r\n",
                        argv[4], host, port);
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  if (inet_pton(AF_INET, host, &sa.sin_addr) != 1) return 2;
  conn_t *c = calloc((size_t)n, sizeof(*c));
  int ep = epoll_create1(0);
  static char buf[1 << 16];
  int done = 0, opened = 0;
  double deadline = now() + 60;
  /* Open in batches so the listen backlog never overflows. */
  while (done < n && now() < deadline) {
    while (opened < n && opened - done < 256) {
      int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
      if (fd < 0) { perror("socket"); return 1; }
      if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 && errno != EINPROGRESS) {
        perror("connect");
        return 1;
      }
      c[opened] = (conn_t){fd, 0, 0};
      struct epoll_event ev = {.events = EPOLLOUT | EPOLLIN, .data.u32 = (uint32_t)opened};
      epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
      opened++;
    }
    struct epoll_event evs[256];
    int k = epoll_wait(ep, evs, 256, 100);
    for (int i = 0; i < k; i++) {
      conn_t *x = &c[evs[i].data.u32];
      if (x->state == 0 && (evs[i].events & EPOLLOUT)) {
        if (write(x->fd, req, (size_t)reqlen) != reqlen) { perror("write"); return 1; }
        x->state = 1;
        struct epoll_event ev = {.events = EPOLLIN, .data.u32 = evs[i].data.u32};
        epoll_ctl(ep, EPOLL_CTL_MOD, x->fd, &ev);
      }
      if (x->state == 1 && (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR))) {
        /* Answers are small and arrive whole on loopback; keep it simple: peek all. */
        ssize_t r = recv(x->fd, buf, sizeof(buf), MSG_PEEK);
        if (r <= 0) { fprintf(stderr, "connection %u closed early\n", evs[i].data.u32); return 1; }
        if (answered(buf, (size_t)r)) {
          r = recv(x->fd, buf, (size_t)r, 0);
          x->state = 2;
          epoll_ctl(ep, EPOLL_CTL_DEL, x->fd, NULL);
          done++;
        }
      }
    }
  }
  if (done < n) {
    fprintf(stderr, "only %d of %d connections answered\n", done, n);
    return 1;
  }
  printf("open %d\n", n);
  fflush(stdout);
  /* Hold them, idle, for the time asked. */
  double end = now() + hold;
  while (now() < end) poll(NULL, 0, (int)((end - now()) * 1000) + 1);
  int alive = 0;
  for (int i = 0; i < n; i++) {
    /* A closed peer reads 0 (EOF); an idle live one would block. */
    ssize_t r = recv(c[i].fd, buf, 1, MSG_DONTWAIT | MSG_PEEK);
    if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) alive++;
    close(c[i].fd);
  }
  printf("alive %d\n", alive);
  free(c);
  return 0;
}
