-- hg.jwt (src/lua/api_jwt.c) against tests/data/conformance/VECTORS.md §2: the RFC 7515
-- A.1 token with a fixed clock, the RFC 7519 unsecured token, and every attack token of
-- §2.3 (read from the file, so the tokens are the published ones).
local hg = require("hlsgate")
local jwt, crypto = hg.jwt, hg.crypto

local shared = os.getenv("HG_SHARED_DIR") or "tests/data"
local f = assert(io.open(shared .. "/conformance/VECTORS.md", "rb"))
local vectors = f:read("a")
f:close()

local function attack(n)
  return assert(vectors:match("\n| T" .. n .. " |[^\n]*`([^`\n]*)` |"), "T" .. n)
end

-- RFC 7515 A.1.1: the key is the base64url-decoded JWK "k"
local A1_KEY = crypto.base64url_decode(
  "AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow")

describe("hg.jwt.verify", function()
  local a1 = assert(vectors:match("%* Compact serialization:%s*\n%s*`([^`]+)`"))

  it("verifies RFC 7515 A.1 with a fixed clock", function()
    local claims, err = jwt.verify(a1, A1_KEY, { alg = "HS256", now = 1300819379 })
    assert.is_nil(err)
    assert.are.equal("joe", claims.iss)
    assert.are.equal(1300819380, claims.exp)
    assert.are.equal("integer", math.type(claims.exp))
    assert.is_true(claims["http://example.com/is_root"])
  end)

  it("rejects A.1 on or after exp, unless within the leeway", function()
    local c, err = jwt.verify(a1, A1_KEY, { alg = "HS256", now = 1300819380 })
    assert.is_nil(c)
    assert.are.equal("token expired", err)
    assert.is_nil(jwt.verify(a1, A1_KEY, { alg = "HS256" })) -- real clock: long expired
    assert.is_table(jwt.verify(a1, A1_KEY, { alg = "HS256", now = 1300819380 + 29, leeway = 30 }))
    assert.is_nil(jwt.verify(a1, A1_KEY, { alg = "HS256", now = 1300819380 + 30, leeway = 30 }))
  end)

  it("rejects the RFC 7519 §6.1 unsecured token", function()
    local tok = assert(vectors:match("Unsecured JWT example %(`[^`]+`%): `([^`]+)`"))
    local c, err = jwt.verify(tok, A1_KEY, { alg = "HS256", now = 1300819379 })
    assert.is_nil(c)
    assert.are.equal("alg none not allowed", err)
  end)

  it("verifies the jwt.io token with its ASCII secret", function()
    local tok = assert(vectors:match("`your%-256%-bit%-secret`%):\n`([^`]+)`"))
    local c = jwt.verify(tok, "your-256-bit-secret",
      { alg = "HS256", now = 1516239022, require_exp = false })
    assert.are.equal("John Doe", c.name)
    assert.are.equal(1516239022, c.iat)
    local _, err = jwt.verify(tok, "your-256-bit-secret", { alg = "HS256", now = 1516239022 })
    assert.are.equal("exp claim required", err)
    _, err = jwt.verify(tok, "your-256-bit-secret",
      { alg = "HS256", now = 1516239022 + 101, require_exp = false, max_age = 100 })
    assert.are.equal("token too old (max_age)", err)
  end)

  -- §2.3: what a strict HS256-only verifier must do, with the reason we give.
  local expected = {
    [2] = "signature mismatch", [3] = "signature mismatch",
    [4] = "alg none not allowed", [5] = "alg none not allowed", [6] = "alg none not allowed",
    [7] = "alg not allowed", [8] = "alg not allowed",
    [9] = "crit header not supported", [10] = "crit header not supported",
    [11] = "duplicate member in header", [12] = "duplicate member in header",
    [13] = "duplicate member in claims", [14] = "exp is not a number",
    [15] = "exp claim required", [17] = "header is not a JSON object",
    [18] = "claims are not valid JSON", [19] = "alg missing",
    [20] = "malformed base64url in signature", [21] = "malformed base64url in payload",
    [22] = "bad segment count", [23] = "bad segment count",
    [24] = "malformed base64url in signature", [25] = "malformed base64url in signature",
    [26] = "malformed base64url in signature", [27] = "bad signature length",
    [28] = "signature mismatch", [29] = "header is not valid JSON",
  }
  for n = 2, 29 do
    if expected[n] then
      it("rejects attack token T" .. n .. " (" .. expected[n] .. ")", function()
        local c, err = jwt.verify(attack(n), A1_KEY, { alg = "HS256", now = 1300819350 })
        assert.is_nil(c)
        assert.are.equal(expected[n], err)
      end)
    end
  end

  it("accepts T1 exactly in its window and T16's fractional exp", function()
    local t1 = attack(1)
    assert.are.equal("u1", jwt.verify(t1, A1_KEY, { alg = "HS256", now = 1300819300 }).sub)
    assert.is_table(jwt.verify(t1, A1_KEY, { alg = "HS256", now = 1300819379.5 }))
    local _, err = jwt.verify(t1, A1_KEY, { alg = "HS256", now = 1300819380 })
    assert.are.equal("token expired", err)
    _, err = jwt.verify(t1, A1_KEY, { alg = "HS256", now = 1300819299 })
    assert.are.equal("token not yet valid (nbf)", err)
    assert.is_table(jwt.verify(t1, A1_KEY, { alg = "HS256", now = 1300819299, leeway = 1 }))
    local t16 = attack(16)
    local c = jwt.verify(t16, A1_KEY, { alg = "HS256", now = 1300819380.25 })
    assert.are.equal(1300819380.5, c.exp)
    assert.is_nil(jwt.verify(t16, A1_KEY, { alg = "HS256", now = 1300819380.5 }))
    assert.is_table(jwt.verify(attack(15), A1_KEY, { alg = "HS256", now = 0, require_exp = false }))
    -- T7 is a correct HS512 token: fine when the caller pins HS512
    assert.is_table(jwt.verify(attack(7), A1_KEY, { alg = "HS512", now = 1300819350 }))
  end)

  it("raises on misuse", function()
    assert.has_error(function() jwt.verify(a1, A1_KEY) end)                       -- no opts
    assert.has_error(function() jwt.verify(a1, A1_KEY, {}) end)                   -- alg is pinned
    assert.has_error(function() jwt.verify(a1, A1_KEY, { alg = "none" }) end)
    assert.has_error(function() jwt.verify(a1, A1_KEY, { alg = "RS256" }) end)
    assert.has_error(function() jwt.verify(a1, A1_KEY, { alg = "HS256", leway = 5 }) end)
    assert.has_error(function() jwt.verify(a1, A1_KEY, { alg = "HS256", leeway = -1 }) end)
    assert.has_error(function() jwt.verify(a1, A1_KEY, { alg = "HS256", now = "x" }) end)
    assert.has_error(function() jwt.verify(a1, A1_KEY, { alg = "HS256", require_exp = 1 }) end)
    assert.has_error(function() jwt.verify(a1, 42, { alg = "HS256" }) end)
    assert.has_error(function() jwt.verify(a1, { 1 }, { alg = "HS256" }) end)
    assert.has_error(function() jwt.verify(nil, A1_KEY, { alg = "HS256" }) end)
  end)
end)

describe("hg.jwt.sign", function()
  it("round-trips with every HS algorithm", function()
    for _, alg in ipairs({ "HS256", "HS384", "HS512" }) do
      local tok = assert(jwt.sign({ sub = "hls", pfx = "a/b", exp = 2000000000 }, "s3cret", { alg = alg }))
      local c = assert(jwt.verify(tok, "s3cret", { alg = alg, now = 1900000000 }))
      assert.are.same({ sub = "hls", pfx = "a/b", exp = 2000000000 }, c)
      local _, err = jwt.verify(tok, "other", { alg = alg, now = 1900000000 })
      assert.are.equal("signature mismatch", err)
    end
  end)

  it("defaults to HS256 with typ JWT", function()
    local tok = jwt.sign({ exp = 1 }, "k")
    assert.are.equal("eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9", tok:match("^[^.]+"))
  end)

  it("signs a JSON string as given (RFC 7515 A.1 payload octets)", function()
    local payload = '{"iss":"joe",\r\n "exp":1300819380,\r\n "http://example.com/is_root":true}'
    local tok = jwt.sign(payload, A1_KEY)
    assert.are.equal("eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ",
      tok:match("^[^.]+%.([^.]+)"))
    local c, err = jwt.sign('{"a":1,"a":2}', "k")
    assert.is_nil(c)
    assert.are.equal("duplicate member name", err)
    c, err = jwt.sign("[1]", "k")
    assert.is_nil(c)
    assert.are.equal("claims are not a JSON object", err)
  end)

  it("rotates keys by kid", function()
    local keys = { ["2024-a"] = "old-secret", ["2024-b"] = "new-secret" }
    local old = jwt.sign({ exp = 2000000000, v = 1 }, keys, { kid = "2024-a" })
    local new = jwt.sign({ exp = 2000000000, v = 2 }, keys, { kid = "2024-b" })
    assert.are.equal(1, jwt.verify(old, keys, { alg = "HS256", now = 0 }).v)
    assert.are.equal(2, jwt.verify(new, keys, { alg = "HS256", now = 0 }).v)
    -- retire the old key
    local _, err = jwt.verify(old, { ["2024-b"] = "new-secret" }, { alg = "HS256", now = 0 })
    assert.are.equal("unknown kid", err)
    -- kid-less secrets are tried for every token
    assert.is_table(jwt.verify(new, { "x", "new-secret" }, { alg = "HS256", now = 0 }))
    -- a kid picks its key: the right secret under another kid does not verify
    _, err = jwt.verify(new, { ["2024-a"] = "new-secret", ["2024-b"] = "old-secret" },
      { alg = "HS256", now = 0 })
    assert.are.equal("signature mismatch", err)
    -- sign with an array of secrets uses the first
    local t = jwt.sign({ exp = 2000000000 }, { "first", "second" })
    assert.is_table(jwt.verify(t, "first", { alg = "HS256", now = 0 }))
  end)

  it("raises on misuse", function()
    assert.has_error(function() jwt.sign({}, "") end)
    assert.has_error(function() jwt.sign({}, "k", { alg = "none" }) end)
    assert.has_error(function() jwt.sign({}, "k", { algo = "HS256" }) end)
    assert.has_error(function() jwt.sign({}, "k", { kid = 1 }) end)
    assert.has_error(function() jwt.sign({}, { a = "k" }) end)               -- which key?
    assert.has_error(function() jwt.sign({}, { a = "k" }, { kid = "b" }) end)
    assert.has_error(function() jwt.sign(42, "k") end)
    assert.has_error(function() jwt.sign({ f = function() end }, "k") end)    -- not JSON
  end)
end)
