-- policies/examples/origin_headers.lua — the open CORS proxy, sending per-origin request
-- headers: some CDNs only answer requests that look like they come from their own site
-- (Referer, Origin) or from a browser (User-Agent). Edit ORIGIN_HEADERS: keys are host
-- names, exact ("cdn.example.com") or a wildcard for every subdomain ("*.example.net",
-- which does not match "example.net" itself); the exact name wins, then the longest
-- wildcard. Hosts not listed get no extra headers. Environment: the open proxy's
-- (docs/policies.md).
local util = require("hlsgate.util")
local open_proxy = require("hlsgate.open_proxy")

local ORIGIN_HEADERS = {
  ["cdn.example.com"] = { Referer = "https://site.example/", Origin = "https://site.example" },
  ["*.media.example.net"] = { ["User-Agent"] = "Mozilla/5.0 (compatible; hlsgate)" },
}

-- The headers for a host (lower-case, as hg.url.origin gives it), or nil.
local function headers_for(host)
  if ORIGIN_HEADERS[host] then return ORIGIN_HEADERS[host] end
  local rest = host:match("^[^.]+%.(.+)$")
  while rest do -- a.b.example.net: *.b.example.net, then *.example.net, then *.net
    local h = ORIGIN_HEADERS["*." .. rest]
    if h then return h end
    rest = rest:match("^[^.]+%.(.+)$")
  end
  return nil
end

-- The recipe asks once per URL (and worker) and keeps the answer with the URL's plan.
local proxy = util.router({
  { prefix = "/proxy", handler = open_proxy.from_env({
      headers = function(origin) return headers_for(origin.host) end }) },
})

return { on_request = proxy }
