/* test_tls.c — the upstream client's TLS against a real mbedTLS server running in a
 * thread of this test (127.0.0.1, ephemeral port), with a CA and certificates made at
 * test time by the openssl CLI: trusted chain, untrusted chain, wrong host name,
 * handshake timeout, pooled TLS connections, backpressure through TLS records. */
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include <mbedtls/ctr_drbg.h>
#include <mbedtls/entropy.h>
#include <mbedtls/net_sockets.h>
#include <mbedtls/pk.h>
#include <mbedtls/ssl.h>
#include <mbedtls/x509_crt.h>

#include "base/buf.h"
#include "base/error.h"
#include "hgtest.h"
#include "upstream/client.h"

#define BIG_LEN (4u << 20)

static char dir[64];

static const char *path_in(const char *name) {
  static char bufs[8][128];
  static int i;
  char *b = bufs[i++ % 8];
  snprintf(b, 128, "%s/%s", dir, name);
  return b;
}

/* Makes ca.crt (trusted), srv.crt/srv.key (localhost, signed by the CA) and
 * self.crt/self.key (self-signed localhost, untrusted). Returns 1 on success. */
static int make_certs(void) {
  snprintf(dir, sizeof(dir), "/tmp/hg-tls-XXXXXX");
  if (mkdtemp(dir) == NULL) return 0;
  FILE *f = fopen(path_in("ext.cnf"), "w");
  if (f == NULL) return 0;
  fprintf(f, "subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\n"
             "keyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n");
  fclose(f);
  char cmd[2048];
  snprintf(cmd, sizeof(cmd),
           "cd %s && "
           "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 "
           "-subj '/CN=hlsgate test CA' -keyout ca.key -out ca.crt "
           "-addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign && "
           "openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes "
           "-subj '/CN=localhost' -keyout srv.key -out srv.csr && "
           "openssl x509 -req -in srv.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 "
           "-extfile ext.cnf -out srv.crt && "
           "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 "
           "-subj '/CN=localhost' -addext subjectAltName=DNS:localhost -keyout self.key -out self.crt && "
           "echo 'not a certificate' > junk.pem",
           dir);
  char full[2200];
  snprintf(full, sizeof(full), "( %s ) >/dev/null 2>&1", cmd);
  return system(full) == 0;
}

static void rm_certs(void) {
  char cmd[128];
  snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
  if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
}

/* ---- a blocking mbedTLS server in a thread ---- */

typedef struct tsrv_s {
  pthread_t th;
  int lfd, port;
  volatile int stop;
  int accepts, handshakes;
  char *big;
  mbedtls_ssl_config conf;
  mbedtls_x509_crt crt;
  mbedtls_pk_context pk;
  mbedtls_entropy_context ent;
  mbedtls_ctr_drbg_context drbg;
} tsrv_t;

typedef struct tconn_s {
  tsrv_t *s;
  int fd;
} tconn_t;

static int t_recv(void *ctx, unsigned char *buf, size_t len) {
  tconn_t *c = ctx;
  for (;;) {
    if (c->s->stop) return MBEDTLS_ERR_NET_RECV_FAILED;
    struct pollfd p = {c->fd, POLLIN, 0};
    int r = poll(&p, 1, 50);
    if (r == 0 || (r < 0 && errno == EINTR)) continue;
    ssize_t n = recv(c->fd, buf, len, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return MBEDTLS_ERR_NET_RECV_FAILED;
    return (int)n;
  }
}

static int t_send(void *ctx, const unsigned char *buf, size_t len) {
  tconn_t *c = ctx;
  ssize_t n = send(c->fd, buf, len, MSG_NOSIGNAL);
  return n < 0 ? MBEDTLS_ERR_NET_SEND_FAILED : (int)n;
}

static int t_write_all(mbedtls_ssl_context *ssl, const char *p, size_t n) {
  while (n > 0) {
    int rc = mbedtls_ssl_write(ssl, (const unsigned char *)p, n);
    if (rc == MBEDTLS_ERR_SSL_WANT_WRITE || rc == MBEDTLS_ERR_SSL_WANT_READ) continue;
    if (rc < 0) return rc;
    p += rc;
    n -= (size_t)rc;
  }
  return 0;
}

static void serve(tsrv_t *s, int fd) {
  tconn_t c = {s, fd};
  mbedtls_ssl_context ssl;
  mbedtls_ssl_init(&ssl);
  if (mbedtls_ssl_setup(&ssl, &s->conf) != 0) goto out;
  mbedtls_ssl_set_bio(&ssl, &c, t_send, t_recv, NULL);
  int rc;
  while ((rc = mbedtls_ssl_handshake(&ssl)) != 0)
    if (rc != MBEDTLS_ERR_SSL_WANT_READ && rc != MBEDTLS_ERR_SSL_WANT_WRITE) goto out;
  __atomic_add_fetch(&s->handshakes, 1, __ATOMIC_SEQ_CST);
  char req[4096];
  size_t len = 0;
  for (;;) { /* keep-alive: one request after another until the client closes */
    rc = mbedtls_ssl_read(&ssl, (unsigned char *)req + len, sizeof(req) - 1 - len);
    if (rc == MBEDTLS_ERR_SSL_WANT_READ || rc == MBEDTLS_ERR_SSL_WANT_WRITE) continue;
    if (rc <= 0) goto out;
    len += (size_t)rc;
    req[len] = '\0';
    char *end = strstr(req, "\r\n\r\n");
    if (end == NULL) {
      if (len == sizeof(req) - 1) goto out;
      continue;
    }
    char path[256] = "";
    sscanf(req, "%*s %255s", path);
    len = 0;
    if (strcmp(path, "/hello") == 0) {
      const char *r = "HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nhello tls";
      if (t_write_all(&ssl, r, strlen(r))) goto out;
    } else if (strcmp(path, "/close") == 0) { /* close-delimited, no close_notify */
      const char *r = "HTTP/1.0 200 OK\r\n\r\nuntil close";
      t_write_all(&ssl, r, strlen(r));
      goto out;
    } else if (strcmp(path, "/big") == 0) {
      char h[128];
      snprintf(h, sizeof(h), "HTTP/1.1 200 OK\r\nContent-Length: %u\r\n\r\n", BIG_LEN);
      if (t_write_all(&ssl, h, strlen(h)) || t_write_all(&ssl, s->big, BIG_LEN)) goto out;
    } else {
      const char *r = "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n";
      if (t_write_all(&ssl, r, strlen(r))) goto out;
    }
  }
out:
  mbedtls_ssl_free(&ssl);
}

static void *tsrv_main(void *arg) {
  tsrv_t *s = arg;
  while (!s->stop) {
    struct pollfd p = {s->lfd, POLLIN, 0};
    if (poll(&p, 1, 50) <= 0) continue;
    int fd = accept(s->lfd, NULL, NULL);
    if (fd < 0) continue;
    __atomic_add_fetch(&s->accepts, 1, __ATOMIC_SEQ_CST);
    serve(s, fd);
    close(fd);
  }
  return NULL;
}

/* A listening socket on 127.0.0.1:0; returns the fd and the port. */
static int listen_local(int *port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a;
  memset(&a, 0, sizeof(a));
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t alen = sizeof(a);
  if (bind(fd, (struct sockaddr *)&a, sizeof(a)) != 0 || listen(fd, 16) != 0 ||
      getsockname(fd, (struct sockaddr *)&a, &alen) != 0) {
    close(fd);
    return -1;
  }
  *port = ntohs(a.sin_port);
  return fd;
}

static int tsrv_start(tsrv_t *s, const char *crt, const char *key) {
  memset(s, 0, sizeof(*s));
  mbedtls_ssl_config_init(&s->conf);
  mbedtls_x509_crt_init(&s->crt);
  mbedtls_pk_init(&s->pk);
  mbedtls_entropy_init(&s->ent);
  mbedtls_ctr_drbg_init(&s->drbg);
  s->big = malloc(BIG_LEN);
  for (size_t i = 0; i < BIG_LEN; i++) s->big[i] = (char)(i * 13 % 241);
  if (mbedtls_ctr_drbg_seed(&s->drbg, mbedtls_entropy_func, &s->ent, NULL, 0) != 0 ||
      mbedtls_x509_crt_parse_file(&s->crt, crt) != 0 ||
      mbedtls_pk_parse_keyfile(&s->pk, key, NULL) != 0 ||
      mbedtls_ssl_config_defaults(&s->conf, MBEDTLS_SSL_IS_SERVER, MBEDTLS_SSL_TRANSPORT_STREAM,
                                  MBEDTLS_SSL_PRESET_DEFAULT) != 0 ||
      mbedtls_ssl_conf_own_cert(&s->conf, &s->crt, &s->pk) != 0)
    return 0;
  mbedtls_ssl_conf_rng(&s->conf, mbedtls_ctr_drbg_random, &s->drbg);
  s->lfd = listen_local(&s->port);
  if (s->lfd < 0) return 0;
  return pthread_create(&s->th, NULL, tsrv_main, s) == 0;
}

static void tsrv_stop(tsrv_t *s) {
  s->stop = 1;
  pthread_join(s->th, NULL);
  close(s->lfd);
  mbedtls_ssl_config_free(&s->conf);
  mbedtls_x509_crt_free(&s->crt);
  mbedtls_pk_free(&s->pk);
  mbedtls_ctr_drbg_free(&s->drbg);
  mbedtls_entropy_free(&s->ent);
  free(s->big);
}

/* ---- client side ---- */

static void on_expire(uv_timer_t *t) { *(int *)t->data = 1; }

static int run_until(uv_loop_t *loop, const int *flag, uint64_t ms) {
  uv_timer_t t;
  int expired = 0;
  uv_timer_init(loop, &t);
  t.data = &expired;
  uv_timer_start(&t, on_expire, ms, 5); /* repeating: see test_client.c */
  while (!*flag && !expired) uv_run(loop, UV_RUN_ONCE);
  uv_close((uv_handle_t *)&t, NULL);
  uv_run(loop, UV_RUN_NOWAIT);
  return *flag;
}

typedef struct res_s {
  uv_loop_t *loop;
  int heads, datas, dones, err, status;
  char msg[512];
  hg_buf_t body;
  size_t got;
  uint32_t sum;
  int pause_at, paused_datas, paused;
  hg_fetch_t *f;
  uv_timer_t resume;
} res_t;

static int r_head(void *ud, hg_fetch_t *f, const hg_fetch_head_t *h) {
  (void)f;
  res_t *r = ud;
  r->heads++;
  r->status = h->status;
  return 0;
}

static void on_resume(uv_timer_t *t) {
  res_t *r = t->data;
  r->paused = 0;
  hg_fetch_resume(r->f);
  uv_close((uv_handle_t *)t, NULL);
}

static void r_data(void *ud, hg_fetch_t *f, char *data, size_t len) {
  res_t *r = ud;
  r->datas++;
  if (r->paused) r->paused_datas++;
  for (size_t i = 0; i < len; i++) r->sum = r->sum * 31 + (unsigned char)data[i];
  r->got += len;
  if (r->got <= 4096) hg_buf_append(&r->body, data, len);
  free(data);
  if (r->pause_at && r->datas == r->pause_at) {
    hg_fetch_pause(f);
    r->paused = 1;
    uv_timer_init(r->loop, &r->resume);
    r->resume.data = r;
    uv_timer_start(&r->resume, on_resume, 200, 0);
  }
}

static void r_done(void *ud, hg_fetch_t *f, int err, const char *msg) {
  (void)f;
  res_t *r = ud;
  r->dones++;
  r->err = err;
  snprintf(r->msg, sizeof(r->msg), "%s", msg);
  if (getenv("UPTEST_VERBOSE")) fprintf(stderr, "  done %d %s\n", err, msg);
}

static const hg_fetch_cbs_t CBS = {r_head, r_data, r_done};

static int fetch(hg_upstream_t *u, uv_loop_t *loop, res_t *r, const char *host, int port,
                 const char *path, uint64_t connect_ms) {
  char url[256];
  snprintf(url, sizeof(url), "https://%s:%d%s", host, port, path);
  hg_fetch_opts_t o;
  memset(&o, 0, sizeof(o));
  o.url = url;
  o.allow = HG_ADDR_LOOPBACK;
  o.connect_timeout_ms = connect_ms;
  o.read_timeout_ms = 3000;
  memset(r, 0, sizeof(*r));
  r->loop = loop;
  r->f = hg_fetch_start(u, &o, &CBS, r);
  if (r->f == NULL) return 0;
  return run_until(loop, &r->dones, 8000);
}

static hg_upstream_t *client(uv_loop_t *loop, const char *ca) {
  hg_upstream_config_t cfg;
  memset(&cfg, 0, sizeof(cfg));
  cfg.ca_file = ca;
  char err[256];
  hg_upstream_t *u = hg_upstream_new(loop, &cfg, err, sizeof(err));
  if (u == NULL) fprintf(stderr, "hg_upstream_new: %s\n", err);
  return u;
}

static void client_done(uv_loop_t *loop, hg_upstream_t *u) {
  hg_upstream_close(u);
  uv_run(loop, UV_RUN_DEFAULT);
}

/* ---- tests ---- */

HG_TEST(trusted_chain_and_pooling) {
  tsrv_t s;
  CHECK(tsrv_start(&s, path_in("srv.crt"), path_in("srv.key")));
  uv_loop_t loop;
  uv_loop_init(&loop);
  hg_upstream_t *u = client(&loop, path_in("ca.crt"));
  CHECK(u != NULL);
  res_t r;
  for (int i = 0; i < 2; i++) {
    CHECK(fetch(u, &loop, &r, "localhost", s.port, "/hello", 3000));
    CHECK_INT(r.err, 0);
    CHECK_INT(r.status, 200);
    CHECK_STR(r.body.data ? r.body.data : "", "hello tls");
    hg_buf_free(&r.body);
  }
  CHECK_INT(__atomic_load_n(&s.handshakes, __ATOMIC_SEQ_CST), 1); /* pooled TLS conn */

  /* A close-delimited body ended by a bare TCP close. */
  CHECK(fetch(u, &loop, &r, "localhost", s.port, "/close", 3000));
  CHECK_INT(r.err, 0);
  CHECK_STR(r.body.data ? r.body.data : "", "until close");
  hg_buf_free(&r.body);

  /* Backpressure through TLS: pause with decrypted records pending, then resume. */
  uint32_t want = 0;
  for (size_t i = 0; i < BIG_LEN; i++) want = want * 31 + (unsigned char)(char)(i * 13 % 241);
  memset(&r, 0, sizeof(r));
  r.loop = &loop;
  r.pause_at = 3;
  {
    char url[128];
    snprintf(url, sizeof(url), "https://localhost:%d/big", s.port);
    hg_fetch_opts_t o;
    memset(&o, 0, sizeof(o));
    o.url = url;
    o.allow = HG_ADDR_LOOPBACK;
    o.read_timeout_ms = 100; /* shorter than the pause */
    r.f = hg_fetch_start(u, &o, &CBS, &r);
    CHECK(run_until(&loop, &r.dones, 8000));
  }
  CHECK_INT(r.err, 0);
  CHECK_INT(r.paused_datas, 0);
  CHECK_INT(r.got, BIG_LEN);
  CHECK(r.sum == want);
  hg_buf_free(&r.body);
  client_done(&loop, u);
  CHECK_INT(uv_loop_close(&loop), 0);
  tsrv_stop(&s);
}

HG_TEST(wrong_hostname) {
  tsrv_t s;
  CHECK(tsrv_start(&s, path_in("srv.crt"), path_in("srv.key")));
  uv_loop_t loop;
  uv_loop_init(&loop);
  hg_upstream_t *u = client(&loop, path_in("ca.crt"));
  res_t r;
  CHECK(fetch(u, &loop, &r, "127.0.0.1", s.port, "/hello", 3000)); /* cert says localhost */
  CHECK_INT(r.err, HG_EUPSTREAM);
  CHECK(strstr(r.msg, "TLS: certificate verify failed") != NULL);
  CHECK(strstr(r.msg, "hostname mismatch") != NULL);
  CHECK_INT(r.heads, 0);
  client_done(&loop, u);
  CHECK_INT(uv_loop_close(&loop), 0);
  tsrv_stop(&s);
}

HG_TEST(untrusted_chain) {
  tsrv_t s;
  CHECK(tsrv_start(&s, path_in("self.crt"), path_in("self.key")));
  uv_loop_t loop;
  uv_loop_init(&loop);
  hg_upstream_t *u = client(&loop, path_in("ca.crt"));
  res_t r;
  CHECK(fetch(u, &loop, &r, "localhost", s.port, "/hello", 3000));
  CHECK_INT(r.err, HG_EUPSTREAM);
  CHECK(strstr(r.msg, "TLS: certificate verify failed (unknown CA)") != NULL);
  char origin[64];
  snprintf(origin, sizeof(origin), "https://localhost:%d: ", s.port);
  CHECK(strncmp(r.msg, origin, strlen(origin)) == 0);
  CHECK_INT(r.heads, 0);
  client_done(&loop, u);
  /* Only the system bundle: our test CA is unknown. */
  u = client(&loop, NULL);
  CHECK(fetch(u, &loop, &r, "localhost", s.port, "/hello", 3000));
  CHECK_INT(r.err, HG_EUPSTREAM);
  CHECK(strstr(r.msg, "unknown CA") != NULL);
  client_done(&loop, u);
  CHECK_INT(uv_loop_close(&loop), 0);
  tsrv_stop(&s);
}

HG_TEST(handshake_timeout) {
  int port;
  int fd = listen_local(&port); /* accepts in the kernel, never speaks TLS */
  CHECK(fd >= 0);
  uv_loop_t loop;
  uv_loop_init(&loop);
  hg_upstream_t *u = client(&loop, path_in("ca.crt"));
  res_t r;
  uint64_t t0 = uv_hrtime();
  CHECK(fetch(u, &loop, &r, "localhost", port, "/hello", 300));
  uint64_t ms = (uv_hrtime() - t0) / 1000000;
  CHECK_INT(r.err, HG_ETIMEOUT);
  CHECK(strstr(r.msg, "timed out after 300 ms connecting") != NULL);
  CHECK(ms >= 280 && ms < 2000);
  client_done(&loop, u);
  CHECK_INT(uv_loop_close(&loop), 0);
  close(fd);
}

HG_TEST(bad_ca_file) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  hg_upstream_config_t cfg;
  memset(&cfg, 0, sizeof(cfg));
  char err[256] = "";
  cfg.ca_file = path_in("missing.pem");
  CHECK(hg_upstream_new(&loop, &cfg, err, sizeof(err)) == NULL);
  CHECK(strstr(err, "missing.pem") != NULL);
  cfg.ca_file = path_in("junk.pem");
  CHECK(hg_upstream_new(&loop, &cfg, err, sizeof(err)) == NULL);
  CHECK(strstr(err, "junk.pem") != NULL);
  CHECK_INT(uv_loop_close(&loop), 0);
}

int main(void) {
  setvbuf(stdout, NULL, _IONBF, 0);
  if (!make_certs()) {
    fprintf(stderr, "test_tls: cannot make certificates with the openssl CLI\n");
    return 1;
  }
  RUN(trusted_chain_and_pooling);
  RUN(wrong_hostname);
  RUN(untrusted_chain);
  RUN(handshake_timeout);
  RUN(bad_ca_file);
  rm_certs();
  return hgtest_done();
}
