-- docs/callouts.md stays true: every Lua block is a verbatim excerpt of a file the tests
-- run (tests/e2e/callouts.test.mjs, tests/e2e/redis.test.mjs), and those policies load
-- (`hlsgate --check`: a callout at load time would fail it).
local H = require("policy_host")

local BIN = "build/hlsgate"
local DOC = H.file("docs/callouts.md")
local SOURCES = { "docs/examples/callouts.lua", "policies/examples/auth_request.lua", "lua/hlsgate/viewers.lua" }
local POLICIES = { "docs/examples/callouts.lua", "policies/examples/auth_request.lua" }

describe("docs/callouts.md", function()
  local texts = {}
  for _, f in ipairs(SOURCES) do texts[#texts + 1] = H.file(f) end

  it("has Lua blocks that are excerpts of tested files", function()
    local n = 0
    for info, body in DOC:gmatch("\n```(%w*)\n(.-)\n```") do
      if info == "lua" then
        n = n + 1
        local found = false
        for _, t in ipairs(texts) do found = found or t:find(body, 1, true) ~= nil end
        assert.is_true(found, "not an excerpt of " .. table.concat(SOURCES, ", ") .. ":\n" .. body)
      end
    end
    assert.is_true(n >= 5, "Lua blocks: " .. n)
  end)

  it("names only policies that load", function()
    local f = io.open(BIN, "rb")
    if not f then return pending("no " .. BIN) end
    f:close()
    for _, p in ipairs(POLICIES) do
      local h = io.popen("env -i PATH=/usr/bin:/bin HLSGATE_AUTH_URL=http://127.0.0.1:9/ " .. BIN ..
                         " --check " .. p .. " 2>&1")
      local out = h:read("a")
      assert.is_true(h:close(), p .. ": " .. out)
    end
  end)
end)
