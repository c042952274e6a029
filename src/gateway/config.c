/* config.c — command line parsing (see config.h). */
#define _GNU_SOURCE /* sched_getaffinity, CPU_COUNT */
#include "gateway/config.h"

#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/error.h"

void hg_config_usage(void *out_file) {
  fputs(
      "usage: hlsgate [options]\n"
      "       hlsgate --check [FILE] [--probe]\n"
      "       hlsgate --health          (container health check: GET /healthz, exit 0 if 200)\n"
      "       hlsgate token --prefix P [--ttl SECONDS] [--path master.m3u8]\n"
      "\n"
      "options (environment equivalent in brackets; flags win):\n"
      "  --listen HOST:PORT       listen address, repeatable [HLSGATE_LISTEN, comma list]\n"
      "                           (default 0.0.0.0:8080; port 0 picks a free port)\n"
      "  --tls-cert FILE          the --listen before it terminates TLS with this PEM certificate\n"
      "                           chain; repeat (each with its --tls-key) for SNI [HLSGATE_TLS_CERT]\n"
      "  --tls-key FILE           the PEM private key of the --tls-cert before it [HLSGATE_TLS_KEY]\n"
      "                           (HLSGATE_TLS_LISTEN: comma list of TLS addresses; docs/tls.md)\n"
      "  --admin-listen HOST:PORT serve /metrics, /healthz, /readyz there [HLSGATE_ADMIN_LISTEN]\n"
      "  --policy FILE            policy script [HLSGATE_POLICY] (default policies/policy.lua)\n"
      "  --workers N              worker threads [HLSGATE_WORKERS] (default: one per CPU)\n"
      "  --header-timeout SEC     time to receive a request's headers and body (default 10)\n"
      "  --keepalive-timeout SEC  idle keep-alive connections are closed after (default 60)\n"
      "  --drain-timeout SEC      SIGTERM grace period for in-flight requests (default 30)\n"
      "  --lua-memory MIB         memory cap per Lua state (default 64)\n"
      "  --lua-budget N           VM instructions per policy hook call (default 10000000)\n"
      "  --ca-file FILE           extra PEM CA bundle trusted for upstream TLS [HLSGATE_CA_FILE]\n"
      "  --max-playlist MIB       largest playlist fetched for rewriting (default 16)\n"
      "  --cache-size MIB         object cache shared by the workers (default 256)\n"
      "  --cache-max-object MIB   larger objects are relayed, not cached (default 32)\n"
      "  --access-log-buffer KIB  access-log lines buffered per worker, written when full\n"
      "                           and every second [HLSGATE_ACCESS_LOG_BUFFER] (default 64;\n"
      "                           0 writes each line at once)\n"
      "  --debug                  verbose operational log\n"
      "  --check [FILE]           load the policy as a reload would; exit 0 (OK) or 1\n"
      "  --probe                  with --check: also reach the S3 bucket (or demo directory) the\n"
      "                           shipped policy is configured for, and say what works\n"
      "  --version, --help\n"
      "\n"
      "signals: HUP reloads the policy and the TLS certificates, TERM/INT drain and exit 0.\n",
      (FILE *)out_file);
}

/* Parses a non-negative number with an upper bound; returns 0 or HG_EINVAL. */
static int parse_num(const char *s, double max, double *out) {
  char *end;
  errno = 0;
  double v = strtod(s, &end);
  if (errno || end == s || *end != '\0' || !(v >= 0) || v > max) return HG_EINVAL;
  *out = v;
  return 0;
}

/* The CPUs this process may really use: the affinity mask (taskset, cpusets), capped by
 * a cgroup v2 CPU quota (containers' --cpus / Kubernetes limits), rounded up. */
static long ncpu(void) {
  cpu_set_t set;
  long n = sched_getaffinity(0, sizeof(set), &set) == 0 ? CPU_COUNT(&set) : sysconf(_SC_NPROCESSORS_ONLN);
  FILE *f = fopen("/sys/fs/cgroup/cpu.max", "r");
  if (f) {
    long long quota, period;
    char max[8];
    if (fscanf(f, "%7s %lld", max, &period) == 2 && strcmp(max, "max") != 0 && period > 0) {
      quota = atoll(max);
      long q = (long)((quota + period - 1) / period);
      if (q >= 1 && q < n) n = q;
    }
    fclose(f);
  }
  return n > 0 ? n : 1;
}

void hg_config_free(hg_config_t *c) {
  free(c->owned);
  c->owned = NULL;
  for (size_t i = 0; i < 3; i++) {
    free(c->owned_tls[i]);
    c->owned_tls[i] = NULL;
  }
}

/* Splits a copy of `env` at commas into out[0..max); returns the count (0 on OOM). */
static size_t split_list(const char *env, char **owned, const char **out, size_t max) {
  char *save = NULL;
  size_t n = 0;
  *owned = strdup(env);
  for (char *tok = *owned ? strtok_r(*owned, ",", &save) : NULL; tok && n < max; tok = strtok_r(NULL, ",", &save))
    out[n++] = tok;
  return n;
}

/* HLSGATE_TLS_LISTEN / _CERT / _KEY: TLS addresses appended to the listen list, all
 * with the same certificate pairs (comma lists, matched by position). */
static int env_tls(hg_config_t *c, char *err, size_t errlen) {
  const char *l = getenv("HLSGATE_TLS_LISTEN"), *ce = getenv("HLSGATE_TLS_CERT"), *ke = getenv("HLSGATE_TLS_KEY");
  if (!(l && *l)) {
    if ((ce && *ce) || (ke && *ke)) {
      snprintf(err, errlen, "HLSGATE_TLS_CERT/HLSGATE_TLS_KEY need HLSGATE_TLS_LISTEN");
      return HG_EINVAL;
    }
    return 0;
  }
  hg_config_tls_t t;
  memset(&t, 0, sizeof(t));
  const char *addrs[HG_MAX_LISTEN];
  size_t na = split_list(l, &c->owned_tls[0], addrs, HG_MAX_LISTEN);
  size_t nc = ce && *ce ? split_list(ce, &c->owned_tls[1], t.cert, HG_MAX_CERTS) : 0;
  size_t nk = ke && *ke ? split_list(ke, &c->owned_tls[2], t.key, HG_MAX_CERTS) : 0;
  if (nc == 0 || nc != nk) {
    snprintf(err, errlen, "HLSGATE_TLS_LISTEN needs as many HLSGATE_TLS_CERT as HLSGATE_TLS_KEY files (at least one)");
    return HG_EINVAL;
  }
  t.n = nc;
  for (size_t i = 0; i < na && c->nlisten < HG_MAX_LISTEN; i++) {
    c->tls[c->nlisten] = t;
    c->listen[c->nlisten++] = addrs[i];
  }
  return 0;
}

int hg_config_parse(hg_config_t *c, int argc, char **argv, char *err, size_t errlen) {
  memset(c, 0, sizeof(*c));
  c->mode = HG_MODE_RUN;
  c->policy_path = "policies/policy.lua";
  c->workers = (int)ncpu();
  c->header_timeout_ms = 10000;
  c->keepalive_timeout_ms = 60000;
  c->drain_timeout_ms = 30000;
  c->lua_memory = (size_t)64 << 20;
  c->lua_budget = 10000000;
  c->token_path = "master.m3u8";
  c->max_playlist = (size_t)16 << 20;
  c->cache_size = (size_t)256 << 20;
  c->cache_max_object = (size_t)32 << 20;
  c->access_log_buffer = (size_t)64 << 10;
  c->token_ttl = -1;

  /* Environment first; flags below override. HLSGATE_LISTEN may hold a comma list. */
  const char *env;
  if ((env = getenv("HLSGATE_POLICY")) && *env) c->policy_path = env;
  if ((env = getenv("HLSGATE_ADMIN_LISTEN")) && *env) c->admin_listen = env;
  if ((env = getenv("HLSGATE_CA_FILE")) && *env) c->ca_file = env;
  if ((env = getenv("HLSGATE_WORKERS")) && *env) {
    double v;
    if (parse_num(env, 1024, &v) || v < 1) {
      snprintf(err, errlen, "HLSGATE_WORKERS: expected 1..1024, got '%s'", env);
      return HG_EINVAL;
    }
    c->workers = (int)v;
  }
  if ((env = getenv("HLSGATE_ACCESS_LOG_BUFFER")) && *env) {
    double v;
    if (parse_num(env, 1 << 16, &v)) {
      snprintf(err, errlen, "HLSGATE_ACCESS_LOG_BUFFER: expected KiB (0..65536), got '%s'", env);
      return HG_EINVAL;
    }
    c->access_log_buffer = (size_t)(v * 1024.0);
  }
  if ((env = getenv("HLSGATE_LISTEN")) && *env) {
    char *save = NULL;
    c->owned = strdup(env);
    for (char *tok = c->owned ? strtok_r(c->owned, ",", &save) : NULL; tok && c->nlisten < HG_MAX_LISTEN;
         tok = strtok_r(NULL, ",", &save))
      c->listen[c->nlisten++] = tok;
  }
  if (env_tls(c, err, errlen)) return HG_EINVAL;

  int flag_listen = 0, i = 1;
  if (argc > 1 && strcmp(argv[1], "token") == 0) {
    c->mode = HG_MODE_TOKEN;
    i = 2;
  }
  for (; i < argc; i++) {
    const char *a = argv[i];
    if (a == NULL) break; /* argv ends with NULL; argc says so too */
    const char *next = i + 1 < argc ? argv[i + 1] : NULL;
    double v;
#define NEED_ARG()                                                  \
  do {                                                              \
    if (next == NULL) {                                             \
      snprintf(err, errlen, "%s: missing argument", a);             \
      return HG_EINVAL;                                             \
    }                                                               \
    i++;                                                            \
  } while (0)
#define NUM_ARG(max, dst, scale)                                    \
  do {                                                              \
    NEED_ARG();                                                     \
    if (parse_num(next, (max), &v)) {                               \
      snprintf(err, errlen, "%s: bad value '%s'", a, next);         \
      return HG_EINVAL;                                             \
    }                                                               \
    (dst) = (__typeof__(dst))((scale) * v);                         \
  } while (0)
    if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
      c->mode = HG_MODE_HELP;
    } else if (strcmp(a, "--version") == 0 || strcmp(a, "-v") == 0) {
      c->mode = HG_MODE_VERSION;
    } else if (strcmp(a, "--health") == 0) {
      c->mode = HG_MODE_HEALTH;
    } else if (strcmp(a, "--probe") == 0) {
      c->probe = 1; /* with --check */
    } else if (strcmp(a, "--check") == 0) {
      c->mode = HG_MODE_CHECK;
      if (next && next[0] != '-') c->policy_path = argv[++i];
    } else if (strcmp(a, "--listen") == 0) {
      NEED_ARG();
      if (!flag_listen) { /* flags replace the environment's lists */
        c->nlisten = 0;
        memset(c->tls, 0, sizeof(c->tls));
      }
      flag_listen = 1;
      if (c->nlisten == HG_MAX_LISTEN) {
        snprintf(err, errlen, "--listen: at most %d addresses", HG_MAX_LISTEN);
        return HG_EINVAL;
      }
      c->listen[c->nlisten++] = next;
    } else if (strcmp(a, "--tls-cert") == 0 || strcmp(a, "--tls-key") == 0) {
      NEED_ARG();
      /* TLS options belong to the --listen they follow (docs/tls.md). */
      hg_config_tls_t *t = flag_listen ? &c->tls[c->nlisten - 1] : NULL;
      int cert = a[6] == 'c';
      if (t == NULL) {
        snprintf(err, errlen, "%s must follow the --listen it applies to", a);
        return HG_EINVAL;
      }
      if (cert) {
        if (t->n == HG_MAX_CERTS) {
          snprintf(err, errlen, "--tls-cert: at most %d certificates per listener", HG_MAX_CERTS);
          return HG_EINVAL;
        }
        t->cert[t->n++] = next;
      } else if (t->n == 0 || t->key[t->n - 1] != NULL) {
        snprintf(err, errlen, "--tls-key must follow its --tls-cert");
        return HG_EINVAL;
      } else {
        t->key[t->n - 1] = next;
      }
    } else if (strcmp(a, "--admin-listen") == 0) {
      NEED_ARG();
      c->admin_listen = next;
    } else if (strcmp(a, "--policy") == 0) {
      NEED_ARG();
      c->policy_path = next;
    } else if (strcmp(a, "--workers") == 0) {
      NUM_ARG(1024, v, 1);
      if (v < 1 || v != (int)v) {
        snprintf(err, errlen, "--workers: expected 1..1024");
        return HG_EINVAL;
      }
      c->workers = (int)v;
    } else if (strcmp(a, "--header-timeout") == 0) {
      NUM_ARG(3600, c->header_timeout_ms, 1000);
    } else if (strcmp(a, "--keepalive-timeout") == 0) {
      NUM_ARG(3600, c->keepalive_timeout_ms, 1000);
    } else if (strcmp(a, "--drain-timeout") == 0) {
      NUM_ARG(3600, c->drain_timeout_ms, 1000);
    } else if (strcmp(a, "--lua-memory") == 0) {
      NUM_ARG(65536, c->lua_memory, (double)(1 << 20));
    } else if (strcmp(a, "--lua-budget") == 0) {
      NUM_ARG(1e12, c->lua_budget, 1);
    } else if (strcmp(a, "--ca-file") == 0) {
      NEED_ARG();
      c->ca_file = next;
    } else if (strcmp(a, "--max-playlist") == 0) {
      NUM_ARG(1024, c->max_playlist, (double)(1 << 20));
    } else if (strcmp(a, "--cache-size") == 0) {
      NUM_ARG(1 << 20, c->cache_size, (double)(1 << 20));
    } else if (strcmp(a, "--cache-max-object") == 0) {
      NUM_ARG(1 << 20, c->cache_max_object, (double)(1 << 20));
    } else if (strcmp(a, "--access-log-buffer") == 0) {
      NUM_ARG(1 << 16, c->access_log_buffer, 1024.0);
    } else if (strcmp(a, "--debug") == 0) {
      c->log_debug = 1;
    } else if (c->mode == HG_MODE_TOKEN && strcmp(a, "--prefix") == 0) {
      NEED_ARG();
      c->token_prefix = next;
    } else if (c->mode == HG_MODE_TOKEN && strcmp(a, "--path") == 0) {
      NEED_ARG();
      c->token_path = next;
    } else if (c->mode == HG_MODE_TOKEN && strcmp(a, "--ttl") == 0) {
      NUM_ARG(315360000, c->token_ttl, 1);
    } else {
      snprintf(err, errlen, "unknown option '%s' (see --help)", a);
      return HG_EINVAL;
    }
#undef NEED_ARG
#undef NUM_ARG
  }
  if (c->nlisten == 0) c->listen[c->nlisten++] = "0.0.0.0:8080";
  for (size_t k = 0; k < c->nlisten; k++)
    for (size_t j = 0; j < c->tls[k].n; j++)
      if (c->tls[k].key[j] == NULL) {
        snprintf(err, errlen, "--tls-cert %s (listen %s): missing its --tls-key", c->tls[k].cert[j], c->listen[k]);
        return HG_EINVAL;
      }
  /* Addresses are checked here, before any policy is loaded, so a typo is named at once. */
  for (size_t k = 0; k < c->nlisten + (c->admin_listen != NULL); k++) {
    const char *hp = k < c->nlisten ? c->listen[k] : c->admin_listen;
    const char *colon = strrchr(hp, ':');
    char *end;
    long port = colon ? strtol(colon + 1, &end, 10) : -1;
    if (colon == NULL || colon[1] == '\0') {
      snprintf(err, errlen, "listen address '%s': expected HOST:PORT", hp);
      return HG_EINVAL;
    }
    if (*end != '\0' || port < 0 || port > 65535) {
      snprintf(err, errlen, "listen address '%s': port out of range (0..65535)", hp);
      return HG_EINVAL;
    }
  }
  if (c->lua_memory < ((size_t)1 << 20)) c->lua_memory = (size_t)1 << 20;
  return 0;
}
