// Live streams made in real time, played by hls.js in headless Chromium (issue #10):
// - ffmpeg's sliding-window live HLS from an origin without CORS, through the open proxy;
// - the same stream written into the signing S3 as it is produced, through the
//   private-bucket recipe (segments presigned, fetched from the bucket by the browser);
// - an LL-HLS origin with parts and blocking reloads, in hls.js's low-latency mode,
//   directly and through the open proxy: the live latencies must be within 1.5 s.
// Each plays for at least 30 s of wall time with currentTime advancing and no stall.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { createRequire } from 'node:module';

import { ROOT, sleep, startGateway, tempDir, waitFor } from './lib/gateway.mjs';
import { launchChromium, startPageOrigin, startStatic } from './lib/browser.mjs';
import { mirrorToS3, startLiveHls, startLlhlsOrigin, startPartSource } from './lib/live.mjs';
import { startS3Server } from './lib/s3server.mjs';

const require = createRequire(import.meta.url);
const jwt = require('jsonwebtoken');
const SECRET = 'live-browser-secret-0123456789abcdef';
const PLAY_SECONDS = Number(process.env.HLSGATE_LIVE_SECONDS || 30);
const BENIGN = new Set(['bufferSeekOverHole', 'bufferNudgeOnStall']);

/**
 * Opens the player on `src` and watches it for PLAY_SECONDS after playback starts.
 * Returns { first, last, samples, errors, latencies, page }.
 */
async function watch(browser, pageOrigin, src, { ll = false } = {}) {
  const page = await browser.context.newPage();
  const consoleErrors = [], failed = [];
  page.on('console', (m) => { if (m.type() === 'error') consoleErrors.push(m.text()); });
  page.on('requestfailed', (r) => failed.push(`${r.url()} ${r.failure()?.errorText}`));
  await page.goto(`${pageOrigin.base}/player.html?src=${encodeURIComponent(src)}${ll ? '&ll=1' : ''}`);
  const snap = () => page.evaluate(() => window.__snapshot());
  let s0 = null;
  await waitFor(async () => { s0 = await snap(); return s0.fatal || (s0.readyState >= 3 && s0.currentTime > 0); },
                30000, () => `did not start: ${JSON.stringify(s0)}\nconsole: ${consoleErrors.join('\n')}\n` +
                             `failed: ${failed.join('\n')}`);
  const first = await snap();
  const samples = [];
  const end = Date.now() + PLAY_SECONDS * 1000;
  while (Date.now() < end) {
    await sleep(1000);
    const s = await snap();
    samples.push(s);
    if (s.fatal) break;
  }
  const last = samples[samples.length - 1];
  return { first, last, samples, consoleErrors, failed, page };
}

/** What every live playback must show. */
function assertLivePlayback(t, r) {
  const { first, last, samples } = r;
  t.diagnostic(`t ${first.currentTime.toFixed(2)} → ${last.currentTime.toFixed(2)} over ${samples.length} s, ` +
               `stalls ${last.stalls}, latency ${last.latency?.toFixed(2)} s`);
  assert.equal(last.fatal, null, JSON.stringify(last.fatal));
  assert.equal(last.mediaError, null);
  assert.ok(samples.length >= PLAY_SECONDS - 1, `watched ${samples.length} s`);
  // currentTime advances throughout, at about real time
  for (let i = 5; i < samples.length; i += 5)
    assert.ok(samples[i].currentTime > samples[i - 5].currentTime + 3, `stuck near t=${samples[i].currentTime}`);
  assert.ok(last.currentTime - first.currentTime >= PLAY_SECONDS - 5,
            `advanced ${(last.currentTime - first.currentTime).toFixed(1)} s in ${samples.length} s`);
  assert.equal(last.stalls, 0, 'no waiting/stalled event after playback started');
  assert.deepEqual(last.hlsErrors.filter((e) => !BENIGN.has(e.details)), [], 'hls.js errors');
  assert.deepEqual(r.failed, []);
}

/** Wall-clock latency of what is on screen: now − the program date-time being shown. */
const wallLatency = (s) => (s.now - s.playingDate) / 1000;

describe('live HLS made in real time, played by hls.js in Chromium', () => {
  let browser, pageOrigin, work;

  before(async () => {
    browser = await launchChromium();
    pageOrigin = await startPageOrigin();
    work = tempDir('hg-live-browser-');
  });
  after(async () => {
    await browser?.close();
    await pageOrigin?.stop();
    if (work) fs.rmSync(work, { recursive: true, force: true });
  });

  it('ffmpeg sliding-window live through the open proxy (origin without CORS)', async (t) => {
    const dir = path.join(work, 'live');
    const enc = startLiveHls(dir);
    const origin = await startStatic({ dir });
    const gw = await startGateway({ policyFile: path.join(ROOT, 'policies/policy.lua'), workers: 2,
                                    env: { HLSGATE_ALLOW_PRIVATE: '1' } });
    try {
      await waitFor(() => fs.existsSync(path.join(dir, 'live.m3u8')), 15000, 'ffmpeg wrote no playlist');
      const r = await watch(browser, pageOrigin, `${gw.base}/proxy?url=${encodeURIComponent(`${origin.base}/live.m3u8`)}`);
      try {
        assertLivePlayback(t, r);
        // the origin saw the playlist reloaded again and again (not served stale for 300 s)
        const reloads = origin.log.filter((l) => l.path === '/live.m3u8').length;
        assert.ok(reloads >= PLAY_SECONDS / 2, `playlist fetched ${reloads} times from the origin`);
      } finally { await r.page.close(); }
    } finally {
      await enc.stop();
      await origin.stop();
      assert.equal((await gw.stop()).code, 0, gw.stderrText.slice(-3000));
    }
  });

  it('the same live stream written into the signing S3 as it is produced, through the private-bucket recipe', async (t) => {
    const dir = path.join(work, 'live-s3');
    const s3 = await startS3Server({ bucket: 'live-bucket', accessKey: 'AKIDLIVEB', secretKey: 'live/b/secret', cors: true });
    const enc = startLiveHls(dir);
    const mirror = mirrorToS3(dir, s3, 'events/cam1');
    const gw = await startGateway({
      policyFile: path.join(ROOT, 'policies/policy.lua'), workers: 2,
      env: { HLSGATE_JWT_SECRET: SECRET, S3_ENDPOINT: s3.endpoint, S3_BUCKET: s3.bucket,
             AWS_ACCESS_KEY_ID: s3.accessKey, AWS_SECRET_ACCESS_KEY: s3.secretKey, HLSGATE_PRESIGN_TTL: '600' },
    });
    try {
      await waitFor(() => mirror.uploads >= 3, 15000, 'nothing uploaded');
      const token = jwt.sign({ sub: 'hls', pfx: 'events/cam1', exp: Math.floor(Date.now() / 1000) + 600 }, SECRET,
                             { algorithm: 'HS256' });
      const from = s3.requests.length;
      const r = await watch(browser, pageOrigin, `${gw.base}/stream/hls/live.m3u8?token=${token}`);
      try {
        assertLivePlayback(t, r);
        const seen = s3.requests.slice(from);
        const segs = seen.filter((q) => q.path.endsWith('.ts'));
        const lists = seen.filter((q) => q.path.endsWith('.m3u8'));
        assert.ok(segs.length >= PLAY_SECONDS - 5 && segs.every((q) => q.presigned), 'segments presigned, from S3');
        assert.ok(lists.length >= PLAY_SECONDS / 2 && lists.every((q) => q.headerSigned), 'playlists re-read, signed');
      } finally { await r.page.close(); }
    } finally {
      mirror.stop();
      await enc.stop();
      assert.equal((await gw.stop()).code, 0, gw.stderrText.slice(-3000));
      await s3.close();
    }
  });

  it('LL-HLS with parts and blocking reloads: through the open proxy within 1.5 s of direct', async (t) => {
    const src = await startPartSource(path.join(work, 'll'));
    const direct = await startLlhlsOrigin(src, { cors: true });
    const plain = await startLlhlsOrigin(src, { cors: false });
    const gw = await startGateway({ policyFile: path.join(ROOT, 'policies/policy.lua'), workers: 2,
                                    env: { HLSGATE_ALLOW_PRIVATE: '1' } });
    try {
      await waitFor(() => src.parts.length >= 12, 20000, `no parts: ${src.stderr()}`);
      const measure = async (url) => {
        const r = await watch(browser, pageOrigin, url, { ll: true });
        try {
          assertLivePlayback(t, r);
          const lat = r.samples.slice(-10).map(wallLatency).filter(Number.isFinite);
          assert.ok(lat.length >= 5, 'program date-times seen');
          return lat.reduce((a, b) => a + b, 0) / lat.length;
        } finally { await r.page.close(); }
      };
      const viaDirect = await measure(`${direct.base}/ll/live.m3u8`);
      const viaProxy = await measure(`${gw.base}/proxy?url=${encodeURIComponent(`${plain.base}/ll/live.m3u8`)}`);
      t.diagnostic(`live latency: direct ${viaDirect.toFixed(2)} s, via the proxy ${viaProxy.toFixed(2)} s`);
      assert.ok(viaProxy - viaDirect <= 1.5, `proxy adds ${(viaProxy - viaDirect).toFixed(2)} s`);
      assert.ok(viaDirect < 6, `direct latency ${viaDirect} s: the LL-HLS origin itself works`);
      // the player really used blocking reloads and parts through the proxy
      const directed = plain.log.filter((l) => l.path === '/ll/live.m3u8' && /_HLS_msn=\d+/.test(l.query));
      const parts = plain.log.filter((l) => /\/seg\d+\.\d+\.ts$/.test(l.path));
      assert.ok(directed.length >= 10, `directed reloads at the origin: ${directed.length}`);
      assert.ok(parts.length >= 10, `parts fetched: ${parts.length}`);
    } finally {
      await direct.close();
      await plain.close();
      await src.stop();
      assert.equal((await gw.stop()).code, 0, gw.stderrText.slice(-3000));
    }
  });
});
