-- hlsgate.viewers and util.client_address without Redis: the client address behind trusted
-- proxies, and tokens bound to it or to the User-Agent (the Redis parts run against a real
-- redis-server in tests/e2e/redis.test.mjs; callouts cannot wait in busted's host).
local H = require("policy_host")
local hg = H.hg
local util = require("hlsgate.util")
local viewers = require("hlsgate.viewers")

local function req(client, headers)
  return H.get("/stream/hls/master.m3u8", { client = client, headers = headers })
end

describe("util.client_address", function()
  local trusted = util.cidr_matcher("10.0.0.0/8, ::1")

  it("is the TCP peer unless the peer is a trusted proxy", function()
    assert.are.equal("203.0.113.5", util.client_address(req("203.0.113.5", { ["X-Forwarded-For"] = "1.2.3.4" }), trusted))
    assert.are.equal("10.1.1.1", util.client_address(req("10.1.1.1"), trusted))
    assert.are.equal("10.1.1.1", util.client_address(req("10.1.1.1", { ["X-Forwarded-For"] = "1.2.3.4" }), nil))
  end)

  it("reads X-Forwarded-For from the right, skipping trusted proxies", function()
    local xff = function(v) return util.client_address(req("10.0.0.2", { ["X-Forwarded-For"] = v }), trusted) end
    assert.are.equal("198.51.100.7", xff("198.51.100.7"))
    assert.are.equal("198.51.100.7", xff("6.6.6.6, 198.51.100.7"))
    assert.are.equal("198.51.100.7", xff("6.6.6.6, 198.51.100.7, 10.9.9.9"))
    assert.are.equal("2001:db8::1", xff("[2001:db8::1]"))
    assert.are.equal("10.9.9.9", xff("garbage, 10.9.9.9"), "garbage: the last trusted hop")
    assert.are.equal("10.0.0.3", xff("10.0.0.3"), "only proxies: the leftmost")
  end)
end)

describe("hlsgate.viewers binding", function()
  it("binds to the client address", function()
    local v = viewers.new({ bind = "ip", trusted_proxies = { "10.0.0.0/8" } })
    local claims = {}
    v.mint_claims({ client_ip = "203.0.113.7" }, claims)
    assert.are.equal("203.0.113.7", claims.cip)
    assert.is_nil(claims.jti, "no jti without Redis")
    assert.is_nil(v.check(req("203.0.113.7"), claims))
    assert.is_nil(v.check(req("10.0.0.1", { ["X-Forwarded-For"] = "203.0.113.7" }), claims))
    assert.are.equal(403, v.check(req("203.0.113.8"), claims).status)
    assert.are.equal(403, v.check(req("203.0.113.7"), {}).status, "an unbound token")
  end)

  it("binds to the User-Agent", function()
    local v = viewers.new({ bind = "ua" })
    local claims = {}
    v.mint_claims({ user_agent = "Player/1" }, claims)
    assert.are.equal(hg.crypto.sha256_hex("Player/1"), claims.uah)
    assert.is_nil(v.check(req("1.1.1.1", { ["User-Agent"] = "Player/1" }), claims))
    assert.are.equal(403, v.check(req("1.1.1.1", { ["User-Agent"] = "Player/2" }), claims).status)
  end)

  it("adds a jti with Redis, and refuses a stream limit without it", function()
    local claims = {}
    viewers.new({ redis = true }).mint_claims({ uid = "u1" }, claims)
    assert.are.equal(32, #claims.jti)
    assert.are.equal("u1", claims.uid)
    assert.has_error(function() H.with_env({ HLSGATE_MAX_STREAMS = "2" }, viewers.from_env) end,
      "HLSGATE_MAX_STREAMS needs HLSGATE_REDIS_URL (the limit is shared by every replica)")
    assert.has_error(function() H.with_env({ HLSGATE_BIND_CLIENT = "cookie" }, viewers.from_env) end)
  end)
end)
