-- policy_host.lua — runs policies in busted against the server's own C code: request
-- tables, plans and playlist rewrites come from hg._host (src/lua/lhost.c: message.c's
-- request table, plan.c's reader, the rewriter with lua/actions.c). Only what the server
-- does outside C is here: a policy file loaded with a chosen environment, and a stand-in
-- for hg.log, which only exists inside the server.
local hg = require("hlsgate")
local host = hg._host

local H = { hg = hg, logs = {} }

if hg.log == nil then
  hg.log = function(level, ...)
    local parts = {}
    for i = 1, select("#", ...) do parts[i] = tostring((select(i, ...))) end
    H.logs[#H.logs + 1] = level .. ": " .. table.concat(parts, " ")
  end
end

--- H.request(method, target [, opts]) -> the request table the server builds.
-- opts: headers ({ Name = value } or a list of { name, value }), body, client, id.
H.request = host.request

function H.get(target, opts) return host.request("GET", target, opts) end

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

--- H.table(res) -> res, or for a frozen plan (hg.plan) a copy of the table it was made
-- from: what a recipe planned, to read in a spec.
H.table = hg.plan_table

--- H.plan(plan) -> what the server reads from a plan (raises with the server's error).
function H.plan(plan)
  return assert(host.to_plan(plan))
end

--- H.apply(plan, body, base_url [, now]) -> out, stats, decisions: the server's rewrite
-- of `body` fetched from base_url; decisions lists { class, action } in document order.
function H.apply(plan, body, base_url, now)
  local out, stats, decisions = host.apply(plan, body, base_url, now)
  assert(out, stats)
  return out, stats, decisions
end

--- H.json(res) -> the decoded body of a JSON response.
function H.json(res)
  return assert(hg.json_decode(res.body))
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
