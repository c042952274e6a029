/* listen.h — listening sockets for the workers.
 *
 * Every worker accepts on its own socket bound to the same address with SO_REUSEPORT,
 * so the kernel spreads connections across workers without a shared accept lock.
 * SO_REUSEPORT alone would also let a second hlsgate of the same user join the group
 * (the kernel then splits traffic between two processes, two policies): so each address
 * is probed first without SO_REUSEPORT (hg_listen_probe), and checked again once bound
 * (hg_listen_foreign) for a process that bound between the probe and us.
 */
#ifndef HG_GATEWAY_LISTEN_H
#define HG_GATEWAY_LISTEN_H

#include <stddef.h>

/* Creates a non-blocking TCP socket bound to `hostport` ("0.0.0.0:8080", "[::1]:0"),
 * listening, with SO_REUSEPORT when `reuseport`. If `*port` is non-zero it replaces the
 * port of `hostport` (so port 0 resolves once and the other workers join the same port);
 * on return `*port` is the bound port. Returns the fd (caller owns it) or a negative
 * UV_E* / HG_EINVAL code. Main thread. */
int hg_listen_socket(const char *hostport, int reuseport, int *port);

/* Binds `hostport` once without SO_REUSEPORT and lets go: fails with UV_EADDRINUSE when
 * any other socket (another process, with SO_REUSEPORT or not) listens on an overlapping
 * address. Port 0 (or a non-zero `*port` override) as in hg_listen_socket; on success
 * `*port` is the port the kernel gave. Returns 0 or a negative code. Main thread. */
int hg_listen_probe(const char *hostport, int *port);

/* Returns 1 when a listening TCP socket other than `fds` overlaps `hostport` at `port`
 * (Linux /proc/net/tcp{,6}; 0 when that cannot be read). Main thread. */
int hg_listen_foreign(const char *hostport, int port, const int *fds, size_t nfds);

#endif
