-- hlsgate.util — helpers shared by the shipped recipes and by operators' policies:
-- environment readers, CORS headers and preflight, a prefix router.
local hg = require("hlsgate")

local M = {}

--- M.env(name [, default]) -> string|nil: an environment variable, "" treated as unset.
function M.env(name, default)
  local v = os.getenv(name)
  if v == nil or v == "" then return default end
  return v
end

--- M.env_number(name, default [, min, max]) -> number; raises on a non-number.
function M.env_number(name, default, min, max)
  local v = M.env(name)
  if v == nil then return default end
  local n = tonumber(v)
  if n == nil or (min and n < min) or (max and n > max) then
    error(string.format("%s: expected a number%s, got %q", name,
      min and string.format(" in %s..%s", min, max or "inf") or "", v), 0)
  end
  return math.floor(n)
end

--- M.env_bool(name, default) -> boolean: 1/true/yes/on and 0/false/no/off.
function M.env_bool(name, default)
  local v = M.env(name)
  if v == nil then return default end
  v = v:lower()
  if v == "1" or v == "true" or v == "yes" or v == "on" then return true end
  if v == "0" or v == "false" or v == "no" or v == "off" then return false end
  error(string.format("%s: expected true or false, got %q", name, v), 0)
end

--- M.split(s [, sep]) -> array of trimmed, non-empty items of a comma list.
function M.split(s, sep)
  local out = {}
  if s == nil then return out end
  for item in string.gmatch(s, "[^" .. (sep or ",") .. "]+") do
    item = item:match("^%s*(.-)%s*$")
    if item ~= "" then out[#out + 1] = item end
  end
  return out
end

--- M.cors(origins) -> object with :headers(req) and :preflight(req).
-- `origins` is "*" or a list of allowed Origin values. With a list, the request's
-- Origin is echoed when it is allowed (and Vary: Origin is set); otherwise no
-- Access-Control-Allow-Origin is sent, so the browser blocks the response.
function M.cors(origins)
  local any = origins == nil or origins == "*" or (type(origins) == "table" and origins[1] == "*")
  local allowed = {}
  if type(origins) == "table" then for _, o in ipairs(origins) do allowed[o] = true end end
  local expose = "Content-Length, Content-Range, Accept-Ranges, X-Request-Id"
  local c = {}
  function c.headers(req, extra)
    local h = extra or {}
    if any then
      h["Access-Control-Allow-Origin"] = "*"
    else
      local origin = req.headers.origin
      if origin and allowed[origin] then h["Access-Control-Allow-Origin"] = origin end
      h["Vary"] = "Origin"
    end
    h["Access-Control-Expose-Headers"] = expose
    return h
  end
  function c.preflight(req)
    local h = c.headers(req)
    h["Access-Control-Allow-Methods"] = "GET, HEAD, OPTIONS"
    h["Access-Control-Allow-Headers"] = req.headers["access-control-request-headers"] or "Range"
    h["Access-Control-Max-Age"] = "86400"
    return { status = 204, headers = h }
  end
  return c
end

--- M.router(routes) -> function(req): the first route whose `prefix` starts req.path
-- handles the request; nil (404) when none does. A route is { prefix = "/x/", handler = fn }.
function M.router(routes)
  return function(req)
    for _, r in ipairs(routes) do
      if req.path:sub(1, #r.prefix) == r.prefix then return r.handler(req) end
    end
    return nil
  end
end

--- M.deny(status, message [, headers]) -> the SPEC §8 JSON error response.
function M.deny(status, message, headers)
  return hg.error(status, message, headers)
end

-- A dotted quad ("192.0.2.1", decimal, no leading zeros) -> 4 bytes, or nil.
local function parse_v4(s)
  local a, b, c, d = s:match("^(%d+)%.(%d+)%.(%d+)%.(%d+)$")
  if not a then return nil end
  local out = {}
  for i, part in ipairs({ a, b, c, d }) do
    local n = tonumber(part)
    if #part > 3 or n > 255 or (#part > 1 and part:sub(1, 1) == "0") then return nil end
    out[i] = n
  end
  return string.char(out[1], out[2], out[3], out[4])
end

--- M.parse_ip(s) -> 16-byte string | nil, err: an IPv4 or IPv6 address in binary form.
-- IPv4 addresses are mapped into IPv6 (::ffff:a.b.c.d, RFC 4291 §2.5.5.2), so
-- "10.0.0.1" and "::ffff:10.0.0.1" (how a dual-stack socket reports an IPv4 peer) are
-- the same address. Strict: dotted-quad decimal only, no zone index ("%eth0").
function M.parse_ip(s)
  if type(s) ~= "string" then return nil, "not an IP address" end
  local v4 = parse_v4(s)
  if v4 then return string.rep("\0", 10) .. "\255\255" .. v4 end
  if not s:find(":", 1, true) or s:find("[^%x:%.]") then return nil, "not an IP address" end
  -- an IPv4 tail ("::ffff:1.2.3.4") counts as two groups
  local tail = ""
  local head, quad = s:match("^(.*:)(%d+%.%d+%.%d+%.%d+)$")
  if head then
    tail = parse_v4(quad)
    if not tail then return nil, "not an IP address" end
    s = head:sub(-2) == "::" and head or head:sub(1, -2)
  end
  local groups_max = tail == "" and 8 or 6
  local function groups(part)
    local g = {}
    if part == "" then return g end
    for item in (part .. ":"):gmatch("([^:]*):") do
      if not item:match("^%x%x?%x?%x?$") then return nil end
      g[#g + 1] = tonumber(item, 16)
    end
    return g
  end
  local left, right
  local l, r = s:match("^(.-)::(.*)$")
  if l then
    if r:find("::", 1, true) then return nil, "not an IP address" end
    left, right = groups(l), groups(r)
    if not left or not right or #left + #right >= groups_max then return nil, "not an IP address" end
    for _ = 1, groups_max - #left - #right do left[#left + 1] = 0 end
    for _, v in ipairs(right) do left[#left + 1] = v end
  else
    left = groups(s)
    if not left or #left ~= groups_max then return nil, "not an IP address" end
  end
  local bytes = {}
  for i, v in ipairs(left) do bytes[i] = string.char(v >> 8, v & 255) end
  return table.concat(bytes) .. tail
end

--- M.cidr_matcher(list) -> function(addr) -> boolean
-- `list` is an array or a comma list of networks: "10.0.0.0/8", "2001:db8::/32", or a
-- single address ("192.0.2.7", "::1"). Bits below the prefix length are ignored
-- ("10.1.2.3/8" is 10.0.0.0/8). IPv4 networks also match IPv4-mapped IPv6 peers.
-- Raises on a malformed entry (a policy bug: caught by `hlsgate --check`). The returned
-- function answers false for anything that is not an IP address.
function M.cidr_matcher(list)
  if type(list) == "string" then list = M.split(list) end
  local nets = {}
  for _, item in ipairs(list or {}) do
    local addr, len = item:match("^([^/]+)/(%d+)$")
    addr = addr or item
    local bin = M.parse_ip(addr)
    if not bin then error(string.format("bad network %q: not an IP address", item), 2) end
    local bits = 128
    if len then
      bits = tonumber(len)
      if not addr:find(":", 1, true) then bits = bits + 96 end -- an IPv4 prefix length
      if bits > 128 then
        error(string.format("bad network %q: prefix length out of range", item), 2)
      end
    end
    local full, rest = bits // 8, bits % 8
    local mask = rest > 0 and (0xff << (8 - rest)) & 0xff or nil
    nets[#nets + 1] = { bin:sub(1, full), full, mask and (bin:byte(full + 1) & mask), mask }
  end
  return function(a)
    local bin = M.parse_ip(a)
    if not bin then return false end
    for _, n in ipairs(nets) do
      if bin:sub(1, n[2]) == n[1] and (not n[4] or (bin:byte(n[2] + 1) & n[4]) == n[3]) then
        return true
      end
    end
    return false
  end
end

--- M.client_address(req, trusted) -> string: the viewer's address.
-- `trusted` is a function (a cidr_matcher) naming the proxies in front of the gateway, or
-- nil. When the TCP peer is one of them, X-Forwarded-For is read from the right: the
-- first address that is not a trusted proxy is the viewer (what a client writes further
-- left is not believed). Without trusted proxies, or from any other peer, req.client.
function M.client_address(req, trusted)
  local addr = req.client
  if not trusted or not trusted(addr) then return addr end
  local hops = M.split(req.headers["x-forwarded-for"])
  for i = #hops, 1, -1 do
    local hop = hops[i]:match("^%[(.*)%]$") or hops[i]
    if not M.parse_ip(hop) then return addr end -- garbage: the last trusted hop is all we know
    if not trusted(hop) then return hop end
    addr = hop
  end
  return addr
end

return M
