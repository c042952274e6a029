-- hg.plan and hg.plan_table (src/lua/api_plan.c): frozen plans, read by the server's C
-- reader (hg._host) exactly as the tables they were made from.
local H = require("policy_host")
local hg = H.hg

local function plan()
  return { origin = { type = "http", url = "https://o.example/a.m3u8", headers = { Referer = "r" } },
           rewrite = { default = "proxy" }, proxy = { prefix = "http://gw/proxy?url=" },
           headers = { ["Access-Control-Allow-Origin"] = "*" }, cache_ttl = 30, route = "x" }
end

describe("hg.plan", function()
  it("is read by the server as the table it was made from", function()
    assert.are.same(H.plan(plan()), H.plan(hg.plan(plan())))
    assert.matches("^hlsgate%.plan %(https://o%.example/a%.m3u8%)$", tostring(hg.plan(plan())))
  end)

  it("does not see later changes to the table", function()
    local t = plan()
    local p = hg.plan(t)
    t.origin.url = "https://evil.example/"
    t.cache_ttl = 0
    assert.are.equal("https://o.example/a.m3u8", H.plan(p).origin.url)
    assert.are.equal(30, H.plan(p).cache_ttl)
    assert.are.same(plan(), hg.plan_table(p))
  end)

  it("has no fields: reading or setting one raises, pointing at hg.plan_table", function()
    local p = hg.plan(plan())
    assert.has_error(function() return p.origin end)
    assert.has_error(function() p.cache_ttl = 1 end)
    local ok, err = pcall(function() return p.route end)
    assert.is_false(ok)
    assert.matches("hg%.plan_table", err)
    assert.are.equal("hlsgate.plan", getmetatable(p)) -- and its metatable stays ours
    assert.has_error(function() setmetatable(p, {}) end)
  end)

  it("hg.plan_table gives a fresh copy each time, and anything else as it is", function()
    local p = hg.plan(plan())
    local a, b = hg.plan_table(p), hg.plan_table(p)
    assert.are_not.equal(a, b)
    assert.are_not.equal(a.origin, b.origin)
    a.origin.headers.Referer = "changed"
    assert.are.equal("r", hg.plan_table(p).origin.headers.Referer)
    local t = {}
    assert.are.equal(t, hg.plan_table(t))
    assert.is_nil(hg.plan_table(nil))
  end)

  it("raises on what the server would refuse, and on on_uri", function()
    assert.has_error(function() hg.plan({ origin = { type = "ftp" } }) end,
      'hg.plan: origin.type: expected "file", "http" or "s3"')
    local t = plan()
    t.headers = { ["Bad\nName"] = "x" }
    assert.has_error(function() hg.plan(t) end)
    t = plan()
    t.on_uri = function() end
    assert.has_error(function() hg.plan(t) end)
    assert.has_error(function() hg.plan("x") end)
    local deep = plan()
    deep.origin.headers = { a = { b = { c = { d = {} } } } }
    assert.has_error(function() hg.plan(deep) end)
  end)

  it("checks its reuse rule", function()
    assert.is_not_nil(hg.plan(plan(), { vary = { "Origin", "host" }, ttl = 3600, expires = 1 }))
    for _, bad in ipairs({ { ttl = 0 }, { ttl = 3601 }, { ttl = 1.5 }, { expires = 0 },
                           { vary = "origin" }, { vary = { "a b" } }, { vary = { 1 } },
                           { vary = { "a", "b", "c", "d", "e", "f", "g", "h", "i" } }, { varry = {} } }) do
      assert.has_error(function() hg.plan(plan(), bad) end)
    end
  end)

  it("checks a reuse rule's token (param, keys and verify options as hg.jwt.verify takes them)", function()
    local V = { alg = "HS256", leeway = 30 }
    for _, keys in ipairs({ "k", { "k1", "k2" }, { kid1 = "k1" } }) do
      assert.is_not_nil(hg.plan(plan(), { token = { param = "token", keys = keys, verify = V, claims = { "sub", "pfx" } } }))
    end
    assert.is_not_nil(hg.plan(plan(), { token = { param = "t", keys = "k", verify = { alg = "HS512", max_age = 60, require_exp = false } } }))
    for _, bad in ipairs({
      { param = "", keys = "k", verify = V }, { keys = "k", verify = V }, { param = "token", verify = V },
      { param = "token", keys = {}, verify = V }, { param = "token", keys = { 1 }, verify = V },
      { param = "token", keys = "k" }, { param = "token", keys = "k", verify = {} },
      { param = "token", keys = "k", verify = { alg = "none" } }, { param = "token", keys = "k", verify = { alg = "HS256", now = 1 } },
      { param = "token", keys = "k", verify = { alg = "HS256", leewa = 1 } },
      { param = "token", keys = "k", verify = V, claims = "pfx" }, { param = "token", keys = "k", verify = V, claims = { 1 } },
      { param = "token", keys = "k", verify = V, claims = { "a", "b", "c", "d", "e", "f", "g", "h", "i" } },
      { param = "token", keys = "k", verify = V, extra = 1 }, "token",
    }) do
      assert.has_error(function() hg.plan(plan(), { token = bad }) end)
    end
  end)
end)
