-- policy_harness.lua — runs policies in busted without a server: request tables built as
-- the core builds them (src/lua/policy.c push_request), an os.getenv stub, a policy file
-- loader, and a playlist rewrite that applies a plan the way the core does
-- (src/gateway/pipeline.c decide: class rule + parent class, on_uri, proxy, presign).
local hg = require("hlsgate")

local H = { hg = hg, logs = {} }

-- hg.log exists only inside the server (src/lua/policy.c open_hlsgate): record instead.
if hg.log == nil then
  hg.log = function(level, ...)
    local parts = {}
    for i = 1, select("#", ...) do parts[i] = tostring((select(i, ...))) end
    H.logs[#H.logs + 1] = level .. ": " .. table.concat(parts, " ")
  end
end

-- The core's query decoding: %XX (a bad escape is kept as is), '+' is a space, the first
-- of repeated names wins, a bare name is "".
local function decode(s)
  s = s:gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end)
  return s
end

local function parse_query(q)
  local t = {}
  for pair in q:gmatch("[^&]+") do
    local k, v = pair:match("^([^=]*)=?(.*)$")
    k = decode((k:gsub("%+", " ")))
    if t[k] == nil then t[k] = decode((v:gsub("%+", " "))) end
  end
  return t
end

--- H.request(method, target [, opts]) -> the request table a policy receives.
-- opts: headers (any case), body, client ("127.0.0.1"), id.
function H.request(method, target, opts)
  opts = opts or {}
  local path, q = target:match("^([^?]*)%??(.*)$")
  local headers = {}
  for k, v in pairs(opts.headers or {}) do
    local name = k:lower()
    headers[name] = headers[name] and (headers[name] .. ", " .. v) or v
  end
  return {
    method = method, target = target, path = path, raw_query = q, query = parse_query(q),
    headers = headers, body = opts.body, client = opts.client or "127.0.0.1",
    id = opts.id or "test-request-1", http_version = "1.1",
  }
end

function H.get(target, opts) return H.request("GET", target, opts) end

--- H.with_env(env, fn, ...) -> fn's results, with os.getenv answering from `env` only.
function H.with_env(env, fn, ...)
  local real = os.getenv
  os.getenv = function(name) return env[name] end -- luacheck: ignore
  local res = table.pack(pcall(fn, ...))
  os.getenv = real -- luacheck: ignore
  if not res[1] then error(res[2], 0) end
  return table.unpack(res, 2, res.n)
end

--- H.load(file, env) -> on_request of the policy file, loaded as the server would (the
-- file's chunk runs once, its environment variables read from `env`).
function H.load(file, env)
  local chunk = assert(loadfile(file, "t"))
  local policy = H.with_env(env or {}, chunk)
  if type(policy) == "table" then policy = policy.on_request end
  assert(type(policy) == "function", file .. ": no on_request")
  return policy
end

--- H.json(res) -> the decoded body of a JSON response.
function H.json(res)
  return assert(hg.json_decode(res.body))
end

-- ---- plans applied to playlists, as src/gateway/pipeline.c does ----

local PARENT = { iframe_playlist = "playlist", image_playlist = "playlist",
                 rendition_report = "playlist", session_key = "key", part = "segment",
                 asset_list = "asset" }
local ACTIONS = { keep = true, drop = true, absolute = true, proxy = true, presign = true }

local function s3_of(plan)
  if plan.s3 then return plan.s3 end
  if plan.origin.type == "s3" then return plan.origin end
  return nil
end

-- "http://host:port/bucket/" (path style) or "https://bucket.host/"
local function s3_base(s3)
  local ep = s3.endpoint:gsub("/+$", "")
  if s3.path_style == false then
    local scheme, host = ep:match("^(https?://)(.*)$")
    return scheme .. s3.bucket .. "." .. host .. "/"
  end
  return ep .. "/" .. s3.bucket .. "/"
end

--- H.origin_url(plan) -> the URL the core fetches (the base playlist URIs resolve against).
function H.origin_url(plan)
  local o = plan.origin
  if o.type == "http" then return o.url end
  if o.type == "file" then return "http://file.invalid/" .. hg.url.encode(o.path, "path") end
  return s3_base(o) .. hg.url.encode(o.key, "path")
end

local function class_action(plan, cls)
  local r = plan.rewrite or {}
  local a = r[cls]
  if a == nil and PARENT[cls] then a = r[PARENT[cls]] end
  return a or r.default or "keep"
end

local function proxy(plan, url)
  local p = plan.proxy
  if p.prefix then -- params go before the URL, right after the prefix's '?'
    local names = {}
    for k in pairs(p.params or {}) do names[#names + 1] = k end
    table.sort(names)
    local q = p.prefix:find("?", 1, true)
    local mid = ""
    for _, k in ipairs(names) do mid = mid .. hg.url.query_build({ [k] = p.params[k] }) .. (q and "&" or "") end
    if q then return p.prefix:sub(1, q) .. mid .. p.prefix:sub(q + 1) .. hg.url.encode(url) end
    return p.prefix .. hg.url.encode(url) .. (mid ~= "" and "&" .. mid or "")
  end
  if url:sub(1, #p.from) ~= p.from then return url end -- outside the proxied tree: absolute
  local out = p.to .. url:sub(#p.from + 1)
  for k, v in pairs(p.params or {}) do out = hg.url.query_set(out, k, v) end
  return out
end

local function presign(plan, url, time)
  local s3 = s3_of(plan)
  if not s3 then return url end
  local base = s3_base(s3)
  if url:sub(1, #base):lower() ~= base:lower() then return url end
  local key = hg.url.decode(url:sub(#base + 1):match("^[^?#]*"), nil, true)
  local pfx = plan.presign and plan.presign.prefix
  if not key or (pfx and key:sub(1, #pfx) ~= pfx) then return url end
  return assert(hg.s3.presign({
    endpoint = s3.endpoint, public_endpoint = s3.public_endpoint, bucket = s3.bucket,
    key = key, access_key = s3.access_key, secret_key = s3.secret_key,
    session_token = s3.session_token, region = s3.region, path_style = s3.path_style ~= false,
    expires = plan.presign and plan.presign.ttl or 3600, time = time,
  }))
end

--- H.apply(plan, body [, opts]) -> out, stats, log
-- Rewrites `body` (fetched from H.origin_url(plan), or opts.base) as the core would for
-- this plan. opts.time: the presign time (default now). `log` lists { class, action } in
-- document order.
function H.apply(plan, body, opts)
  opts = opts or {}
  local log = {}
  local out, stats = hg.hls.rewrite(body, opts.base or H.origin_url(plan), function(url, info)
    local act = class_action(plan, info.class)
    if plan.on_uri then
      local r = plan.on_uri(info) -- the core hands on_uri the same table (hg__lua_push_uri)
      if r ~= nil and not ACTIONS[r] then
        assert(type(r) == "string" and r ~= "", "on_uri returned " .. tostring(r))
        log[#log + 1] = { info.class, "hook" }
        return r
      end
      act = r or act
    end
    if act == "presign" and info.class == "preload_hint" then
      act = plan.proxy and "proxy" or "absolute"
    end
    log[#log + 1] = { info.class, act }
    if act == "proxy" then return proxy(plan, url) end
    if act == "presign" then return presign(plan, url, opts.time or os.time()) end
    return act -- keep, drop, absolute
  end)
  return out, stats, log
end

--- H.file(path) -> the contents of a file.
function H.file(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("a")
  f:close()
  return s
end

-- The playlist corpus, as the other specs find ../shared (HG_SHARED_DIR overrides).
H.CONFORMANCE = (os.getenv("HG_SHARED_DIR") or "tests/data") .. "/conformance/playlists/"

return H
