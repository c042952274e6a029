-- hlsgate.private_bucket — the "freeframe" recipe (SPEC §1, §9): HLS from a private
-- S3-compatible bucket, scoped by a JWT per asset prefix.
--
--   GET  {mount}{path}?token=T   T: HS256 JWT with sub = "hls", pfx = S3 prefix, exp.
--                                Playlists are fetched with signed requests and rewritten:
--                                playlist URIs stay in the gateway (same token), segments,
--                                parts, keys and maps are presigned, preload hints proxied.
--   POST {token_path}            Authorization: Bearer <admin key>; JSON
--                                {"prefix": "...", "ttl": N, "path": "master.m3u8"} →
--                                {"token", "url", "expires_at"}.
--   POST {revoke_path}           Authorization: Bearer <admin key>; {"token": T}: refused by
--                                every replica until it expires (opts.viewers, Redis).
-- opts.viewers (hlsgate.viewers) adds optional viewer state: revocation, concurrent streams
-- per viewer, tokens bound to the client address or User-Agent (docs/callouts.md).
-- With `root` instead of `s3`, objects come from a local directory (the demo) and every
-- URI is proxied, since a local file cannot be presigned.
local hg = require("hlsgate")
local util = require("hlsgate.util")
local viewers_mod = require("hlsgate.viewers")

local M = {}

local TOKEN_CLAIMS = { "sub", "pfx" } -- what stream() reads of a token (but exp, verified)

-- The rewrite rules: playlists (and whatever a player fetches before it exists) stay in
-- the gateway; media goes to `media` ("presign" from a bucket). A new table per plan (a
-- wrapper may edit what it is given), built by one constructor: it is on every request.
local function rewrite_rules(media)
  return { playlist = "proxy", iframe_playlist = "proxy", image_playlist = "proxy",
           rendition_report = "proxy", preload_hint = "proxy", session_data = "proxy",
           steering = "proxy", asset_list = "proxy",
           segment = media, part = media, key = media, session_key = media, map = media, asset = media }
end

--- M.mint(secret, prefix, ttl [, now [, kid]]) -> token, expires_at
-- With `kid`, the token's header names the key (needed when the verifier's key table
-- holds `kid = secret` entries, which are only tried for tokens carrying that kid).
-- `extra`: more claims (jti, uid, a client binding: hlsgate.viewers).
function M.mint(secret, prefix, ttl, now, kid, extra)
  local exp = (now or os.time()) + ttl
  local claims = { sub = "hls", pfx = prefix, exp = exp }
  for k, v in pairs(extra or {}) do claims[k] = v end
  local token = assert(hg.jwt.sign(claims, secret, { alg = "HS256", kid = kid }))
  return token, exp
end

--- M.new(opts) -> handler(req)
-- opts: secret (string or { kid = secret, … } for rotation), mount ("/stream/hls/"),
-- token_path ("/stream/token"), revoke_path ("/stream/revoke"), viewers (an
-- hlsgate.viewers: revocation, concurrent streams, client binding; optional), token_ttl, presign_ttl, admin_key, leeway (seconds),
-- and either s3 = { endpoint, public_endpoint, region, bucket, access_key, secret_key,
-- session_token, path_style } or root = "/local/dir"; cache_ttl: seconds a playlist fetched
-- from the bucket (and its rewritten form) may be reused (2; 0 disables).
function M.new(opts)
  local mount = opts.mount or "/stream/hls/"
  local token_path = opts.token_path or "/stream/token"
  local revoke_path = opts.revoke_path or "/stream/revoke"
  local viewers = opts.viewers
  local token_ttl = opts.token_ttl or 86400
  local presign_ttl = opts.presign_ttl or 86400
  local keys = opts.secret
  local verify_opts = { alg = "HS256", leeway = opts.leeway or 30 } -- read, never kept, by verify
  local s3, root = opts.s3, opts.root
  local base -- the URL that objects resolve under (what proxied URIs are mapped from)
  if s3 then
    local ep = s3.endpoint:gsub("/+$", "")
    if s3.path_style == false then
      local scheme, host = ep:match("^(https?://)(.*)$")
      base = scheme .. s3.bucket .. "." .. host .. "/"
    else
      base = ep .. "/" .. s3.bucket .. "/"
    end
  else
    base = "http://file.invalid/" -- the base URL of file origins (plan.h)
  end

  local function mint_endpoint(req)
    if req.method ~= "POST" then return util.deny(405, "method not allowed", { Allow = "POST" }) end
    local auth = req.headers.authorization or ""
    local given = auth:match("^[Bb]earer%s+(.+)$")
    -- Security: constant-time comparison; no admin key configured means minting is off.
    if not opts.admin_key or not given or not hg.crypto.equals(given, opts.admin_key) then
      return util.deny(401, "admin key required")
    end
    local body = req.body and hg.json_decode(req.body)
    if type(body) ~= "table" or type(body.prefix) ~= "string" or body.prefix == "" then
      return util.deny(400, "JSON body with a prefix required")
    end
    local ttl = tonumber(body.ttl or token_ttl)
    if not ttl or ttl < 1 or ttl > 31536000 then return util.deny(400, "ttl must be 1..31536000") end
    local path = body.path or "master.m3u8"
    if type(path) ~= "string" or not hg.url.join_key("", path) then return util.deny(400, "bad path") end
    if not keys then return util.deny(503, "HLSGATE_JWT_SECRET is not configured") end
    local prefix = body.prefix:gsub("/+$", "")
    local secret, kid = keys, nil
    if type(keys) == "table" then -- sign with opts.kid, else the first array key
      kid = opts.kid or (keys[1] == nil and next(keys) or nil)
      secret = kid and keys[kid] or keys[1]
    end
    local extra = {}
    if viewers then viewers.mint_claims(body, extra) end
    local token, exp = M.mint(secret, prefix, math.floor(ttl), nil, kid, extra)
    return hg.json(200, {
      token = token,
      url = mount .. hg.url.encode(path, "path") .. "?token=" .. token,
      expires_at = exp,
    }, { ["Cache-Control"] = "no-store" })
  end

  local function stream(req)
    if req.method ~= "GET" and req.method ~= "HEAD" then
      return util.deny(405, "method not allowed", { Allow = "GET, HEAD, OPTIONS" })
    end
    if not keys then return util.deny(503, "HLSGATE_JWT_SECRET is not configured") end
    local token = req.query.token
    if not token or token == "" then return util.deny(401, "missing token") end
    local claims, why = hg.jwt.verify(token, keys, verify_opts)
    if not claims then return util.deny(401, "invalid token: " .. why) end
    if claims.sub ~= "hls" then return util.deny(403, "token not valid for streaming") end
    if type(claims.pfx) ~= "string" or claims.pfx == "" then return util.deny(403, "token has no prefix") end
    if viewers then -- may wait on Redis (a callout): on_request only
      local denied = viewers.check(req, claims)
      if denied then return denied end
    end
    local prefix = claims.pfx:gsub("/+$", "")
    local rel = req.path:sub(#mount + 1)
    local key, _, code = hg.url.join_key(prefix, rel)
    if not key then
      -- traversal (.., encoded dots or slashes) or a malformed path is a bad request;
      -- anything else that would leave the prefix is out of scope
      if code == "scope" or code == "prefix" then return util.deny(403, "out of scope") end
      return util.deny(400, "bad path")
    end
    if key:sub(1, #prefix + 1) ~= prefix .. "/" then return util.deny(403, "out of scope") end
    local origin
    if s3 then
      origin = { type = "s3", key = key, endpoint = s3.endpoint, region = s3.region,
                 bucket = s3.bucket, access_key = s3.access_key, secret_key = s3.secret_key,
                 session_token = s3.session_token, path_style = s3.path_style,
                 public_endpoint = s3.public_endpoint }
    else
      origin = { type = "file", root = root, path = key }
    end
    -- Reusable (docs/policy-api.md) when the policy allows it: this answer follows from
    -- the path, the scheme, Origin (the CORS answer) and the token's `sub` and `pfx`, so
    -- any viewer whose token verifies and has those claims gets it, with their own token
    -- in the proxied URIs — unless viewers are checked per request (Redis state, client
    -- binding).
    local reuse
    if not (viewers and viewers.per_request) then
      reuse = { vary = { "origin" }, ttl = 60,
                token = { param = "token", keys = keys, verify = verify_opts, claims = TOKEN_CLAIMS } }
    end
    return {
      origin = origin,
      s3 = s3 and origin or nil,
      rewrite = rewrite_rules(s3 and "presign" or "proxy"),
      proxy = { from = base .. hg.url.encode(prefix, "path") .. "/", to = mount,
                params = { token = token } },
      presign = { ttl = presign_ttl, prefix = prefix .. "/" },
      private = true,
      cache_ttl = opts.cache_ttl or 2,
      headers = opts.cors and opts.cors.headers(req) or nil,
      reuse = reuse,
    }
  end

  -- POST {revoke_path} {"token": T} or {"jti": J, "exp": E}: refused by every replica
  -- (Redis) until it expires.
  local function revoke_endpoint(req)
    if req.method ~= "POST" then return util.deny(405, "method not allowed", { Allow = "POST" }) end
    local given = (req.headers.authorization or ""):match("^[Bb]earer%s+(.+)$")
    if not opts.admin_key or not given or not hg.crypto.equals(given, opts.admin_key) then
      return util.deny(401, "admin key required")
    end
    local body = req.body and hg.json_decode(req.body)
    if type(body) ~= "table" then return util.deny(400, 'JSON body {"token": "…"} or {"jti": "…", "exp": N} required') end
    local jti, exp = body.jti, tonumber(body.exp)
    if type(body.token) == "string" then
      if not keys then return util.deny(503, "HLSGATE_JWT_SECRET is not configured") end
      local claims, why = hg.jwt.verify(body.token, keys, verify_opts)
      if not claims then
        if why == "token expired" then return hg.json(200, { revoked = false, reason = why }) end
        return util.deny(400, "not a token of this gateway: " .. why)
      end
      jti, exp = claims.jti, claims.exp
    end
    if type(jti) ~= "string" or jti == "" or not exp then return util.deny(400, "a token with a jti (or jti and exp) required") end
    if not viewers then return util.deny(503, "revocation is not configured") end
    local ttl, err = viewers.revoke(jti, exp)
    if not ttl then return util.deny(503, "cannot store the revocation: " .. err) end
    return hg.json(200, { revoked = true, expires_in = ttl }, { ["Cache-Control"] = "no-store" })
  end

  local function label(res, route)
    if type(res) == "table" then res.route = res.route or route end
    return res
  end

  return function(req)
    if viewers then req.client = viewers.client(req) end -- behind trusted proxies: the viewer
    if req.method == "OPTIONS" and opts.cors then return label(opts.cors.preflight(req), "stream") end
    if req.path == revoke_path then return label(revoke_endpoint(req), "admin") end
    if req.path == token_path then return label(mint_endpoint(req), "token") end
    if req.path:sub(1, #mount) == mount then return label(stream(req), "stream") end
    return nil
  end
end

--- M.from_env([overrides]) -> handler configured by the SPEC §9 environment variables.
function M.from_env(overrides)
  overrides = overrides or {}
  local opts = {
    secret = util.env("HLSGATE_JWT_SECRET"),
    token_ttl = util.env_number("HLSGATE_TOKEN_TTL", 86400, 1),
    presign_ttl = util.env_number("HLSGATE_PRESIGN_TTL", 86400, 1, 604800),
    cache_ttl = util.env_number("HLSGATE_PLAYLIST_CACHE_TTL", 2, 0, 3600),
    admin_key = util.env("HLSGATE_ADMIN_KEY"),
    cors = util.cors(util.split(util.env("HLSGATE_CORS_ORIGINS", "*"))),
    viewers = viewers_mod.from_env(),
  }
  local bucket = util.env("S3_BUCKET")
  if bucket then
    opts.s3 = {
      endpoint = util.env("S3_ENDPOINT", "https://s3.amazonaws.com"),
      public_endpoint = util.env("S3_PUBLIC_ENDPOINT"),
      region = util.env("S3_REGION", "us-east-1"),
      bucket = bucket,
      access_key = util.env("AWS_ACCESS_KEY_ID"),
      secret_key = util.env("AWS_SECRET_ACCESS_KEY"),
      session_token = util.env("AWS_SESSION_TOKEN"),
      path_style = util.env_bool("S3_PATH_STYLE", true),
    }
    if not opts.s3.endpoint:match("^[Hh][Tt][Tt][Pp][Ss]?://[^/]") then
      error("S3_ENDPOINT must be an http:// or https:// URL (got '" .. opts.s3.endpoint .. "')", 0)
    end
    if not opts.s3.access_key or not opts.s3.secret_key then
      error("S3_BUCKET is set but AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY are not", 0)
    end
  else
    opts.root = overrides.root or util.env("HLSGATE_DEMO_DIR", "var/demo")
  end
  for k, v in pairs(overrides) do opts[k] = v end
  if not opts.secret then
    hg.log("warn", "HLSGATE_JWT_SECRET is not set: /stream/ answers 503")
  end
  return M.new(opts)
end

return M
