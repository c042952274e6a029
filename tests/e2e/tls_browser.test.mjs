// hls.js in headless Chromium over HTTPS with HTTP/2 (issue 16): the demo (private-bucket
// recipe) and the LL-HLS test stream through the open proxy, from the gateway's TLS
// listener. Every resource the page fetched from the gateway came over h2
// (PerformanceResourceTiming.nextHopProtocol), and playback is as on plain HTTP.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { createRequire } from 'node:module';

import { ROOT, sleep, startGateway, tempDir, waitFor } from './lib/gateway.mjs';
import { launchChromium, playIn, startPageOrigin } from './lib/browser.mjs';
import { startLlhlsOrigin, startPartSource } from './lib/live.mjs';
import { makeHls } from './lib/media.mjs';
import { makeCa, makeCert, tlsPort } from './lib/tls.mjs';

const require = createRequire(import.meta.url);
const jwt = require('jsonwebtoken');
const SECRET = 'tls-browser-secret-0123456789abcdef';
const PLAY_SECONDS = Number(process.env.HLSGATE_LIVE_SECONDS || 20);
const BENIGN = new Set(['bufferSeekOverHole', 'bufferNudgeOnStall']);

/** What the page fetched from `base`, with the protocol of each: the resource timings'
 * nextHopProtocol, which Chromium only exposes cross-origin with Timing-Allow-Origin (the
 * page is on another origin, and the gateway sends none: then it is ""), and the same
 * value as the DevTools protocol reports it (Network.Response.protocol), which it always
 * does. */
async function protocols(page, base, cdpSeen) {
  const entries = await page.evaluate(() => performance.getEntriesByType('resource')
    .map((e) => ({ name: e.name, proto: e.nextHopProtocol })));
  return entries.filter((e) => e.name.startsWith(base + '/'))
    .map((e) => ({ ...e, cdp: cdpSeen.get(e.name) }));
}

/** Records the protocol of every response of `page` (DevTools protocol). */
async function recordProtocols(page) {
  const seen = new Map();
  const cdp = await page.context().newCDPSession(page);
  cdp.on('Network.responseReceived', (ev) => seen.set(ev.response.url, ev.response.protocol));
  await cdp.send('Network.enable');
  return seen;
}

function assertH2(res) {
  for (const e of res) {
    assert.ok(e.proto === 'h2' || e.proto === '', `${e.name}: nextHopProtocol ${e.proto}`);
    assert.equal(e.cdp, 'h2', e.name);
  }
}

describe('hls.js over HTTPS with HTTP/2 from the TLS listener', () => {
  let work, browser, pageOrigin, gw, base;

  before(async () => {
    browser = await launchChromium({ ignoreHTTPSErrors: true });
    work = tempDir('hg-tls-browser-');
    makeCa(work);
    const c = makeCert(work, 'srv', ['localhost']);
    makeHls(path.join(work, 'media/videos/a'), { encrypt: true, seconds: 16 });
    pageOrigin = await startPageOrigin();
    gw = await startGateway({
      policyFile: path.join(ROOT, 'policies/policy.lua'), workers: 2,
      env: { HLSGATE_JWT_SECRET: SECRET, HLSGATE_DEMO_DIR: path.join(work, 'media'), HLSGATE_ALLOW_PRIVATE: '1' },
      args: ['--listen', '127.0.0.1:0', '--tls-cert', c.cert, '--tls-key', c.key],
    });
    base = `https://localhost:${tlsPort(gw)}`;
  });

  after(async () => {
    await browser?.close();
    await pageOrigin?.stop();
    if (gw) assert.equal((await gw.stop()).code, 0, gw.stderrText.slice(-3000));
  });

  it('plays the demo with every gateway resource over h2', async (t) => {
    const token = jwt.sign({ sub: 'hls', pfx: 'videos/a', exp: Math.floor(Date.now() / 1000) + 600 }, SECRET,
                           { algorithm: 'HS256' });
    const src = `${base}/stream/hls/master.m3u8?token=${token}`;
    let seen;
    const r = await playIn(browser.context, `${pageOrigin.base}/player.html?src=${encodeURIComponent(src)}`,
                           { until: (s) => (s.readyState === 4 && s.bufferedTotal >= 10) || s.fatal,
                             onPage: async (p) => { seen = await recordProtocols(p); } });
    try {
      const s = r.snapshot;
      t.diagnostic(`readyState ${s.readyState}, buffered ${s.bufferedTotal.toFixed(2)} s, ${r.elapsedMs} ms`);
      assert.ok(r.ok && !s.fatal, JSON.stringify({ s, failed: r.failedRequests, console: r.consoleErrors }));
      assert.equal(s.videoWidth > 0, true);
      assert.deepEqual(r.failedRequests, []);
      assert.deepEqual(s.hlsErrors.filter((e) => !BENIGN.has(e.details)), []);
      await r.page.waitForFunction(() => window.__snapshot().currentTime >= 1.5, null, { timeout: 10000 });
      const res = await protocols(r.page, base, seen);
      t.diagnostic(`${res.length} resources from the gateway: nextHopProtocol ` +
                   `${JSON.stringify([...new Set(res.map((e) => e.proto))])}, DevTools ${[...new Set(res.map((e) => e.cdp))]}`);
      assert.ok(res.filter((e) => /\.ts\?/.test(e.name)).length >= 5, 'segments fetched');
      assert.ok(res.filter((e) => /\.m3u8\?/.test(e.name)).length >= 2, 'playlists fetched');
      assertH2(res);
      // The access log agrees: HTTP/2.0 only.
      const lines = gw.accessLog().filter((l) => l.path.startsWith('/stream/hls/'));
      assert.ok(lines.length >= 7);
      for (const l of lines) assert.equal(l.protocol, 'HTTP/2.0', l.path);
    } finally {
      await r.page.close();
    }
  });

  it('plays the LL-HLS test stream (parts, blocking reloads) through the open proxy over h2', async (t) => {
    const src = await startPartSource(path.join(work, 'll'));
    const origin = await startLlhlsOrigin(src, { cors: false });
    const page = await browser.context.newPage();
    const failed = [];
    page.on('requestfailed', (q) => failed.push(`${q.url()} ${q.failure()?.errorText}`));
    const seen = await recordProtocols(page);
    try {
      await waitFor(() => src.parts.length >= 12, 20000, `no parts: ${src.stderr()}`);
      const url = `${base}/proxy?url=${encodeURIComponent(`${origin.base}/ll/live.m3u8`)}`;
      await page.goto(`${pageOrigin.base}/player.html?src=${encodeURIComponent(url)}&ll=1`);
      const snap = () => page.evaluate(() => window.__snapshot());
      let first = null;
      await waitFor(async () => { first = await snap(); return first.fatal || (first.readyState >= 3 && first.currentTime > 0); },
                    30000, () => `did not start: ${JSON.stringify(first)} ${failed.join('\n')}`);
      const samples = [];
      for (const end = Date.now() + PLAY_SECONDS * 1000; Date.now() < end;) {
        await sleep(1000);
        samples.push(await snap());
      }
      const last = samples[samples.length - 1];
      t.diagnostic(`t ${first.currentTime.toFixed(2)} → ${last.currentTime.toFixed(2)}, stalls ${last.stalls}, ` +
                   `latency ${last.latency?.toFixed(2)} s`);
      assert.equal(last.fatal, null, JSON.stringify(last.fatal));
      assert.ok(last.currentTime - first.currentTime >= PLAY_SECONDS - 5, 'playback advanced in real time');
      assert.equal(last.stalls, 0);
      assert.deepEqual(last.hlsErrors.filter((e) => !BENIGN.has(e.details)), []);
      assert.deepEqual(failed, []);
      const directed = origin.log.filter((l) => l.path === '/ll/live.m3u8' && /_HLS_msn=\d+/.test(l.query));
      const parts = origin.log.filter((l) => /\/seg\d+\.\d+\.ts$/.test(l.path));
      assert.ok(directed.length >= 5, `directed reloads at the origin: ${directed.length}`);
      assert.ok(parts.length >= 5, `parts fetched: ${parts.length}`);
      const res = await protocols(page, base, seen);
      assert.ok(res.length >= 10);
      assertH2(res);
    } finally {
      await page.close();
      await origin.close();
      await src.stop();
    }
  });
});
