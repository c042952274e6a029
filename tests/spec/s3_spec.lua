-- hg.s3 (src/lua/api_s3.c) against tests/data/conformance/VECTORS.md §1.4 (S3 API
-- Reference examples) and §1.6 (path-style with a non-default port).
local hg = require("hlsgate")
local s3 = hg.s3

local shared = os.getenv("HG_SHARED_DIR") or "tests/data"
local f = assert(io.open(shared .. "/conformance/VECTORS.md", "rb"))
local vectors = f:read("a")
f:close()

-- §1.4 credentials
local function doc(extra)
  local o = {
    endpoint = "https://s3.amazonaws.com", bucket = "examplebucket", key = "test.txt",
    path_style = false, access_key = "AKIAIOSFODNN7EXAMPLE",
    secret_key = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", region = "us-east-1",
    time = "20130524T000000Z",
  }
  for k, v in pairs(extra or {}) do o[k] = v end
  return o
end

-- §1.6 credentials
local function local_server(extra)
  local o = {
    endpoint = "http://127.0.0.1:4568", bucket = "hls-bucket", key = "video/seg 001.ts",
    access_key = "S3RVER", secret_key = "S3RVER", time = "2025-01-01T00:00:00Z",
  }
  for k, v in pairs(extra or {}) do o[k] = v end
  return o
end

describe("hg.s3.presign", function()
  it("reproduces the S3 documentation presigned URL (§1.4.1)", function()
    local want = assert(vectors:match("f604d404`%. URL:\n```\n([^\n]+)\n```"))
    assert.are.equal(want, s3.presign(doc({ expires = 86400 })))
    -- unix time works the same as ISO 8601
    assert.are.equal(want, s3.presign(doc({ expires = 86400, time = 1369353600 })))
  end)

  it("reproduces the path-style rows of §1.6", function()
    local url = s3.presign(local_server({ expires = 3600 }))
    assert.are.equal("http://127.0.0.1:4568/hls-bucket/video/seg%20001.ts?X-Amz-Algorithm=AWS4-HMAC-SHA256"
      .. "&X-Amz-Credential=S3RVER%2F20250101%2Fus-east-1%2Fs3%2Faws4_request"
      .. "&X-Amz-Date=20250101T000000Z&X-Amz-Expires=3600&X-Amz-SignedHeaders=host"
      .. "&X-Amz-Signature=4482444bc964853210fbdcec0cab333a86b491fe589c30a55b28a62d656f627f", url)
    url = s3.presign(local_server({ key = "a+b/ünï~(1)!*'.m3u8", expires = 600 }))
    assert.truthy(url:find("/hls-bucket/a%2Bb/%C3%BCn%C3%AF~%281%29%21%2A%27.m3u8?", 1, true))
    assert.truthy(url:find("X-Amz-Signature=172b7daaf139f64a8d574529abe3403c025f78e9ee1f1a9349911b537c7735ba", 1, true))
  end)

  it("signs for the public endpoint when given one", function()
    local url = s3.presign(local_server({ public_endpoint = "https://cdn.example.com" }))
    assert.truthy(url:find("^https://cdn%.example%.com/hls%-bucket/video/seg%%20001%.ts%?"))
  end)

  it("puts the session token in the signed query and adds extra parameters", function()
    local url = s3.presign(local_server({ session_token = "tok/+=",
      query = { ["response-content-type"] = "video/mp2t" } }))
    assert.truthy(url:find("&X-Amz-Security-Token=tok%2F%2B%3D&", 1, true))
    assert.truthy(url:find("&response-content-type=video%2Fmp2t&X-Amz-Signature=", 1, true))
    assert.are_not.equal(url, s3.presign(local_server({ session_token = "tok/+=" })))
  end)

  it("defaults: path-style, us-east-1, 3600 s, GET", function()
    local url = s3.presign({ endpoint = "http://minio:9000", bucket = "b", key = "k",
      access_key = "a", secret_key = "s", time = 0 })
    assert.truthy(url:find("^http://minio:9000/b/k%?"))
    assert.truthy(url:find("%%2Fus%-east%-1%%2Fs3%%2Faws4_request"))
    assert.truthy(url:find("X-Amz-Expires=3600&", 1, true))
    assert.truthy(url:find("X-Amz-Date=19700101T000000Z", 1, true))
  end)

  it("keeps working across many credential sets (signer cache eviction)", function()
    local first = s3.presign(local_server())
    for i = 1, 20 do
      local url = s3.presign(local_server({ access_key = "AK" .. i, secret_key = "SK" .. i }))
      assert.truthy(url:find("X-Amz-Credential=AK" .. i .. "%2F", 1, true))
    end
    assert.are.equal(first, s3.presign(local_server()))
  end)

  it("returns nil, err for a request the signer refuses", function()
    local url, err = s3.presign(local_server({ endpoint = "ftp://x" }))
    assert.is_nil(url)
    assert.is_string(err)
    assert.is_nil(s3.presign(local_server({ bucket = "a/b" })))
    assert.is_nil(s3.presign(local_server({ path_style = false, bucket = "Upper" })))
    assert.is_nil(s3.presign(local_server({ query = { ["X-Amz-Expires"] = "1" } })))
  end)

  it("raises on misuse", function()
    assert.has_error(function() s3.presign() end)
    assert.has_error(function() s3.presign(local_server({ endpoint = false })) end)
    assert.has_error(function() s3.presign(local_server({ expires = 0 })) end)
    assert.has_error(function() s3.presign(local_server({ expires = 604801 })) end)
    assert.has_error(function() s3.presign(local_server({ expires = 1.5 })) end)
    assert.has_error(function() s3.presign(local_server({ method = "PUT" })) end)
    assert.has_error(function() s3.presign(local_server({ time = "yesterday" })) end)
    assert.has_error(function() s3.presign(local_server({ bukcet = "x" })) end)
    assert.has_error(function() s3.presign(local_server({ region = "us east" })) end)
    assert.has_error(function() s3.presign(local_server({ headers = { range = "bytes=0-1" } })) end)
    assert.has_error(function() s3.presign(local_server({ query = { a = 1 } })) end)
    local o = local_server()
    o.secret_key = nil
    assert.has_error(function() s3.presign(o) end)
  end)
end)

describe("hg.s3.sign_headers", function()
  it("reproduces the S3 documentation GET Object signature (§1.4.2)", function()
    local h, url = s3.sign_headers(doc({ headers = { Range = "bytes=0-9" } }))
    assert.are.equal("https://examplebucket.s3.amazonaws.com/test.txt", url)
    assert.are.equal("AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, "
      .. "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, "
      .. "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41", h.authorization)
    assert.are.equal("examplebucket.s3.amazonaws.com", h.host)
    assert.are.equal("20130524T000000Z", h["x-amz-date"])
    assert.are.equal("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
      h["x-amz-content-sha256"])
    assert.are.equal("bytes=0-9", h.Range)
    assert.is_nil(h["x-amz-security-token"])
  end)

  it("reproduces §1.6 header rows (non-default port in Host)", function()
    local h, url = s3.sign_headers(local_server())
    assert.are.equal("http://127.0.0.1:4568/hls-bucket/video/seg%20001.ts", url)
    assert.are.equal("127.0.0.1:4568", h.host)
    assert.truthy(h.authorization:find("Signature=9242b4155ccba09e2cc412c137361dac55fa06f5254c01a07ee53c143f736a8a$"))
    h = s3.sign_headers(local_server({ payload_hash = "UNSIGNED-PAYLOAD" }))
    assert.truthy(h.authorization:find("Signature=18a985bb36b2b5d60b7b35531163f811a84c38ccc646106118f3a973a2804010$"))
    assert.are.equal("UNSIGNED-PAYLOAD", h["x-amz-content-sha256"])
  end)

  it("signs the session token header and ignores public_endpoint", function()
    local h, url = s3.sign_headers(local_server({ session_token = "T", public_endpoint = "https://cdn" }))
    assert.are.equal("T", h["x-amz-security-token"])
    assert.truthy(h.authorization:find("SignedHeaders=host;x-amz-content-sha256;x-amz-date;x-amz-security-token,", 1, true))
    assert.truthy(url:find("^http://127%.0%.0%.1:4568/"))
  end)

  it("returns nil, err for headers it refuses", function()
    local h, err = s3.sign_headers(local_server({ headers = { ["X-Amz-Date"] = "x" } }))
    assert.is_nil(h)
    assert.is_string(err)
    assert.is_nil(s3.sign_headers(local_server({ headers = { a = "b\r\nc: d" } })))
  end)
end)
