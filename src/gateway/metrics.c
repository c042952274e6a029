/* metrics.c — per-worker counters and the Prometheus text exposition (see metrics.h). */
#include "gateway/metrics.h"

#include <dirent.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <mbedtls/version.h>
#include <uv.h>

#include "base/error.h"

static const int statuses[HG_METRICS_STATUSES] = {
    200, 201, 204, 206, 301, 302, 304, 400, 401, 403, 404, 405,
    408, 413, 414, 416, 431, 499, 500, 502, 503, 504, 0 /* other */};
static const double bounds[HG_METRICS_BUCKETS - 1] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                                      0.05,   0.1,   0.25,   0.5,   1,    2.5, 10};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static char routes[HG_METRICS_ROUTES][32] = {"other"};
static int nroutes = 1;
static uint64_t reloads_ok, reloads_failed;
static char version[32];
static double start_time; /* Unix seconds, set by hg_metrics_start */

void hg_metrics_start(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  start_time = (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

#define ADD(p, v) __atomic_add_fetch((p), (v), __ATOMIC_RELAXED)
#define LOAD(p) __atomic_load_n((p), __ATOMIC_RELAXED)

void hg_metrics_reload(int ok) { ADD(ok ? &reloads_ok : &reloads_failed, 1); }

void hg_metrics_set_version(const char *v) {
  pthread_mutex_lock(&lock);
  snprintf(version, sizeof(version), "%s", v);
  pthread_mutex_unlock(&lock);
}

int hg_metrics_route(const char *name) {
  size_t len = name ? strlen(name) : 0;
  if (len == 0 || len >= sizeof(routes[0])) return 0;
  /* Label characters are restricted so nothing can inject into the exposition. */
  for (size_t i = 0; i < len; i++) {
    char c = name[i];
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-' || c == '.'))
      return 0;
  }
  /* Labels are only ever appended, each written before the count that publishes it, so
   * the common case (a known route) needs no lock on this per-request path. */
  int n = __atomic_load_n(&nroutes, __ATOMIC_ACQUIRE);
  for (int i = 1; i < n; i++)
    if (strcmp(routes[i], name) == 0) return i;
  pthread_mutex_lock(&lock);
  int idx = 0;
  for (int i = 1; i < nroutes && idx == 0; i++)
    if (strcmp(routes[i], name) == 0) idx = i;
  if (idx == 0 && nroutes < HG_METRICS_ROUTES) {
    memcpy(routes[nroutes], name, len + 1);
    idx = nroutes;
    __atomic_store_n(&nroutes, nroutes + 1, __ATOMIC_RELEASE);
  }
  pthread_mutex_unlock(&lock);
  return idx;
}

static void observe(hg_histogram_t *h, uint64_t us) {
  double s = (double)us / 1e6;
  int b = 0;
  while (b < HG_METRICS_BUCKETS - 1 && s > bounds[b]) b++;
  ADD(&h->buckets[b], 1);
  ADD(&h->count, 1);
  ADD(&h->sum_us, us);
}

void hg_metrics_request(hg_metrics_t *m, int route, int status, size_t bytes, uint64_t duration_us,
                        uint64_t upstream_us) {
  int s = HG_METRICS_STATUSES - 1;
  for (int i = 0; i < HG_METRICS_STATUSES - 1; i++)
    if (statuses[i] == status) s = i;
  if (route < 0 || route >= HG_METRICS_ROUTES) route = 0;
  ADD(&m->requests[route][s], 1);
  ADD(&m->bytes_out, bytes);
  observe(&m->latency, duration_us);
  if (upstream_us) observe(&m->upstream, upstream_us);
}

void hg_metrics_connections(hg_metrics_t *m, int delta) { ADD(&m->connections, delta); }

void hg_metrics_callout(hg_metrics_t *m, int kind, int outcome, uint64_t us) {
  if (kind < 0 || kind > 1 || outcome < 0 || outcome >= HG_METRICS_OUTCOMES) return;
  ADD(&m->callouts[kind][outcome], 1);
  observe(kind ? &m->callout_redis : &m->callout_http, us);
}

void hg_metrics_redis(hg_metrics_t *m, size_t conns, uint64_t errors) {
  __atomic_store_n(&m->redis_conns, (int64_t)conns, __ATOMIC_RELAXED);
  __atomic_store_n(&m->redis_errors, errors, __ATOMIC_RELAXED);
}

/* Callouts by target and outcome, their latency, the Redis pools. */
static void render_callouts(hg_buf_t *o, hg_metrics_t *const *w, size_t n);

static void render_histogram(hg_buf_t *o, const char *name, const char *help,
                             hg_metrics_t *const *w, size_t n, size_t offset) {
  hg_buf_printf(o, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
  uint64_t cum = 0, count = 0, sum = 0;
  for (int b = 0; b < HG_METRICS_BUCKETS; b++) {
    for (size_t i = 0; i < n; i++) {
      const hg_histogram_t *h = (const hg_histogram_t *)((const char *)w[i] + offset);
      cum += LOAD(&h->buckets[b]);
    }
    if (b < HG_METRICS_BUCKETS - 1) hg_buf_printf(o, "%s_bucket{le=\"%g\"} %llu\n", name, bounds[b], (unsigned long long)cum);
    else hg_buf_printf(o, "%s_bucket{le=\"+Inf\"} %llu\n", name, (unsigned long long)cum);
  }
  for (size_t i = 0; i < n; i++) {
    const hg_histogram_t *h = (const hg_histogram_t *)((const char *)w[i] + offset);
    count += LOAD(&h->count);
    sum += LOAD(&h->sum_us);
  }
  hg_buf_printf(o, "%s_sum %.6f\n%s_count %llu\n", name, (double)sum / 1e6, name, (unsigned long long)count);
}

/* The standard process_* series (Prometheus client conventions) and what was built. */
static void render_process(hg_buf_t *o) {
  struct rusage ru;
  double cpu = 0;
  if (getrusage(RUSAGE_SELF, &ru) == 0)
    cpu = (double)ru.ru_utime.tv_sec + (double)ru.ru_stime.tv_sec +
          ((double)ru.ru_utime.tv_usec + (double)ru.ru_stime.tv_usec) / 1e6;
  long long vsize = 0, rss = 0;
  FILE *f = fopen("/proc/self/statm", "r");
  if (f) {
    if (fscanf(f, "%lld %lld", &vsize, &rss) != 2) vsize = rss = 0;
    fclose(f);
  }
  long page = sysconf(_SC_PAGESIZE);
  long long fds = 0;
  DIR *d = opendir("/proc/self/fd");
  if (d) {
    for (struct dirent *e; (e = readdir(d)) != NULL;) fds += e->d_name[0] != '.';
    closedir(d);
    fds--; /* the directory stream's own descriptor */
  }
  struct rlimit rl;
  long long maxfds = getrlimit(RLIMIT_NOFILE, &rl) == 0 ? (long long)rl.rlim_cur : 0;
  char mbed[32];
  mbedtls_version_get_string(mbed);
  hg_buf_printf(o,
                "# HELP process_cpu_seconds_total Total user and system CPU time spent in seconds.\n"
                "# TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total %.3f\n"
                "# HELP process_resident_memory_bytes Resident memory size in bytes.\n"
                "# TYPE process_resident_memory_bytes gauge\nprocess_resident_memory_bytes %lld\n"
                "# HELP process_virtual_memory_bytes Virtual memory size in bytes.\n"
                "# TYPE process_virtual_memory_bytes gauge\nprocess_virtual_memory_bytes %lld\n"
                "# HELP process_open_fds Number of open file descriptors.\n"
                "# TYPE process_open_fds gauge\nprocess_open_fds %lld\n"
                "# HELP process_max_fds Maximum number of open file descriptors.\n"
                "# TYPE process_max_fds gauge\nprocess_max_fds %lld\n"
                "# HELP process_start_time_seconds Start time of the process since unix epoch in seconds.\n"
                "# TYPE process_start_time_seconds gauge\nprocess_start_time_seconds %.3f\n"
                "# HELP hlsgate_build_info What this binary was built from.\n"
                "# TYPE hlsgate_build_info gauge\n"
                "hlsgate_build_info{version=\"%s\",commit=\"%s\",mbedtls=\"%s\",libuv=\"%s\",lua=\"%s\"} 1\n",
                cpu, rss * page, vsize * page, fds, maxfds, start_time, HG_VERSION, HG_COMMIT, mbed,
                uv_version_string(), HG_LUA_RELEASE);
}

int hg_metrics_render(hg_buf_t *o, hg_metrics_t *const *w, size_t n, hg_cache_t *cache) {
  hg_buf_puts(o, "# HELP hlsgate_requests_total Requests answered, by route and status.\n"
                 "# TYPE hlsgate_requests_total counter\n");
  pthread_mutex_lock(&lock);
  int nr = nroutes;
  char names[HG_METRICS_ROUTES][32];
  memcpy(names, routes, sizeof(names));
  char ver[32];
  memcpy(ver, version, sizeof(ver));
  pthread_mutex_unlock(&lock);
  for (int r = 0; r < nr; r++) {
    for (int s = 0; s < HG_METRICS_STATUSES; s++) {
      uint64_t v = 0;
      for (size_t i = 0; i < n; i++) v += LOAD(&w[i]->requests[r][s]);
      if (v == 0) continue;
      if (statuses[s]) hg_buf_printf(o, "hlsgate_requests_total{route=\"%s\",status=\"%d\"} %llu\n", names[r], statuses[s], (unsigned long long)v);
      else hg_buf_printf(o, "hlsgate_requests_total{route=\"%s\",status=\"other\"} %llu\n", names[r], (unsigned long long)v);
    }
  }
  uint64_t bytes = 0;
  int64_t conns = 0;
  for (size_t i = 0; i < n; i++) bytes += LOAD(&w[i]->bytes_out), conns += LOAD(&w[i]->connections);
  hg_buf_printf(o, "# HELP hlsgate_response_bytes_total Response body bytes sent.\n"
                   "# TYPE hlsgate_response_bytes_total counter\nhlsgate_response_bytes_total %llu\n",
                (unsigned long long)bytes);
  render_histogram(o, "hlsgate_request_duration_seconds", "Time from the first request byte to the response.",
                   w, n, offsetof(hg_metrics_t, latency));
  render_histogram(o, "hlsgate_upstream_duration_seconds", "Time to the upstream response head.",
                   w, n, offsetof(hg_metrics_t, upstream));
  hg_buf_printf(o, "# HELP hlsgate_connections Open client connections.\n"
                   "# TYPE hlsgate_connections gauge\nhlsgate_connections %lld\n", (long long)conns);
  hg_buf_printf(o, "# HELP hlsgate_policy_reloads_total Policy reloads by result.\n"
                   "# TYPE hlsgate_policy_reloads_total counter\n"
                   "hlsgate_policy_reloads_total{result=\"ok\"} %llu\n"
                   "hlsgate_policy_reloads_total{result=\"failed\"} %llu\n",
                (unsigned long long)LOAD(&reloads_ok), (unsigned long long)LOAD(&reloads_failed));
  hg_buf_printf(o, "# HELP hlsgate_policy_info The policy version (first 12 hex digits of its SHA-256).\n"
                   "# TYPE hlsgate_policy_info gauge\nhlsgate_policy_info{version=\"%s\"} 1\n", ver);
  render_callouts(o, w, n);
  render_process(o);
  if (cache) {
    hg_cache_stats_t st;
    hg_cache_stats(cache, &st);
    hg_buf_printf(o, "# HELP hlsgate_cache_requests_total Cache lookups by result.\n"
                     "# TYPE hlsgate_cache_requests_total counter\n"
                     "hlsgate_cache_requests_total{result=\"hit\"} %llu\n"
                     "hlsgate_cache_requests_total{result=\"miss\"} %llu\n"
                     "hlsgate_cache_requests_total{result=\"coalesced\"} %llu\n"
                     "hlsgate_cache_requests_total{result=\"stale\"} %llu\n"
                     "# HELP hlsgate_cache_evictions_total Objects evicted to stay within the budget.\n"
                     "# TYPE hlsgate_cache_evictions_total counter\nhlsgate_cache_evictions_total %llu\n"
                     "# HELP hlsgate_cache_bytes Bytes of cached objects.\n"
                     "# TYPE hlsgate_cache_bytes gauge\nhlsgate_cache_bytes %zu\n"
                     "# HELP hlsgate_cache_objects Cached objects.\n"
                     "# TYPE hlsgate_cache_objects gauge\nhlsgate_cache_objects %zu\n",
                  (unsigned long long)st.hits, (unsigned long long)st.misses,
                  (unsigned long long)st.coalesced, (unsigned long long)st.stale,
                  (unsigned long long)st.evictions, st.bytes, st.objects);
  }
  return o->data && !hg_buf_error(o) ? 0 : HG_ENOMEM;
}

static void render_callouts(hg_buf_t *o, hg_metrics_t *const *w, size_t n) {
  static const char *const kinds[2] = {"http", "redis"};
  static const char *const outcomes[HG_METRICS_OUTCOMES] = {"ok", "error", "timeout", "cancelled"};
  hg_buf_puts(o, "# HELP hlsgate_callouts_total Policy callouts (hg.http.request, hg.redis) by target and outcome.\n"
                 "# TYPE hlsgate_callouts_total counter\n");
  for (int k = 0; k < 2; k++)
    for (int r = 0; r < HG_METRICS_OUTCOMES; r++) {
      uint64_t v = 0;
      for (size_t i = 0; i < n; i++) v += LOAD(&w[i]->callouts[k][r]);
      hg_buf_printf(o, "hlsgate_callouts_total{target=\"%s\",outcome=\"%s\"} %llu\n", kinds[k], outcomes[r],
                    (unsigned long long)v);
    }
  render_histogram(o, "hlsgate_callout_http_duration_seconds", "Time an hg.http.request callout took.",
                   w, n, offsetof(hg_metrics_t, callout_http));
  render_histogram(o, "hlsgate_callout_redis_duration_seconds", "Time an hg.redis callout took.",
                   w, n, offsetof(hg_metrics_t, callout_redis));
  int64_t conns = 0;
  uint64_t errors = 0;
  for (size_t i = 0; i < n; i++) conns += LOAD(&w[i]->redis_conns), errors += LOAD(&w[i]->redis_errors);
  hg_buf_printf(o, "# HELP hlsgate_redis_connections Open Redis connections (all workers' pools).\n"
                   "# TYPE hlsgate_redis_connections gauge\nhlsgate_redis_connections %lld\n"
                   "# HELP hlsgate_redis_errors_total Redis connection and protocol errors.\n"
                   "# TYPE hlsgate_redis_errors_total counter\nhlsgate_redis_errors_total %llu\n",
                (long long)conns, (unsigned long long)errors);
}
