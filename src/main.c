/* main.c — hlsgate entry point: parse the command line, start the workers, and turn
 * signals into reloads (HUP) and graceful stops (TERM/INT). Everything else lives in
 * the modules; this file stays thin. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netdb.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include <mbedtls/version.h>

#include "store/cache.h"
#include "gateway/config.h"
#include "base/error.h"
#include "gateway/listen.h"
#include "base/log.h"
#include "gateway/metrics.h"
#include "gateway/probe.h"
#include "gateway/worker.h"
#include "http/tls.h"
#include "crypto/jwt.h"
#include "lua/policy.h"
#include "url/url.h"

typedef struct app_s {
  hg_config_t cfg;
  hg_worker_t **workers;
  int nworkers;
  uv_signal_t sig_hup, sig_term, sig_int, sig_chld;
  uv_timer_t exit_poll; /* while draining: have all workers exited? */
  int stopping;
  int reaper; /* PID 1: reap re-parented orphans */
  hg_policy_limits_t limits;
  hg_worker_shared_t shared;
} app_t;

/* --health: GET /healthz on the admin listener if there is one, else on the first
 * listener (a wildcard address is reached on loopback), with a 2 s deadline. What a
 * container HEALTHCHECK runs: no shell, no curl, follows HLSGATE_LISTEN by itself. */
static int health_probe(const hg_config_t *cfg) {
  const char *hp = cfg->admin_listen;
  for (size_t i = 0; hp == NULL && i < cfg->nlisten; i++) /* a plain listener: no TLS client here */
    if (cfg->tls[i].n == 0) hp = cfg->listen[i];
  if (hp == NULL) {
    fprintf(stderr, "hlsgate --health: every listener is TLS; give an --admin-listen\n");
    return 1;
  }
  const char *colon = strrchr(hp, ':');
  char host[128];
  snprintf(host, sizeof(host), "%.*s", (int)(colon - hp), hp);
  size_t hl = strlen(host);
  if (hl >= 2 && host[0] == '[' && host[hl - 1] == ']') memmove(host, host + 1, hl - 2), host[hl - 2] = '\0';
  if (strcmp(host, "") == 0 || strcmp(host, "0.0.0.0") == 0 || strcmp(host, "*") == 0) strcpy(host, "127.0.0.1");
  else if (strcmp(host, "::") == 0) strcpy(host, "::1");
  struct addrinfo hints, *ai = NULL;
  memset(&hints, 0, sizeof(hints));
  hints.ai_socktype = SOCK_STREAM;
  if (getaddrinfo(host, colon + 1, &hints, &ai) != 0 || ai == NULL) {
    fprintf(stderr, "hlsgate --health: cannot resolve %s\n", hp);
    return 1;
  }
  int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct timeval tv = {2, 0};
  if (fd >= 0) {
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  }
  char buf[64] = "";
  static const char req[] = "GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
  int ok = fd >= 0 && connect(fd, ai->ai_addr, ai->ai_addrlen) == 0 &&
           write(fd, req, sizeof(req) - 1) == (ssize_t)(sizeof(req) - 1) && read(fd, buf, sizeof(buf) - 1) > 12 &&
           (strncmp(buf, "HTTP/1.1 200", 12) == 0 || strncmp(buf, "HTTP/1.0 200", 12) == 0);
  if (fd >= 0) close(fd);
  freeaddrinfo(ai);
  if (!ok) fprintf(stderr, "hlsgate --health: %s/healthz did not answer 200\n", hp);
  return ok ? 0 : 1;
}

/* Reads and compiles the policy as a reload would. Returns the source (one reference)
 * or NULL with "file:line: message" in err. */
static hg_policy_src_t *load_checked(const hg_config_t *cfg, const hg_policy_limits_t *lim,
                                     char *err, size_t errlen) {
  hg_policy_src_t *src = hg_policy_src_read(cfg->policy_path, err, errlen);
  if (src == NULL) return NULL;
  hg_policy_t *p = hg_policy_new(src, lim, err, errlen);
  if (p == NULL) {
    hg_policy_src_release(src);
    return NULL;
  }
  hg_policy_release(p);
  return src;
}

/* HUP, certificates: every TLS listener's files are loaded here first, so a bad file is
 * reported once and no worker switches (all keep the current certificates). */
static void reload_tls(app_t *app) {
  const hg_config_t *cfg = &app->cfg;
  int any = 0;
  for (size_t i = 0; i < cfg->nlisten; i++) {
    if (cfg->tls[i].n == 0) continue;
    char err[512];
    hg_http_tls_t *t = hg_http_tls_new(cfg->tls[i].cert, cfg->tls[i].key, cfg->tls[i].n, err, sizeof(err));
    if (t == NULL) {
      hg_log(HG_LOG_ERROR, "TLS reload failed, keeping the current certificates: %s", err);
      return;
    }
    hg_http_tls_free(t);
    any = 1;
  }
  if (!any) return;
  hg_log(HG_LOG_INFO, "reloading TLS certificates");
  for (int i = 0; i < app->nworkers; i++) hg_worker_reload_tls(app->workers[i]);
}

static void on_hup(uv_signal_t *h, int signum) {
  (void)signum;
  app_t *app = h->data;
  char err[512];
  if (app->stopping) { /* still handled: its default action would end the process */
    hg_log(HG_LOG_INFO, "SIGHUP while draining: no reload");
    return;
  }
  reload_tls(app);
  hg_policy_src_t *src = load_checked(&app->cfg, &app->limits, err, sizeof(err));
  if (src == NULL) {
    hg_metrics_reload(0);
    hg_log(HG_LOG_ERROR, "reload failed, keeping the current policy: %s", err);
    return;
  }
  hg_metrics_reload(1);
  hg_log(HG_LOG_INFO, "reloading policy %s (version %s)", hg_policy_src_path(src),
         hg_policy_src_version(src));
  for (int i = 0; i < app->nworkers; i++) hg_worker_reload(app->workers[i], src);
  hg_policy_src_release(src);
}

/* As PID 1 (a container's init) orphans are re-parented to us: reap them so they never
 * linger as zombies. hlsgate starts no children of its own, so nothing else is lost. */
static void on_chld(uv_signal_t *h, int signum) {
  (void)h;
  (void)signum;
  while (waitpid(-1, NULL, WNOHANG) > 0) {
  }
}

/* Once every worker has drained, the main loop's last handles close and run() joins. */
static void on_exit_poll(uv_timer_t *t) {
  app_t *app = t->data;
  for (int i = 0; i < app->nworkers; i++)
    if (!hg_worker_exited(app->workers[i])) return;
  uv_close((uv_handle_t *)&app->exit_poll, NULL);
  uv_close((uv_handle_t *)&app->sig_hup, NULL);
  uv_close((uv_handle_t *)&app->sig_term, NULL);
  uv_close((uv_handle_t *)&app->sig_int, NULL);
  if (app->reaper) uv_close((uv_handle_t *)&app->sig_chld, NULL);
  /* closing the handlers restored the default actions: a late TERM would kill the
   * process while it joins and frees */
  signal(SIGTERM, SIG_IGN);
  signal(SIGINT, SIG_IGN);
  signal(SIGHUP, SIG_IGN);
}

/* The first TERM/INT drains (bounded by --drain-timeout); another one while draining
 * closes the remaining connections now. The handlers (HUP's too) stay installed until
 * the workers are gone: a signal's default action would kill the process with its
 * access-log buffers unwritten. */
static void on_stop(uv_signal_t *h, int signum) {
  app_t *app = h->data;
  const char *name = signum == SIGINT ? "SIGINT" : "SIGTERM";
  if (app->stopping) {
    hg_log(HG_LOG_INFO, "%s while draining: closing the remaining connections now", name);
    for (int i = 0; i < app->nworkers; i++) hg_worker_stop_now(app->workers[i]);
    return;
  }
  app->stopping = 1;
  hg_log(HG_LOG_INFO, "%s: draining (up to %llu ms)", name, (unsigned long long)app->cfg.drain_timeout_ms);
  for (int i = 0; i < app->nworkers; i++) hg_worker_stop(app->workers[i]);
  uv_timer_init(h->loop, &app->exit_poll);
  app->exit_poll.data = app;
  uv_timer_start(&app->exit_poll, on_exit_poll, 20, 20);
}

/* Opens one socket per (worker, address); port 0 is resolved by the probe and shared by
 * the workers. An address another process listens on is a startup error, as with nginx:
 * SO_REUSEPORT would otherwise let a second hlsgate of the same user join silently and
 * the kernel split the traffic between two policies. Returns 0 or an error code
 * (logged); fds opened so far are left for the caller to close. */
static int open_sockets(const char **addrs, const hg_config_tls_t *tls, size_t n, int nworkers, int reuseport,
                        int *fds) {
  for (size_t a = 0; a < n; a++) {
    int port = 0;
    int rc = hg_listen_probe(addrs[a], &port);
    if (rc) {
      hg_log(HG_LOG_ERROR, "cannot listen on %s: %s%s", addrs[a], hg_strerror(rc),
             rc == UV_EADDRINUSE ? " (another process listens there)" : "");
      return rc;
    }
    for (int w = 0; w < nworkers; w++) {
      int fd = hg_listen_socket(addrs[a], reuseport, &port);
      if (fd < 0) {
        hg_log(HG_LOG_ERROR, "cannot listen on %s: %s", addrs[a], hg_strerror(fd));
        return fd;
      }
      fds[(size_t)w * HG_MAX_LISTEN + a] = fd;
    }
    /* Another process may have bound between the probe and our sockets: look again.
     * (Two started at the same instant then both stop: loud, never silent.) */
    int *mine = malloc((size_t)nworkers * sizeof(int));
    if (mine == NULL) return HG_ENOMEM;
    for (int w = 0; w < nworkers; w++) mine[w] = fds[(size_t)w * HG_MAX_LISTEN + a];
    int foreign = hg_listen_foreign(addrs[a], port, mine, (size_t)nworkers);
    free(mine);
    if (foreign) {
      hg_log(HG_LOG_ERROR, "cannot listen on %s: another process listens there too", addrs[a]);
      return UV_EADDRINUSE;
    }
    char shown[160];
    const char *colon = strrchr(addrs[a], ':');
    snprintf(shown, sizeof(shown), "%.*s:%d", (int)(colon - addrs[a]), addrs[a], port);
    hg_log(HG_LOG_INFO, "listening on %s%s", shown, tls && tls[a].n ? " (TLS: h2, http/1.1)" : "");
  }
  return 0;
}

static int run(app_t *app) {
  hg_config_t *cfg = &app->cfg;
  char err[512];
  hg_policy_set_listen((const char *const *)cfg->listen, cfg->nlisten);
  hg_policy_src_t *src = load_checked(cfg, &app->limits, err, sizeof(err));
  if (src == NULL) {
    hg_log(HG_LOG_ERROR, "%s", err);
    return 1;
  }
  signal(SIGPIPE, SIG_IGN);
  int nw = cfg->workers;
  int *fds = calloc((size_t)nw * HG_MAX_LISTEN, sizeof(int));
  int admin_fd = -1, admin_port = 0;
  app->workers = calloc((size_t)nw, sizeof(*app->workers)); // NOLINT(bugprone-sizeof-expression): an array of pointers
  app->shared.cache = hg_cache_new(cfg->cache_size, cfg->cache_max_object);
  app->shared.metrics = calloc((size_t)nw, sizeof(hg_metrics_t));
  app->shared.nworkers = (size_t)nw;
  hg_metrics_set_version(hg_policy_src_version(src));
  hg_metrics_start();
  int rc = fds && app->workers && app->shared.cache && app->shared.metrics ? 0 : HG_ENOMEM;
  /* The admin listener is served by worker 1 only. */
  if (!rc && cfg->admin_listen) {
    admin_fd = hg_listen_socket(cfg->admin_listen, 0, &admin_port);
    if (admin_fd < 0) {
      hg_log(HG_LOG_ERROR, "cannot listen on %s: %s", cfg->admin_listen, hg_strerror(admin_fd));
      rc = admin_fd;
    } else {
      hg_log(HG_LOG_INFO, "admin listening on %.*s:%d",
             (int)(strrchr(cfg->admin_listen, ':') - cfg->admin_listen), cfg->admin_listen,
             admin_port);
    }
  }
  if (!rc) rc = open_sockets(cfg->listen, cfg->tls, cfg->nlisten, nw, 1, fds);
  for (int i = 0; !rc && i < nw; i++) {
    app->workers[i] = hg_worker_new(i + 1, cfg, &app->shared, fds + i * HG_MAX_LISTEN, cfg->nlisten,
                                    &admin_fd, i == 0 && admin_fd >= 0 ? 1 : 0);
    if (app->workers[i] == NULL) rc = HG_ENOMEM;
    else rc = hg_worker_start(app->workers[i], src);
    if (!rc) app->nworkers = i + 1;
  }
  hg_policy_src_release(src);
  free(fds);
  if (rc) {
    for (int i = 0; i < app->nworkers && app->workers; i++) hg_worker_stop(app->workers[i]);
    for (int i = 0; i < nw && app->workers; i++) hg_worker_join_free(app->workers[i]);
    free(app->workers);
    hg_cache_free(app->shared.cache);
    free(app->shared.metrics);
    return 1;
  }

  uv_loop_t *loop = uv_default_loop();
  uv_signal_init(loop, &app->sig_hup);
  uv_signal_init(loop, &app->sig_term);
  uv_signal_init(loop, &app->sig_int);
  app->sig_hup.data = app->sig_term.data = app->sig_int.data = app;
  uv_signal_start(&app->sig_hup, on_hup, SIGHUP);
  uv_signal_start(&app->sig_term, on_stop, SIGTERM);
  uv_signal_start(&app->sig_int, on_stop, SIGINT);
  if (getpid() == 1) {
    app->reaper = 1;
    uv_signal_init(loop, &app->sig_chld);
    app->sig_chld.data = app;
    uv_signal_start(&app->sig_chld, on_chld, SIGCHLD);
    on_chld(&app->sig_chld, SIGCHLD); /* any that exited before we listened */
  }
  /* "ready" only once TERM/INT/HUP are handled: a supervisor (or a test) that signals
   * right after it must get a drain, not the default action (found as a flaky e2e). */
  hg_log(HG_LOG_INFO, "hlsgate %s ready: %d worker(s), policy %s", HG_VERSION, nw,
         cfg->policy_path);
  uv_run(loop, UV_RUN_DEFAULT);
  for (int i = 0; i < app->nworkers; i++) hg_worker_join_free(app->workers[i]);
  free(app->workers);
  hg_cache_free(app->shared.cache);
  free(app->shared.metrics);
  uv_loop_close(loop);
  hg_log(HG_LOG_INFO, "stopped");
  return 0;
}

/* `hlsgate token`: mints a token as the shipped private-bucket policy expects (HS256,
 * sub "hls", pfx, exp; secret from HLSGATE_JWT_SECRET) and prints it with its URL. */
static int mint_token(const hg_config_t *cfg) {
  const char *secret = getenv("HLSGATE_JWT_SECRET");
  if (cfg->token_prefix == NULL || *cfg->token_prefix == '\0') {
    fprintf(stderr, "hlsgate token: --prefix is required\n");
    return 2;
  }
  if (secret == NULL || *secret == '\0') {
    fprintf(stderr, "hlsgate token: HLSGATE_JWT_SECRET is not set\n");
    return 2;
  }
  long ttl = cfg->token_ttl;
  const char *env_ttl = getenv("HLSGATE_TOKEN_TTL");
  if (ttl < 0) ttl = env_ttl && *env_ttl ? atol(env_ttl) : 86400;
  if (ttl <= 0) {
    fprintf(stderr, "hlsgate token: the TTL must be positive\n");
    return 2;
  }
  long long exp = (long long)time(NULL) + ttl;
  hg_buf_t claims = HG_BUF_INIT, tok = HG_BUF_INIT, path = HG_BUF_INIT;
  size_t plen = strlen(cfg->token_prefix);
  while (plen > 1 && cfg->token_prefix[plen - 1] == '/') plen--;
  /* Refuse what the server would always refuse: a prefix the key scoping rejects (".."
   * segments, '\\', controls), or a path that is no object under it. */
  int bad_prefix = hg_url_join_key(&path, cfg->token_prefix, plen, "x", 1) != 0;
  hg_buf_clear(&path);
  int bad_path = hg_url_join_key(&path, "", 0, cfg->token_path, strlen(cfg->token_path)) != 0;
  hg_buf_clear(&path);
  if (bad_prefix || bad_path) {
    fprintf(stderr, "hlsgate token: %s '%s' would always be refused by the server (no '..' segments, "
            "backslashes or control characters)\n", bad_prefix ? "--prefix" : "--path",
            bad_prefix ? cfg->token_prefix : cfg->token_path);
    hg_buf_free(&path);
    return 2;
  }
  hg_buf_puts(&claims, "{\"sub\":\"hls\",\"pfx\":\"");
  hg_buf_json_escape(&claims, cfg->token_prefix, plen);
  hg_buf_printf(&claims, "\",\"exp\":%lld}", exp);
  const char *why = NULL;
  int rc = hg_buf_error(&claims) ? HG_ENOMEM
                                 : hg_jwt_sign(&tok, HG_JWT_HS256, NULL, secret, strlen(secret), claims.data,
                                               claims.len, &why);
  if (rc == 0) rc = hg_url_encode(&path, cfg->token_path, strlen(cfg->token_path), HG_URL_ENC_KEEP_SLASH);
  if (rc == 0) {
    printf("token:      %s\nexpires_at: %lld\nurl:        /stream/hls/%s?token=%s\n", tok.data, exp,
           path.data, tok.data);
  } else {
    fprintf(stderr, "hlsgate token: %s\n", why ? why : hg_strerror(rc));
  }
  hg_buf_free(&claims);
  hg_buf_free(&tok);
  hg_buf_free(&path);
  return rc ? 1 : 0;
}

/* Runs the mode the command line asked for; returns the exit status. */
static int dispatch(app_t *app) {
  char err[512];
  hg_config_t *cfg = &app->cfg;
  app->limits.memory = cfg->lua_memory;
  app->limits.budget = cfg->lua_budget;
  if (cfg->log_debug) hg_log_set_level(HG_LOG_DEBUG);
  hg_log_access_buffer(cfg->access_log_buffer);
  switch (cfg->mode) {
  case HG_MODE_HELP:
    hg_config_usage(stdout);
    return 0;
  case HG_MODE_VERSION: {
    char mbed[32];
    mbedtls_version_get_string(mbed);
    printf("hlsgate %s (commit %s; libuv %s, %s, mbed TLS %s)\n", HG_VERSION, HG_COMMIT, uv_version_string(),
           hg_policy_runtime(), mbed);
    return 0;
  }
  case HG_MODE_CHECK: {
    hg_policy_src_t *src = load_checked(cfg, &app->limits, err, sizeof(err));
    if (src == NULL) {
      fprintf(stderr, "%s\n", err);
      return 1;
    }
    printf("%s: OK (version %s)\n", cfg->policy_path, hg_policy_src_version(src));
    hg_policy_src_release(src);
    return cfg->probe ? hg_probe_run(stdout, cfg->ca_file, 5000) : 0;
  }
  case HG_MODE_TOKEN:
    return mint_token(cfg);
  case HG_MODE_HEALTH:
    return health_probe(cfg);
  case HG_MODE_RUN:
    break;
  }
  return run(app);
}

int main(int argc, char **argv) {
  app_t app;
  memset(&app, 0, sizeof(app));
  char err[512];
  if (hg_config_parse(&app.cfg, argc, argv, err, sizeof(err)) != 0) {
    fprintf(stderr, "hlsgate: %s\n", err);
    hg_config_free(&app.cfg);
    return 2;
  }
  int rc = dispatch(&app);
  hg_config_free(&app.cfg);
  return rc;
}
