-- The shipped recipes (lua/hlsgate/private_bucket.lua, open_proxy.lua) and the policies
-- that mount them (policies/private_bucket.lua, open_proxy.lua, policy.lua), driven with
-- request tables as the core builds them: the SPEC §9 statuses, the plans, and what those
-- plans do to real playlists, all through the server's C code (hg._host, see
-- tests/spec/support/policy_host.lua).
local H = require("policy_host")
local hg = H.hg
local private_bucket = require("hlsgate.private_bucket")
local open_proxy = require("hlsgate.open_proxy")

local SECRET = "test-secret-test-secret-test-secret"
local ADMIN = "admin-key-1"
local NOW = os.time()

local S3_ENV = {
  HLSGATE_JWT_SECRET = SECRET, HLSGATE_ADMIN_KEY = ADMIN,
  S3_BUCKET = "media", S3_ENDPOINT = "http://minio:9000",
  S3_PUBLIC_ENDPOINT = "https://media.example.com",
  AWS_ACCESS_KEY_ID = "AKIDEXAMPLE", AWS_SECRET_ACCESS_KEY = "secret-key-example",
  HLSGATE_PRESIGN_TTL = "600",
}

local function token(claims, secret, opts)
  local c = { sub = "hls", pfx = "videos/abc", exp = NOW + 3600 }
  for k, v in pairs(claims or {}) do c[k] = v end
  return assert(hg.jwt.sign(c, secret or SECRET, opts or { alg = "HS256" }))
end

local function env_with(extra)
  local e = {}
  for k, v in pairs(S3_ENV) do e[k] = v end
  for k, v in pairs(extra or {}) do e[k] = v ~= false and v or nil end
  return e
end

local function status_of(res)
  return type(res) == "table" and (res.origin and "plan" or res.status) or res
end

describe("private bucket recipe", function()
  local handle = H.load("policies/private_bucket.lua", S3_ENV)
  local T = token()

  local function stream(path, tok)
    return handle(H.get("/stream/hls/" .. path .. (tok and ("?token=" .. tok) or "")))
  end

  describe("token checks (SPEC §9)", function()
    it("answers 401 for a missing, malformed, forged or expired token", function()
      for _, res in ipairs({
        stream("master.m3u8"),
        stream("master.m3u8", ""),
        stream("master.m3u8", "not-a-jwt"),
        stream("master.m3u8", token(nil, "another-secret")),
        stream("master.m3u8", token({ exp = NOW - 3600 })),
        stream("master.m3u8", token(nil, SECRET, { alg = "HS512" })),
      }) do
        assert.are.equal(401, res.status)
        assert.are.equal("stream", res.route)
        assert.are.equal(401, H.json(res).status)
      end
      -- alg "none", hand-made
      local none = hg.crypto.base64url_encode('{"alg":"none","typ":"JWT"}') .. "." ..
        hg.crypto.base64url_encode('{"sub":"hls","pfx":"videos/abc","exp":' .. (NOW + 60) .. "}") .. "."
      assert.are.equal(401, stream("master.m3u8", none).status)
      -- a correctly signed token whose exp is not a NumericDate (hg.jwt.sign refuses to
      -- mint one, so it is signed by hand)
      local body = hg.crypto.base64url_encode('{"alg":"HS256","typ":"JWT"}') .. "." ..
        hg.crypto.base64url_encode('{"sub":"hls","pfx":"videos/abc","exp":false}')
      local bad_exp = body .. "." .. hg.crypto.base64url_encode(hg.crypto.hmac("sha256", SECRET, body))
      assert.are.equal(401, stream("master.m3u8", bad_exp).status)
    end)

    it("allows 30 s of clock skew on exp", function()
      assert.are.equal("plan", status_of(stream("master.m3u8", token({ exp = NOW - 10 }))))
      assert.are.equal(401, stream("master.m3u8", token({ exp = NOW - 60 })).status)
    end)

    it("answers 403 for a token of another kind or without a prefix", function()
      assert.are.equal(403, stream("master.m3u8", token({ sub = "download" })).status)
      assert.are.equal(403, stream("master.m3u8", token({ sub = false })).status)
      assert.are.equal(403, stream("master.m3u8", token({ pfx = false })).status)
      assert.are.equal(403, stream("master.m3u8", token({ pfx = "" })).status)
      assert.are.equal(403, stream("master.m3u8", token({ pfx = "videos/../etc" })).status)
    end)

    it("answers 400 for traversal, raw or encoded, and 403 for the prefix itself", function()
      for _, p in ipairs({ "../x/master.m3u8", "v1/../../x.ts", "%2e%2e/x.ts", "v1/%2E%2E/x.ts",
                           "v1%2fx.ts", "v1%2Fx.ts", "v1%5cx.ts", "v1\\x.ts", "%252e%252e/x.ts",
                           "a%00.ts", "%c0%ae%c0%ae/x.ts", "bad%zz.ts" }) do
        local res = stream(p, T)
        assert.are.equal(400, res.status, p)
      end
      assert.are.equal(403, stream("", T).status)
      assert.are.equal(403, stream("./", T).status)
    end)

    it("answers 405 to methods other than GET and HEAD", function()
      local res = handle(H.request("POST", "/stream/hls/master.m3u8?token=" .. T))
      assert.are.equal(405, res.status)
      assert.are.equal("GET, HEAD, OPTIONS", res.headers.Allow)
      assert.are.equal("plan", status_of(handle(H.request("HEAD", "/stream/hls/master.m3u8?token=" .. T))))
    end)

    it("leaves other paths to the router (404)", function()
      assert.is_nil(handle(H.get("/other")))
      assert.is_nil(handle(H.get("/stream/other/x")))
      assert.is_nil(handle(H.get("/proxy?url=http://x/")))
    end)
  end)

  describe("plans", function()
    it("fetches the object pfx/path from S3 with the configured bucket", function()
      local plan = stream("v1/seg%201.ts", T)
      assert.are.same({
        type = "s3", key = "videos/abc/v1/seg 1.ts", endpoint = "http://minio:9000",
        region = "us-east-1", bucket = "media", access_key = "AKIDEXAMPLE",
        secret_key = "secret-key-example", path_style = true,
        public_endpoint = "https://media.example.com",
      }, plan.origin)
      assert.are.equal(plan.origin, plan.s3)
      assert.are.equal("stream", plan.route)
      assert.is_true(plan.private)
      assert.are.equal(2, plan.cache_ttl) -- HLSGATE_PLAYLIST_CACHE_TTL's default
      assert.are.equal("*", plan.headers["Access-Control-Allow-Origin"])
    end)

    it("is read by the server as meant", function()
      local c = H.plan(stream("v1/seg%201.ts", T))
      assert.are.same({ type = "s3", key = "videos/abc/v1/seg 1.ts" }, c.origin)
      assert.are.same({ endpoint = "http://minio:9000", public_endpoint = "https://media.example.com",
                        region = "us-east-1", bucket = "media", access_key = "AKIDEXAMPLE",
                        secret_key = "secret-key-example", path_style = true }, c.s3)
      assert.are.same({ from = "http://minio:9000/media/videos/abc/", to = "/stream/hls/",
                        params = { token = T } }, c.proxy)
      assert.are.same({ ttl = 600, prefix = "videos/abc/" }, c.presign)
      assert.are.equal("keep", c.rewrite.default)
      assert.are.equal("presign", c.rewrite.segment)
      assert.are.equal("proxy", c.rewrite.playlist)
      assert.is_true(c.private)
      assert.are.equal(2, c.cache_ttl)
      assert.are.equal(-1, c.live_ttl_ms)
      assert.is_false(c.on_uri)
    end)

    it("normalises the path and ignores a trailing slash on pfx", function()
      local plan = stream("v1//./index.m3u8", token({ pfx = "videos/abc/" }))
      assert.are.equal("videos/abc/v1/index.m3u8", plan.origin.key)
    end)

    it("proxies playlists and presigns media, with the viewer's token", function()
      local plan = stream("master.m3u8", T)
      assert.are.same({ from = "http://minio:9000/media/videos/abc/", to = "/stream/hls/",
                        params = { token = T } }, plan.proxy)
      assert.are.same({ ttl = 600, prefix = "videos/abc/" }, plan.presign)
      for _, c in ipairs({ "playlist", "iframe_playlist", "image_playlist", "rendition_report",
                           "preload_hint", "session_data", "steering", "asset_list" }) do
        assert.are.equal("proxy", plan.rewrite[c], c)
      end
      for _, c in ipairs({ "segment", "part", "key", "session_key", "map", "asset" }) do
        assert.are.equal("presign", plan.rewrite[c], c)
      end
    end)

    it("reads the SPEC §9 environment with its defaults", function()
      local h = H.load("policies/private_bucket.lua", {
        HLSGATE_JWT_SECRET = SECRET, S3_BUCKET = "b", AWS_ACCESS_KEY_ID = "a",
        AWS_SECRET_ACCESS_KEY = "s",
      })
      local plan = h(H.get("/stream/hls/master.m3u8?token=" .. T))
      assert.are.equal("https://s3.amazonaws.com", plan.origin.endpoint)
      assert.are.equal("us-east-1", plan.origin.region)
      assert.is_true(plan.origin.path_style)
      assert.is_nil(plan.origin.public_endpoint)
      assert.is_nil(plan.origin.session_token)
      assert.are.equal(86400, plan.presign.ttl)
      assert.are.equal("https://s3.amazonaws.com/b/videos/abc/", plan.proxy.from)

      h = H.load("policies/private_bucket.lua", {
        HLSGATE_JWT_SECRET = SECRET, S3_BUCKET = "b", AWS_ACCESS_KEY_ID = "a",
        AWS_SECRET_ACCESS_KEY = "s", AWS_SESSION_TOKEN = "st", S3_REGION = "eu-central-1",
        S3_ENDPOINT = "https://sos-ch-gva-2.exo.io/", S3_PATH_STYLE = "false",
        HLSGATE_PRESIGN_TTL = "120", HLSGATE_PLAYLIST_CACHE_TTL = "0",
      })
      plan = h(H.get("/stream/hls/master.m3u8?token=" .. T))
      assert.are.equal(0, plan.cache_ttl)
      assert.are.equal("st", plan.origin.session_token)
      assert.are.equal("eu-central-1", plan.origin.region)
      assert.is_false(plan.origin.path_style)
      assert.are.equal(120, plan.presign.ttl)
      assert.are.equal("https://b.sos-ch-gva-2.exo.io/videos/abc/", plan.proxy.from)
    end)

    it("refuses a bad configuration at load time", function()
      assert.has_error(function()
        H.load("policies/private_bucket.lua", { S3_BUCKET = "b", HLSGATE_JWT_SECRET = SECRET })
      end, "S3_BUCKET is set but AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY are not")
      assert.has_error(function()
        H.load("policies/private_bucket.lua", env_with({ S3_ENDPOINT = "minio:9000" }))
      end, "S3_ENDPOINT must be an http:// or https:// URL (got 'minio:9000')")
      assert.has_error(function()
        H.load("policies/private_bucket.lua", env_with({ HLSGATE_PRESIGN_TTL = "604801" }))
      end)
      assert.has_error(function()
        H.load("policies/private_bucket.lua", env_with({ S3_PATH_STYLE = "maybe" }))
      end)
      assert.has_error(function()
        H.load("policies/private_bucket.lua", env_with({ HLSGATE_PLAYLIST_CACHE_TTL = "-1" }))
      end)
      assert.has_error(function()
        H.load("policies/private_bucket.lua", env_with({ HLSGATE_TOKEN_TTL = "soon" }))
      end)
    end)

    it("serves a local directory, every URI proxied, without S3_BUCKET", function()
      local h = H.load("policies/private_bucket.lua", { HLSGATE_JWT_SECRET = SECRET })
      local plan = h(H.get("/stream/hls/v1/index.m3u8?token=" .. T))
      assert.are.same({ type = "file", root = "var/demo", path = "videos/abc/v1/index.m3u8" }, plan.origin)
      assert.are.equal("http://file.invalid/videos/abc/", plan.proxy.from)
      for _, c in ipairs(hg.hls.classes) do assert.are.equal("proxy", plan.rewrite[c], c) end
      h = H.load("policies/private_bucket.lua", { HLSGATE_JWT_SECRET = SECRET, HLSGATE_DEMO_DIR = "/srv/hls" })
      assert.are.equal("/srv/hls", h(H.get("/stream/hls/a.ts?token=" .. T)).origin.root)
    end)

    it("answers 503 and warns when HLSGATE_JWT_SECRET is not set", function()
      local before = #H.logs
      local h = H.load("policies/private_bucket.lua", {})
      assert.is_true(#H.logs > before)
      assert.matches("HLSGATE_JWT_SECRET", H.logs[#H.logs])
      assert.are.equal(503, h(H.get("/stream/hls/master.m3u8?token=" .. T)).status)
    end)

    it("answers CORS preflights and echoes only allowed origins", function()
      local res = handle(H.request("OPTIONS", "/stream/hls/master.m3u8",
        { headers = { Origin = "https://app.example", ["Access-Control-Request-Headers"] = "range" } }))
      assert.are.equal(204, res.status)
      assert.are.equal("*", res.headers["Access-Control-Allow-Origin"])
      assert.are.equal("GET, HEAD, OPTIONS", res.headers["Access-Control-Allow-Methods"])
      assert.are.equal("range", res.headers["Access-Control-Allow-Headers"])
      local h = H.load("policies/private_bucket.lua",
        env_with({ HLSGATE_CORS_ORIGINS = "https://app.example, https://admin.example" }))
      local plan = h(H.get("/stream/hls/master.m3u8?token=" .. T, { headers = { Origin = "https://app.example" } }))
      assert.are.equal("https://app.example", plan.headers["Access-Control-Allow-Origin"])
      assert.are.equal("Origin", plan.headers.Vary)
      plan = h(H.get("/stream/hls/master.m3u8?token=" .. T, { headers = { Origin = "https://evil.example" } }))
      assert.is_nil(plan.headers["Access-Control-Allow-Origin"])
    end)
  end)

  describe("POST /stream/token", function()
    local function mint(body, key, method)
      return handle(H.request(method or "POST", "/stream/token", {
        headers = key and { Authorization = "Bearer " .. key } or nil,
        body = body and hg.json_encode(body) or nil,
      }))
    end

    it("answers 401 without the admin key", function()
      assert.are.equal(401, mint({ prefix = "videos/abc" }).status)
      assert.are.equal(401, mint({ prefix = "videos/abc" }, "wrong").status)
      assert.are.equal(401, handle(H.request("POST", "/stream/token", {
        headers = { Authorization = "Basic " .. ADMIN }, body = '{"prefix":"a"}' })).status)
      local h = H.load("policies/private_bucket.lua", env_with({ HLSGATE_ADMIN_KEY = false }))
      assert.are.equal(401, h(H.request("POST", "/stream/token", {
        headers = { Authorization = "Bearer " }, body = '{"prefix":"a"}' })).status)
      assert.are.equal("token", mint({ prefix = "a" }).route)
    end)

    it("answers 400 for a bad body and 405 for GET", function()
      assert.are.equal(400, mint(nil, ADMIN).status)
      assert.are.equal(400, handle(H.request("POST", "/stream/token", {
        headers = { Authorization = "Bearer " .. ADMIN }, body = "{not json" })).status)
      assert.are.equal(400, mint({ ttl = 60 }, ADMIN).status)
      assert.are.equal(400, mint({ prefix = "a", ttl = 0 }, ADMIN).status)
      assert.are.equal(400, mint({ prefix = "a", ttl = "x" }, ADMIN).status)
      assert.are.equal(400, mint({ prefix = "a", path = "../x.m3u8" }, ADMIN).status)
      assert.are.equal(405, mint(nil, ADMIN, "GET").status)
    end)

    it("mints a token the stream accepts", function()
      local before = os.time()
      local res = mint({ prefix = "videos/xyz/", ttl = 120, path = "v1/index.m3u8" }, ADMIN)
      assert.are.equal(200, res.status)
      assert.matches("^application/json", res.headers["Content-Type"])
      assert.are.equal("no-store", res.headers["Cache-Control"])
      local body = H.json(res)
      assert.are.equal("/stream/hls/v1/index.m3u8?token=" .. body.token, body.url)
      assert.is_true(body.expires_at >= before + 120 and body.expires_at <= os.time() + 120)
      local claims = assert(hg.jwt.verify(body.token, SECRET, { alg = "HS256" }))
      assert.are.same({ sub = "hls", pfx = "videos/xyz", exp = body.expires_at }, claims)
      local plan = handle(H.get(body.url))
      assert.are.equal("videos/xyz/v1/index.m3u8", plan.origin.key)
    end)

    it("defaults to HLSGATE_TOKEN_TTL and master.m3u8", function()
      local h = H.load("policies/private_bucket.lua", env_with({ HLSGATE_TOKEN_TTL = "900" }))
      local body = H.json(h(H.request("POST", "/stream/token", {
        headers = { authorization = "bearer " .. ADMIN }, body = '{"prefix":"p"}' })))
      assert.matches("^/stream/hls/master%.m3u8%?token=", body.url)
      assert.is_true(math.abs(body.expires_at - (os.time() + 900)) <= 1)
      body = H.json(mint({ prefix = "p" }, ADMIN))
      assert.is_true(math.abs(body.expires_at - (os.time() + 86400)) <= 1)
    end)

    it("M.mint signs with a key id when given one", function()
      local keys = { k1 = "secret-one-secret-one", k2 = "secret-two-secret-two" }
      local t = private_bucket.mint(keys.k2, "p", 60, nil, "k2")
      assert.are.equal("p", hg.jwt.verify(t, keys, { alg = "HS256" }).pfx)
      local h = private_bucket.new({ secret = keys, kid = "k1", admin_key = ADMIN, root = "/srv" })
      local body = H.json(h(H.request("POST", "/stream/token", {
        headers = { Authorization = "Bearer " .. ADMIN }, body = '{"prefix":"p"}' })))
      local header = hg.json_decode(hg.crypto.base64url_decode(body.token:match("^[^.]+")))
      assert.are.equal("k1", header.kid)
      assert.are.equal("file", h(H.get(body.url)).origin.type)
    end)
  end)

  describe("plans applied to playlists", function()
    -- what the gateway fetches the playlist from (the base its URIs resolve against)
    local S3_DIR = "http://minio:9000/media/videos/abc/"
    local FILE_DIR = "http://file.invalid/videos/abc/"
    local MASTER = H.file(H.CONFORMANCE .. "kuu-hls-parser/8.5-Master-Playlist-with-I-Frames.m3u8")
    local LL = H.file(H.CONFORMANCE .. "kuu-hls-parser/Low-Latency_Example-01_Low-Latency_HLS_Playlist.m3u8")

    it("keeps playlists inside the gateway with the same token", function()
      local plan = stream("master.m3u8", T)
      local out, stats = H.apply(plan, MASTER, S3_DIR .. "master.m3u8")
      assert.are.equal(7, stats.replaced)
      assert.are.equal(table.concat({
        "#EXTM3U",
        '#EXT-X-STREAM-INF:BANDWIDTH=1280000,CODECS="avc1.640029,mp4a.40.2"',
        "/stream/hls/low/audio-video.m3u8?token=" .. T,
        '#EXT-X-I-FRAME-STREAM-INF:BANDWIDTH=86000,URI="/stream/hls/low/iframe.m3u8?token=' .. T .. '",CODECS="avc1.640029"',
      }, "\n"), table.concat({ out:match("^([^\n]*)\n([^\n]*)\n([^\n]*)\n([^\n]*)") }, "\n"))
      -- the proxied URL is what the gateway maps back to the same object
      local next_plan = handle(H.get("/stream/hls/low/audio-video.m3u8?token=" .. T))
      assert.are.equal("videos/abc/low/audio-video.m3u8", next_plan.origin.key)
    end)

    it("presigns segments, parts and maps; proxies preload hints and reports", function()
      local plan = stream("2M/index.m3u8", T)
      local out, stats, log = H.apply(plan, LL, S3_DIR .. "2M/index.m3u8", 1700000000)
      local by = {}
      for _, d in ipairs(log) do by[d[1]] = by[d[1]] or {}; by[d[1]][d[2]] = (by[d[1]][d[2]] or 0) + 1 end
      assert.are.same({ map = { presign = 1 }, segment = { presign = 7 }, part = { presign = 27 },
                        preload_hint = { proxy = 1 }, rendition_report = { proxy = 2 } }, by)
      assert.are.equal(38, stats.replaced)
      local init = out:match('#EXT%-X%-MAP:URI="([^"]+)"')
      assert.matches("^https://media%.example%.com/media/videos/abc/2M/init%.mp4%?X%-Amz%-Algorithm=", init)
      assert.matches("X%-Amz%-Expires=600", init)
      -- signed at the start of the time bucket (a tenth of the 600 s TTL), not at "now"
      assert.matches("X%-Amz%-Date=20231114T221300Z", init)
      assert.is_nil(init:find("token=", 1, true))
      assert.matches('#EXT%-X%-PRELOAD%-HINT:TYPE=PART,URI="/stream/hls/2M/filePart273%.3%.mp4%?token=', out)
      assert.matches('#EXT%-X%-RENDITION%-REPORT:URI="/stream/hls/1M/waitForMSN%.php%?token=', out)
      assert.matches("\n# This Playlist is a response to: GET https://example%.com/2M/waitForMSN%.php", out)
    end)

    it("writes URIs outside the token's prefix as they resolve, never presigned", function()
      local plan = stream("v1/index.m3u8", T)
      local out = H.apply(plan, '#EXTM3U\n#EXTINF:4,\n../../other/s.ts\n#EXTINF:4,\nhttps://cdn.example/x.ts\n',
        S3_DIR .. "v1/index.m3u8")
      assert.are.equal('#EXTM3U\n#EXTINF:4,\nhttp://minio:9000/media/videos/other/s.ts\n#EXTINF:4,\nhttps://cdn.example/x.ts\n', out)
    end)

    it("proxies every class from a local directory", function()
      local h = H.load("policies/private_bucket.lua", { HLSGATE_JWT_SECRET = SECRET })
      local out = H.apply(h(H.get("/stream/hls/2M/index.m3u8?token=" .. T)), LL, FILE_DIR .. "2M/index.m3u8")
      assert.is_nil(out:find("file.invalid", 1, true))
      assert.matches('#EXT%-X%-MAP:URI="/stream/hls/2M/init%.mp4%?token=', out)
      assert.matches("\n/stream/hls/2M/fileSequence266%.mp4%?token=", out)
    end)
  end)
end)

describe("open proxy recipe", function()
  local ENV = { HLSGATE_ALLOW_PRIVATE = "1" }
  local handle = H.load("policies/open_proxy.lua", {})
  local U = "https://cdn.example.com/live/v%201/master.m3u8?x=1"

  local function proxy(url, extra, opts)
    return H.table(handle(H.get("/proxy?url=" .. hg.url.encode(url) .. (extra or ""), opts)))
  end

  it("answers 400 without a url or for a non-http(s) one", function()
    for _, res in ipairs({
      handle(H.get("/proxy")), handle(H.get("/proxy?url=")), proxy("ftp://h/x.m3u8"),
      proxy("/relative.m3u8"), proxy("file:///etc/passwd"), proxy("http://%41/x"),
    }) do
      assert.are.equal(400, res.status)
      assert.are.equal("*", res.headers["Access-Control-Allow-Origin"])
      assert.are.equal("proxy", res.route)
    end
  end)

  it("plans an http fetch with the SPEC §9 defaults", function()
    local plan = proxy(U, nil, { headers = { Host = "gw.example:8080" } })
    assert.are.same({ type = "http", url = U, allow_private = false, max_redirects = 5 }, plan.origin)
    assert.are.same({ default = "proxy" }, plan.rewrite)
    assert.are.equal("http://gw.example:8080/proxy?url=", plan.proxy.prefix)
    assert.is_nil(plan.proxy.params)
    assert.are.equal(300, plan.cache_ttl)
    assert.are.equal("*", plan.headers["Access-Control-Allow-Origin"])
    assert.matches("Content%-Range", plan.headers["Access-Control-Expose-Headers"])
    assert.are.equal("v 1", proxy("https://cdn.example.com/v%201").filename)
    assert.are.equal("master.m3u8", plan.filename)
    assert.are.equal("seg1.ts", proxy("http://o.example/a/seg1.ts#frag").filename)
    assert.are.equal("index", proxy("http://o.example/").filename)
    assert.are.equal("proxy", plan.route)
    assert.is_nil(plan.private)
  end)

  it("is read by the server as meant: public addresses only, five redirects", function()
    local c = H.plan(proxy(U))
    assert.are.same({ type = "http", url = U, allow_private = 0, max_redirects = 5 }, c.origin)
    assert.are.same({ default = "proxy" }, c.rewrite)
    assert.are.same({ prefix = "http://localhost/proxy?url=" }, c.proxy) -- no Host: localhost
    assert.is_false(c.private)
    assert.are.equal(-1, H.plan(H.load("policies/open_proxy.lua", ENV)(H.get("/proxy?url=http://127.0.0.1/"))).origin.allow_private)
  end)

  it("reads its environment", function()
    local h = H.load("policies/open_proxy.lua", {
      HLSGATE_PUBLIC_URL = "https://gw.example/", HLSGATE_CACHE_TTL = "30",
      HLSGATE_CORS_ORIGINS = "https://player.example", HLSGATE_ALLOW_HOSTS = "*.example.com, cdn.other.net",
      HLSGATE_ALLOW_PRIVATE = "true",
    })
    local plan = H.table(h(H.get("/proxy?url=" .. hg.url.encode(U), { headers = { Origin = "https://player.example" } })))
    assert.are.equal("https://gw.example/proxy?url=", plan.proxy.prefix)
    assert.are.equal(30, plan.cache_ttl)
    assert.are.same({ "*.example.com", "cdn.other.net" }, plan.origin.allow_hosts)
    assert.is_true(plan.origin.allow_private)
    assert.are.equal("https://player.example", plan.headers["Access-Control-Allow-Origin"])
    assert.is_true(H.table(H.load("policies/open_proxy.lua", ENV)(H.get("/proxy?url=http://127.0.0.1/"))).origin.allow_private)
    assert.has_error(function() H.load("policies/open_proxy.lua", { HLSGATE_CACHE_TTL = "-1" }) end)
  end)

  it("requires key= when HLSGATE_PROXY_KEY is set, and carries it", function()
    local h = H.load("policies/open_proxy.lua", { HLSGATE_PROXY_KEY = "k3y", HLSGATE_PUBLIC_URL = "http://gw" })
    local target = "/proxy?url=" .. hg.url.encode(U)
    assert.are.equal(401, h(H.get(target)).status)
    assert.are.equal(401, h(H.get(target .. "&key=wrong")).status)
    assert.are.equal(401, h(H.get(target .. "&key=")).status)
    local plan = H.table(h(H.get(target .. "&key=k3y")))
    assert.are.same({ key = "k3y" }, plan.proxy.params)
    -- the key comes first: no information about the url for a stranger
    assert.are.equal(401, h(H.get("/proxy")).status)
  end)

  it("answers preflights, refuses other methods, ignores other paths", function()
    local res = handle(H.request("OPTIONS", "/proxy?url=x"))
    assert.are.equal(204, res.status)
    assert.are.equal("GET, HEAD, OPTIONS", res.headers["Access-Control-Allow-Methods"])
    assert.are.equal("Range", res.headers["Access-Control-Allow-Headers"])
    assert.are.equal("86400", res.headers["Access-Control-Max-Age"])
    res = handle(H.request("DELETE", "/proxy?url=" .. hg.url.encode(U)))
    assert.are.equal(405, res.status)
    assert.are.equal("GET, HEAD, OPTIONS", res.headers.Allow)
    assert.are.equal("*", res.headers["Access-Control-Allow-Origin"])
    assert.is_nil(handle(H.get("/proxyx?url=" .. hg.url.encode(U))))
    assert.is_nil(handle(H.get("/stream/hls/x")))
  end)

  it("rewrites every URI of a playlist to come back through /proxy", function()
    local h = H.load("policies/open_proxy.lua", { HLSGATE_PUBLIC_URL = "http://gw", HLSGATE_PROXY_KEY = "k" })
    local base = "https://origin.example/vod/master.m3u8"
    local plan = h(H.get("/proxy?key=k&url=" .. hg.url.encode(base)))
    local body = H.file(H.CONFORMANCE .. "kuu-hls-parser/8.5-Master-Playlist-with-I-Frames.m3u8")
    local out, stats = H.apply(plan, body, base)
    assert.are.equal(7, stats.uris)
    assert.are.equal(7, stats.replaced)
    local n = 0
    for line in out:gmatch("[^\n]+") do
      local uri = line:match('URI="([^"]+)"') or (not line:find("^#") and line)
      if uri then
        n = n + 1
        local target = uri:match("^http://gw/proxy%?key=k&url=([^&]+)$")
        assert.truthy(target, uri)
        assert.matches("^https://origin%.example/vod/", hg.url.decode(target))
      end
    end
    assert.are.equal(7, n)
    assert.matches("\nhttp://gw/proxy%?key=k&url=https%%3A%%2F%%2Forigin%.example%%2Fvod%%2Flow%%2Faudio%-video%.m3u8\n", out)
  end)
end)

describe("default policy (policies/policy.lua)", function()
  it("mounts both recipes", function()
    local h = H.load("policies/policy.lua", { HLSGATE_JWT_SECRET = SECRET })
    assert.are.equal("file", h(H.get("/stream/hls/master.m3u8?token=" .. token())).origin.type)
    assert.are.equal("http", H.table(h(H.get("/proxy?url=http%3A%2F%2Fo.example%2Fa.m3u8"))).origin.type)
    assert.are.equal(401, h(H.get("/stream/hls/master.m3u8")).status)
    assert.is_nil(h(H.get("/")))
  end)
end)
