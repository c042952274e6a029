// The watch page (issue #15): /watch/ on the default policy plays the demo in headless
// Chromium with the pinned hls.js served by the gateway itself, and plays a /proxy URL
// typed into its field; nothing is loaded from anywhere else.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { createRequire } from 'node:module';

import { ROOT, get, startGateway, tempDir, waitFor } from './lib/gateway.mjs';
import { makeHls } from './lib/media.mjs';
import { launchChromium, startStatic } from './lib/browser.mjs';

const require = createRequire(import.meta.url);
const jwt = require('jsonwebtoken');
const SECRET = 'watch-e2e-secret-0123456789abcdef';

describe('the /watch page', () => {
  let browser, gw, work, origin;

  before(async () => {
    browser = await launchChromium();
    work = tempDir('hg-watch-');
    makeHls(path.join(work, 'sample'), { seconds: 12 });
    origin = await startStatic({ dir: path.join(work, 'sample') });
    gw = await startGateway({ policyFile: path.join(ROOT, 'policies/policy.lua'),
                              env: { HLSGATE_JWT_SECRET: SECRET, HLSGATE_DEMO_DIR: work, HLSGATE_ALLOW_PRIVATE: '1' } });
  });
  after(async () => {
    await browser?.close();
    await origin?.stop();
    if (gw) assert.equal((await gw.stop()).code, 0, gw.stderrText.slice(-2000));
  });

  it('serves the pinned hls.js (the version the tests use), with a strict CSP', async () => {
    const [name, version] = fs.readFileSync(path.join(ROOT, 'www/hls.js.pin'), 'utf8').trim().split(' ');
    const lock = JSON.parse(fs.readFileSync(path.join(ROOT, 'tests/package-lock.json'), 'utf8'));
    const locked = lock.packages[`node_modules/${name}`];
    assert.equal(fs.readFileSync(path.join(ROOT, 'www/hls.js.pin'), 'utf8').trim(),
                 `${name} ${locked.version} ${locked.integrity}`, 'www/hls.js.pin and the lockfile agree');
    const js = await fetch(`${gw.base}/watch/hls.min.js`);
    assert.equal(js.status, 200);
    const served = Buffer.from(await js.arrayBuffer());
    assert.ok(served.equals(fs.readFileSync(path.join(ROOT, 'tests/node_modules/hls.js/dist/hls.min.js'))),
              `the served hls.min.js is ${name} ${version}`);
    const page = await fetch(`${gw.base}/watch/`);
    assert.equal(page.headers.get('content-type'), 'text/html; charset=utf-8');
    assert.match(page.headers.get('content-security-policy'), /script-src 'self';.*frame-ancestors 'none'/);
    const redirect = await get(gw.port, '/watch');
    assert.equal(redirect.status, 301);
    assert.equal(redirect.headers.location, '/watch/');
    assert.equal((await get(gw.port, '/watch/../policies/policy.lua')).status, 404);
    assert.equal((await get(gw.port, '/watch/secret')).status, 404);
  });

  it('plays the demo URL given after # and a /proxy URL typed into the field', async (t) => {
    const token = jwt.sign({ sub: 'hls', pfx: 'sample', exp: Math.floor(Date.now() / 1000) + 600 }, SECRET,
                           { algorithm: 'HS256' });
    const page = await browser.context.newPage();
    const foreign = [];
    page.on('request', (r) => { if (!r.url().startsWith(gw.base) && !r.url().startsWith('blob:') && !r.url().startsWith('data:')) foreign.push(r.url()); });
    const errors = [];
    page.on('pageerror', (e) => errors.push(String(e)));
    page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });
    try {
      await page.setViewportSize({ width: 760, height: 600 });
      await page.goto(`${gw.base}/watch#/stream/hls/master.m3u8?token=${token}`);
      const playing = () => page.evaluate(() => {
        const v = document.querySelector('video');
        return { t: v.currentTime, w: v.videoWidth, engine: window.__watch.engine, fatal: window.__watch.fatal,
                 src: window.__watch.src, playing: window.__watch.playing,
                 status: document.getElementById('status').textContent };
      });
      let s;
      await waitFor(async () => { s = await playing(); return s.fatal || (s.t >= 2 && s.w > 0); }, 30000,
                    () => `did not play: ${JSON.stringify(s)} ${errors.join('\n')}`);
      assert.equal(s.fatal, null);
      assert.match(s.engine, /^hls\.js 1\./);
      assert.match(s.status, /playing · t=/);
      const shot = path.join(work, 'watch.png');
      await page.screenshot({ path: shot });
      t.diagnostic(`screenshot ${shot}`);
      if (process.env.HLSGATE_WATCH_SCREENSHOT) fs.copyFileSync(shot, process.env.HLSGATE_WATCH_SCREENSHOT);

      // The field: a proxy URL to an origin without CORS.
      await page.fill('#src', `/proxy?url=${encodeURIComponent(`${origin.base}/master.m3u8`)}`);
      await page.click('button');
      await waitFor(async () => {
        s = await playing();
        return s.fatal || (s.src.startsWith('/proxy?url=') && s.playing && s.t >= 1 && s.w > 0);
      }, 30000, () => `proxy URL did not play: ${JSON.stringify(s)}`);
      assert.ok(origin.log.some((l) => l.path.endsWith('.ts')), 'segments came from the origin, through the proxy');
      assert.equal(s.fatal, null);
      assert.match(await page.evaluate(() => location.hash), /^#\/proxy\?url=/);
      assert.deepEqual(foreign, [], 'the page loads nothing from anywhere but the gateway');
      assert.deepEqual(errors, []);
    } finally {
      await page.close();
    }
  });
});
