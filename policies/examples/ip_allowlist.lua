-- policies/examples/ip_allowlist.lua — the default policy (both recipes), but only for
-- clients in the given networks; everyone else gets 403.
--
--   HLSGATE_ALLOW_CIDRS="10.0.0.0/8,192.168.0.0/16,2001:db8::/32"   default: loopback only
--
-- IPv4 networks also match IPv4-mapped IPv6 peers (::ffff:10.1.2.3). `req.client` is the
-- TCP peer: behind a load balancer, that is the balancer, so list its address (and do the
-- viewer filtering there) rather than trusting X-Forwarded-For, which a client can forge.
local util = require("hlsgate.util")
local private_bucket = require("hlsgate.private_bucket")
local open_proxy = require("hlsgate.open_proxy")

local allowed = util.cidr_matcher(util.env("HLSGATE_ALLOW_CIDRS", "127.0.0.0/8,::1"))

local route = util.router({
  { prefix = "/stream/", handler = private_bucket.from_env() },
  { prefix = "/proxy", handler = open_proxy.from_env() },
})

-- No `reuse = true` here (docs/policy-api.md): a reused plan would skip the address check.
return {
  on_request = function(req)
    if not allowed(req.client) then
      local res = util.deny(403, "forbidden")
      res.route = "denied"
      return res
    end
    return route(req)
  end,
}
