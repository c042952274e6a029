/* hop.c — one hop of a fetch (the URL, then each redirect): the host allowlist, a pooled
 * connection or a slot of the origin (or a place in its wait queue), DNS, the SSRF check
 * of every resolved address, connecting to them in turn; and following a redirect to
 * the next hop (credentials stripped when the origin changes).
 */
#include "upstream/client_internal.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

#include "base/error.h"
#include "upstream/addr.h"


/* "scheme://host:port": the pool key and the origin named in messages (no userinfo,
 * path or query: nothing secret). */
static void origin_key(const hg_url_origin_t *o, char *out, size_t outlen) {
  snprintf(out, outlen, "%s://%s%s%s:%u", o->https ? "https" : "http", o->ipv6 ? "[" : "",
           o->host, o->ipv6 ? "]" : "", o->port);
}
/* ---- hops: allowlist → pool / slot → DNS → SSRF check → connect ---- */

void hg__upstream_hop_try_connect(hg_fetch_t *f) {
  while (f->addr_idx < f->naddrs) {
    int rc = hg__upstream_conn_open(f, (const struct sockaddr *)&f->addrs[f->addr_idx]);
    if (rc == 0) {
      f->state = F_CONNECT;
      return;
    }
    if (rc == HG_ENOMEM) {
      hg__upstream_fetch_fail(f, HG_ENOMEM, "out of memory");
      return;
    }
    f->last_err = rc;
    f->addr_idx++;
  }
  int err = f->last_err ? f->last_err : UV_ECONNREFUSED;
  hg__upstream_fetch_fail(f, err, "%s", uv_strerror(err));
}

/* Security (SSRF): every address the host resolved to must be in a class the fetch
 * allows; one forbidden address refuses the whole host (a name that mixes public and
 * internal addresses is not one to trust). We then connect only to these very
 * addresses, so there is no second lookup to rebind. */
static void hop_resolved(hg_fetch_t *f) {
  if (f->naddrs == 0) {
    hg__upstream_fetch_fail(f, UV_EAI_NONAME, "DNS: %s has no address", f->org.host);
    return;
  }
  for (int i = 0; i < f->naddrs; i++) {
    const struct sockaddr *sa = (const struct sockaddr *)&f->addrs[i];
    int cls = hg_upstream_addr_class(sa);
    if (cls & ~f->allow) {
      char a[INET6_ADDRSTRLEN];
      hg__upstream_addr_name(sa, a, sizeof(a));
      if (strcmp(a, f->org.host) == 0)
        hg__upstream_fetch_fail(f, HG_EDENIED, "address %s is %s, which is not allowed", a,
                                hg__upstream_class_name(cls & ~f->allow));
      else
        hg__upstream_fetch_fail(f, HG_EDENIED, "host %s resolves to %s (%s), which is not allowed",
                                f->org.host, a, hg__upstream_class_name(cls & ~f->allow));
      return;
    }
  }
  f->addr_idx = 0;
  f->last_err = 0;
  hg__upstream_hop_try_connect(f);
}

static void on_gai(uv_getaddrinfo_t *req, int status, struct addrinfo *res) {
  hg_fetch_t *f = req->data;
  f->gai_pending = 0;
  if (f->state != F_DNS) { /* aborted, finished or closed meanwhile */
    if (res) uv_freeaddrinfo(res);
    hg__upstream_fetch_maybe_free(f);
    return;
  }
  if (status < 0) {
    if (res) uv_freeaddrinfo(res);
    hg__upstream_fetch_fail(f, status, "DNS: %s", uv_strerror(status));
    return;
  }
  f->naddrs = 0;
  for (struct addrinfo *ai = res; ai && f->naddrs < MAX_ADDRS; ai = ai->ai_next) {
    if (ai->ai_family != AF_INET && ai->ai_family != AF_INET6) continue;
    if (ai->ai_addrlen > sizeof(f->addrs[0])) continue;
    int dup = 0;
    for (int i = 0; i < f->naddrs && !dup; i++)
      dup = memcmp(&f->addrs[i], ai->ai_addr, ai->ai_addrlen) == 0;
    if (dup) continue;
    memset(&f->addrs[f->naddrs], 0, sizeof(f->addrs[0]));
    memcpy(&f->addrs[f->naddrs], ai->ai_addr, ai->ai_addrlen);
    f->naddrs++;
  }
  uv_freeaddrinfo(res);
  hop_resolved(f);
}

/* Resolves the hop's host (IP literals without the thread pool). f holds a slot. */
void hg__upstream_hop_resolve(hg_fetch_t *f) {
  hg_upstream_t *u = f->u;
  f->state = F_DNS;
  f->naddrs = 0;
  struct sockaddr_in *s4 = (struct sockaddr_in *)&f->addrs[0];
  struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&f->addrs[0];
  memset(&f->addrs[0], 0, sizeof(f->addrs[0]));
  if (uv_inet_pton(AF_INET, f->org.host, &s4->sin_addr) == 0) {
    s4->sin_family = AF_INET;
    s4->sin_port = htons((uint16_t)f->org.port);
    f->naddrs = 1;
  } else if (uv_inet_pton(AF_INET6, f->org.host, &s6->sin6_addr) == 0) {
    s6->sin6_family = AF_INET6;
    s6->sin6_port = htons((uint16_t)f->org.port);
    f->naddrs = 1;
  }
  if (f->naddrs) {
    hop_resolved(f);
    return;
  }
  char port[8];
  snprintf(port, sizeof(port), "%u", f->org.port);
  struct addrinfo hints;
  memset(&hints, 0, sizeof(hints));
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_protocol = IPPROTO_TCP;
  f->gai.data = f;
  int rc = uv_getaddrinfo(u->loop, &f->gai, on_gai, f->org.host, port, &hints);
  if (rc < 0) {
    hg__upstream_fetch_fail(f, rc, "DNS: %s", uv_strerror(rc));
    return;
  }
  f->gai_pending = 1;
}

/* Gets the hop a connection: a pooled one, else a new one within the origin's limit,
 * else a place in its wait queue. */
void hg__upstream_hop_connect(hg_fetch_t *f, origin_t *o) {
  hg_upstream_t *u = f->u;
  conn_t *c = hg__upstream_pool_take(o, f);
  if (c) {
    hg__upstream_attach(f, c);
    f->reused = 1;
    hg__upstream_send_request(f);
    return;
  }
  size_t limit = u->cfg.max_conns_per_origin;
  if (limit && o->nslots >= limit && o->idle) {
    /* At the limit, and the idle conns are ones this fetch may not reuse (another
     * address class): close the least recently used to make room. Its slot goes to an
     * earlier waiter if there is one; this fetch then queues behind it. */
    conn_t *old = o->idle;
    while (old->inext) old = old->inext;
    o->refs++; /* keep the origin across the close */
    hg__upstream_conn_close(old);
    o->refs--;
  }
  if (limit && o->nslots >= limit) {
    f->state = F_WAIT;
    f->origin = o;
    f->wnext = NULL;
    hg_fetch_t **pp = &o->waiters;
    while (*pp) pp = &(*pp)->wnext;
    *pp = f;
    return;
  }
  o->nslots++;
  f->origin = o;
  f->has_slot = 1;
  hg__upstream_hop_resolve(f);
}

/* Starts the hop to f->url (already validated by hg_url_origin). */
void hg__upstream_hop_begin(hg_fetch_t *f) {
  hg_upstream_t *u = f->u;
  hg_url_t pu;
  if (hg_url_parse(f->url.data, f->url.len, &pu) != 0 || hg_url_origin(&pu, &f->org) != 0) {
    hg__upstream_fetch_fail(f, HG_EUPSTREAM, "bad URL");
    return;
  }
  origin_key(&f->org, f->key, sizeof(f->key));
  f->state = F_START;
  f->conn = NULL;
  f->reused = f->retried = 0;
  hg__upstream_response_reset(f);
  hg__upstream_timer_arm(f, T_CONNECT);
  /* Security: the host allowlist is checked on every hop, before any lookup. */
  if (!hg__upstream_host_allowed((const char *const *)f->allow_hosts, f->nallow, f->org.host,
                                 f->org.host_len)) {
    hg__upstream_fetch_fail(f, HG_EDENIED, "host %s is not in the allowed hosts", f->org.host);
    return;
  }
  origin_t *o = hg__upstream_origin_get(u, f->key);
  if (o == NULL) {
    hg__upstream_fetch_fail(f, HG_ENOMEM, "out of memory");
    return;
  }
  hg__upstream_hop_connect(f, o);
}

/* ---- redirects ---- */

/* Security: credentials the caller attached for one origin are not sent to another. */
static void strip_credentials(hg_fetch_t *f) {
  size_t w = 0;
  for (size_t i = 0; i < f->nhdrs; i++) {
    const hg_header_t *h = &f->hdrs[i];
    if (hg__upstream_name_is(h->name, h->name_len, "authorization") ||
        hg__upstream_name_is(h->name, h->name_len, "proxy-authorization") ||
        hg__upstream_name_is(h->name, h->name_len, "cookie"))
      continue;
    f->hdrs[w++] = *h;
  }
  f->nhdrs = w;
}

/* Moves to the redirect target in f->next_url (validated by handle_head). */
void hg__upstream_follow_redirect(hg_fetch_t *f) {
  hg_url_t pu;
  hg_url_origin_t org;
  char key[sizeof(f->key)];
  if (hg_url_parse(f->next_url.data, f->next_url.len, &pu) == 0 && hg_url_origin(&pu, &org) == 0) {
    origin_key(&org, key, sizeof(key));
    if (strcmp(key, f->key) != 0) strip_credentials(f);
  }
  hg_buf_t tmp = f->url;
  f->url = f->next_url;
  f->next_url = tmp;
  hg_buf_clear(&f->next_url);
  hg__upstream_hop_begin(f);
}
