-- hlsproxy.lua — the open HLS proxy as an OpenResty operator would write it in an
-- afternoon (issue 13), the peer hlsgate's open proxy is measured against:
--
--   GET /proxy?url=U   playlists (.m3u8/.m3u): fetched through the proxy_cache location
--                      (ngx.location.capture), rewritten in one ngx.re.gsub pass (every
--                      URI line and URI="…" attribute, made absolute and sent back
--                      through /proxy), kept in a lua_shared_dict and a per-worker
--                      lrucache for the same TTL as hlsgate's (300 s); anything else is an
--                      internal redirect to the proxy_cache location (sendfile from the
--                      cache file).
-- CORS: Access-Control-Allow-Origin: * on every answer, as hlsgate's open proxy.
local lrucache = require("resty.lrucache")

local _M = {}
local TTL = 300
local cache = assert(lrucache.new(1000))
local dict = ngx.shared.playlists
local prefix -- "http://host:port/proxy?url="

function _M.init(proxy_base) prefix = proxy_base .. "?url=" end

-- Resolves `ref` against the playlist's URL (absolute, host-absolute or relative).
local function resolve(ref, base)
  if ref:find("^%a[%w+.-]*://") then return ref end
  local origin = base:match("^(%a[%w+.-]*://[^/?#]+)")
  if ref:sub(1, 1) == "/" then return origin .. ref end
  local dir = base:gsub("[?#].*$", ""):match("^(.*/)") or (origin .. "/")
  return dir .. ref
end

local function rewrite(body, base)
  local out, _, err = ngx.re.gsub(body, [[^([^#\r\n][^\r\n]*)|URI="([^"]*)"]], function(m)
    if m[1] then return prefix .. ngx.escape_uri(resolve(m[1], base)) end
    return 'URI="' .. prefix .. ngx.escape_uri(resolve(m[2], base)) .. '"'
  end, "jom")
  if not out then ngx.log(ngx.ERR, "rewrite: ", err) end
  return out
end

function _M.handle()
  local url = ngx.var.arg_url
  if not url then return ngx.exit(400) end
  url = ngx.unescape_uri(url)
  if not url:find("^https?://") then return ngx.exit(400) end
  ngx.header["Access-Control-Allow-Origin"] = "*"
  local path = url:gsub("[?#].*$", "")
  if not (path:find("%.m3u8$") or path:find("%.m3u$")) then
    return ngx.exec("/_fetch", { u = url })
  end
  local body = cache:get(url)
  if not body then
    body = dict:get(url)
    if not body then
      local res = ngx.location.capture("/_fetch", { args = { u = url } })
      if res.status ~= 200 then return ngx.exit(res.status == 404 and 404 or 502) end
      body = res.body
      if body:sub(1, 7) == "#EXTM3U" then body = rewrite(body, url) end
      if not body then return ngx.exit(502) end
      dict:set(url, body, TTL)
    end
    cache:set(url, body, TTL)
  end
  ngx.header["Content-Type"] = "application/vnd.apple.mpegurl"
  ngx.header["Cache-Control"] = "public, max-age=" .. TTL
  ngx.print(body)
end

return _M
