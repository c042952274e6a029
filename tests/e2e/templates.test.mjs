// Templates (gateway/playlist.c): a private plan's playlist is rewritten once with a
// stand-in for each proxy param, and every viewer's output is the template with their
// values spliced in. Checked against the rewrite itself: the same plan with cache_ttl 0
// (no output cache, so no template) must give the same bytes for every value, however
// it encodes, and no viewer's output may hold another viewer's value.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';

import { get, startGateway } from './lib/gateway.mjs';
import { startOrigin } from './lib/origin.mjs';

const enc = encodeURIComponent;

// The params are written in the order lua_next gives them, and Lua seeds its string
// hashes per state: each worker has its own order ("session=…&token=…" on one, the other
// way round on the other) with or without templates. Compared in one order (names and
// values stay paired: a value spliced into the wrong param still differs).
const canon = (body) => body.replace(/(session=[^&"\n#]*)&(token=[^&"\n#]*)/g, '$2&$1');

const MASTER = `#EXTM3U
#EXT-X-VERSION:7
#EXT-X-INDEPENDENT-SEGMENTS
#EXT-X-SESSION-DATA:DATA-ID="com.example.t",URI="meta/data.json"
#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="aud",NAME="en",DEFAULT=YES,URI="audio/en/index.m3u8?lang=en&token=stale"
#EXT-X-STREAM-INF:BANDWIDTH=800000,CODECS="avc1.4d401e,mp4a.40.2",AUDIO="aud"
360p/index.m3u8
#EXT-X-STREAM-INF:BANDWIDTH=1400000,CODECS="avc1.4d401f,mp4a.40.2",AUDIO="aud"
480p/index.m3u8?a=1&token=old&token=older#frag
#EXT-X-I-FRAME-STREAM-INF:BANDWIDTH=90000,URI="iframes.m3u8"
#EXT-X-STREAM-INF:BANDWIDTH=5000000,CODECS="avc1.640028,mp4a.40.2"
https://elsewhere.example/1080p/index.m3u8
`;

const MEDIA = `#EXTM3U
#EXT-X-VERSION:9
#EXT-X-TARGETDURATION:4
#EXT-X-PART-INF:PART-TARGET=1.0
#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=3.0
#EXT-X-MEDIA-SEQUENCE:10
#EXT-X-MAP:URI="init.mp4"
#EXT-X-KEY:METHOD=AES-128,URI="keys/k1.key?kid=1",IV=0x00000000000000000000000000000001
#EXTINF:4.0,
seg10.m4s
#EXT-X-PART:DURATION=1.0,URI="seg11.part0.m4s",INDEPENDENT=YES
#EXT-X-PART:DURATION=1.0,URI="seg11.part1.m4s"
#EXT-X-PRELOAD-HINT:TYPE=PART,URI="seg11.part2.m4s"
#EXT-X-RENDITION-REPORT:URI="../480p/index.m3u8",LAST-MSN=11,LAST-PART=1
`;

// /t/… keeps outputs (a template per playlist); /n/… the same plan with cache_ttl 0
// (every request rewritten). Params from the query: v (the "token"), w (a second one).
const POLICY = `
return { on_request = function(req)
  local mount, rest = req.path:match("^(/[tn]/)(.*)$")
  if not mount then return nil end
  local params = { token = req.query.v }
  if req.query.w then params.session = req.query.w end
  local rw = {}
  for _, c in ipairs({ "playlist", "iframe_playlist", "rendition_report", "preload_hint",
                       "session_data", "segment", "part", "key", "map" }) do rw[c] = "proxy" end
  return {
    origin = { type = "http", url = os.getenv("ORIGIN") .. "/" .. rest, allow_private = true },
    rewrite = rw,
    proxy = { from = os.getenv("ORIGIN") .. "/", to = mount, params = params },
    private = true,
    cache_ttl = mount == "/t/" and 30 or 0,
  }
end }
`;

const VALUES = ['eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJobHMifQ.sig-_0', 'a b&c=d/e?f#g%h', 'ünïcødé ✓', '"quoted"<x>',
  '', 'x'.repeat(3000), '%00%', '+plus+', 'token=inner&token=x', 'A'];

describe('rewrite templates: every viewer gets what a rewrite of their own would give', () => {
  let gw, origin;
  before(async () => {
    const serve = (text) => (req, res) => {
      res.writeHead(200, { 'Content-Type': 'application/vnd.apple.mpegurl' });
      res.end(text);
    };
    origin = await startOrigin({ routes: { '/master.m3u8': serve(MASTER), '/360p/index.m3u8': serve(MEDIA) } });
    gw = await startGateway({ policy: POLICY, workers: 2, env: { ORIGIN: origin.base } });
  });
  after(async () => {
    await origin?.close();
    const { code } = await gw.stop();
    assert.equal(code, 0, gw.stderrText.slice(-3000));
  });

  const fetchBoth = async (file, q) => {
    const t = await get(gw.port, `/t/${file}?${q}`);
    const n = await get(gw.port, `/n/${file}?${q}`);
    assert.equal(t.status, 200, t.body);
    assert.equal(n.status, 200, n.body);
    return { t: canon(t.body.replaceAll('/t/', '/M/')), n: canon(n.body.replaceAll('/n/', '/M/')), headers: t.headers };
  };

  for (const file of ['master.m3u8', '360p/index.m3u8']) {
    it(`${file}: byte for byte the rewrite's output, for values of every kind, one and two params`, async () => {
      for (const v of VALUES) {
        const one = await fetchBoth(file, `v=${enc(v)}`);
        assert.equal(one.t, one.n, `v=${JSON.stringify(v.slice(0, 40))}`);
        assert.match(one.headers['cache-control'], /private/);
        const two = await fetchBoth(file, `v=${enc(v)}&w=${enc(`${v}-2`)}`);
        assert.equal(two.t, two.n, `v, w=${JSON.stringify(v.slice(0, 40))}`);
      }
    });
  }

  it('the template is used (access log "cache":"template"), and no output holds another viewer\'s value', async () => {
    const bodies = new Map();
    await Promise.all(Array.from({ length: 40 }, async (_, i) => {
      const v = `viewer-${i}-${'k'.repeat(i)}`;
      const res = await get(gw.port, `/t/master.m3u8?v=${v}`);
      assert.equal(res.status, 200);
      bodies.set(v, res.body);
    }));
    for (const [v, body] of bodies) {
      const mine = body.match(/token=[^&"\n#]*/g);
      assert.equal(mine.length, 5, body); // session data, audio, 360p, 480p, iframes: once each
      for (const m of mine) assert.equal(m, `token=${v}`);
    }
    await new Promise((r) => setTimeout(r, 1200)); // the access log is flushed once a second
    const lines = gw.stdoutText.split('\n').filter((l) => l.includes('/t/master.m3u8'));
    assert.ok(lines.some((l) => JSON.parse(l).cache === 'template'), lines.slice(-3).join('\n'));
  });

  it('what players add: LL-HLS directives and Range get the same bytes as the rewrite', async () => {
    // a blocking reload (its own cache key, so its own template) and a player's
    // "Range: bytes=0-" (never output-cached: rewritten per request)
    for (const v of ['one', 'two', 'a b&c']) {
      const q = `v=${enc(v)}&_HLS_msn=11&_HLS_part=1`;
      const d = await fetchBoth('360p/index.m3u8', q);
      assert.equal(d.t, d.n, q);
      assert.ok(d.t.includes(`token=${enc(v)}`), d.t);
      const t = await get(gw.port, `/t/360p/index.m3u8?v=${enc(v)}`, 'Range: bytes=0-\r\n');
      const n = await get(gw.port, `/n/360p/index.m3u8?v=${enc(v)}`, 'Range: bytes=0-\r\n');
      assert.equal(t.status, n.status);
      assert.equal(t.body.replaceAll('/t/', '/M/'), n.body.replaceAll('/n/', '/M/'));
    }
  });

  it('a value that makes the output too large is refused as the rewrite would (502), others unaffected', async () => {
    // the limit: 32 output bytes per input byte + 64 KiB; 6 holes x 20 KB exceeds it
    const big = await get(gw.port, `/t/master.m3u8?v=${'z'.repeat(20000)}`);
    const bigN = await get(gw.port, `/n/master.m3u8?v=${'z'.repeat(20000)}`);
    assert.equal(big.status, bigN.status);
    const ok = await get(gw.port, '/t/master.m3u8?v=small');
    assert.equal(ok.status, 200);
    assert.ok(ok.body.includes('token=small'));
  });
});

// A template must not be judged by what its stand-ins (33 characters each) cost, nor
// outlive the body it was made from. One worker and a 1 MiB cache: which entry is
// evicted first is then known.
describe('rewrite templates: the stand-ins and the cache never show through', () => {
  let gw, origin;
  const LONG = `d${'l'.repeat(369)}`; // a long directory: each proxied URI is ~400 bytes
  const SEGS = 2000;
  let live = ''; // a VOD playlist (kept for cache_ttl, 30 s), as the origin has it now
  const livePlaylist = (tag, pad = '') =>
    `#EXTM3U\n#EXT-X-TARGETDURATION:4\n${pad}#EXTINF:4.0,\n${tag}-1.ts\n#EXT-X-ENDLIST\n`;
  const filler = { size: 0 };
  before(async () => {
    const serve = (text) => (req, res) => {
      res.writeHead(200, { 'Content-Type': 'application/vnd.apple.mpegurl' });
      res.end(typeof text === 'function' ? text() : text);
    };
    const big = `#EXTM3U\n#EXT-X-TARGETDURATION:1\n${'#EXTINF:1,\na\n'.repeat(SEGS)}#EXT-X-ENDLIST\n`;
    origin = await startOrigin({ routes: {
      [`/${LONG}/big.m3u8`]: serve(big),
      '/ev/index.m3u8': serve(() => live),
      '/ev/filler.bin': (req, res) => {
        res.writeHead(200, { 'Content-Type': 'application/octet-stream' });
        res.end(Buffer.alloc(filler.size, 7));
      },
    } });
    gw = await startGateway({ policy: POLICY, workers: 1, env: { ORIGIN: origin.base },
                              args: ['--cache-size', '1', '--cache-max-object', '1'] });
  });
  after(async () => {
    await origin?.close();
    const { code } = await gw.stop();
    assert.equal(code, 0, gw.stderrText.slice(-3000));
  });

  it('short values the rewrite fits within the output limit are not refused because the stand-ins would not fit', async () => {
    // per URI: the input is 13 bytes (limit 416 = 32 x 13); written with "a" and "b" the
    // output is ~405 bytes, with two 33-character stand-ins ~469: over the limit once the
    // 64 KiB slack is used up
    const q = 'v=a&w=b';
    const n = await get(gw.port, `/n/${LONG}/big.m3u8?${q}`);
    assert.equal(n.status, 200, n.body.slice(0, 300));
    const t = await get(gw.port, `/t/${LONG}/big.m3u8?${q}`);
    assert.equal(t.status, n.status, t.body.slice(0, 300));
    assert.equal(canon(t.body.replaceAll('/t/', '/M/')), canon(n.body.replaceAll('/n/', '/M/')));
  });

  it('a body fetched again after its raw object was evicted is rewritten, not answered from the older template', async () => {
    live = livePlaylist('old', `#${'c'.repeat(300)}\n`); // a comment: the old body is the larger
    const first = await get(gw.port, '/t/ev/index.m3u8?v=a');
    assert.equal(first.status, 200);
    assert.match(first.body, /\/t\/ev\/old-1\.ts\?token=a/);
    // the template's size: the output with a 33-character value in each hole
    const same = await get(gw.port, `/n/ev/index.m3u8?v=${'x'.repeat(33)}`);
    const tplLen = Buffer.byteLength(same.body);
    // an object that leaves room for the template and the new (smaller) body, not for the
    // old one: the old raw playlist (least recently used) is evicted, the template stays
    // and the new body is stored beside it
    filler.size = (1 << 20) - tplLen - Buffer.byteLength(livePlaylist('new'));
    const f = await fetch(`${gw.base}/t/ev/filler.bin?v=a`); // relayed chunked: read to the end
    assert.equal(f.status, 200);
    assert.equal((await f.arrayBuffer()).byteLength, filler.size);
    live = livePlaylist('new');
    const fetched = origin.hits.get('/ev/index.m3u8');
    const t = await get(gw.port, '/t/ev/index.m3u8?v=b');
    assert.equal(origin.hits.get('/ev/index.m3u8'), fetched + 1, 'the raw playlist was evicted: fetched again');
    const n = await get(gw.port, '/n/ev/index.m3u8?v=b');
    assert.match(n.body, /new-1\.ts\?token=b/);
    assert.equal(t.body.replaceAll('/t/', '/M/'), n.body.replaceAll('/n/', '/M/'));
  });
});
