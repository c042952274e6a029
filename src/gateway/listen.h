/* listen.h — listening sockets for the workers.
 *
 * Every worker accepts on its own socket bound to the same address with SO_REUSEPORT,
 * so the kernel spreads connections across workers without a shared accept lock.
 */
#ifndef HG_GATEWAY_LISTEN_H
#define HG_GATEWAY_LISTEN_H

/* Creates a non-blocking TCP socket bound to `hostport` ("0.0.0.0:8080", "[::1]:0"),
 * listening, with SO_REUSEPORT when `reuseport`. If `*port` is non-zero it replaces the
 * port of `hostport` (so port 0 resolves once and the other workers join the same port);
 * on return `*port` is the bound port. Returns the fd (caller owns it) or a negative
 * UV_E* / HG_EINVAL code. Main thread. */
int hg_listen_socket(const char *hostport, int reuseport, int *port);

#endif
