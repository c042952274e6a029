-- redis_get.lua — one Redis GET over an OpenResty cosocket, with the connection pool
-- (setkeepalive): what lua-resty-redis does for GET, written out because Debian 12 does
-- not package lua-resty-redis. Used by bench/peers/openresty/redis.conf.in only.
local M = {}

function M.get(host, port, key)
  local sock = ngx.socket.tcp()
  sock:settimeout(1000)
  local ok, err = sock:connect(host, port)
  if not ok then return nil, err end
  ok, err = sock:send("*2\r\n$3\r\nGET\r\n$" .. #key .. "\r\n" .. key .. "\r\n")
  if not ok then return nil, err end
  local line
  line, err = sock:receive("*l")
  if not line then return nil, err end
  local value
  if line:sub(1, 1) == "$" then
    local n = tonumber(line:sub(2))
    if n >= 0 then
      value, err = sock:receive(n + 2)
      if not value then return nil, err end
      value = value:sub(1, n)
    end
  elseif line:sub(1, 1) == "-" then
    return nil, line:sub(2)
  end
  sock:setkeepalive(10000, 32)
  return value
end

return M
