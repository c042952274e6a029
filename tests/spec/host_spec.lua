-- hg._host (src/lua/lhost.c): the server's own request table, plan reader and playlist
-- actions as the other specs use them (tests/spec/support/policy_host.lua). These pin
-- the C behaviours a Lua copy of the host used to get wrong (issue #12).
local hg = require("hlsgate")
local host = hg._host

local HTTP = { type = "http", url = "http://o.example/v/index.m3u8" }
local S3 = { type = "s3", key = "v/index.m3u8", endpoint = "http://minio:9000", bucket = "b",
             access_key = "AKID", secret_key = "SK" }
local MEDIA = "#EXTM3U\n#EXT-X-MAP:URI=\"init.mp4\"\n#EXTINF:4,\ns1.ts\n#EXT-X-PART:DURATION=1,URI=\"p1.mp4\"\n" ..
  "#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"p2.mp4\"\n"

local function actions(decisions)
  local t = {}
  for _, d in ipairs(decisions) do t[#t + 1] = d[1] .. "=" .. d[2] end
  return table.concat(t, " ")
end

describe("hg._host.request", function()
  it("builds the server's request table", function()
    local req = host.request("GET", "/a/b?x=1&y=%41+b&x=2&bad=%zz&n&=v", {
      headers = { { "Host", "gw" }, { "X-A", "1" }, { "x-a", "2" } }, client = "::1", id = "abc" })
    assert.are.same({ x = "1", y = "A b", bad = "%zz", n = "", [""] = "v" }, req.query)
    assert.are.equal("/a/b", req.path)
    assert.are.equal("x=1&y=%41+b&x=2&bad=%zz&n&=v", req.raw_query)
    assert.are.same({ host = "gw", ["x-a"] = "1, 2" }, req.headers)
    assert.are.equal("::1", req.client)
    assert.are.equal("abc", req.id)
    assert.are.equal("1.1", req.http_version)
    assert.is_nil(req.body)
    assert.are.equal("{}", host.request("POST", "/", { body = "{}" }).body)
  end)
end)

describe("hg._host.to_plan", function()
  it("returns the server's error for a bad plan", function()
    assert.are.same({ nil, "plan.origin: expected a table" }, { host.to_plan({}) })
    assert.are.same({ nil, "plan.cache_ttl: expected an integer in range" },
      { host.to_plan({ origin = HTTP, cache_ttl = -1 }) })
    local _, err = host.to_plan({ origin = HTTP, rewrite = { segment = "presgn" } })
    assert.matches("^plan.rewrite: bad rule segment", err)
    assert.are.same({ nil, "proxy.sign.secret: expected a string of at least 16 bytes" },
      { host.to_plan({ origin = HTTP, proxy = { prefix = "/p?url=", sign = { secret = "short" } } }) })
  end)

  it("fills in the defaults", function()
    local c = assert(host.to_plan({ origin = S3 }))
    assert.are.equal("us-east-1", c.s3.region)
    assert.is_true(c.s3.path_style)
    assert.are.same({ ttl = 3600 }, c.presign)
    assert.are.same({ default = "keep" }, c.rewrite)
    assert.are.equal(0, c.cache_ttl)
  end)

  it("merges plan.s3 over the s3 origin's settings", function()
    local c = assert(host.to_plan({ origin = { type = "s3", key = "k", endpoint = "http://a", bucket = "b",
      access_key = "x", secret_key = "y", region = "eu-west-3", public_endpoint = "https://pub" },
      s3 = { endpoint = "http://c", bucket = "d", access_key = "x2", secret_key = "y2" } }))
    assert.are.equal("http://c", c.s3.endpoint)
    assert.are.equal("eu-west-3", c.s3.region) -- kept from the origin
    assert.are.equal("https://pub", c.s3.public_endpoint) -- kept from the origin
  end)
end)

describe("hg._host.apply", function()
  it("falls back to the parent class, then to default", function()
    local _, _, d = host.apply({ origin = HTTP, rewrite = { segment = "absolute", map = "keep", default = "drop" } },
      MEDIA, HTTP.url)
    assert.are.equal("map=keep segment=absolute part=absolute preload_hint=drop", actions(d))
    -- the rewriter refuses to drop a map (or a key): the segments would be undecodable
    assert.are.same({ nil, "policy error" }, { host.apply({ origin = HTTP, rewrite = { default = "drop" } }, MEDIA, HTTP.url) })
  end)

  it("never presigns a preload hint: proxied with a proxy, else absolute", function()
    local plan = { origin = S3, rewrite = { default = "presign" } }
    local base = "http://minio:9000/b/v/index.m3u8"
    local out, _, d = host.apply(plan, MEDIA, base, 1700000000)
    assert.are.equal("map=presign segment=presign part=presign preload_hint=absolute", actions(d))
    assert.matches('PRELOAD%-HINT:TYPE=PART,URI="http://minio:9000/b/v/p2%.mp4"', out)
    plan.proxy = { from = "http://minio:9000/b/", to = "/s/" }
    out, _, d = host.apply(plan, MEDIA, base, 1700000000)
    assert.are.equal("map=presign segment=presign part=presign preload_hint=proxy", actions(d))
    assert.matches('PRELOAD%-HINT:TYPE=PART,URI="/s/v/p2%.mp4"', out)
  end)

  it("presigns only under presign.prefix, at the start of the time bucket", function()
    local plan = { origin = S3, rewrite = { segment = "presign" }, presign = { ttl = 600, prefix = "v/" } }
    local body = "#EXTM3U\n#EXTINF:4,\ns.ts\n#EXTINF:4,\n../w/s.ts\n"
    local out = host.apply(plan, body, "http://minio:9000/b/v/index.m3u8", 1700000000)
    assert.matches("\nhttp://minio:9000/b/v/s%.ts%?X%-Amz%-Algorithm=.*X%-Amz%-Date=20231114T221300Z", out)
    assert.matches("\nhttp://minio:9000/b/w/s%.ts\n", out) -- outside the prefix: absolute
    -- the same bucket, the same bytes
    assert.are.equal(out, (host.apply(plan, body, "http://minio:9000/b/v/index.m3u8", 1700000039)))
  end)

  it("puts proxy params and signatures before the url, and counts proxied URIs", function()
    local plan = { origin = HTTP, rewrite = { default = "proxy" },
                   proxy = { prefix = "/p?url=", params = { key = "k" }, sign = { secret = "0123456789abcdef", ttl = 600 } } }
    local out, stats = host.apply(plan, "#EXTM3U\n#EXTINF:4,\ns.ts\n", HTTP.url, 1700000000)
    local exp, sig = out:match("\n/p%?exp=(%d+)&sig=([%w_-]+)&key=k&url=http%%3A%%2F%%2Fo%.example%%2Fv%%2Fs%.ts\n")
    assert.are.equal("1700001000", exp)
    assert.are.equal(hg.crypto.base64url_encode(hg.crypto.hmac("sha256", "0123456789abcdef",
      exp .. "\nhttp://o.example/v/s.ts\nk")), sig)
    assert.are.equal(1, stats.proxied)
  end)

  it("answers on_uri's errors as the server does", function()
    local plan = { origin = HTTP, on_uri = function(u) return u.class == "segment" and "has space" or nil end }
    assert.are.same({ nil, "policy error: on_uri returned string" }, { host.apply(plan, MEDIA, HTTP.url) })
    plan.on_uri = function() error("boom", 0) end
    assert.are.same({ nil, "policy error: boom" }, { host.apply(plan, MEDIA, HTTP.url) })
    plan.on_uri = function(u) return u.class == "map" and "https://cdn/i.mp4" or "drop" end
    local out, _, d = host.apply(plan, MEDIA, HTTP.url)
    assert.are.equal("map=hook segment=drop part=drop preload_hint=drop", actions(d))
    assert.are.equal('#EXTM3U\n#EXT-X-MAP:URI="https://cdn/i.mp4"\n', out)
  end)
end)

describe("proxy prefixes without a query", function()
  it("start the query for the params after the URL", function()
    local plan = { origin = HTTP, rewrite = { default = "proxy" },
                   proxy = { prefix = "https://gw/p/", params = { key = "k" } } }
    local out = host.apply(plan, "#EXTM3U\n#EXTINF:4,\ns1.ts\n", HTTP.url)
    assert.matches("\nhttps://gw/p/http%%3A%%2F%%2Fo%.example%%2Fv%%2Fs1%.ts%?key=k\n", out)
  end)
end)
