// The private-bucket deployment end to end (SPEC §1, §9): HLS made with ffmpeg in a
// private, signature-verifying S3 bucket; the default policy; ffmpeg as the player.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { createRequire } from 'node:module';

import { ROOT, get, request, startGateway, tempDir } from './lib/gateway.mjs';
import { ffplay, listFiles, makeHls } from './lib/media.mjs';
import { startS3Server } from './lib/s3server.mjs';

const require = createRequire(import.meta.url);
const jwt = require('jsonwebtoken');
const SECRET = 'private-bucket-e2e-secret-0123456789';
const ADMIN = 'admin-0123';

describe('private bucket on a real S3 (default policy)', () => {
  let s3, gw;
  const token = (pfx, extra = {}) =>
    jwt.sign({ sub: 'hls', pfx, exp: Math.floor(Date.now() / 1000) + 600, ...extra }, SECRET, { algorithm: 'HS256' });

  before(async () => {
    s3 = await startS3Server({ bucket: 'hls-media', accessKey: 'AKIDPRIVATE', secretKey: 'very/secret+key' });
    const dir = tempDir('hg-s3-media-');
    makeHls(path.join(dir, 'ts'), { encrypt: true, seconds: 12 });
    makeHls(path.join(dir, 'fmp4'), { flavor: 'fmp4', seconds: 12 });
    for (const flavor of ['ts', 'fmp4']) {
      for (const f of listFiles(path.join(dir, flavor))) {
        const type = f.endsWith('.m3u8') ? 'application/vnd.apple.mpegurl' : 'binary/octet-stream';
        await s3.putObject(`videos/${flavor}/${f}`, fs.readFileSync(path.join(dir, flavor, f)), type);
      }
    }
    gw = await startGateway({
      policyFile: path.join(ROOT, 'policies/policy.lua'), workers: 2,
      env: { HLSGATE_JWT_SECRET: SECRET, HLSGATE_ADMIN_KEY: ADMIN, S3_ENDPOINT: s3.endpoint,
             S3_BUCKET: s3.bucket, AWS_ACCESS_KEY_ID: s3.accessKey, AWS_SECRET_ACCESS_KEY: s3.secretKey,
             HLSGATE_PRESIGN_TTL: '600' },
    });
  });
  after(async () => {
    assert.equal((await gw.stop()).code, 0, gw.stderrText.slice(-3000));
    await s3.close();
  });

  for (const flavor of ['ts', 'fmp4']) {
    it(`ffmpeg plays the ${flavor} stream to the end; media comes straight from S3, presigned`, async () => {
      const fromLog = gw.stdoutText.length;
      const fromS3 = s3.requests.length;
      const r = await ffplay(`${gw.base}/stream/hls/master.m3u8?token=${token(`videos/${flavor}`)}`);
      assert.equal(r.status, 0, r.stderr);
      assert.deepEqual(r.failures, []);
      const gwPaths = gw.stdoutText.slice(fromLog).split('\n').filter(Boolean).map((l) => JSON.parse(l));
      for (const l of gwPaths) {
        assert.equal(l.status, 200, l.path);
        assert.match(l.path, /\.m3u8\?token=REDACTED$/, 'only playlists go through the gateway');
      }
      const media = s3.requests.slice(fromS3).filter((q) => !q.path.endsWith('.m3u8'));
      assert.ok(media.length >= 6, `media requests at S3: ${media.length}`);
      for (const q of media) {
        assert.ok(q.presigned, `${q.path} was presigned`);
        assert.equal(q.query['X-Amz-Expires'], '600');
      }
      const playlists = s3.requests.slice(fromS3).filter((q) => q.path.endsWith('.m3u8'));
      for (const q of playlists) assert.ok(q.headerSigned && !q.presigned, 'playlists are header-signed by the gateway');
    });
  }

  it('rewrites variants to the gateway (same token) and every segment, key and map to a presigned URL', async () => {
    const t = token('videos/ts');
    const master = await get(gw.port, `/stream/hls/master.m3u8?token=${t}`);
    for (const u of master.body.split('\n').filter((l) => l && !l.startsWith('#')))
      assert.match(u, new RegExp(`^/stream/hls/v[01]/index\\.m3u8\\?token=${t.replace(/\./g, '\\.')}$`));
    const media = await get(gw.port, `/stream/hls/v0/index.m3u8?token=${t}`);
    const key = /#EXT-X-KEY:METHOD=AES-128,URI="([^"]+)"/.exec(media.body)[1];
    const segs = media.body.split('\n').filter((l) => l && !l.startsWith('#'));
    for (const u of [key, ...segs]) {
      const url = new URL(u);
      assert.equal(url.origin, s3.endpoint);
      assert.match(url.pathname, /^\/hls-media\/videos\/ts\//);
      assert.ok(url.searchParams.get('X-Amz-Signature'));
      assert.ok(!u.includes(t), 'no viewer token in presigned URLs');
      assert.equal((await fetch(u)).status, 200, 'S3 accepts the presigned URL');
    }
    const fmp4 = await get(gw.port, `/stream/hls/v0/index.m3u8?token=${token('videos/fmp4')}`);
    const map = /#EXT-X-MAP:URI="([^"]+)"/.exec(fmp4.body)[1];
    assert.match(map, /X-Amz-Signature=/);
    assert.equal((await fetch(map)).status, 200);
  });

  it('a hot playlist is fetched and presigned once: raw and rewritten output are cached', async () => {
    const t = token('videos/ts');
    const path = `/stream/hls/v1/index.m3u8?token=${t}`;
    const before = s3.requests.filter((q) => q.path === '/hls-media/videos/ts/v1/index.m3u8').length;
    const fromLog = gw.stdoutText.length;
    const first = await get(gw.port, path);
    const again = await Promise.all(Array.from({ length: 20 }, () => get(gw.port, path)));
    for (const r of again) assert.equal(r.body, first.body, 'the same bytes (same presign time bucket)');
    const fetched = s3.requests.filter((q) => q.path === '/hls-media/videos/ts/v1/index.m3u8').length - before;
    assert.ok(fetched <= 1, `bucket fetches: ${fetched}`);
    await new Promise((r) => setTimeout(r, 100));
    const lines = gw.stdoutText.slice(fromLog).split('\n').filter(Boolean).map((l) => JSON.parse(l));
    assert.ok(lines.filter((l) => l.cache === 'hit').length >= 19, 'served from the output cache');
    // Another viewer: a media playlist whose URIs are all presigned carries no token, so
    // it gets the same rewritten bytes from the cache; its segment URLs still work.
    const fromLog2 = gw.stdoutText.length;
    const other = await get(gw.port, `/stream/hls/v1/index.m3u8?token=${token('videos/ts', { jti: 'b' })}`);
    assert.equal(other.body, first.body);
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(JSON.parse(gw.stdoutText.slice(fromLog2).split('\n')[0]).cache, 'hit');
    // …while a master playlist (its variants carry each viewer's token) is never shared.
    const m1 = await get(gw.port, `/stream/hls/master.m3u8?token=${t}`);
    const t2 = token('videos/ts', { jti: 'c' });
    const m2 = await get(gw.port, `/stream/hls/master.m3u8?token=${t2}`);
    assert.ok(m1.body.includes(t) && !m1.body.includes(t2));
    assert.ok(m2.body.includes(t2) && !m2.body.includes(t));
    const seg = other.body.split('\n').find((l) => l.startsWith('http'));
    assert.equal((await fetch(seg)).status, 200);
    assert.equal(s3.requests.filter((q) => q.path === '/hls-media/videos/ts/v1/index.m3u8').length - before, fetched);
  });

  it('401 expired, 404 for a prefix without this asset, 400 traversal, 403 wrong subject', async () => {
    const expired = jwt.sign({ sub: 'hls', pfx: 'videos/ts', exp: Math.floor(Date.now() / 1000) - 100 }, SECRET);
    assert.equal((await get(gw.port, `/stream/hls/master.m3u8?token=${expired}`)).status, 401);
    assert.equal((await get(gw.port, `/stream/hls/v0/seg000.ts?token=${token('videos/fmp4')}`)).status, 404);
    assert.equal((await get(gw.port, `/stream/hls/..%2Fts/master.m3u8?token=${token('videos/fmp4')}`)).status, 400);
    assert.equal((await get(gw.port, `/stream/hls/../ts/master.m3u8?token=${token('videos/fmp4')}`)).status, 400);
    assert.equal((await get(gw.port, `/stream/hls/master.m3u8?token=${token('videos/ts', { sub: 'x' })}`)).status, 403);
  });

  it('accepts a token from jsonwebtoken with the seed’s claims; POST /stream/token needs the admin key', async () => {
    const seedToken = jwt.sign({ sub: 'hls', pfx: 'videos/ts' }, SECRET, { algorithm: 'HS256', expiresIn: 3600 });
    assert.equal((await get(gw.port, `/stream/hls/master.m3u8?token=${seedToken}`)).status, 200);
    const body = JSON.stringify({ prefix: 'videos/ts' });
    const res = await request(gw.port, `POST /stream/token HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n` +
                                       `Content-Length: ${body.length}\r\n\r\n${body}`);
    assert.equal(res.status, 401);
  });
});
