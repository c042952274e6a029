-- The playlist rewriter as policies see it: hg.hls.* (src/lua/api_hls.c,
-- docs/playlist-rewriting.md).
local hg = require("hlsgate")

local BASE = "https://origin.example.com/vod/master.m3u8?token=abc"

local MASTER = table.concat({
  "#EXTM3U",
  "#EXT-X-SESSION-KEY:METHOD=AES-128,URI=\"keys/k1.bin\"",
  "#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"aac\",NAME=\"English\",URI=\"audio/en.m3u8\"",
  "#EXT-X-STREAM-INF:BANDWIDTH=1280000,RESOLUTION=640x360,AUDIO=\"aac\"",
  "low/index.m3u8",
  "#EXT-X-STREAM-INF:BANDWIDTH=7680000,RESOLUTION=1920x1080,AUDIO=\"aac\"",
  "hi/index.m3u8",
  "#EXT-X-I-FRAME-STREAM-INF:BANDWIDTH=86000,URI=\"low/iframe.m3u8\"",
}, "\r\n") -- CRLF on purpose, and no final newline

local MEDIA = table.concat({
  "#EXTM3U",
  "#EXT-X-TARGETDURATION:4",
  "#EXT-X-KEY:METHOD=AES-128,URI=\"../keys/k1.bin\"",
  "#EXT-X-KEY:METHOD=SAMPLE-AES,URI=\"skd://asset\"",
  "#EXT-X-MAP:URI=\"init.mp4\"",
  "#EXTINF:4.0,",
  "#EXT-X-BYTERANGE:100@0",
  "s1.m4s?v=1",
  "#EXT-X-PART:DURATION=1,URI=\"s2.p1.m4s\"",
  "#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"s2.p2.m4s\"",
  "",
}, "\n")

local function proxy(url)
  return "https://gw.example/proxy?url=" .. hg.url.encode(url)
end

describe("hg.hls", function()
  it("detects playlists", function()
    assert.is_true(hg.hls.is_playlist("#EXTM3U\n"))
    assert.is_true(hg.hls.is_playlist("\239\187\191# comment\n#EXTM3U"))
    assert.is_false(hg.hls.is_playlist("<html>"))
    assert.is_false(hg.hls.is_playlist(""))
    assert.has_error(function() hg.hls.is_playlist() end)
  end)

  it("lists the URI classes and parses attribute lists", function()
    assert.are.equal("playlist", hg.hls.classes[1])
    assert.are.equal(14, #hg.hls.classes)
    local a = hg.hls.parse_attrs('BANDWIDTH=1, CODECS="a,b",URI="x.m3u8",URI="second"')
    assert.are.same({ BANDWIDTH = "1", CODECS = "a,b", URI = "x.m3u8" }, a)
  end)

  it("keeps every byte with a keep rule", function()
    local out, st = hg.hls.rewrite(MASTER, BASE, { default = "keep" })
    assert.are.equal(MASTER, out)
    assert.are.equal(5, st.uris)
    assert.are.equal(0, st.replaced)
    local out2 = hg.hls.rewrite(MEDIA, BASE, {})
    assert.are.equal(MEDIA, out2)
  end)

  it("applies per-class rules with fallbacks", function()
    local seen = {}
    local out, st = hg.hls.rewrite(MASTER, BASE, {
      playlist = function(url, info)
        seen[#seen + 1] = info.class .. " " .. url
        return proxy(url)
      end,
      key = "absolute",
    })
    -- iframe_playlist fell back to playlist, session_key to key.
    assert.are.same({
      "playlist https://origin.example.com/vod/audio/en.m3u8",
      "playlist https://origin.example.com/vod/low/index.m3u8",
      "playlist https://origin.example.com/vod/hi/index.m3u8",
      "iframe_playlist https://origin.example.com/vod/low/iframe.m3u8",
    }, seen)
    assert.are.equal(5, st.replaced)
    assert.are.equal(1, st.by_class.session_key)
    assert.truthy(out:find('URI="https://origin.example.com/vod/keys/k1.bin"\r\n', 1, true))
    assert.truthy(out:find("\r\nhttps://gw.example/proxy?url=https%3A%2F%2Forigin.example.com%2Fvod%2Fhi%2Findex.m3u8\r\n", 1, true))
  end)

  it("gives a decide function the url and an info table", function()
    local infos = {}
    hg.hls.rewrite(MEDIA, "https://origin.example.com/vod/720p/index.m3u8", function(url, info)
      info.url_arg = url
      infos[#infos + 1] = info
    end)
    assert.are.equal(5, #infos) -- the skd:// key is never offered
    local key, map, seg, part, hint = table.unpack(infos)
    assert.are.same({ class = "key", uri = "../keys/k1.bin", url = "https://origin.example.com/vod/keys/k1.bin",
      tag = "EXT-X-KEY", attr = "URI", line = 3, byterange = false,
      attrs = { METHOD = "AES-128", URI = "../keys/k1.bin" },
      url_arg = "https://origin.example.com/vod/keys/k1.bin" }, key)
    assert.are.equal("map", map.class)
    assert.are.equal("segment", seg.class)
    assert.are.equal("EXTINF", seg.tag)
    assert.is_nil(seg.attr)
    assert.is_nil(seg.attrs)
    assert.is_true(seg.byterange)
    assert.are.equal("https://origin.example.com/vod/720p/s1.m4s?v=1", seg.url)
    assert.are.equal("part", part.class)
    assert.are.equal("preload_hint", hint.class)
    assert.are.equal("PART", hint.attrs.TYPE)
  end)

  it("makes a session key the same URL as the media playlist's key", function()
    local rules = { key = function(url) return proxy(url) end }
    local master = hg.hls.rewrite(MASTER, BASE, rules)
    local media = hg.hls.rewrite(MEDIA, "https://origin.example.com/vod/720p/index.m3u8", rules)
    local want = 'URI="' .. proxy("https://origin.example.com/vod/keys/k1.bin") .. '"'
    assert.truthy(master:find(want, 1, true))
    assert.truthy(media:find(want, 1, true))
  end)

  it("drops variants by their attributes, with their tags", function()
    local out, st = hg.hls.rewrite(MASTER, BASE, {
      playlist = function(_, info)
        if info.tag == "EXT-X-STREAM-INF" and tonumber(info.attrs.BANDWIDTH) > 2000000 then return "drop" end
      end,
      iframe_playlist = "drop",
    })
    assert.are.equal(table.concat({
      "#EXTM3U",
      "#EXT-X-SESSION-KEY:METHOD=AES-128,URI=\"keys/k1.bin\"",
      "#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"aac\",NAME=\"English\",URI=\"audio/en.m3u8\"",
      "#EXT-X-STREAM-INF:BANDWIDTH=1280000,RESOLUTION=640x360,AUDIO=\"aac\"",
      "low/index.m3u8",
      "",
    }, "\r\n"), out)
    assert.are.equal(2, st.dropped)
  end)

  it("returns a replacement string as is, escaping only what would break the line", function()
    local out = hg.hls.rewrite(MEDIA, BASE, {
      default = function(url) return url .. '?q="x"' end,
    })
    assert.truthy(out:find('URI="https://origin.example.com/vod/init.mp4?q=%22x%22"', 1, true))
    assert.truthy(out:find('\nhttps://origin.example.com/vod/s1.m4s?v=1?q="x"\n', 1, true))
  end)

  it("returns nil, err for data it cannot rewrite", function()
    local out, err = hg.hls.rewrite("<html></html>", BASE, {})
    assert.is_nil(out)
    assert.are.equal("not a playlist", err)
    out, err = hg.hls.rewrite(MASTER, "not a url", {})
    assert.is_nil(out)
    assert.are.equal("invalid base URL", err)
  end)

  it("raises on policy mistakes", function()
    assert.has_error(function() hg.hls.rewrite(MASTER, BASE, { segments = "keep" }) end,
      "hg.hls.rewrite: unknown URI class 'segments'")
    assert.has_error(function() hg.hls.rewrite(MASTER, BASE, { segment = "proxy" }) end)
    assert.has_error(function() hg.hls.rewrite(MASTER, BASE, { segment = 42 }) end)
    assert.has_error(function() hg.hls.rewrite(MASTER, BASE, "keep") end)
    assert.has_error(function() hg.hls.rewrite(MEDIA, BASE, { key = "drop" }) end,
      "hg.hls.rewrite: a key cannot be dropped (the playlist would not play)")
    assert.has_error(function() hg.hls.rewrite(MEDIA, BASE, { map = function() return "drop" end }) end)
    assert.has_error(function() hg.hls.rewrite(MEDIA, BASE, function() return {} end) end)
    assert.has_error(function() hg.hls.rewrite(MEDIA, BASE, function() return "" end) end)
  end)

  it("propagates errors raised by a decide function, unchanged", function()
    local obj = { code = 42 }
    local ok, err = pcall(hg.hls.rewrite, MEDIA, BASE, function() error(obj) end)
    assert.is_false(ok)
    assert.are.equal(obj, err)
    ok, err = pcall(hg.hls.rewrite, MEDIA, BASE, { segment = function() error("boom") end })
    assert.is_false(ok)
    assert.truthy(tostring(err):find("boom", 1, true))
    -- The module is still usable afterwards.
    assert.are.equal(MEDIA, (hg.hls.rewrite(MEDIA, BASE, {})))
  end)

  it("allows a rewrite from inside a decide function", function()
    local inner
    local out = hg.hls.rewrite(MEDIA, BASE, {
      map = function(url)
        inner = hg.hls.rewrite(MASTER, BASE, { default = "absolute" })
        return url
      end,
    })
    assert.truthy(out:find('URI="https://origin.example.com/vod/init.mp4"', 1, true))
    assert.truthy(inner:find("https://origin.example.com/vod/hi/index.m3u8", 1, true))
  end)

  it("rewrites a 100,000-segment playlist", function()
    local parts = { "#EXTM3U\n#EXT-X-TARGETDURATION:4\n" }
    for i = 1, 100000 do parts[#parts + 1] = ("#EXTINF:4.000,\nseg_%06d.ts\n"):format(i) end
    local body = table.concat(parts)
    local n = 0
    local out, st = hg.hls.rewrite(body, BASE, { segment = function(url) n = n + 1; return url .. "&sig=x" end })
    assert.are.equal(100000, n)
    assert.are.equal(100000, st.replaced)
    assert.truthy(out:find("\nhttps://origin.example.com/vod/seg_100000.ts&sig=x\n", 1, true))
    local abs = hg.hls.rewrite(body, BASE, { segment = "absolute" })
    assert.are.equal(#body + 100000 * #"https://origin.example.com/vod/", #abs)
  end)

  it("runs every example of docs/playlist-rewriting.md", function()
    local f = assert(io.open("docs/playlist-rewriting.md"))
    local doc = f:read("a")
    f:close()
    local n = 0
    for code in doc:gmatch("```lua\n(.-)```") do
      n = n + 1
      assert(load(code, "=docs/playlist-rewriting.md example " .. n))()
    end
    assert.are.equal(4, n)
  end)
end)
