-- hg.url: RFC 3986 parse/resolve, percent-encoding, queries, object keys (src/lua/api_url.c).
local hg = require("hlsgate")
local url = hg.url

-- RFC 3986 §5.4, read from the published table in tests/data/conformance/VECTORS.md §3.
local function rfc_vectors()
  local path = (os.getenv("HG_SHARED_DIR") or "tests/data") .. "/conformance/VECTORS.md"
  local f = assert(io.open(path, "rb"))
  local doc = f:read("a")
  f:close()
  local sec = doc:match("## 3%. RFC 3986.-\n(.-)### 3%.3")
  local base = sec:match("Base URI: `([^`]*)`")
  local rows = {}
  for ref, want in sec:gmatch("\n| `([^`]*)`[^|]*| `([^`]*)`") do
    rows[#rows + 1] = { ref, want }
  end
  return base, rows
end

describe("hg.url.resolve", function()
  it("resolves every RFC 3986 §5.4 example exactly (VECTORS.md §3.1, §3.2)", function()
    local base, rows = rfc_vectors()
    assert.are.equal("http://a/b/c/d;p?q", base)
    assert.are.equal(42, #rows)
    for _, r in ipairs(rows) do
      assert.are.equal(r[2], url.resolve(base, r[1]), "reference " .. r[1])
    end
  end)

  it("handles the HLS cases of VECTORS.md §3.3", function()
    local b = "https://cdn.example.com/live/v1/master.m3u8?token=abc"
    assert.are.equal("https://cdn.example.com/live/v1/seg1.ts", url.resolve(b, "seg1.ts"))
    assert.are.equal("https://cdn.example.com/key.bin", url.resolve(b, "../../../../key.bin"))
    assert.are.equal("https://other.example/a.ts", url.resolve(b, "//other.example/a.ts"))
    assert.are.equal("skd://any", url.resolve(b, "skd://any"))
    assert.are.equal("a:b.ts", url.resolve(b, "a:b.ts"))
  end)

  it("returns nil, err for bad input and raises on misuse", function()
    local v, err = url.resolve("/relative", "g")
    assert.is_nil(v)
    assert.is_string(err)
    assert.is_nil((url.resolve("http://h/", "seg 1.ts")))
    assert.are.equal("http://h/seg%201.ts", url.resolve("http://h/", url.encode("seg 1.ts", "uri")))
    assert.has_error(function() url.resolve("http://h/") end)
    assert.has_error(function() url.resolve({}, "x") end)
  end)
end)

describe("hg.url.parse", function()
  it("returns components, nil for absent ones", function()
    local u = url.parse("https://u:p@[2001:db8::1]:8443/a/b?x=/y?z#f")
    assert.are.same({
      scheme = "https", authority = "u:p@[2001:db8::1]:8443", userinfo = "u:p",
      host = "2001:db8::1", port = 8443, path = "/a/b", query = "x=/y?z", fragment = "f",
      ipv6 = true,
    }, u)
    assert.are.same({ path = "g", query = "" }, url.parse("g?"))
    assert.are.same({ scheme = "http", authority = "h:", host = "h", path = "" }, url.parse("http://h:"))
  end)

  it("rejects what is not a URI reference", function()
    for _, s in ipairs({ "http://h/a b", "http://h:99999/", "http://[::1/", "http://h/%zz",
                         "http://a@b@c/", "http://h/\0" }) do
      local v, err = url.parse(s)
      assert.is_nil(v, s)
      assert.are.equal("parse error", err)
    end
  end)
end)

describe("hg.url.encode / decode", function()
  it("encodes per mode", function()
    assert.are.equal("a%2Fb%20c%2B~", url.encode("a/b c+~"))
    assert.are.equal("a/b%20c%2B~", url.encode("a/b c+~", "path"))
    assert.are.equal("a%2Fb+c%2B~", url.encode("a/b c+~", "form"))
    assert.are.equal("a/b%20c+~?#%41", url.encode("a/b c+~?#%41", "uri"))
    assert.has_error(function() url.encode("x", "nope") end)
    assert.has_error(function() url.encode() end)
  end)

  it("decodes strictly", function()
    assert.are.equal("a b+c/", url.decode("a%20b+c%2f"))
    assert.are.equal("a b c/", url.decode("a%20b+c%2f", "form"))
    assert.are.equal("a\0b", url.decode("a%00b"))
    local v, err = url.decode("a%00b", nil, true)
    assert.is_nil(v)
    assert.is_string(err)
    assert.is_nil((url.decode("%4")))
    assert.is_nil((url.decode("%xy")))
  end)

  it("round-trips every byte", function()
    local all = {}
    for i = 0, 255 do all[#all + 1] = string.char(i) end
    all = table.concat(all)
    assert.are.equal(all, url.decode(url.encode(all)))
    assert.are.equal(all, url.decode(url.encode(all, "form"), "form"))
  end)
end)

describe("hg.url queries", function()
  it("parses pairs, repeated names and bare names", function()
    assert.are.same({ a = "1", b = { "x y", "2" }, c = true, d = "", ["e f"] = "=/?" },
      url.query_parse("a=1&b=x+y&&b=2&c&d=&e%20f=%3D/?"))
    assert.are.same({ a = "x+y" }, url.query_parse("a=x+y", false))
    assert.are.same({}, url.query_parse(""))
    local v, err = url.query_parse("a=%zz")
    assert.is_nil(v)
    assert.is_string(err)
  end)

  it("builds with sorted keys", function()
    assert.are.equal("a=1&b=x%20y&b=2&c&z=%2F", url.query_build({ z = "/", c = true, a = 1, b = { "x y", "2" }, off = false }))
    assert.are.equal("", url.query_build({}))
    assert.has_error(function() url.query_build({ [1] = "x" }) end)
    assert.has_error(function() url.query_build({ a = function() end }) end)
    local t = { ["x y"] = "1", url = "https://h/a.m3u8?k=v" }
    assert.are.same(t, url.query_parse(url.query_build(t)))
  end)

  it("sets one parameter, keeping order and fragment, never twice", function()
    assert.are.equal("/a.m3u8?token=T", url.query_set("/a.m3u8", "token", "T"))
    assert.are.equal("/a.m3u8?x=1&token=T#f", url.query_set("/a.m3u8?x=1#f", "token", "T"))
    assert.are.equal("/a.m3u8?x=1&token=T&y", url.query_set("/a.m3u8?x=1&token=old&y&token=2", "token", "T"))
    assert.are.equal("/proxy?url=https%3A%2F%2Fo%2Fa.m3u8%3Fq%3D1",
      url.query_set("/proxy", "url", "https://o/a.m3u8?q=1"))
    assert.has_error(function() url.query_set("/a", "t\0", "x") end)
  end)
end)

describe("hg.url.join_key / in_scope", function()
  it("joins a prefix and a wire path", function()
    assert.are.equal("videos/abc/v1/seg 1.ts", url.join_key("videos/abc", "/v1//./seg%201.ts"))
  end)

  it("reports traversal (400) apart from out of scope (403)", function()
    for _, p in ipairs({ "../x", "a/../b", "%2e%2e/x", ".%2E/x", "a%2fb", "a%5cb", "a\\b",
                         "a%00", "%252e%252e/x" }) do
      local k, err, code = url.join_key("videos/abc", p)
      assert.is_nil(k, p)
      assert.is_string(err)
      assert.are.equal("traversal", code, p)
    end
    local k, _, code = url.join_key("videos/abc", "/")
    assert.is_nil(k)
    assert.are.equal("scope", code)
    _, _, code = url.join_key("videos/abc", "a%zz")
    assert.are.equal("invalid", code)
    _, _, code = url.join_key("videos/../abc", "a")
    assert.are.equal("prefix", code)
  end)

  it("checks a full key path against a prefix by whole segments", function()
    assert.are.equal("videos/abc/x.ts", url.in_scope("videos/abc", "/videos/abc/x.ts"))
    local k, _, code = url.in_scope("videos/abc", "/videos/abcd/x.ts")
    assert.is_nil(k)
    assert.are.equal("scope", code)
    _, _, code = url.in_scope("videos/abc", "/videos/x/../abc/x.ts")
    assert.are.equal("traversal", code)
  end)
end)

describe("hg.url.origin", function()
  it("describes http(s) destinations", function()
    assert.are.same({ scheme = "https", host = "example.com", port = 443, ipv6 = false, explicit_port = false },
      url.origin("HTTPS://Example.COM/x.m3u8"))
    assert.are.same({ scheme = "http", host = "::1", port = 8080, ipv6 = true, explicit_port = true },
      url.origin("http://[::1]:8080/"))
    local v, err = url.origin("ftp://h/x")
    assert.is_nil(v)
    assert.are.equal("not an http(s) URL", err)
    assert.is_nil((url.origin("http://%6cocalhost/")))
    assert.is_nil((url.origin("/relative")))
  end)
end)

describe("docs/lua-api-url.md", function()
  it("every lua example runs", function()
    local f = assert(io.open("docs/lua-api-url.md", "rb"))
    local doc = f:read("a")
    f:close()
    local n = 0
    for code in doc:gmatch("```lua\n(.-)```") do
      n = n + 1
      local chunk = assert(load(code, "=docs example " .. n))
      chunk()
    end
    assert.is_true(n >= 10)
  end)
end)
