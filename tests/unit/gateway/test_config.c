/* Unit tests for gateway/config: flags, environment equivalents, and bad input. */
#include "hgtest.h"

#include "gateway/config.h"
#include "base/error.h"

static int parse(hg_config_t *c, char **argv) {
  int argc = 0;
  while (argv[argc]) argc++;
  char err[256];
  return hg_config_parse(c, argc, argv, err, sizeof(err));
}

HG_TEST(defaults) {
  unsetenv("HLSGATE_LISTEN");
  unsetenv("HLSGATE_POLICY");
  unsetenv("HLSGATE_WORKERS");
  hg_config_t c;
  char *argv[] = {"hlsgate", NULL};
  CHECK_INT(parse(&c, argv), 0);
  CHECK_INT(c.mode, HG_MODE_RUN);
  CHECK_INT(c.nlisten, 1);
  CHECK_STR(c.listen[0], "0.0.0.0:8080");
  CHECK_STR(c.policy_path, "policies/policy.lua");
  CHECK(c.workers >= 1);
  CHECK_INT(c.header_timeout_ms, 10000);
}

HG_TEST(flags_win_over_environment) {
  setenv("HLSGATE_LISTEN", "127.0.0.1:1,127.0.0.1:2", 1);
  setenv("HLSGATE_POLICY", "/env.lua", 1);
  setenv("HLSGATE_WORKERS", "3", 1);
  hg_config_t c;
  char *env_only[] = {"hlsgate", NULL};
  CHECK_INT(parse(&c, env_only), 0);
  CHECK_INT(c.nlisten, 2);
  CHECK_STR(c.listen[1], "127.0.0.1:2");
  CHECK_STR(c.policy_path, "/env.lua");
  CHECK_INT(c.workers, 3);
  hg_config_free(&c);
  char *argv[] = {"hlsgate", "--listen", "[::1]:9", "--policy", "/flag.lua", "--workers", "2",
                  "--header-timeout", "1.5", NULL};
  CHECK_INT(parse(&c, argv), 0);
  CHECK_INT(c.nlisten, 1);
  CHECK_STR(c.listen[0], "[::1]:9");
  CHECK_STR(c.policy_path, "/flag.lua");
  CHECK_INT(c.workers, 2);
  CHECK_INT(c.header_timeout_ms, 1500);
  hg_config_free(&c);
  unsetenv("HLSGATE_LISTEN");
  unsetenv("HLSGATE_POLICY");
  unsetenv("HLSGATE_WORKERS");
}

HG_TEST(modes) {
  hg_config_t c;
  char *check[] = {"hlsgate", "--check", "x.lua", NULL};
  CHECK_INT(parse(&c, check), 0);
  CHECK_INT(c.mode, HG_MODE_CHECK);
  CHECK_STR(c.policy_path, "x.lua");
  char *token[] = {"hlsgate", "token", "--prefix", "videos/a", "--ttl", "60", NULL};
  CHECK_INT(parse(&c, token), 0);
  CHECK_INT(c.mode, HG_MODE_TOKEN);
  CHECK_STR(c.token_prefix, "videos/a");
  CHECK_INT(c.token_ttl, 60);
  CHECK_STR(c.token_path, "master.m3u8");
}

HG_TEST(bad_input_is_refused) {
  hg_config_t c;
  char *a[] = {"hlsgate", "--workers", "0", NULL};
  CHECK_INT(parse(&c, a), HG_EINVAL);
  char *b[] = {"hlsgate", "--workers", "x", NULL};
  CHECK_INT(parse(&c, b), HG_EINVAL);
  char *d[] = {"hlsgate", "--listen", NULL};
  CHECK_INT(parse(&c, d), HG_EINVAL);
  char *e[] = {"hlsgate", "--nope", NULL};
  CHECK_INT(parse(&c, e), HG_EINVAL);
  char *f[] = {"hlsgate", "--header-timeout", "-1", NULL};
  CHECK_INT(parse(&c, f), HG_EINVAL);
  char *g[] = {"hlsgate", "--prefix", "x", NULL}; /* only valid after `token` */
  CHECK_INT(parse(&c, g), HG_EINVAL);
}

/* TLS options belong to the --listen they follow; repeated pairs are SNI certificates. */
HG_TEST(tls_options_follow_their_listen) {
  unsetenv("HLSGATE_LISTEN");
  hg_config_t c;
  char *argv[] = {"hlsgate", "--listen", ":8080", "--listen", ":8443", "--tls-cert", "a.pem", "--tls-key", "a.key",
                  "--tls-cert", "b.pem", "--tls-key", "b.key", "--listen", ":9443", "--tls-cert", "c.pem",
                  "--tls-key", "c.key", NULL};
  CHECK_INT(parse(&c, argv), 0);
  CHECK_INT(c.nlisten, 3);
  CHECK_INT(c.tls[0].n, 0);
  CHECK_INT(c.tls[1].n, 2);
  CHECK_STR(c.tls[1].cert[0], "a.pem");
  CHECK_STR(c.tls[1].key[1], "b.key");
  CHECK_INT(c.tls[2].n, 1);
  CHECK_STR(c.tls[2].cert[0], "c.pem");
  hg_config_free(&c);
  char *no_key[] = {"hlsgate", "--listen", ":1", "--tls-cert", "a.pem", NULL};
  CHECK_INT(parse(&c, no_key), HG_EINVAL);
  hg_config_free(&c);
  char *key_first[] = {"hlsgate", "--listen", ":1", "--tls-key", "a.key", NULL};
  CHECK_INT(parse(&c, key_first), HG_EINVAL);
  hg_config_free(&c);
  char *no_listen[] = {"hlsgate", "--tls-cert", "a.pem", "--tls-key", "a.key", NULL};
  CHECK_INT(parse(&c, no_listen), HG_EINVAL);
  hg_config_free(&c);
}

HG_TEST(tls_environment) {
  setenv("HLSGATE_LISTEN", "127.0.0.1:1", 1);
  setenv("HLSGATE_TLS_LISTEN", "127.0.0.1:2,127.0.0.1:3", 1);
  setenv("HLSGATE_TLS_CERT", "/tls/a.crt,/tls/b.crt", 1);
  setenv("HLSGATE_TLS_KEY", "/tls/a.key,/tls/b.key", 1);
  hg_config_t c;
  char *env_only[] = {"hlsgate", NULL};
  CHECK_INT(parse(&c, env_only), 0);
  CHECK_INT(c.nlisten, 3);
  CHECK_INT(c.tls[0].n, 0);
  CHECK_STR(c.listen[2], "127.0.0.1:3");
  CHECK_INT(c.tls[2].n, 2);
  CHECK_STR(c.tls[2].key[1], "/tls/b.key");
  hg_config_free(&c);
  /* flags replace the environment's listeners, TLS ones included */
  char *flags[] = {"hlsgate", "--listen", ":9", NULL};
  CHECK_INT(parse(&c, flags), 0);
  CHECK_INT(c.nlisten, 1);
  CHECK_INT(c.tls[0].n, 0);
  hg_config_free(&c);
  setenv("HLSGATE_TLS_KEY", "/tls/a.key", 1); /* one key for two certificates */
  CHECK_INT(parse(&c, env_only), HG_EINVAL);
  hg_config_free(&c);
  unsetenv("HLSGATE_TLS_LISTEN");
  CHECK_INT(parse(&c, env_only), HG_EINVAL); /* certificates without a listener */
  hg_config_free(&c);
  unsetenv("HLSGATE_TLS_CERT");
  unsetenv("HLSGATE_TLS_KEY");
  unsetenv("HLSGATE_LISTEN");
}

int main(void) {
  RUN(tls_options_follow_their_listen);
  RUN(tls_environment);
  RUN(defaults);
  RUN(flags_win_over_environment);
  RUN(modes);
  RUN(bad_input_is_refused);
  return hgtest_done();
}
