-- Signed child URLs of the open proxy recipe (issue 11, item 9): M.sign_url (what an
-- operator's app uses for entry URLs) agrees with the recipe's check, and the check
-- refuses what it must. The core's signer is covered end to end in
-- tests/e2e/open_proxy_signed.test.mjs against the same HMAC computed by Node.
local H = require("policy_host")
local hg = H.hg
local open_proxy = require("hlsgate.open_proxy")

local KEY = "sign-key-0123456789abcdef"
local URL = "https://cdn.example.com/live/master.m3u8"

describe("open proxy signed URLs", function()
  local handle = open_proxy.new({ sign_key = KEY, sign_ttl = 600, public_url = "https://gw.example" })
  local function status(target)
    local res = H.table(handle(H.get(target)))
    return res.origin and "plan" or res.status, res
  end

  it("sign_url: exp on a TTL boundary, sig = base64url(HMAC-SHA256(key, exp\\nurl)), url last", function()
    local u = open_proxy.sign_url("https://gw.example/proxy", URL, KEY, 600, 1700000000)
    local exp, sig, enc = u:match("^https://gw%.example/proxy%?exp=(%d+)&sig=([%w_-]+)&url=(.+)$")
    assert.are.equal("1700001000", exp) -- (1700000000 // 600 + 2) * 600
    assert.are.equal(hg.crypto.base64url_encode(hg.crypto.hmac("sha256", KEY, exp .. "\n" .. URL)), sig)
    assert.are.equal(URL, hg.url.decode(enc))
  end)

  it("accepts what sign_url signs; the plan signs children and writes no key", function()
    local u = open_proxy.sign_url("/proxy", URL, KEY, 600)
    local st, plan = status(u)
    assert.are.equal("plan", st)
    assert.are.same({ secret = KEY, ttl = 600 }, plan.proxy.sign)
    assert.is_nil(plan.proxy.params)
    assert.is_true(plan.cache_ttl <= 300) -- never outlives its children's signatures
  end)

  it("403 for tampered, expired or malformed; 401 for none", function()
    local u = open_proxy.sign_url("/proxy", URL, KEY, 600)
    assert.are.equal(403, status(u:gsub("master", "other")))
    local i = u:find("sig=", 1, true) + 4
    local flipped = u:sub(1, i - 1) .. (u:sub(i, i) == "A" and "B" or "A") .. u:sub(i + 1)
    assert.are.equal(403, status(flipped))
    assert.are.equal(403, status(open_proxy.sign_url("/proxy", URL, KEY, 600, os.time() - 2000)))
    assert.are.equal(403, status(open_proxy.sign_url("/proxy", URL, "another-key-0123456789", 600)))
    assert.are.equal(403, status(u:gsub("exp=%d+", "exp=1e9")))
    assert.are.equal(403, status(u:gsub("&sig=[^&]+", "")))
    assert.are.equal(401, status("/proxy?url=" .. hg.url.encode(URL)))
  end)

  it("accepts the child URLs the server signs, and only as signed", function()
    local st, plan = status(open_proxy.sign_url("/proxy", URL, KEY, 600))
    assert.are.equal("plan", st)
    local body = '#EXTM3U\n#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="a",NAME="a",URI="audio/index.m3u8"\n' ..
      '#EXT-X-STREAM-INF:BANDWIDTH=1,AUDIO="a"\nlow/index.m3u8\n'
    local out, stats = H.apply(plan, body, URL) -- the server's rewrite, with its signer
    assert.are.equal(2, stats.replaced)
    local n = 0
    for child in out:gmatch("https://gw%.example(/proxy%?[^\n\"]+)") do
      n = n + 1
      assert.matches("^/proxy%?exp=%d+&sig=[%w_-]+&url=", child)
      local cst, cplan = status(child)
      assert.are.equal("plan", cst, child)
      assert.matches("^https://cdn%.example%.com/live/[%w/]+/index%.m3u8$", cplan.origin.url)
      assert.are.equal(403, status((child:gsub("index", "other"))))
    end
    assert.are.equal(2, n)
  end)

  it("refuses a signing key shorter than 16 bytes at load", function()
    assert.has_error(function() open_proxy.new({ sign_key = "short" }) end)
  end)
end)
