// Real-browser acceptance (SPEC §1, §9, §12): a page on one local origin plays through
// hls.js in headless Chromium from the gateway on another origin, in both modes — private
// bucket (default policy over a local directory) and /proxy?url= in front of a plain local
// origin that sends no CORS headers — and reaches readyState 4 with ≥ 10 s buffered and no
// console errors; the same page pointed at the origin directly fails, for the CORS reason.
//
// Needs Debian's chromium (/usr/bin/chromium) and npm playwright-core + hls.js (tests/).
// A missing chromium fails the suite; it is never skipped.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { createRequire } from 'node:module';

import { ROOT, startGateway, tempDir } from './lib/gateway.mjs';
import { makeHls } from './lib/media.mjs';
import { launchChromium, playIn, startPageOrigin, startStatic } from './lib/browser.mjs';

const require = createRequire(import.meta.url);
const jwt = require('jsonwebtoken');

const SECRET = 'browser-e2e-secret-0123456789abcdef';
const STREAM_SECONDS = 24;
const BENIGN = new Set(['bufferSeekOverHole']);
const PLAYING = (s) => s.readyState === 4 && s.bufferedTotal >= 10 && s.videoWidth > 0;

describe('hls.js in headless Chromium, page and gateway on different origins', () => {
  let root, work, pageOrigin, mediaOrigin, gw, browser;

  before(async () => {
    browser = await launchChromium(); // first: no chromium fails the suite at once
    work = tempDir('hg-browser-');
    root = path.join(work, 'media');
    makeHls(path.join(root, 'videos/a'), { encrypt: true, seconds: STREAM_SECONDS });
    pageOrigin = await startPageOrigin();
    mediaOrigin = await startStatic({ dir: root });
    gw = await startGateway({
      policyFile: path.join(ROOT, 'policies/policy.lua'), workers: 2,
      env: { HLSGATE_JWT_SECRET: SECRET, HLSGATE_DEMO_DIR: root, HLSGATE_ALLOW_PRIVATE: '1' },
    });
  });

  after(async () => {
    await browser?.close();
    await pageOrigin?.stop();
    await mediaOrigin?.stop();
    if (gw) {
      const { code } = await gw.stop();
      assert.equal(code, 0, gw.stderrText.slice(-3000));
    }
    if (root) fs.rmSync(root, { recursive: true, force: true }); // the screenshots stay
  });

  const playerUrl = (src) => `${pageOrigin.base}/player.html?src=${encodeURIComponent(src)}`;
  const summary = (r) => JSON.stringify({
    elapsedMs: r.elapsedMs, snapshot: r.snapshot, consoleErrors: r.consoleErrors,
    pageErrors: r.pageErrors, failedRequests: r.failedRequests,
    badResponses: r.responses.filter((x) => x.status >= 400),
  }, null, 1);

  /** The object a gateway URL stands for: the url= of /proxy, else the path. */
  const target = (u) => {
    const url = new URL(u);
    return url.searchParams.get('url') || url.pathname;
  };

  /** Plays `src` in the page and checks what both gateway modes must show. */
  async function assertPlays(t, src, shot) {
    const r = await playIn(browser.context, playerUrl(src), { until: (s) => PLAYING(s) || s.fatal });
    try {
      const s = r.snapshot;
      t.diagnostic(`readyState ${s.readyState}, buffered ${s.bufferedTotal.toFixed(2)} s, ` +
                   `t=${s.currentTime.toFixed(2)}, ${r.elapsedMs} ms, hls errors ${s.hlsErrors.length}`);
      assert.ok(r.ok && !s.fatal, `did not play:\n${summary(r)}`);
      assert.equal(s.readyState, 4);
      assert.ok(s.bufferedTotal >= 10, `buffered ${s.bufferedTotal}`);
      assert.equal(s.videoWidth > 0 && s.videoHeight > 0, true);
      assert.equal(s.mediaError, null);
      assert.equal(s.playError, null, 'muted autoplay was refused');
      assert.deepEqual(r.consoleErrors, [], summary(r));
      assert.deepEqual(r.pageErrors, []);
      assert.deepEqual(r.failedRequests, [], summary(r));
      // hls.js may jump the small gap before the first sample (AAC priming in TS): benign.
      assert.deepEqual(s.hlsErrors.filter((e) => !BENIGN.has(e.details)), [],
                       'hls.js reported errors');
      for (const x of r.responses) assert.ok(x.status < 400, `${x.url} → ${x.status}`);
      // Every media byte the browser fetched came from the gateway's origin (blob: is
      // hls.js's own worker).
      const media = r.responses.filter((x) => /^https?:/.test(x.url) &&
                                              !x.url.startsWith(pageOrigin.base + '/'));
      assert.ok(media.length >= 5, `media requests: ${media.length}`);
      for (const x of media) {
        assert.ok(x.url.startsWith(gw.base + '/'), `not via the gateway: ${x.url}`);
        assert.equal(x.acao, '*', `CORS header of ${x.url}`);
      }
      const lists = media.filter((x) => /\.m3u8(\?|$)/.test(target(x.url)));
      const segs = media.filter((x) => /\.ts(\?|$)/.test(target(x.url)));
      const keys = media.filter((x) => /\/enc\.key(\?|$)/.test(target(x.url)));
      assert.ok(lists.length >= 2 && segs.length >= 5 && keys.length >= 1,
                `playlists ${lists.length}, segments ${segs.length}, keys ${keys.length}`);
      for (const x of lists) assert.equal(x.type, 'application/vnd.apple.mpegurl', x.url);
      for (const x of segs) assert.equal(x.type, 'video/mp2t', x.url);
      // It really plays (the clock moves), and frames render: keep a screenshot.
      await r.page.waitForFunction(() => window.__snapshot().currentTime >= 1.5, null,
                                   { timeout: 10000, polling: 100 });
      await r.page.screenshot({ path: path.join(work, shot) });
      t.diagnostic(`screenshot ${path.join(work, shot)}`);
    } finally {
      await r.page.close();
    }
  }

  it('private bucket mode: plays from /stream/hls/ with a token', async (t) => {
    const token = jwt.sign({ sub: 'hls', pfx: 'videos/a', exp: Math.floor(Date.now() / 1000) + 600 },
                           SECRET, { algorithm: 'HS256' });
    await assertPlays(t, `${gw.base}/stream/hls/master.m3u8?token=${token}`, 'private-bucket.png');
  });

  it('proxy mode: plays through /proxy?url= in front of an origin without CORS', async (t) => {
    const from = mediaOrigin.log.length;
    const url = `${mediaOrigin.base}/videos/a/master.m3u8`;
    await assertPlays(t, `${gw.base}/proxy?url=${encodeURIComponent(url)}`, 'proxy.png');
    // The origin was fetched by the gateway, never by the browser (no Origin header, and
    // the origin still sent no CORS headers).
    const seen = mediaOrigin.log.slice(from);
    assert.ok(seen.some((e) => e.path === '/videos/a/master.m3u8' && e.status === 200));
    assert.ok(seen.some((e) => /\.ts$/.test(e.path) && e.status === 200), 'no segment from the origin');
    for (const e of seen) assert.equal(e.origin, null, `browser reached the origin: ${e.path}`);
  });

  it('direct: the same page straight at the origin fails on CORS', async (t) => {
    const from = mediaOrigin.log.length;
    const url = `${mediaOrigin.base}/videos/a/master.m3u8`;
    const r = await playIn(browser.context, playerUrl(url),
                           { until: (s) => s.fatal || s.readyState === 4, timeout: 20000 });
    try {
      const s = r.snapshot;
      t.diagnostic(`readyState ${s.readyState}, buffered ${s.bufferedTotal.toFixed(2)} s, ` +
                   `fatal ${s.fatal && `${s.fatal.type}/${s.fatal.details} code ${s.fatal.code}`}, ` +
                   `console: ${r.consoleErrors[0]}`);
      assert.ok(s.readyState < 4, `played without CORS?\n${summary(r)}`);
      assert.equal(s.bufferedTotal, 0);
      // hls.js: a fatal network error on the playlist with no status visible to the page…
      assert.ok(s.fatal, `no fatal hls.js error:\n${summary(r)}`);
      assert.equal(s.fatal.type, 'networkError');
      assert.equal(s.fatal.details, 'manifestLoadError');
      assert.equal(s.fatal.code, 0, 'the page saw an HTTP status: not a CORS block');
      // …because Chromium blocked it for CORS, …
      assert.ok(r.consoleErrors.some((m) =>
        /blocked by CORS policy/.test(m) && /Access-Control-Allow-Origin/.test(m) && m.includes(url)),
      `no CORS console error:\n${summary(r)}`);
      // …while the origin itself answered the browser's request with a good playlist.
      const hit = mediaOrigin.log.slice(from).find((e) => e.path === '/videos/a/master.m3u8');
      assert.ok(hit, 'the browser never reached the origin');
      assert.equal(hit.status, 200);
      assert.equal(hit.origin, pageOrigin.base, 'a cross-origin request, with Origin');
      const direct = await fetch(url);
      assert.equal(direct.status, 200);
      assert.match(await direct.text(), /^#EXTM3U/);
      assert.equal(direct.headers.get('access-control-allow-origin'), null);
      assert.ok(!mediaOrigin.log.slice(from).some((e) => /\.ts$/.test(e.path)), 'segments were loaded');
    } finally {
      await r.page.close();
    }
  });
});
