-- The example policies of policies/examples/ (docs/policies.md), each loaded as the server
-- loads it and driven with fake requests; the CIDR helpers they use (hlsgate.util).
local H = require("policy_host")
local hg = H.hg
local util = require("hlsgate.util")

local SECRET = "example-secret-example-secret-123"
local ADMIN = "admin-key-2"

local function token(claims, secret, opts)
  local c = { sub = "hls", pfx = "videos/abc", exp = os.time() + 3600 }
  for k, v in pairs(claims or {}) do c[k] = v end
  return assert(hg.jwt.sign(c, secret or SECRET, opts))
end

local S3_ENV = {
  HLSGATE_JWT_SECRET = SECRET, HLSGATE_ADMIN_KEY = ADMIN, S3_BUCKET = "media",
  S3_ENDPOINT = "http://minio:9000", AWS_ACCESS_KEY_ID = "AKID", AWS_SECRET_ACCESS_KEY = "SK",
}

describe("examples/rendition_filter.lua", function()
  local handle = H.load("policies/examples/rendition_filter.lua", S3_ENV)
  local MASTER = H.file(H.CONFORMANCE .. "kuu-hls-parser/Streaming-Examples_img_bipbop_adv_example_ts_master.m3u8")
  local BASE = "http://minio:9000/media/videos/abc/master.m3u8" -- where the gateway fetches it

  local function plan_for(claims)
    return handle(H.get("/stream/hls/master.m3u8?token=" .. token(claims)))
  end

  local function heights(out)
    local seen = {}
    for h in out:gmatch("RESOLUTION=%d+x(%d+)") do seen[#seen + 1] = tonumber(h) end
    return seen
  end

  it("adds no hook for a token without limits", function()
    local plan = plan_for()
    assert.are.equal("s3", plan.origin.type)
    assert.is_nil(plan.on_uri)
    local out = H.apply(plan, MASTER, BASE)
    assert.are.equal(24, #heights(out) - 6) -- 24 variants, 6 I-frame variants
  end)

  it("keeps the recipe's answers to bad requests", function()
    assert.are.equal(401, handle(H.get("/stream/hls/master.m3u8")).status)
    assert.are.equal(401, handle(H.get("/stream/hls/master.m3u8?token=" .. token({ maxh = 720 }, "other"))).status)
    assert.are.equal(400, handle(H.get("/stream/hls/%2e%2e/master.m3u8?token=" .. token({ maxh = 720 }))).status)
    assert.is_nil(handle(H.get("/proxy?url=x")))
  end)

  it("decides from the variant's parsed attribute list", function()
    local hook = plan_for({ maxh = 720 }).on_uri
    local attrs = hg.hls.parse_attrs
    assert.are.equal("drop", hook({ class = "playlist", tag = "EXT-X-STREAM-INF",
      attrs = attrs('BANDWIDTH=8178040,CODECS="avc1.64002a,mp4a.40.2",RESOLUTION=1920x1080') }))
    assert.are.equal("drop", hook({ class = "iframe_playlist", tag = "EXT-X-I-FRAME-STREAM-INF",
      attrs = { BANDWIDTH = "186522", RESOLUTION = "1920x1080", URI = "v7/iframe_index.m3u8" } }))
    assert.is_nil(hook({ class = "playlist", tag = "EXT-X-STREAM-INF", attrs = attrs("BANDWIDTH=1,RESOLUTION=1280x720") }))
    assert.is_nil(hook({ class = "playlist", tag = "EXT-X-STREAM-INF", attrs = attrs("BANDWIDTH=65000") }))
    assert.is_nil(hook({ class = "playlist", tag = "EXT-X-MEDIA", attrs = attrs('TYPE=AUDIO,URI="a.m3u8"') }))
    assert.is_nil(hook({ class = "segment", tag = "EXTINF" }))
    assert.is_nil(hook({ class = "image_playlist", attrs = attrs("RESOLUTION=3840x2160") }))
  end)

  it("drops variants and I-frame variants above maxh from a real master", function()
    local out, stats = H.apply(plan_for({ maxh = 720 }), MASTER, BASE)
    assert.are.equal(9 + 1, stats.dropped) -- 3 × 1080p in each of 3 audio groups, 1 I-frame
    for _, h in ipairs(heights(out)) do assert.is_true(h <= 720) end
    assert.are.equal(15 + 5, #heights(out))
    assert.is_nil(out:find("v9/prog_index", 1, true))
    assert.truthy(out:find('#EXT-X-I-FRAME-STREAM-INF:BANDWIDTH=133856,AVERAGE-BANDWIDTH=129936,URI="/stream/hls/v6/iframe_index.m3u8?token=', 1, true))
    -- renditions (EXT-X-MEDIA) stay, every kept URI stays inside the gateway
    assert.truthy(out:find('URI="/stream/hls/a1/prog_index.m3u8?token=', 1, true))
    assert.truthy(out:find("\n/stream/hls/v6/prog_index.m3u8?token=", 1, true))
    -- nothing else changed: the output is the unfiltered one without the dropped lines
    local full = H.apply(plan_for(), MASTER, BASE)
    local expected, skip = {}, false
    for line in (full .. "\n"):gmatch("([^\n]*)\n") do
      if skip then
        skip = false
      elseif line:find("RESOLUTION=1920x1080", 1, true) then
        skip = line:find("^#EXT%-X%-STREAM%-INF:") ~= nil -- and the variant's URI line
      else
        expected[#expected + 1] = line
      end
    end
    local function untoken(s) return (s:gsub("token=[%w._-]+", "token=T")) end -- maxh: another token
    assert.are.equal(untoken(table.concat(expected, "\n")), untoken(out))
  end)

  it("drops by bandwidth with maxbw, and by both", function()
    local out = H.apply(plan_for({ maxbw = 1000000 }), MASTER, BASE)
    for bw in out:gmatch("#EXT%-X%-STREAM%-INF:BANDWIDTH=(%d+)") do assert.is_true(tonumber(bw) <= 1000000) end
    assert.are.equal(5, select(2, out:gsub("#EXT%-X%-STREAM%-INF:", "")))
    assert.are.equal(6, select(2, out:gsub("#EXT%-X%-I%-FRAME%-STREAM%-INF:", "")))
    assert.are.same(heights(out), heights(H.apply(plan_for({ maxbw = "1000000" }), MASTER, BASE)))
    out = H.apply(plan_for({ maxh = 540, maxbw = 2300000 }), MASTER, BASE)
    assert.are.same({ 540, 432, 360, 270, 432, 360, 270, 540, 432, 360, 270, 540, 432, 360, 270 }, heights(out))
  end)
end)

describe("examples/key_rotation.lua", function()
  local KEYS = { ["2024-06"] = "old-secret-old-secret-old-secret", ["2024-07"] = "new:secret-new-secret-new-secret" }
  local ENV = {
    HLSGATE_JWT_KEYS = "2024-06:" .. KEYS["2024-06"] .. ", 2024-07:" .. KEYS["2024-07"],
    HLSGATE_ADMIN_KEY = ADMIN,
  }

  local function kid_of(t)
    return hg.json_decode(hg.crypto.base64url_decode(t:match("^[^.]+"))).kid
  end

  local function stream(h, t) return h(H.get("/stream/hls/master.m3u8?token=" .. t)) end

  it("accepts tokens signed with any listed key, chosen by kid", function()
    local h = H.load("policies/examples/key_rotation.lua", ENV)
    for kid, secret in pairs(KEYS) do
      local plan = stream(h, token(nil, secret, { kid = kid }))
      assert.are.equal("videos/abc/master.m3u8", plan.origin.path)
    end
    -- the right secret under the wrong kid, an unknown kid, no kid at all: refused
    assert.are.equal(401, stream(h, token(nil, KEYS["2024-07"], { kid = "2024-06" })).status)
    assert.are.equal(401, stream(h, token(nil, KEYS["2024-07"], { kid = "2023-01" })).status)
    assert.are.equal(401, stream(h, token(nil, KEYS["2024-07"])).status)
  end)

  it("accepts kid-less tokens signed with HLSGATE_JWT_SECRET when it is set", function()
    local env = { HLSGATE_JWT_SECRET = SECRET }
    for k, v in pairs(ENV) do env[k] = v end
    local h = H.load("policies/examples/key_rotation.lua", env)
    assert.are.equal("file", stream(h, token()).origin.type)
    assert.are.equal("file", stream(h, token(nil, KEYS["2024-06"], { kid = "2024-06" })).origin.type)
    assert.are.equal(401, stream(h, token(nil, "unknown-secret")).status)
  end)

  it("mints with HLSGATE_JWT_KID, else the last key", function()
    local function mint(h)
      local res = h(H.request("POST", "/stream/token", {
        headers = { Authorization = "Bearer " .. ADMIN }, body = '{"prefix":"videos/abc"}' }))
      assert.are.equal(200, res.status)
      return H.json(res).token
    end
    local h = H.load("policies/examples/key_rotation.lua", ENV)
    local t = mint(h)
    assert.are.equal("2024-07", kid_of(t))
    assert.truthy(hg.jwt.verify(t, KEYS["2024-07"], { alg = "HS256" }))
    assert.are.equal("file", stream(h, t).origin.type)
    local env = { HLSGATE_JWT_KID = "2024-06" }
    for k, v in pairs(ENV) do env[k] = v end
    t = mint(H.load("policies/examples/key_rotation.lua", env))
    assert.are.equal("2024-06", kid_of(t))
    assert.are.equal("file", stream(h, t).origin.type)
  end)

  it("refuses a bad configuration at load, and answers 503 with no key", function()
    assert.has_error(function()
      H.load("policies/examples/key_rotation.lua", { HLSGATE_JWT_KEYS = "just-a-secret" })
    end, "HLSGATE_JWT_KEYS: each item must be kid:secret")
    assert.has_error(function()
      H.load("policies/examples/key_rotation.lua", { HLSGATE_JWT_KEYS = "a:s1", HLSGATE_JWT_KID = "b" })
    end, "HLSGATE_JWT_KID: no such kid in HLSGATE_JWT_KEYS")
    local h = H.load("policies/examples/key_rotation.lua", {})
    assert.are.equal(503, stream(h, token()).status)
  end)
end)

describe("examples/origin_headers.lua", function()
  local handle = H.load("policies/examples/origin_headers.lua", {})
  local function origin_headers(url)
    local plan = H.table(handle(H.get("/proxy?url=" .. hg.url.encode(url))))
    assert.are.equal("http", plan.origin.type)
    return plan.origin.headers
  end

  it("sends the headers configured for the origin's host", function()
    assert.are.same({ Referer = "https://site.example/", Origin = "https://site.example" },
      origin_headers("https://cdn.example.com/live/master.m3u8"))
    assert.are.same({ Referer = "https://site.example/", Origin = "https://site.example" },
      origin_headers("http://CDN.Example.COM:8080/seg1.ts"))
    assert.are.same({ ["User-Agent"] = "Mozilla/5.0 (compatible; hlsgate)" },
      origin_headers("https://eu.edge.media.example.net/a.m3u8"))
  end)

  it("sends nothing extra elsewhere", function()
    assert.is_nil(origin_headers("https://media.example.net/a.m3u8")) -- *. needs a subdomain
    assert.is_nil(origin_headers("https://example.com/a.m3u8"))
    assert.is_nil(origin_headers("https://cdn.example.com.evil.example/a.m3u8"))
    assert.is_nil(origin_headers("http://[2001:db8::1]/a.m3u8"))
  end)

  it("keeps the recipe's answers", function()
    assert.are.equal(400, handle(H.get("/proxy")).status)
    assert.are.equal(400, handle(H.get("/proxy?url=ftp%3A%2F%2Fcdn.example.com%2F")).status)
    assert.are.equal(204, handle(H.request("OPTIONS", "/proxy")).status)
    assert.is_nil(handle(H.get("/stream/hls/x")))
  end)
end)

describe("util.parse_ip and util.cidr_matcher", function()
  it("parses IPv4 and IPv6 into 16 bytes, IPv4 mapped", function()
    local v4 = util.parse_ip("192.0.2.1")
    assert.are.equal(16, #v4)
    assert.are.equal(v4, util.parse_ip("::ffff:192.0.2.1"))
    assert.are.equal(v4, util.parse_ip("::FFFF:c000:0201"))
    assert.are.equal(string.rep("\0", 15) .. "\1", util.parse_ip("::1"))
    assert.are.equal(string.rep("\0", 16), util.parse_ip("::"))
    assert.are.equal(util.parse_ip("2001:db8:0:0:0:0:0:1"), util.parse_ip("2001:DB8::1"))
    assert.are.equal("\32\1\13\184" .. string.rep("\0", 11) .. "\1", util.parse_ip("2001:db8::1"))
    assert.are.equal(util.parse_ip("1:2:3:4:5:6:7:8"), util.parse_ip("1:2:3:4:5:6:0.7.0.8"))
    for _, bad in ipairs({ "", "1.2.3", "1.2.3.4.5", "256.1.1.1", "01.2.3.4", "1.2.3.4 ", "::1::",
                           "1:2:3:4:5:6:7:8:9", "1:2:3:4:5:6:7", "12345::", ":1", "1:", "fe80::1%eth0",
                           "1:2:3:4:5:6:7:1.2.3.4", "::1.2.3", "g::1", "1::2::3", "localhost" }) do
      assert.is_nil(util.parse_ip(bad), bad)
    end
    assert.is_nil(util.parse_ip(nil))
  end)

  it("matches IPv4 and IPv6 networks", function()
    local m = util.cidr_matcher("10.0.0.0/8, 192.168.1.7, 2001:db8::/32, 172.16.0.0/12, fd00::/7")
    for _, a in ipairs({ "10.0.0.1", "10.255.255.255", "::ffff:10.1.2.3", "192.168.1.7", "2001:db8::1",
                         "2001:db8:ffff::", "172.31.255.255", "fd12::1", "fc00::" }) do
      assert.is_true(m(a), a)
    end
    for _, a in ipairs({ "11.0.0.1", "192.168.1.8", "2001:db9::1", "172.32.0.0", "127.0.0.1", "::1",
                         "fe00::1", "-", "", "10.0.0.1:80" }) do
      assert.is_false(m(a), a)
    end
    assert.is_true(util.cidr_matcher({ "0.0.0.0/0" })("203.0.113.9"))
    assert.is_false(util.cidr_matcher({ "0.0.0.0/0" })("2001:db8::1"))
    assert.is_true(util.cidr_matcher({ "::/0" })("2001:db8::1"))
    assert.is_true(util.cidr_matcher({ "10.1.2.3/8" })("10.200.0.1")) -- host bits ignored
    assert.is_true(util.cidr_matcher({ "192.0.2.128/25" })("192.0.2.200"))
    assert.is_false(util.cidr_matcher({ "192.0.2.128/25" })("192.0.2.127"))
    assert.is_false(util.cidr_matcher({})("10.0.0.1"))
  end)

  it("raises on a malformed network", function()
    for _, bad in ipairs({ "10.0.0.0/33", "::/129", "10.0.0/8", "example.com", "10.0.0.0/x", "1.2.3.4/" }) do
      assert.has_error(function() util.cidr_matcher(bad) end, nil, bad)
    end
  end)
end)

describe("examples/ip_allowlist.lua", function()
  local T = token()

  it("lets only loopback in by default", function()
    local h = H.load("policies/examples/ip_allowlist.lua", { HLSGATE_JWT_SECRET = SECRET })
    local target = "/stream/hls/master.m3u8?token=" .. T
    assert.are.equal("file", h(H.get(target, { client = "127.0.0.1" })).origin.type)
    assert.are.equal("file", h(H.get(target, { client = "::1" })).origin.type)
    local res = h(H.get(target, { client = "192.0.2.10" }))
    assert.are.equal(403, res.status)
    assert.are.equal("denied", res.route)
    assert.are.equal(403, H.json(res).status)
  end)

  it("allows the configured networks, IPv4 and IPv6, for both recipes", function()
    local h = H.load("policies/examples/ip_allowlist.lua", {
      HLSGATE_JWT_SECRET = SECRET, HLSGATE_ALLOW_CIDRS = "10.0.0.0/8, 2001:db8::/32",
    })
    local proxy = "/proxy?url=" .. hg.url.encode("https://cdn.example.com/a.m3u8")
    assert.are.equal("http", H.table(h(H.get(proxy, { client = "10.9.8.7" }))).origin.type)
    assert.are.equal("http", H.table(h(H.get(proxy, { client = "::ffff:10.9.8.7" }))).origin.type)
    assert.are.equal("http", H.table(h(H.get(proxy, { client = "2001:db8:1::5" }))).origin.type)
    assert.are.equal(401, h(H.get("/stream/hls/master.m3u8", { client = "10.0.0.1" })).status)
    assert.is_nil(h(H.get("/", { client = "10.0.0.1" })))
    for _, c in ipairs({ "127.0.0.1", "11.0.0.1", "2001:db9::1", "-" }) do
      assert.are.equal(403, h(H.get(proxy, { client = c })).status, c)
      assert.are.equal(403, h(H.request("OPTIONS", proxy, { client = c })).status, c)
    end
  end)

  it("refuses a malformed list at load", function()
    assert.has_error(function()
      H.load("policies/examples/ip_allowlist.lua", { HLSGATE_ALLOW_CIDRS = "10.0.0.0/8,10.0.0.300" })
    end)
  end)
end)

describe("examples/revocation.lua", function()
  local handle = H.load("policies/examples/revocation.lua", S3_ENV)

  local function revoke(body, key, method)
    return handle(H.request(method or "POST", "/admin/revoke", {
      headers = key and { Authorization = "Bearer " .. key } or nil,
      body = type(body) == "table" and hg.json_encode(body) or body,
    }))
  end

  local function stream(t) return handle(H.get("/stream/hls/v1/index.m3u8?token=" .. t)) end

  it("requires the admin key, a POST and a token of this gateway", function()
    local t = token()
    assert.are.equal(401, revoke({ token = t }).status)
    assert.are.equal(401, revoke({ token = t }, "wrong").status)
    assert.are.equal(405, revoke(nil, ADMIN, "GET").status)
    assert.are.equal(400, revoke(nil, ADMIN).status)
    assert.are.equal(400, revoke("{}", ADMIN).status)
    assert.are.equal(400, revoke("nope", ADMIN).status)
    assert.are.equal(400, revoke({ token = token(nil, "someone-else") }, ADMIN).status)
    assert.are.equal("admin", revoke({ token = t }).route)
    assert.are.equal("s3", stream(t).origin.type) -- nothing was revoked
  end)

  it("refuses a revoked token for the rest of its lifetime, and only it", function()
    local t1, t2 = token({ exp = os.time() + 600 }), token({ exp = os.time() + 601 })
    assert.are.equal("s3", stream(t1).origin.type)
    local res = revoke({ token = t1 }, ADMIN)
    assert.are.equal(200, res.status)
    local body = H.json(res)
    assert.is_true(body.revoked)
    assert.is_true(math.abs(body.expires_in - 630) <= 1) -- exp + 30 s of leeway - now
    res = stream(t1)
    assert.are.equal(401, res.status)
    assert.are.equal("token revoked", H.json(res).error)
    assert.are.equal("stream", res.route)
    assert.are.equal("s3", stream(t2).origin.type)
    assert.is_not_nil(hg.shared.get("revoked:sha256:" .. hg.crypto.sha256_hex(t1)))
    -- kept in hg.shared: a reloaded policy (or another worker) sees it
    local reloaded = H.load("policies/examples/revocation.lua", S3_ENV)
    assert.are.equal(401, reloaded(H.get("/stream/hls/master.m3u8?token=" .. t1)).status)
  end)

  it("revokes every token with the same jti", function()
    local a, b = token({ jti = "session-42" }), token({ jti = "session-42", pfx = "videos/other" })
    assert.is_true(H.json(revoke({ token = a }, ADMIN)).revoked)
    assert.are.equal(401, stream(b).status)
    assert.are.equal("s3", stream(token({ jti = "session-43" })).origin.type)
  end)

  it("has nothing to do for an expired token", function()
    local res = revoke({ token = token({ exp = os.time() - 120 }) }, ADMIN)
    assert.are.equal(200, res.status)
    assert.is_false(H.json(res).revoked)
  end)

  it("leaves everything else to the recipe", function()
    assert.are.equal(401, handle(H.get("/stream/hls/master.m3u8")).status)
    assert.are.equal(401, stream("garbage").status)
    assert.are.equal(200, handle(H.request("POST", "/stream/token", {
      headers = { Authorization = "Bearer " .. ADMIN }, body = '{"prefix":"p"}' })).status)
    assert.is_nil(handle(H.get("/admin/other")))
  end)
end)
