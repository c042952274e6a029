-- docs/policies.md stays true: every shipped policy passes `hlsgate --check`, every Lua
-- block of the page is a verbatim excerpt of a tested policy file, every `hlsgate` command
-- runs, and every curl command, replayed as a request table against the policy that owns
-- its path, succeeds.
local H = require("policy_host")
local hg = H.hg

local BIN = "build/hlsgate"
local DOC = H.file("docs/policies.md")
local SECRET = "doc-secret-doc-secret-doc-secret"
local ADMIN = "doc-admin-key"

local POLICIES = {
  "policies/policy.lua", "policies/private_bucket.lua", "policies/open_proxy.lua",
  "policies/examples/rendition_filter.lua", "policies/examples/key_rotation.lua",
  "policies/examples/origin_headers.lua", "policies/examples/ip_allowlist.lua",
  "policies/examples/revocation.lua",
}

local function blocks(lang)
  local out = {}
  for info, body in DOC:gmatch("\n```(%w*)\n(.-)\n```") do
    if info == lang then out[#out + 1] = body end
  end
  return out
end

local function have_binary()
  local f = io.open(BIN, "rb")
  if f then f:close() end
  return f ~= nil
end

local function sh_quote(s) return "'" .. s:gsub("'", "'\\''") .. "'" end

-- Runs a command line of the built binary with a clean environment (no LD_PRELOAD: the
-- binary links its sanitizers itself). Returns ok, output.
local function run(env, args)
  local cmd = { "env -i PATH=/usr/bin:/bin" }
  for k, v in pairs(env) do cmd[#cmd + 1] = k .. "=" .. sh_quote(v) end
  cmd[#cmd + 1] = BIN
  for _, a in ipairs(args) do cmd[#cmd + 1] = sh_quote(a) end
  local p = io.popen(table.concat(cmd, " ") .. " 2>&1")
  local out = p:read("a")
  local ok = p:close()
  return ok, out
end

-- Splits a shell line into words: '…' literal, "…" with \-escapes and $VARS, bare $VARS.
local function words(line, vars)
  local out, i, n = {}, 1, #line
  local function var(name) return assert(vars[name], "no value for $" .. name) end
  while i <= n do
    while i <= n and line:sub(i, i):match("%s") do i = i + 1 end
    if i > n then break end
    local w = {}
    while i <= n and not line:sub(i, i):match("%s") do
      local c = line:sub(i, i)
      if c == "'" then
        local j = assert(line:find("'", i + 1, true), "unterminated '")
        w[#w + 1] = line:sub(i + 1, j - 1)
        i = j + 1
      elseif c == '"' then
        i = i + 1
        while line:sub(i, i) ~= '"' do
          assert(i <= n, 'unterminated "')
          local d = line:sub(i, i)
          if d == "\\" then
            w[#w + 1] = line:sub(i + 1, i + 1)
            i = i + 2
          elseif d == "$" then
            local name = line:match("^[%w_]+", i + 1)
            w[#w + 1] = var(name)
            i = i + 1 + #name
          else
            w[#w + 1] = d
            i = i + 1
          end
        end
        i = i + 1
      elseif c == "$" then
        local name = line:match("^[%w_]+", i + 1)
        w[#w + 1] = var(name)
        i = i + 1 + #name
      else
        w[#w + 1] = c
        i = i + 1
      end
    end
    out[#out + 1] = table.concat(w)
  end
  return out
end

-- The commands of the page's sh blocks (continuation lines joined, comments dropped).
local function commands()
  local out = {}
  for _, b in ipairs(blocks("sh")) do
    for line in (b:gsub("\\\n%s*", " ") .. "\n"):gmatch("([^\n]*)\n") do
      line = line:gsub("%s+#.*$", "")
      if line:match("%S") and not line:match("^%s*#") then out[#out + 1] = line end
    end
  end
  return out
end

describe("docs/policies.md", function()
  it("names every shipped policy, and each passes hlsgate --check", function()
    for _, file in ipairs(POLICIES) do
      assert.truthy(DOC:find(file:match("[^/]+$"), 1, true), file)
    end
    if not have_binary() then
      pending("build/hlsgate is not built")
      return
    end
    for _, file in ipairs(POLICIES) do
      local ok, out = run({}, { "--check", file })
      assert.is_true(ok, out)
      assert.matches(": OK", out)
    end
  end)

  it("shows only Lua that is part of a tested policy file", function()
    local files = {}
    for _, f in ipairs(POLICIES) do files[#files + 1] = H.file(f) end
    local lua = blocks("lua")
    assert.is_true(#lua >= 3)
    for _, b in ipairs(lua) do
      local found = false
      for _, src in ipairs(files) do found = found or src:find(b, 1, true) ~= nil end
      assert.is_true(found, "not in any policy file:\n" .. b)
    end
  end)

  it("has only commands that work: hlsgate and curl", function()
    local vars = {
      HLSGATE_ADMIN_KEY = ADMIN,
      TOKEN = assert(hg.jwt.sign({ sub = "hls", pfx = "videos/abc", exp = os.time() + 600 }, SECRET)),
    }
    local env = {
      HLSGATE_JWT_SECRET = SECRET, HLSGATE_ADMIN_KEY = ADMIN, S3_BUCKET = "media",
      S3_ENDPOINT = "http://minio:9000", AWS_ACCESS_KEY_ID = "a", AWS_SECRET_ACCESS_KEY = "s",
    }
    local owners = {
      { "^/admin/", H.load("policies/examples/revocation.lua", env) },
      { "^/stream/", H.load("policies/private_bucket.lua", env) },
      { "^/proxy", H.load("policies/open_proxy.lua", env) },
    }
    local ran = { hlsgate = 0, curl = 0 }
    for _, line in ipairs(commands()) do
      local w = words(line, vars)
      local cenv = {}
      while w[1] and w[1]:match("^[%u_][%u%d_]*=") do
        local k, v = table.remove(w, 1):match("^([^=]+)=(.*)$")
        cenv[k] = v
      end
      if w[1] == "hlsgate" then
        if have_binary() then
          table.remove(w, 1)
          local ok, out = run(cenv, w)
          assert.is_true(ok, line .. "\n" .. out)
          if w[1] == "token" then -- the output the page shows
            local t = out:match("^token:      (%S+)\nexpires_at: %d+\nurl:        /stream/hls/[^?]+%?token=%S+\n$")
            assert.truthy(t, out)
            assert.truthy(DOC:find("```text\ntoken:      eyJ", 1, true))
            assert.are.equal("videos/abc", hg.jwt.verify(t, cenv.HLSGATE_JWT_SECRET, { alg = "HS256" }).pfx)
          end
        end
        ran.hlsgate = ran.hlsgate + 1
      elseif w[1] == "curl" then
        local method, headers, body, url = nil, {}, nil, nil
        local i = 2
        while w[i] do
          local a = w[i]
          if a == "-X" then method = w[i + 1]; i = i + 1
          elseif a == "-H" then
            local k, v = w[i + 1]:match("^([^:]+):%s*(.*)$")
            headers[k] = v
            i = i + 1
          elseif a == "-d" or a == "--data" then body = w[i + 1]; i = i + 1
          elseif a == "-s" or a == "-i" then -- output options
          elseif a:match("^https?://") then url = a
          else error("curl option not understood by this spec: " .. a) end
          i = i + 1
        end
        local target = assert(url, line):match("^https?://[^/]+(/.*)$")
        local req = H.request(method or (body and "POST" or "GET"), target, { headers = headers, body = body })
        local res
        for _, o in ipairs(owners) do
          if req.path:match(o[1]) then res = H.table(o[2](req)); break end
        end
        assert.is_table(res, line)
        assert.is_true(res.origin ~= nil or (res.status >= 200 and res.status < 300), line .. "\n" .. tostring(res.body))
        ran.curl = ran.curl + 1
      else
        error("docs/policies.md: untested command in a sh block: " .. line)
      end
    end
    assert.is_true(ran.hlsgate >= 1 and ran.curl >= 3)
  end)
end)
