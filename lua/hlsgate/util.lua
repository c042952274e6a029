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
    h["Access-Control-Expose-Headers"] = "Content-Length, Content-Range, Accept-Ranges, X-Request-Id"
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

return M
