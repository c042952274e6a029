// The private-bucket recipe over a local directory (the default demo, SPEC §9) and the
// README's first command: tokens, scoping, rewriting, and real playback with ffmpeg.
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { createRequire } from 'node:module';

import { BIN, ROOT, freePort, get, request, startGateway, tempDir, waitFor } from './lib/gateway.mjs';
import { ffplay, makeHls } from './lib/media.mjs';

const require = createRequire(import.meta.url);
const jwt = require('jsonwebtoken');

const SECRET = 'e2e-secret-0123456789abcdef0123456789';
const ADMIN = 'admin-key-for-tests';

describe('private bucket over a local directory (default policy)', () => {
  let gw, root;
  const token = (claims, opts = {}) =>
    jwt.sign({ sub: 'hls', exp: Math.floor(Date.now() / 1000) + 600, ...claims }, SECRET,
             { algorithm: 'HS256', ...opts });

  before(async () => {
    root = tempDir('hg-media-');
    makeHls(path.join(root, 'videos/a'), { encrypt: true });
    fs.mkdirSync(path.join(root, 'videos/b'), { recursive: true });
    fs.writeFileSync(path.join(root, 'videos/b/master.m3u8'), '#EXTM3U\n#EXT-X-VERSION:3\n');
    fs.writeFileSync(path.join(root, 'secret.txt'), 'outside every prefix');
    gw = await startGateway({
      policyFile: path.join(ROOT, 'policies/policy.lua'), workers: 2,
      env: { HLSGATE_JWT_SECRET: SECRET, HLSGATE_DEMO_DIR: root, HLSGATE_ADMIN_KEY: ADMIN },
    });
  });
  after(async () => {
    const { code } = await gw.stop();
    assert.equal(code, 0, gw.stderrText.slice(-3000));
  });

  it('plays to the end with ffmpeg, every request answered 2xx', async () => {
    const t = token({ pfx: 'videos/a' });
    const from = gw.stdoutText.length;
    const r = await ffplay(`${gw.base}/stream/hls/master.m3u8?token=${t}`);
    assert.equal(r.status, 0, r.stderr);
    assert.deepEqual(r.failures, []);
    await waitFor(() => gw.stdoutText.length > from, 2000, 'no access log');
    const lines = gw.stdoutText.slice(from).split('\n').filter(Boolean).map((l) => JSON.parse(l));
    const segs = lines.filter((l) => /\.ts\?/.test(l.path));
    assert.ok(segs.length >= 6, `segments fetched: ${segs.length}`);
    for (const l of lines) assert.ok(l.status < 300, `${l.path} → ${l.status}`);
    assert.ok(lines.some((l) => /enc\.key/.test(l.path)), 'the AES key went through the gateway');
  });

  it('rewrites every URI to stay in the gateway with the same token, once', async () => {
    const t = token({ pfx: 'videos/a' });
    const master = await get(gw.port, `/stream/hls/master.m3u8?token=${t}`);
    assert.equal(master.status, 200);
    assert.equal(master.headers['content-type'], 'application/vnd.apple.mpegurl');
    assert.match(master.headers['cache-control'], /private/);
    const uris = master.body.split('\n').filter((l) => l && !l.startsWith('#'));
    assert.equal(uris.length, 2);
    for (const u of uris) assert.equal(u, `/stream/hls/${u.split('/')[3]}/index.m3u8?token=${t}`);
    const media = await get(gw.port, `/stream/hls/v0/index.m3u8?token=${t}`);
    assert.match(media.body, new RegExp(`#EXT-X-KEY:METHOD=AES-128,URI="/stream/hls/enc\\.key\\?token=${t}"`));
    for (const u of media.body.split('\n').filter((l) => l && !l.startsWith('#'))) {
      assert.match(u, /^\/stream\/hls\/v0\/seg\d{3}\.ts\?token=[^&?]+$/);
    }
    // A request that already carries the token in its URIs does not get it twice.
    assert.equal((media.body.match(/token=/g) || []).length,
                 media.body.split('\n').filter((l) => /token=/.test(l)).length);
  });

  it('serves segments with their type, and ranges', async () => {
    const t = token({ pfx: 'videos/a' });
    const seg = await get(gw.port, `/stream/hls/v0/seg000.ts?token=${t}`);
    assert.equal(seg.status, 200);
    assert.equal(seg.headers['content-type'], 'video/mp2t');
    const part = await get(gw.port, `/stream/hls/v0/seg000.ts?token=${t}`, 'Range: bytes=0-187\r\n');
    assert.equal(part.status, 206);
    assert.match(part.headers['content-range'], /^bytes 0-187\/\d+$/);
    assert.equal(part.headers['content-length'], '188');
    const bad = await get(gw.port, `/stream/hls/v0/seg000.ts?token=${t}`, 'Range: bytes=99999999-\r\n');
    assert.equal(bad.status, 416);
  });

  it('401 for missing, bad, expired and alg-none tokens', async () => {
    const no = await get(gw.port, '/stream/hls/master.m3u8');
    assert.equal(no.status, 401);
    assert.deepEqual(JSON.parse(no.body), { error: 'missing token', status: 401, request_id: no.headers['x-request-id'] });
    assert.ok(no.headers['x-request-id']);
    assert.equal((await get(gw.port, '/stream/hls/master.m3u8?token=abc.def.ghi')).status, 401);
    const expired = jwt.sign({ sub: 'hls', pfx: 'videos/a', exp: Math.floor(Date.now() / 1000) - 120 },
                             SECRET, { algorithm: 'HS256' });
    assert.equal((await get(gw.port, `/stream/hls/master.m3u8?token=${expired}`)).status, 401);
    const wrongKey = jwt.sign({ sub: 'hls', pfx: 'videos/a', exp: 9999999999 }, 'not-the-secret');
    assert.equal((await get(gw.port, `/stream/hls/master.m3u8?token=${wrongKey}`)).status, 401);
    const none = `${Buffer.from('{"alg":"none","typ":"JWT"}').toString('base64url')}.` +
      `${Buffer.from('{"sub":"hls","pfx":"videos/a","exp":9999999999}').toString('base64url')}.`;
    assert.equal((await get(gw.port, `/stream/hls/master.m3u8?token=${none}`)).status, 401);
    const hs512 = jwt.sign({ sub: 'hls', pfx: 'videos/a', exp: 9999999999 }, SECRET, { algorithm: 'HS512' });
    assert.equal((await get(gw.port, `/stream/hls/master.m3u8?token=${hs512}`)).status, 401);
  });

  it('403 for a wrong subject or an unsafe prefix; another prefix never reaches this asset', async () => {
    assert.equal((await get(gw.port, `/stream/hls/master.m3u8?token=${token({ sub: 'api', pfx: 'videos/a' })}`)).status, 403);
    assert.equal((await get(gw.port, `/stream/hls/master.m3u8?token=${token({ pfx: '../videos/a' })}`)).status, 403);
    // Paths are relative to the token's prefix (as the seed application mints them): a
    // token for videos/b addresses videos/b only.
    const other = token({ pfx: 'videos/b' });
    const m = await get(gw.port, `/stream/hls/master.m3u8?token=${other}`);
    assert.equal(m.status, 200);
    assert.ok(!m.body.includes('STREAM-INF'), 'b’s playlist, not a’s');
    assert.equal((await get(gw.port, `/stream/hls/v0/seg000.ts?token=${other}`)).status, 404);
  });

  it('400 for traversal, encoded or not', async () => {
    const t = token({ pfx: 'videos/a' });
    for (const p of ['../b/master.m3u8', '..%2fb/master.m3u8', '%2e%2e/b/master.m3u8',
                     'v0/%2e%2E/../../secret.txt', 'v0%5c..%5c..%5csecret.txt', '%2E%2E%2F%2E%2E%2Fsecret.txt']) {
      const r = await get(gw.port, `/stream/hls/${p}?token=${t}`);
      assert.equal(r.status, 400, p);
      assert.ok(!r.body.includes('outside every prefix'));
    }
  });

  it('POST /stream/token mints with the admin key, refuses without it', async () => {
    const body = JSON.stringify({ prefix: 'videos/a', ttl: 60, path: 'master.m3u8' });
    const post = (auth) => request(gw.port, `POST /stream/token HTTP/1.1\r\nHost: t\r\n${auth}` +
      `Content-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`);
    assert.equal((await post('')).status, 401);
    assert.equal((await post('Authorization: Bearer nope\r\n')).status, 401);
    const ok = await post(`Authorization: Bearer ${ADMIN}\r\n`);
    assert.equal(ok.status, 200);
    const j = JSON.parse(ok.body);
    assert.equal(j.url, `/stream/hls/master.m3u8?token=${j.token}`);
    assert.ok(Math.abs(j.expires_at - (Date.now() / 1000 + 60)) < 5);
    const claims = jwt.verify(j.token, SECRET, { algorithms: ['HS256'] });
    assert.equal(claims.sub, 'hls');
    assert.equal(claims.pfx, 'videos/a');
    assert.equal((await get(gw.port, j.url)).status, 200);
  });

  it('`hlsgate token` mints a token the gateway and jsonwebtoken accept', async () => {
    const r = spawnSync(BIN, ['token', '--prefix', 'videos/a', '--ttl', '120'],
                        { encoding: 'utf8', env: { ...process.env, HLSGATE_JWT_SECRET: SECRET } });
    assert.equal(r.status, 0, r.stderr);
    const url = /^url: +(\S+)$/m.exec(r.stdout)[1];
    const tok = /^token: +(\S+)$/m.exec(r.stdout)[1];
    assert.equal(jwt.verify(tok, SECRET, { algorithms: ['HS256'] }).pfx, 'videos/a');
    assert.equal((await get(gw.port, url)).status, 200);
    const noSecret = spawnSync(BIN, ['token', '--prefix', 'x'], { encoding: 'utf8', env: { PATH: process.env.PATH } });
    assert.equal(noSecret.status, 2);
  });
});

describe("the README's first command", () => {
  it('ends with a URL that ffmpeg plays', async () => {
    const dir = tempDir('hg-demo-');
    const port = await freePort();
    // Its own process group, so cleanup also stops the ffmpeg the script may be running.
    const proc = spawn('bash', ['scripts/run-demo.sh'], {
      cwd: ROOT, detached: true,
      env: { ...process.env, HLSGATE_DEMO_DIR: dir, HLSGATE_LISTEN: `127.0.0.1:${port}`,
             HLSGATE_BIN: BIN, HLSGATE_WORKERS: '1', HLSGATE_JWT_SECRET: '', HLSGATE_DEMO_SECONDS: '16' },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let err = '';
    let exited = false;
    proc.stderr.setEncoding('utf8');
    proc.stderr.on('data', (d) => { err += d; });
    proc.on('exit', () => { exited = true; });
    try {
      await waitFor(() => / ready: /.test(err) || exited, 240000, () => `demo did not start:\n${err}`);
      assert.ok(!exited, `the demo exited:\n${err}`);
      const url = /(http:\/\/127\.0\.0\.1:\d+\/stream\/hls\/master\.m3u8\?token=\S+)/.exec(err)[1];
      const r = await ffplay(url);
      assert.equal(r.status, 0, r.stderr);
      assert.deepEqual(r.failures, []);
      // The banner: the watch page, the PID that HUP needs, loopback only (no LAN URL).
      const watch = /(http:\/\/127\.0\.0\.1:\d+\/watch#\/stream\/hls\/master\.m3u8\?token=\S+)/.exec(err)?.[1];
      assert.ok(watch, err);
      assert.equal((await fetch(new URL('/watch/', watch))).status, 200);
      assert.match(err, new RegExp(`kill -HUP ${proc.pid}\\b`));
      assert.match(err, /\(this machine only\)/);
      assert.doesNotMatch(err, /reachable from the network/);
      const from = err.length;
      process.kill(proc.pid, 'SIGHUP');
      await waitFor(() => /reloading policy/.test(err.slice(from)), 10000, () => `HUP to the printed PID did nothing:\n${err.slice(from)}`);
    } finally {
      try { process.kill(-proc.pid, 'SIGTERM'); } catch { /* already gone */ }
      await waitFor(() => exited, 30000, 'the demo did not stop');
    }
  });
});
