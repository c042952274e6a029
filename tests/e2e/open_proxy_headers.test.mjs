// Open-proxy upstream headers per stream (issue #15): Referer, Origin, User-Agent and
// Cookie carried in the proxy URL (`headers=` JSON), sent to the origin for the playlist
// and inherited by every rewritten child URL — only when the proxy is protected (its key,
// or a signed URL whose signature covers the headers). An origin that checks them (hotlink
// protection) plays through ffmpeg.
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';

import { ROOT, get, startGateway, tempDir } from './lib/gateway.mjs';
import { ffplay, makeHls } from './lib/media.mjs';
import { startOrigin } from './lib/origin.mjs';

const enc = encodeURIComponent;
const KEY = 'stream-headers-key-0123';
const SIGN_KEY = 'stream-headers-sign-key-0123456789';
const HEADERS = { Referer: 'https://site.example/watch/1', 'User-Agent': 'SiteTV/2.0', Cookie: 'session=abc123' };
const H = JSON.stringify(HEADERS);

/** An origin that serves only requests carrying the site's Referer, User-Agent and Cookie. */
function guarded(root) {
  const seen = [];
  return {
    seen,
    start: () => startOrigin({ root, routes: {} }).then((o) => {
      const { server } = o;
      const handlers = server.listeners('request');
      server.removeAllListeners('request');
      server.on('request', (req, res) => {
        seen.push({ path: req.url, referer: req.headers.referer, ua: req.headers['user-agent'], cookie: req.headers.cookie });
        if (req.headers.referer !== HEADERS.Referer || req.headers['user-agent'] !== HEADERS['User-Agent'] ||
            req.headers.cookie !== HEADERS.Cookie) {
          res.writeHead(403, { 'Content-Type': 'text/plain' });
          return res.end('hotlinking refused');
        }
        for (const h of handlers) h.call(server, req, res);
      });
      return o;
    }),
  };
}

describe('open proxy: upstream headers per stream', () => {
  let media, origin, g, keyed, signed, open;
  before(async () => {
    media = tempDir('hg-headers-media-');
    makeHls(path.join(media, 'v'), { seconds: 8, encrypt: true });
    g = guarded(media);
    origin = await g.start();
    const env = { HLSGATE_ALLOW_PRIVATE: '1' };
    keyed = await startGateway({ policyFile: path.join(ROOT, 'policies/policy.lua'), env: { ...env, HLSGATE_PROXY_KEY: KEY } });
    signed = await startGateway({ policyFile: path.join(ROOT, 'policies/policy.lua'),
                                  env: { ...env, HLSGATE_PROXY_SIGN_KEY: SIGN_KEY } });
    open = await startGateway({ policyFile: path.join(ROOT, 'policies/policy.lua'), env });
  });
  after(async () => {
    await origin.close();
    for (const gw of [keyed, signed, open]) assert.equal((await gw.stop()).code, 0, gw.stderrText.slice(-2000));
  });

  it('with the proxy key: ffmpeg plays, every origin request carried the headers', async () => {
    const from = g.seen.length;
    const r = await ffplay(`${keyed.base}/proxy?key=${KEY}&headers=${enc(H)}&url=${enc(`${origin.base}/v/master.m3u8`)}`);
    assert.equal(r.status, 0, r.stderr);
    assert.deepEqual(r.failures, []);
    const seen = g.seen.slice(from);
    assert.ok(seen.some((s) => s.path.endsWith('.ts')) && seen.some((s) => s.path.endsWith('.key')), JSON.stringify(seen));
    for (const s of seen) assert.deepEqual([s.referer, s.ua, s.cookie], [HEADERS.Referer, HEADERS['User-Agent'], HEADERS.Cookie], s.path);
    // children inherit them, before the URL (which still ends with the origin path)
    const list = await get(keyed.port, `/proxy?key=${KEY}&headers=${enc(H)}&url=${enc(`${origin.base}/v/v0/index.m3u8`)}`);
    const seg = list.body.split('\n').find((l) => l.includes('.ts'));
    const q = new URL(seg).searchParams;
    assert.deepEqual([...q.keys()].slice(0, 2).sort(), ['headers', 'key']);
    assert.equal([...q.keys()][2], 'url', 'the URL last: it ends with the origin path');
    assert.deepEqual(JSON.parse(q.get('headers')), HEADERS);
  });

  it('a signed URL: the signature covers the headers; changing them is refused', async () => {
    const url = `${origin.base}/v/v0/index.m3u8`;
    const exp = (Math.floor(Date.now() / 1000 / 3600) + 2) * 3600;
    const sig = crypto.createHmac('sha256', SIGN_KEY).update(`${exp}\n${url}\n${H}`).digest('base64url');
    const ok = await get(signed.port, `/proxy?exp=${exp}&sig=${sig}&headers=${enc(H)}&url=${enc(url)}`);
    assert.equal(ok.status, 200, ok.body);
    const child = new URL(ok.body.split('\n').find((l) => l.includes('.ts')));
    assert.deepEqual([...child.searchParams.keys()], ['exp', 'sig', 'headers', 'url']);
    const seg = await fetch(child.href.replace(/^http:\/\/[^/]+/, signed.base));
    assert.equal(seg.status, 200);
    await seg.arrayBuffer();
    // another Cookie on the same signature: refused
    const forged = new URL(child.href.replace(/^http:\/\/[^/]+/, signed.base));
    forged.searchParams.set('headers', JSON.stringify({ ...HEADERS, Cookie: 'session=admin' }));
    assert.equal((await fetch(forged)).status, 403);
    // a signature made without the headers, with headers added afterwards: refused
    const bare = crypto.createHmac('sha256', SIGN_KEY).update(`${exp}\n${url}`).digest('base64url');
    assert.equal((await get(signed.port, `/proxy?exp=${exp}&sig=${bare}&headers=${enc(H)}&url=${enc(url)}`)).status, 403);
  });

  it('refused on an unprotected proxy, and only the four names, with clean values', async () => {
    const url = enc(`${origin.base}/v/master.m3u8`);
    const r = await get(open.port, `/proxy?headers=${enc(H)}&url=${url}`);
    assert.equal(r.status, 403);
    assert.match(JSON.parse(r.body).error, /need HLSGATE_PROXY_KEY or a signed URL/);
    for (const bad of [JSON.stringify({ Authorization: 'Bearer x' }), JSON.stringify({ Host: 'evil' }),
                       JSON.stringify({ Cookie: 'a\r\nX-Evil: 1' }), '[1,2]', 'not json']) {
      const b = await get(keyed.port, `/proxy?key=${KEY}&headers=${enc(bad)}&url=${url}`);
      assert.equal(b.status, 400, bad);
    }
  });

  it('without the headers the guarded origin refuses (the test origin really checks)', async () => {
    const r = await get(keyed.port, `/proxy?key=${KEY}&url=${enc(`${origin.base}/v/master.m3u8`)}`);
    assert.equal(r.status, 502);
    fs.rmSync(media, { recursive: true, force: true });
  });
});
