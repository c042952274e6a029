// Live and LL-HLS semantics through both recipes (SPEC §5 live, §7; issue #10), against
// scripted real origins and the signing S3: freshness from the content and the origin,
// Cache-Control per answer class, delivery directives forwarded and never confused with
// the plain URL, blocking-reload fan-in and timeouts.
import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { createRequire } from 'node:module';

import { ROOT, sleep, startGateway } from './lib/gateway.mjs';
import { startOrigin } from './lib/origin.mjs';
import { startS3Server } from './lib/s3server.mjs';

const require = createRequire(import.meta.url);
const jwt = require('jsonwebtoken');
const SECRET = 'live-e2e-secret-0123456789abcdef';
const M3U8 = 'application/vnd.apple.mpegurl';

const maxAge = (cc) => Number(/max-age=(\d+)/.exec(cc || '')?.[1] ?? NaN);

/** A fetch that never throws on HTTP status and returns the body as text. */
async function fetchText(url, opts) {
  const r = await fetch(url, opts);
  return { status: r.status, headers: r.headers, body: await r.text() };
}

describe('live playlists: freshness, Cache-Control and LL-HLS directives (open proxy)', () => {
  let origin, gw, seq = 0;
  const held = []; // directed requests the origin is holding (blocking reload)

  const live = (target) => (req, res) => {
    seq++;
    res.writeHead(200, { 'Content-Type': M3U8 });
    res.end(`#EXTM3U\n#EXT-X-TARGETDURATION:${target}\n#EXT-X-MEDIA-SEQUENCE:${seq}\n#EXTINF:${target},\nseg${seq}.ts\n`);
  };
  const vod = (headers = {}) => (req, res) => {
    res.writeHead(200, { 'Content-Type': M3U8, ...headers });
    res.end('#EXTM3U\n#EXT-X-TARGETDURATION:4\n#EXTINF:4,\na.ts\n#EXT-X-ENDLIST\n');
  };
  // An LL-HLS origin: a directed request is held `hold` ms, then answered with a body that
  // names its directives; the plain URL answers a body that says so.
  const ll = (hold) => (req, res, url) => {
    const directed = url.search.includes('_HLS_');
    const body = '#EXTM3U\n#EXT-X-TARGETDURATION:4\n#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=3\n' +
                 '#EXT-X-PART-INF:PART-TARGET=1\n#EXT-X-MEDIA-SEQUENCE:5\n' +
                 `# ${directed ? `directed ${url.search}` : 'plain'}\n` +
                 '#EXTINF:4,\nseg5.ts\n#EXT-X-PART:DURATION=1,URI="seg6.0.ts",INDEPENDENT=YES\n' +
                 '#EXT-X-PRELOAD-HINT:TYPE=PART,URI="seg6.1.ts"\n';
    const answer = () => { res.writeHead(200, { 'Content-Type': M3U8 }); res.end(body); };
    if (!directed) return answer();
    held.push(url.search);
    setTimeout(answer, hold);
  };

  before(async () => {
    origin = await startOrigin({ routes: {
      '/live.m3u8': live(4),
      '/vod.m3u8': vod(),
      '/cc1.m3u8': vod({ 'Cache-Control': 'public, max-age=1' }),
      '/nostore.m3u8': vod({ 'Cache-Control': 'no-store' }),
      '/expired.m3u8': vod({ Expires: 'Thu, 01 Jan 1970 00:00:00 GMT' }),
      '/ll.m3u8': ll(1000),
      '/slow-ll.m3u8': ll(2500),
      '/seg.ts': (req, res) => { res.writeHead(200, { 'Content-Type': 'video/mp2t' }); res.end(Buffer.alloc(1880, 0x47)); },
      '/segcc.ts': (req, res) => {
        res.writeHead(200, { 'Content-Type': 'video/mp2t', 'Cache-Control': 'max-age=7' });
        res.end(Buffer.alloc(188, 0x47));
      },
    } });
    gw = await startGateway({
      policyFile: path.join(ROOT, 'policies/policy.lua'), workers: 2,
      env: { HLSGATE_ALLOW_PRIVATE: '1', HLSGATE_CACHE_TTL: '3' },
    });
  });
  after(async () => {
    assert.equal((await gw.stop()).code, 0, gw.stderrText.slice(-3000));
    await origin.close();
  });

  const proxied = (p, extra = '') => `${gw.base}/proxy?url=${encodeURIComponent(origin.base + p)}${extra}`;
  const hits = (p) => origin.requests.filter((r) => r.url === p).length;

  it('a live playlist is reused for at most half its target duration, then fetched anew', async () => {
    const a = await fetchText(proxied('/live.m3u8'));
    const b = await fetchText(proxied('/live.m3u8'));
    assert.equal(a.status, 200);
    assert.equal(b.body, a.body, 'reused within half the target duration');
    assert.equal(hits('/live.m3u8'), 1);
    assert.equal(a.headers.get('cache-control'), 'public, max-age=2');
    assert.ok(maxAge(b.headers.get('cache-control')) <= 2);
    await sleep(2200); // half of TARGETDURATION:4, although HLSGATE_CACHE_TTL is 3
    const c = await fetchText(proxied('/live.m3u8'));
    assert.equal(hits('/live.m3u8'), 2);
    assert.notEqual(c.body, a.body, 'a new media sequence');
    assert.match(c.body, /#EXT-X-MEDIA-SEQUENCE:\d+/);
  });

  it('a VOD playlist is fetched from the origin once per policy TTL', async () => {
    const first = await fetchText(proxied('/vod.m3u8'));
    assert.equal(first.headers.get('cache-control'), 'public, max-age=3');
    for (let i = 0; i < 5; i++) assert.equal((await fetchText(proxied('/vod.m3u8'))).status, 200);
    await sleep(1000);
    assert.equal((await fetchText(proxied('/vod.m3u8'))).status, 200);
    assert.equal(hits('/vod.m3u8'), 1, 'still fresh after 1 s');
    await sleep(2300);
    assert.equal((await fetchText(proxied('/vod.m3u8'))).status, 200);
    assert.equal(hits('/vod.m3u8'), 2, 'fetched again once the 3 s TTL ended');
  });

  it("the origin's Cache-Control and Expires bound reuse", async () => {
    const one = await fetchText(proxied('/cc1.m3u8'));
    assert.equal(one.headers.get('cache-control'), 'public, max-age=1');
    await fetchText(proxied('/cc1.m3u8'));
    assert.equal(hits('/cc1.m3u8'), 1);
    await sleep(1200);
    await fetchText(proxied('/cc1.m3u8'));
    assert.equal(hits('/cc1.m3u8'), 2, 'max-age=1 ended');

    for (let i = 0; i < 3; i++) {
      const r = await fetchText(proxied('/nostore.m3u8'));
      assert.equal(r.status, 200);
      assert.equal(r.headers.get('cache-control'), 'no-store');
    }
    assert.equal(hits('/nostore.m3u8'), 3, 'no-store: never reused');
    for (let i = 0; i < 2; i++) await fetchText(proxied('/expired.m3u8'));
    assert.equal(hits('/expired.m3u8'), 2, 'an Expires in the past: never reused');
  });

  it('every answer class carries the documented Cache-Control', async () => {
    const seg = await fetch(proxied('/seg.ts'));
    await seg.arrayBuffer();
    assert.equal(seg.headers.get('cache-control'), 'public, max-age=3', 'segments: the policy TTL');
    const segcc = await fetch(proxied('/segcc.ts'));
    await segcc.arrayBuffer();
    assert.equal(segcc.headers.get('cache-control'), 'public, max-age=3', 'never longer than the policy');
    const missing = await fetchText(proxied('/nothing-here.m3u8'));
    assert.equal(missing.status, 404);
    assert.equal(missing.headers.get('cache-control'), 'no-store', 'errors are not stored');
    const bad = await fetchText(`${gw.base}/proxy`);
    assert.equal(bad.status, 400);
    assert.equal(bad.headers.get('cache-control'), 'no-store');
    const health = await fetchText(`${gw.base}/healthz`);
    assert.equal(health.headers.get('cache-control'), 'no-store');
  });

  it('LL-HLS directives appended to the proxy URL reach the origin unchanged', async () => {
    const r = await fetchText(proxied('/ll.m3u8', '&_HLS_msn=6&_HLS_part=1'));
    assert.equal(r.status, 200);
    assert.match(r.body, /# directed \?_HLS_msn=6&_HLS_part=1\n/);
    assert.ok(held.includes('?_HLS_msn=6&_HLS_part=1'), JSON.stringify(held));
    // Rewritten like any playlist: the part and the preload hint come back to the proxy.
    assert.match(r.body, /URI="http:\/\/127\.0\.0\.1:\d+\/proxy\?url=[^"]*seg6\.1\.ts"/);
    // A delta request and the steering parameters too, in the spelling the player chose.
    const d = await fetchText(proxied('/ll.m3u8', '&_HLS_skip=YES&_HLS_msn=7&%5FHLS_pathway=CDN-A'));
    assert.match(d.body, /# directed \?_HLS_msn=7&_HLS_skip=YES&_HLS_pathway=CDN-A\n/);
  });

  it('a directed reply is never served for the plain URL, nor the plain one for a directed request', async () => {
    const directed = await fetchText(proxied('/ll.m3u8', '&_HLS_msn=8&_HLS_part=0'));
    assert.match(directed.body, /# directed/);
    const plain = await fetchText(proxied('/ll.m3u8'));
    assert.match(plain.body, /# plain\n/);
    assert.doesNotMatch(plain.body, /directed/);
    const plainAgain = await fetchText(proxied('/ll.m3u8'));
    assert.match(plainAgain.body, /# plain\n/);
    const other = await fetchText(proxied('/ll.m3u8', '&_HLS_msn=8&_HLS_part=1'));
    assert.match(other.body, /# directed \?_HLS_msn=8&_HLS_part=1\n/, 'another part: its own reply');
  });

  it('500 concurrent identical directed requests cost the origin one request', async () => {
    const before = held.length;
    const url = proxied('/ll.m3u8', '&_HLS_msn=9&_HLS_part=2');
    const t0 = Date.now();
    const all = await Promise.all(Array.from({ length: 500 }, () => fetchText(url)));
    const ms = Date.now() - t0;
    assert.deepEqual([...new Set(all.map((r) => r.status))], [200]);
    assert.equal(new Set(all.map((r) => r.body)).size, 1, 'everyone got the same reply');
    assert.equal(held.length - before, 1, `origin requests for the directed URL: ${held.length - before}`);
    assert.ok(ms < 10000, `${ms} ms`);
    // The viewers are all counted as successes (no upstream error while they waited).
    const m = await fetchText(`${gw.base}/metrics`);
    assert.doesNotMatch(m.body, /hlsgate_requests_total\{route="proxy",status="50\d"\}/);
  });
});

describe('blocking reloads get room to wait (open proxy with a 1 s upstream timeout)', () => {
  let origin, gw;
  before(async () => {
    const hold = (ms) => (req, res, url) => setTimeout(() => {
      res.writeHead(200, { 'Content-Type': M3U8 });
      res.end(`#EXTM3U\n#EXT-X-TARGETDURATION:4\n# ${url.search || 'plain'}\n#EXTINF:4,\na.ts\n`);
    }, ms);
    origin = await startOrigin({ routes: { '/slow.m3u8': hold(2500) } });
    gw = await startGateway({
      policy: `local open_proxy = require("hlsgate.open_proxy")
               return { on_request = open_proxy.new{ allow_private = true, timeout = 1 } }`,
    });
  });
  after(async () => {
    assert.equal((await gw.stop()).code, 0, gw.stderrText.slice(-3000));
    await origin.close();
  });

  it('a plain request times out at the policy timeout, a directed one waits for the origin', async () => {
    const u = `${gw.base}/proxy?url=${encodeURIComponent(`${origin.base}/slow.m3u8`)}`;
    const plain = await fetchText(u);
    assert.equal(plain.status, 504);
    const t0 = Date.now();
    const directed = await fetchText(`${u}&_HLS_msn=3`);
    assert.equal(directed.status, 200, directed.body);
    assert.match(directed.body, /# \?_HLS_msn=3\n/);
    assert.ok(Date.now() - t0 >= 2000);
  });
});

describe('live playlists from the private bucket (signing S3)', () => {
  let s3, gw;
  const token = jwt.sign({ sub: 'hls', pfx: 'live/cam', exp: Math.floor(Date.now() / 1000) + 600 }, SECRET,
                         { algorithm: 'HS256' });
  const LL = '#EXTM3U\n#EXT-X-TARGETDURATION:4\n#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=3\n' +
             '#EXT-X-PART-INF:PART-TARGET=1\n#EXT-X-MEDIA-SEQUENCE:5\n#EXTINF:4,\nseg5.ts\n' +
             '#EXT-X-PART:DURATION=1,URI="seg6.0.ts",INDEPENDENT=YES\n#EXT-X-PRELOAD-HINT:TYPE=PART,URI="seg6.1.ts"\n' +
             '#EXT-X-RENDITION-REPORT:URI="alt/live.m3u8",LAST-MSN=6,LAST-PART=0\n';

  before(async () => {
    s3 = await startS3Server({ bucket: 'live-media', accessKey: 'AKIDLIVE', secretKey: 'live/secret' });
    await s3.putObject('live/cam/live.m3u8', LL, M3U8);
    gw = await startGateway({
      policyFile: path.join(ROOT, 'policies/policy.lua'),
      env: { HLSGATE_JWT_SECRET: SECRET, S3_ENDPOINT: s3.endpoint, S3_BUCKET: s3.bucket,
             AWS_ACCESS_KEY_ID: s3.accessKey, AWS_SECRET_ACCESS_KEY: s3.secretKey,
             HLSGATE_PLAYLIST_CACHE_TTL: '30' },
    });
  });
  after(async () => {
    assert.equal((await gw.stop()).code, 0, gw.stderrText.slice(-3000));
    await s3.close();
  });

  it('directives are signed into the S3 request; the answer is private and short-lived', async () => {
    const from = s3.requests.length;
    const r = await fetchText(`${gw.base}/stream/hls/live.m3u8?token=${token}&_HLS_msn=6&_HLS_part=0`);
    assert.equal(r.status, 200, r.body);
    const q = s3.requests.slice(from).find((x) => x.path.endsWith('/live.m3u8'));
    assert.ok(q && q.headerSigned, 'fetched with a signed request');
    assert.equal(q.query._HLS_msn, '6');
    assert.equal(q.query._HLS_part, '0');
    // token-bearing output is private; live: at most half the part target (0.5 s → 0)
    assert.equal(r.headers.get('cache-control'), 'private, max-age=0');
    // A preload hint is never presigned: it stays in the gateway with the token; the part
    // is presigned; the rendition report stays in the gateway.
    assert.match(r.body, /#EXT-X-PRELOAD-HINT:TYPE=PART,URI="\/stream\/hls\/seg6\.1\.ts\?token=[^"]+"/);
    assert.match(r.body, /#EXT-X-PART:DURATION=1,URI="http:\/\/127\.0\.0\.1:\d+\/live-media\/live\/cam\/seg6\.0\.ts\?X-Amz-/);
    assert.match(r.body, /#EXT-X-RENDITION-REPORT:URI="\/stream\/hls\/alt\/live\.m3u8\?token=/);
  });

  it('a live playlist in the bucket is re-read after half its part target, although the recipe caches 30 s', async () => {
    const u = `${gw.base}/stream/hls/live.m3u8?token=${token}`;
    const count = () => s3.requests.filter((x) => x.path.endsWith('/live/cam/live.m3u8') && !x.query._HLS_msn).length;
    const before = count();
    await fetchText(u);
    await sleep(700);
    await s3.putObject('live/cam/live.m3u8', LL.replace('MEDIA-SEQUENCE:5', 'MEDIA-SEQUENCE:6'), M3U8);
    const r = await fetchText(u);
    assert.match(r.body, /#EXT-X-MEDIA-SEQUENCE:6/);
    assert.equal(count() - before, 2);
  });
});
