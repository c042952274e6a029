/* config.h — the command line and its environment equivalents (SPEC §3).
 *
 * Flags win over HLSGATE_* environment variables, which win over defaults. Parsed once
 * by the main thread before workers start; read-only afterwards, so any thread may read.
 */
#ifndef HG_GATEWAY_CONFIG_H
#define HG_GATEWAY_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#define HG_MAX_LISTEN 16
#define HG_MAX_CERTS 8 /* certificate/key pairs per TLS listener (SNI) */

/* The TLS of one listener: certificate chain and key files, the first the default, the
 * others chosen by SNI (docs/tls.md). n == 0: plain HTTP. */
typedef struct hg_config_tls_s {
  const char *cert[HG_MAX_CERTS];
  const char *key[HG_MAX_CERTS];
  size_t n;
} hg_config_tls_t;

typedef enum {
  HG_MODE_RUN,
  HG_MODE_CHECK,   /* --check [FILE] */
  HG_MODE_VERSION, /* --version */
  HG_MODE_HELP,    /* --help */
  HG_MODE_TOKEN,   /* token --prefix P [--ttl S] [--path P] */
  HG_MODE_HEALTH   /* --health: GET /healthz on the (admin) listener, exit 0 if 200 */
} hg_mode_t;

typedef struct hg_config_s {
  hg_mode_t mode;
  const char *listen[HG_MAX_LISTEN]; /* "HOST:PORT" */
  size_t nlisten;
  hg_config_tls_t tls[HG_MAX_LISTEN]; /* tls[i] for listen[i] */
  const char *admin_listen; /* NULL: /metrics on the main listeners */
  const char *policy_path;
  int workers;
  /* Timeouts in milliseconds. */
  uint64_t header_timeout_ms;    /* first byte of a request → end of headers/body (408) */
  uint64_t keepalive_timeout_ms; /* idle keep-alive connection is closed silently */
  uint64_t drain_timeout_ms;     /* SIGTERM: in-flight requests get this long */
  /* Lua limits. */
  size_t lua_memory;        /* bytes per Lua state */
  uint64_t lua_budget;      /* VM instructions per hook call */
  int log_debug;
  int probe;           /* --check --probe: also reach the configured bucket */
  const char *ca_file;      /* extra CA bundle for upstream TLS */
  size_t max_playlist;      /* bytes; larger playlists are a 502 */
  size_t cache_size;        /* bytes of cached objects (all workers) */
  size_t cache_max_object;  /* larger objects are relayed but not cached */
  size_t access_log_buffer; /* bytes of access-log lines buffered per worker (0: none) */
  /* token subcommand */
  const char *token_prefix;
  const char *token_path;
  long token_ttl;
  char *owned; /* copy of HLSGATE_LISTEN that listen[] may point into */
  char *owned_tls[3]; /* copies of HLSGATE_TLS_LISTEN, _CERT, _KEY */
} hg_config_t;

/* Fills `c` from argv and the environment. Returns 0, or HG_EINVAL with a message in
 * err[0..errlen). Strings point into argv/environ (no ownership). Main thread. */
int hg_config_parse(hg_config_t *c, int argc, char **argv, char *err, size_t errlen);

/* Frees what hg_config_parse allocated. */
void hg_config_free(hg_config_t *c);

/* Writes the --help text to `out`. */
void hg_config_usage(void *out_file);

#endif
