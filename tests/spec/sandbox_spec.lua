-- The sandbox's wrappers (src/lua/api_sandbox.c) against the real C functions: each
-- pathological call is refused before it runs ("too expensive", the meter exceeded),
-- while ordinary calls give the same answers as the unwrapped library and cost little.
-- hg._sandbox(budget) exists only in lib/hlsgate.so: the server never exposes it.
local hg = require("hlsgate")

local function clock_ms(fn)
  local t = os.clock()
  local ok, err = pcall(fn)
  return (os.clock() - t) * 1000, ok, err
end

describe("sandbox: pattern functions", function()
  local q = ("a"):rep(3000)

  for _, name in ipairs({ "find", "match", "gmatch", "gsub" }) do
    it("refuses a catastrophic " .. name .. " before running it", function()
      local sb = hg._sandbox(10000000)
      local ms, ok, err = clock_ms(function()
        local r = sb[name](q, "a*a*a*b", name == "gsub" and "x" or nil)
        if name == "gmatch" then r() end
      end)
      assert.is_false(ok)
      assert.matches("pattern too expensive", err)
      assert.is_true(ms < 500, "refused in " .. ms .. " ms")
      -- the meter stays exceeded: any further charge raises too
      assert.has_error(function() sb.find("abc", "b") end)
    end)
  end

  it("gives the library's answers for ordinary patterns, cheaply", function()
    local sb = hg._sandbox(10000000)
    local path = "/v/abc_def/seg/1.ts"
    assert.are.same({ string.match(path, "^/v/([%w_-]+)/(.+)$") }, { sb.match(path, "^/v/([%w_-]+)/(.+)$") })
    assert.are.same({ string.find(path, "seg", 1, true) }, { sb.find(path, "seg", 1, true) })
    assert.are.same({ string.find(path, "%d") }, { sb.find(path, "%d") })
    assert.are.same({ string.gsub("a=1&b=2", "(%w+)=(%w+)", "%2=%1") }, { sb.gsub("a=1&b=2", "(%w+)=(%w+)", "%2=%1") })
    local got = {}
    for k, v in sb.gmatch("a=1&b=2", "([^&=]+)=([^&]*)") do got[#got + 1] = k .. v end
    assert.are.same({ "a1", "b2" }, got)
    assert.is_true(sb.used() < 1000, "used " .. sb.used())
  end)

  it("bounds long but linear scans by their length", function()
    local url = "/proxy?url=" .. ("h%3A"):rep(2000) .. "&x=1"
    local sb = hg._sandbox(10000000)
    for _ in sb.gmatch(url, "[^&]+") do end
    assert.is_true(sb.used() < 20000, "used " .. sb.used())
    assert.is_truthy(sb.match(url, "^(.-)%?(.*)$"))
    assert.is_true(sb.used() < 40000, "used " .. sb.used())
  end)

  it("has a cost bound that grows with quantifiers and subject length", function()
    assert.is_true(hg._sandbox(1).cost(("a"):rep(3000), "a*a*a*b") > 1e10)
    assert.is_true(hg._sandbox(1).cost(("a"):rep(20), "a*a*a*b") < 1e6)
    assert.is_true(hg._sandbox(1).cost(("x"):rep(8000), "^/v/([%w_-]+)/(.+)$") < 1e5)
  end)

  it("counts a malformed pattern as the library raises it", function()
    local sb = hg._sandbox(10000000)
    assert.has_error(function() sb.find("abc", "[a") end, "malformed pattern (missing ']')")
    assert.has_error(function() sb.find("abc", "%") end)
  end)
end)

describe("sandbox: other C loops", function()
  it("answers rep of an empty string at once, and charges the others", function()
    local sb = hg._sandbox(10000000)
    local ms, ok = clock_ms(function() return sb.rep("", 1e15) end)
    assert.is_true(ok)
    assert.is_true(ms < 100)
    assert.are.equal("", sb.rep("", 1e15))
    assert.are.equal("ababab", sb.rep("ab", 3))
    assert.has_error(function() sb.rep("x", 1e12) end)
  end)

  it("charges table.concat and table.unpack by their range", function()
    local sb = hg._sandbox(1000000)
    assert.are.equal("a,b", sb.concat({ "a", "b" }, ","))
    local ms, ok, err = clock_ms(function()
      return sb.concat(setmetatable({}, { __index = function() return "" end }), "", 1, 1e12)
    end)
    assert.is_false(ok)
    assert.matches("too expensive", err)
    assert.is_true(ms < 100)
    assert.has_error(function() hg._sandbox(1000).unpack({}, 1, 1e6) end)
  end)

  it("charges every comparison of table.sort and still sorts", function()
    local sb = hg._sandbox(10000000)
    local t = { 5, 3, 9, 1 }
    sb.sort(t)
    assert.are.same({ 1, 3, 5, 9 }, t)
    sb.sort(t, function(a, b) return a > b end)
    assert.are.same({ 9, 5, 3, 1 }, t)
    local used = sb.used()
    assert.is_true(used >= 4 and used < 100)
    -- long strings: each comparison costs their length
    local big = {}
    for i = 1, 200 do big[i] = ("x"):rep(100000) .. (i % 7) end
    assert.has_error(function() hg._sandbox(100000).sort(big) end)
  end)

  it("lets an inconsistent comparator fail, not loop", function()
    local sb = hg._sandbox(10000000)
    local t = {}
    for i = 1, 1000 do t[i] = i end
    local ms = clock_ms(function() sb.sort(t, function() return true end) end)
    assert.is_true(ms < 1000)
  end)
end)
