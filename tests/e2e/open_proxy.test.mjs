// The open CORS proxy recipe (SPEC §9) through the default policy, against a real plain
// HTTP origin that sends no CORS headers.
import assert from 'node:assert/strict';
import net from 'node:net';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';

import { ROOT, get, request, startGateway, tempDir } from './lib/gateway.mjs';
import { ffplay, makeHls } from './lib/media.mjs';
import { startOrigin } from './lib/origin.mjs';

const POLICY = path.join(ROOT, 'policies/policy.lua');
const enc = encodeURIComponent;

describe('open proxy', () => {
  let origin, gw, media;
  before(async () => {
    media = tempDir('hg-proxy-media-');
    makeHls(path.join(media, 'live'), { encrypt: true });
    origin = await startOrigin({ root: media });
    gw = await startGateway({ policyFile: POLICY, workers: 2,
                              env: { HLSGATE_ALLOW_PRIVATE: '1', HLSGATE_CACHE_TTL: '300' } });
  });
  after(async () => {
    await origin.close();
    assert.equal((await gw.stop()).code, 0, gw.stderrText.slice(-3000));
  });

  it('rewrites every URI back through the proxy, percent-encoded, with CORS', async () => {
    const url = `${origin.base}/live/master.m3u8`;
    const res = await get(gw.port, `/proxy?url=${enc(url)}`, 'Origin: http://player.example\r\n');
    assert.equal(res.status, 200);
    assert.equal(res.headers['access-control-allow-origin'], '*');
    assert.equal(res.headers['content-type'], 'application/vnd.apple.mpegurl');
    const uris = res.body.split('\n').filter((l) => l && !l.startsWith('#'));
    assert.equal(uris.length, 2);
    for (const u of uris) {
      const m = /^http:\/\/t\/proxy\?url=([^&]+)$/.exec(u); // base from the request's Host
      assert.ok(m, u);
      assert.match(decodeURIComponent(m[1]), new RegExp(`^${origin.base}/live/v[01]/index\\.m3u8$`));
    }
    const v0 = await get(gw.port, `/proxy?url=${enc(`${origin.base}/live/v0/index.m3u8`)}`);
    const key = /URI="([^"]+)"/.exec(v0.body)[1];
    assert.equal(decodeURIComponent(/url=([^&]+)/.exec(key)[1]), `${origin.base}/live/enc.key`);
    for (const u of v0.body.split('\n').filter((l) => l && !l.startsWith('#'))) assert.match(u, /\/proxy\?url=http%3A%2F%2F/);
  });

  it('plays to the end with ffmpeg', async () => {
    const r = await ffplay(`${gw.base}/proxy?url=${enc(`${origin.base}/live/master.m3u8`)}`);
    assert.equal(r.status, 0, r.stderr);
    assert.deepEqual(r.failures, []);
  });

  it('streams segments with a type and an inline filename', async () => {
    const res = await get(gw.port, `/proxy?url=${enc(`${origin.base}/live/v0/seg001.ts`)}`);
    assert.equal(res.status, 200);
    assert.equal(res.headers['content-type'], 'video/mp2t');
    assert.equal(res.headers['content-disposition'], 'inline; filename="seg001.ts"');
    assert.equal(res.headers['access-control-allow-origin'], '*');
  });

  it('answers a CORS preflight', async () => {
    const res = await request(gw.port, 'OPTIONS /proxy?url=x HTTP/1.1\r\nHost: t\r\nOrigin: http://a\r\n' +
      'Access-Control-Request-Method: GET\r\nAccess-Control-Request-Headers: range\r\n\r\n');
    assert.equal(res.status, 204);
    assert.equal(res.headers['access-control-allow-origin'], '*');
    assert.match(res.headers['access-control-allow-methods'], /GET/);
    assert.match(res.headers['access-control-allow-headers'], /range/i);
  });

  it('serves a second request within the TTL from the cache', async () => {
    const url = `${origin.base}/live/v1/index.m3u8`;
    const before = origin.hits.get('/live/v1/index.m3u8') || 0;
    const a = await get(gw.port, `/proxy?url=${enc(url)}`);
    const b = await get(gw.port, `/proxy?url=${enc(url)}`);
    assert.equal(a.body, b.body);
    assert.equal((origin.hits.get('/live/v1/index.m3u8') || 0) - before, 1);
  });

  // A hot playlist is rewritten once and then served from the output cache for its TTL
  // (a presign time bucket only bounds it when the plan can presign).
  it('rewrites a hot playlist once, then answers it from the output cache', async () => {
    const url = `${origin.base}/live/v0/index.m3u8`;
    const misses = async () =>
      Number(/^hlsgate_cache_requests_total\{result="miss"\} (\d+)$/m.exec((await get(gw.port, '/metrics')).body)[1]);
    await get(gw.port, `/proxy?url=${enc(url)}`);
    const start = await misses();
    for (let i = 0; i < 5; i++) {
      await new Promise((r) => setTimeout(r, 600));
      assert.equal((await get(gw.port, `/proxy?url=${enc(url)}`)).status, 200);
    }
    assert.equal(await misses(), start, 'over 3 s every request found the rewritten copy: nothing rewritten again');
  });

  it('400 without url or with a non-http(s) url, 502 when the origin is down', async () => {
    assert.equal((await get(gw.port, '/proxy')).status, 400);
    for (const u of ['ftp://example.com/a.m3u8', 'file:///etc/passwd', 'javascript:alert(1)', 'not a url', '//x/y'])
      assert.equal((await get(gw.port, `/proxy?url=${enc(u)}`)).status, 400, u);
    const dead = net.createServer();
    await new Promise((r) => dead.listen(0, '127.0.0.1', r));
    const port = dead.address().port;
    await new Promise((r) => dead.close(r));
    const t0 = Date.now();
    const res = await get(gw.port, `/proxy?url=${enc(`http://127.0.0.1:${port}/x.m3u8`)}`);
    assert.equal(res.status, 502);
    assert.match(JSON.parse(res.body).error, new RegExp(`127\\.0\\.0\\.1:${port}`));
    assert.ok(Date.now() - t0 < 3000);
  });
});

describe('open proxy, defaults and options', () => {
  it('403 for a private address unless HLSGATE_ALLOW_PRIVATE; allowlist; access key', async () => {
    const origin = await startOrigin({ root: tempDir() });
    const gw = await startGateway({ policyFile: POLICY, env: { HLSGATE_ALLOW_PRIVATE: '' } });
    for (const u of [`${origin.base}/a.m3u8`, 'http://169.254.169.254/latest/meta-data/',
                     'http://[::1]:1/x', 'http://0.0.0.0:1/', 'http://10.0.0.1/x', 'http://[::ffff:127.0.0.1]:1/x']) {
      const res = await get(gw.port, `/proxy?url=${enc(u)}`);
      assert.equal(res.status, 403, u);
    }
    assert.equal(origin.requests.length, 0, 'nothing reached the private origin');
    assert.equal((await gw.stop()).code, 0);

    const gw2 = await startGateway({ policyFile: POLICY, env: {
      HLSGATE_ALLOW_PRIVATE: '1', HLSGATE_ALLOW_HOSTS: 'media.example,*.cdn.example', HLSGATE_PROXY_KEY: 'k3y',
      HLSGATE_PUBLIC_URL: 'https://gw.example/' } });
    assert.equal((await get(gw2.port, `/proxy?url=${enc(`${origin.base}/a.m3u8`)}&key=k3y`)).status, 403);
    assert.equal((await get(gw2.port, `/proxy?url=${enc(`${origin.base}/a.m3u8`)}`)).status, 401);
    assert.equal((await get(gw2.port, `/proxy?url=${enc(`${origin.base}/a.m3u8`)}&key=nope`)).status, 401);
    assert.equal((await gw2.stop()).code, 0);

    const media = tempDir();
    makeHls(path.join(media, 'm'), { seconds: 4 });
    const o2 = await startOrigin({ root: media });
    const gw3 = await startGateway({ policyFile: POLICY, env: { HLSGATE_ALLOW_PRIVATE: '1', HLSGATE_PROXY_KEY: 'k3y',
                                                               HLSGATE_PUBLIC_URL: 'https://gw.example/' } });
    const res = await get(gw3.port, `/proxy?url=${enc(`${o2.base}/m/v0/index.m3u8`)}&key=k3y`);
    assert.equal(res.status, 200);
    for (const u of res.body.split('\n').filter((l) => l && !l.startsWith('#')))
      assert.match(u, /^https:\/\/gw\.example\/proxy\?key=k3y&url=[^&]+$/, 'params before the URL: it ends with the origin path');
    assert.equal((await gw3.stop()).code, 0);
    await o2.close();
    await origin.close();
  });
});
