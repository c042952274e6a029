-- hg.crypto (src/lua/api_crypto.c): hashes, HMAC, hex, base64, random, equals.
-- Expected values are published ones: FIPS 180-2 "abc", RFC 4231 test case 2,
-- RFC 4648 §10, and the RFC 7515 A.1 key of tests/data/conformance/VECTORS.md §2.1.
local hg = require("hlsgate")
local crypto = hg.crypto

describe("hg.crypto", function()
  it("hashes (FIPS 180-2 'abc')", function()
    assert.are.equal("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
      crypto.sha256_hex("abc"))
    assert.are.equal(32, #crypto.sha256("abc"))
    assert.are.equal(crypto.sha256_hex("abc"), crypto.hex(crypto.sha256("abc")))
    assert.are.equal("ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a"
      .. "2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f",
      crypto.hex(crypto.hash("sha512", "abc")))
    assert.are.equal(48, #crypto.hash("SHA-384", "abc"))
    assert.are.equal("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
      crypto.sha256_hex(""))
  end)

  it("computes HMAC (RFC 4231 test case 2)", function()
    local msg = "what do ya want for nothing?"
    assert.are.equal("5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
      crypto.hmac_hex("sha256", "Jefe", msg))
    assert.are.equal("af45d2e376484031617f78d2b58a6b1b9c7ef464f5a01b47e42ec3736322445e"
      .. "8e2240ca5e69e2c78b3239ecfab21649", crypto.hmac_hex("sha384", "Jefe", msg))
    assert.are.equal("164b7a7bfcf819e2e395fbe73b56e0a387bd64222e831fd610270cd7ea250554"
      .. "9758bf75c05a994a6d034f65f8f0e6fdcaeab1a34d4a6b4b636e070a38bce737",
      crypto.hmac_hex("sha512", "Jefe", msg))
    local raw = crypto.hmac("sha256", "Jefe", msg)
    assert.are.equal(32, #raw)
    assert.are.equal(crypto.hmac_hex("sha256", "Jefe", msg), crypto.hex(raw))
    -- binary-safe keys and messages
    assert.are_not.equal(crypto.hmac_hex("sha256", "a\0b", "x"), crypto.hmac_hex("sha256", "a", "x"))
  end)

  it("encodes and decodes base64 and base64url (RFC 4648 §10)", function()
    local plain = { "", "f", "fo", "foo", "foob", "fooba", "foobar" }
    local std = { "", "Zg==", "Zm8=", "Zm9v", "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy" }
    local url = { "", "Zg", "Zm8", "Zm9v", "Zm9vYg", "Zm9vYmE", "Zm9vYmFy" }
    for i = 1, #plain do
      assert.are.equal(std[i], crypto.base64_encode(plain[i]))
      assert.are.equal(plain[i], crypto.base64_decode(std[i]))
      assert.are.equal(url[i], crypto.base64url_encode(plain[i]))
      assert.are.equal(plain[i], crypto.base64url_decode(url[i]))
    end
    assert.are.equal("-_8", crypto.base64url_encode("\251\255"))
    assert.are.equal("+/8=", crypto.base64_encode("\251\255"))
    -- RFC 7515 A.1.1: the JWK "k" decodes to the 64 key bytes (VECTORS.md §2.1)
    local k = crypto.base64url_decode(
      "AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow")
    assert.are.equal("0323354b2b0fa5bc837e0665777ba68f5ab328e6f054c928a90f84b2d2502ebf"
      .. "d3fb5a92d20647ef968ab4c377623d223d2e2172052e4f08c0cd9af567d080a3", crypto.hex(k))
  end)

  it("rejects non-strict base64 with nil, err", function()
    for _, s in ipairs({ "Zg", "Zg=", "Zm9v\n", "Zh==", "Zm9v-_", "Zm=v" }) do
      local v, err = crypto.base64_decode(s)
      assert.is_nil(v, s)
      assert.are.equal("invalid base64", err)
    end
    for _, s in ipairs({ "Zg==", "Zm9v+/", "Z", "Zh", "Zm9v Yg",
      "kuBp8OFyoS9IKWsV82wRF5freNkJyeV_v7KfQ09Sg2B" }) do -- VECTORS.md §2.3 T26 signature
      local v, err = crypto.base64url_decode(s)
      assert.is_nil(v, s)
      assert.are.equal("invalid base64url", err)
    end
  end)

  it("returns random bytes", function()
    assert.are.equal("", crypto.random(0))
    local a, b = crypto.random(32), crypto.random(32)
    assert.are.equal(32, #a)
    assert.are_not.equal(a, b)
    assert.are.equal(1048576, #crypto.random(1048576))
  end)

  it("compares in constant time", function()
    assert.is_true(crypto.equals("abc", "abc"))
    assert.is_false(crypto.equals("abc", "abd"))
    assert.is_false(crypto.equals("abc", "abcd"))
    assert.is_true(crypto.equals("", ""))
    local mac = crypto.hmac("sha256", "k", "m")
    assert.is_true(crypto.equals(mac, crypto.hmac("sha256", "k", "m")))
  end)

  it("raises on misuse", function()
    assert.has_error(function() crypto.hmac("md5", "k", "m") end)
    assert.has_error(function() crypto.hmac("sha256", "k") end)
    assert.has_error(function() crypto.hash("sha1", "x") end)
    assert.has_error(function() crypto.sha256({}) end)
    assert.has_error(function() crypto.random(-1) end)
    assert.has_error(function() crypto.random(1048577) end)
    assert.has_error(function() crypto.random("x") end)
    assert.has_error(function() crypto.equals("a") end)
    assert.has_error(function() crypto.base64_decode(nil) end)
  end)
end)

describe("docs/lua-api-crypto.md", function()
  it("the examples of docs/lua-api-crypto.md run", function()
    local fh = assert(io.open("docs/lua-api-crypto.md", "rb"))
    local doc = fh:read("a")
    fh:close()
    local n = 0
    for block in doc:gmatch("```lua\n(.-)```") do
      n = n + 1
      local env = setmetatable({ hg = hg }, { __index = _G })
      local chunk = assert(load(block, "=docs example " .. n, "t", env))
      local ok, err = pcall(chunk)
      assert(ok, "docs example " .. n .. ": " .. tostring(err))
    end
    assert.is_true(n >= 10)
  end)
end)
