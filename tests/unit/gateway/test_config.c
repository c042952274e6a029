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

int main(void) {
  RUN(defaults);
  RUN(flags_win_over_environment);
  RUN(modes);
  RUN(bad_input_is_refused);
  return hgtest_done();
}
