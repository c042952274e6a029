// The open proxy with signed child URLs (issue 11, item 9): with HLSGATE_PROXY_SIGN_KEY
// every rewritten URL carries exp and sig, and the proxy fetches only what it (or the
// operator) signed; plus the start-up warning when an open proxy is exposed. Default
// policy, real origin, ffmpeg.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';

import { ROOT, get, startGateway, tempDir } from './lib/gateway.mjs';
import { ffplay, makeHls } from './lib/media.mjs';
import { startOrigin } from './lib/origin.mjs';

const POLICY = path.join(ROOT, 'policies/policy.lua');
const enc = encodeURIComponent;
const SIGN_KEY = 'sign-key-0123456789abcdef-never-shown';
const PROXY_KEY = 'entry-key-fedcba9876543210';
const TTL = 600;

/** What an operator's app does: sign an entry URL (docs/policies.md, "Signed child URLs"). */
function signed(url, { exp = (Math.floor(Date.now() / 1000 / TTL) + 2) * TTL, key = SIGN_KEY } = {}) {
  const sig = crypto.createHmac('sha256', key).update(`${exp}\n${url}`).digest('base64url');
  return `/proxy?exp=${exp}&sig=${sig}&url=${enc(url)}`;
}

const uris = (body) => body.split('\n').filter((l) => l && !l.startsWith('#'))
  .concat([...body.matchAll(/URI="([^"]+)"/g)].map((m) => m[1]));

describe('open proxy with signed child URLs', () => {
  let origin, gw, media;
  before(async () => {
    media = tempDir('hg-signed-media-');
    makeHls(path.join(media, 'live'), { encrypt: true });
    origin = await startOrigin({ root: media });
    gw = await startGateway({ policyFile: POLICY, workers: 2,
                              env: { HLSGATE_ALLOW_PRIVATE: '1', HLSGATE_PROXY_SIGN_KEY: SIGN_KEY,
                                     HLSGATE_PROXY_KEY: PROXY_KEY, HLSGATE_PROXY_SIGN_TTL: String(TTL) } });
  });
  after(async () => {
    await origin.close();
    assert.equal((await gw.stop()).code, 0, gw.stderrText.slice(-3000));
  });

  it('signs every rewritten URL (exp on a TTL boundary, valid HMAC), never writes a key', async () => {
    const url = `${origin.base}/live/master.m3u8`;
    const res = await get(gw.port, `/proxy?url=${enc(url)}&key=${PROXY_KEY}`);
    assert.equal(res.status, 200, res.body);
    const now = Date.now() / 1000;
    const list = uris(res.body);
    assert.equal(list.length, 2);
    for (const u of list) {
      const q = new URL(u).searchParams;
      assert.deepEqual([...q.keys()], ['exp', 'sig', 'url'], u);
      assert.ok(u.endsWith(enc('index.m3u8')), 'the URL ends with the origin path (ffmpeg checks extensions)');
      const exp = Number(q.get('exp'));
      assert.equal(exp % TTL, 0);
      assert.ok(exp - now >= TTL && exp - now <= 2 * TTL, `exp ${exp - now} s away`);
      assert.equal(q.get('sig'), crypto.createHmac('sha256', SIGN_KEY).update(`${exp}\n${q.get('url')}`).digest('base64url'));
    }
    assert.ok(!res.body.includes(PROXY_KEY) && !res.body.includes(SIGN_KEY) && !res.body.includes('key='));
    // the same bytes on the next request: cacheable
    const again = await get(gw.port, `/proxy?url=${enc(url)}&key=${PROXY_KEY}`);
    assert.equal(again.body, res.body);
  });

  it('a signed entry URL plays to the end with ffmpeg (variants, key, segments all signed)', async () => {
    const r = await ffplay(`${gw.base}${signed(`${origin.base}/live/master.m3u8`)}`);
    assert.equal(r.status, 0, r.stderr);
    assert.deepEqual(r.failures, []);
    const v0 = await get(gw.port, signed(`${origin.base}/live/v0/index.m3u8`));
    const children = uris(v0.body);
    assert.ok(children.length > 3);
    assert.ok(children.every((u) => /\?exp=\d+&sig=[A-Za-z0-9_-]{43}&url=/.test(u)), v0.body);
    assert.ok(!v0.body.includes(SIGN_KEY) && !v0.body.includes(PROXY_KEY));
  });

  it('403 for a tampered sig, a tampered URL, an expired or malformed exp', async () => {
    const url = `${origin.base}/live/v0/seg001.ts`;
    const good = signed(url);
    assert.equal((await get(gw.port, good)).status, 200);
    const sig = /sig=([^&]+)/.exec(good)[1];
    const flipped = (sig[0] === 'A' ? 'B' : 'A') + sig.slice(1);
    const cases = [
      good.replace(sig, flipped),
      good.replace(enc('seg001.ts'), enc('seg002.ts')),
      good.replace(/exp=\d+/, (m) => `exp=${Number(m.slice(4)) + TTL}`),
      signed(url, { exp: Math.floor(Date.now() / 1000) - 5 }),
      signed(url, { exp: '12abc' }),
      signed(url, { key: 'another-key-0123456789' }),
      good.replace(/&sig=[^&]+/, ''),
      good.replace(/exp=\d+&/, ''),
    ];
    for (const c of cases) {
      const res = await get(gw.port, c);
      assert.equal(res.status, 403, `${c}: ${res.body}`);
      assert.ok(res.headers['access-control-allow-origin'], 'CORS on errors too');
    }
  });

  it("the documented shell recipe signs entry URLs the gateway accepts", async () => {
    const doc = fs.readFileSync(path.join(ROOT, 'docs/policies.md'), 'utf8');
    const block = /### Signed child URLs[\s\S]*?```bash\n([\s\S]*?)\n```/.exec(doc)[1];
    const url = `${origin.base}/live/v1/index.m3u8`;
    const script = block.replace('https://cdn.example.com/live/master.m3u8', url).replace(/ttl=3600/, `ttl=${TTL}`);
    const r = spawnSync('bash', ['-euo', 'pipefail', '-c', script],
                        { env: { ...process.env, HLSGATE_PROXY_SIGN_KEY: SIGN_KEY }, encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    const out = new URL(r.stdout.trim());
    assert.equal(out.searchParams.get('url'), url);
    const res = await get(gw.port, out.pathname + out.search);
    assert.equal(res.status, 200, res.body);
    assert.match(res.body, /^#EXTM3U/);
  });

  it('refuses an unsigned URL the playlist never listed (401), even with a wrong key', async () => {
    for (const target of [`/proxy?url=${enc('http://example.com/x.m3u8')}`,
                          `/proxy?url=${enc(`${origin.base}/live/v0/seg001.ts`)}`,
                          `/proxy?url=${enc('http://example.com/x.m3u8')}&key=wrong`]) {
      const res = await get(gw.port, target);
      assert.equal(res.status, 401, target);
    }
  });

  it('logs no exposure warning on loopback', () => {
    assert.doesNotMatch(gw.stderrText, /OPEN PROXY EXPOSED/);
  });
});

describe('exposure warning', () => {
  const start = (env, listen) => startGateway({ policyFile: POLICY, workers: 2, env,
                                                args: listen ? ['--listen', listen] : [] });

  it('warns once, on stderr, when an open proxy without key or allowlist listens beyond loopback', async () => {
    const gw = await start({}, '0.0.0.0:0');
    try {
      const lines = gw.stderrText.split('\n').filter((l) => l.includes('OPEN PROXY EXPOSED'));
      assert.equal(lines.length, 1, gw.stderrText);
      assert.match(lines[0], /\[warn\]/);
      assert.match(lines[0], /0\.0\.0\.0:0/);
      assert.match(lines[0], /HLSGATE_PROXY_SIGN_KEY/);
    } finally {
      assert.equal((await gw.stop()).code, 0);
    }
  });

  for (const [what, env] of [['a signing key', { HLSGATE_PROXY_SIGN_KEY: SIGN_KEY }],
                             ['a proxy key', { HLSGATE_PROXY_KEY: PROXY_KEY }],
                             ['a host allowlist', { HLSGATE_ALLOW_HOSTS: 'cdn.example.com' }]]) {
    it(`stays quiet with ${what}`, async () => {
      const gw = await start(env, '0.0.0.0:0');
      try {
        assert.doesNotMatch(gw.stderrText, /OPEN PROXY EXPOSED/);
      } finally {
        assert.equal((await gw.stop()).code, 0);
      }
    });
  }

  it('refuses to start with a signing key shorter than 16 bytes', async () => {
    await assert.rejects(start({ HLSGATE_PROXY_SIGN_KEY: 'short' }), /at least 16 bytes/);
  });
});
