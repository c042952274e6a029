/* test_redis_url.c — HLSGATE_REDIS_URL parsing (pure): host forms, port, AUTH user and
 * password, database; what is refused (rediss://, junk). */
#include <string.h>

#include "base/error.h"
#include "hgtest.h"
#include "upstream/redis.h"

static int parse(const char *url, hg_redis_config_t *c) {
  char err[200];
  memset(c, 0, sizeof(*c));
  return hg_redis_parse_url(url, c, err, sizeof(err));
}

HG_TEST(host_port_db) {
  hg_redis_config_t c;
  CHECK_INT(parse("redis://127.0.0.1", &c), 0);
  CHECK_STR(c.host, "127.0.0.1");
  CHECK_INT(c.port, 6379);
  CHECK_INT(c.db, 0);
  CHECK_STR(c.password, "");
  CHECK_INT(parse("redis://cache.internal:6380/4", &c), 0);
  CHECK_STR(c.host, "cache.internal");
  CHECK_INT(c.port, 6380);
  CHECK_INT(c.db, 4);
  CHECK_INT(parse("redis://[::1]:7000/", &c), 0);
  CHECK_STR(c.host, "::1");
  CHECK_INT(c.port, 7000);
  CHECK_INT(parse("redis://[2001:db8::5]", &c), 0);
  CHECK_STR(c.host, "2001:db8::5");
  CHECK_INT(c.port, 6379);
}

HG_TEST(credentials) {
  hg_redis_config_t c;
  CHECK_INT(parse("redis://:s3cret@r:1/2", &c), 0);
  CHECK_STR(c.user, "");
  CHECK_STR(c.password, "s3cret");
  CHECK_STR(c.host, "r");
  CHECK_INT(c.port, 1);
  CHECK_INT(c.db, 2);
  CHECK_INT(parse("redis://gw:p@ss@r", &c), 0); /* the last '@' ends the password */
  CHECK_STR(c.user, "gw");
  CHECK_STR(c.password, "p@ss");
  CHECK_STR(c.host, "r");
}

HG_TEST(refused) {
  hg_redis_config_t c;
  CHECK_INT(parse("rediss://r:6380", &c), HG_EINVAL); /* no TLS in this client */
  CHECK_INT(parse("http://r", &c), HG_EINVAL);
  CHECK_INT(parse("redis://", &c), HG_EINVAL);
  CHECK_INT(parse("redis://r:0", &c), HG_EINVAL);
  CHECK_INT(parse("redis://r:70000", &c), HG_EINVAL);
  CHECK_INT(parse("redis://r:12x", &c), HG_EINVAL);
  CHECK_INT(parse("redis://r/db", &c), HG_EINVAL);
  CHECK_INT(parse("redis://r/1x", &c), HG_EINVAL);
  CHECK_INT(parse("redis://[::1", &c), HG_EINVAL);
  CHECK_INT(parse("redis://r?x=1", &c), HG_EINVAL);
}

int main(void) {
  RUN(host_port_db);
  RUN(credentials);
  RUN(refused);
  return hgtest_done();
}
