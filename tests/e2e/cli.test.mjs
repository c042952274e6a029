// The operator's command line and core endpoints (issue #15): --health for container
// health checks, --version, addresses and policy paths refused before anything loads,
// process_* and build-info metrics, core endpoints that only answer GET/HEAD.
import assert from 'node:assert/strict';
import { execFile, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';
import { after, before, describe, it } from 'node:test';

import { BIN, ROOT, get, request, startGateway, tempDir } from './lib/gateway.mjs';
import { startS3Server } from './lib/s3server.mjs';

const require = createRequire(import.meta.url);
const parsePrometheus = require('parse-prometheus-text-format');
/** The same, without blocking this process (an S3 server in it must answer meanwhile). */
const runAsync = (args, env = {}) => new Promise((resolve) => {
  execFile(BIN, args, { cwd: ROOT, encoding: 'utf8', timeout: 20000, env: { ...process.env, ...env } },
           (err, stdout, stderr) => resolve({ status: err ? (err.code ?? 1) : 0, stdout, stderr }));
});
const run = (args, env = {}) => spawnSync(BIN, args, { cwd: ROOT, encoding: 'utf8', timeout: 10000,
                                                       env: { ...process.env, ...env } });

describe('command line', () => {
  it('--version names the commit and the libraries', () => {
    const r = run(['--version']);
    assert.equal(r.status, 0);
    assert.match(r.stdout, /^hlsgate \d+\.\d+\.\d+ \(commit ([0-9a-f]{12}|unknown); libuv [\d.]+, Lua 5\.4\.\d+, mbed TLS [\d.]+\)\n$/);
  });

  it('a listen address with a bad port is refused before the policy loads', () => {
    for (const [args, re] of [[['--listen', '127.0.0.1:99999'], /port out of range/],
                              [['--listen', '127.0.0.1:-1'], /port out of range/],
                              [['--listen', '127.0.0.1'], /expected HOST:PORT/],
                              [['--admin-listen', '127.0.0.1:8x'], /port out of range/]]) {
      const r = run([...args, '--policy', '/nonexistent/policy.lua']);
      assert.notEqual(r.status, 0);
      assert.match(r.stderr, re);
      assert.doesNotMatch(r.stderr, /nonexistent/, 'the address is checked first');
    }
  });

  it('token refuses a prefix or path the server would always refuse', () => {
    for (const args of [['--prefix', '../etc'], ['--prefix', 'a/../b'], ['--prefix', 'a\\b'],
                        ['--prefix', 'a', '--path', '../x.m3u8']]) {
      const r = run(['token', ...args], { HLSGATE_JWT_SECRET: 'cli-secret' });
      assert.equal(r.status, 2, args.join(' '));
      assert.match(r.stderr, /would always be refused by the server/);
      assert.equal(r.stdout, '');
    }
    const ok = run(['token', '--prefix', 'videos/abc/'], { HLSGATE_JWT_SECRET: 'cli-secret' });
    assert.equal(ok.status, 0);
    assert.match(ok.stdout, /^url: +\/stream\/hls\/master\.m3u8\?token=/m);
  });

  it('--check on a directory says so', () => {
    const dir = tempDir('hg-check-');
    const r = run(['--check', dir]);
    assert.equal(r.status, 1);
    assert.match(r.stderr, /is a directory, expected a Lua file/);
    fs.rmSync(dir, { recursive: true, force: true });
  });
});

describe('--health and the core endpoints', () => {
  let gw;
  before(async () => { gw = await startGateway({ policy: 'return { on_request = function() return nil end }' }); });
  after(async () => { assert.equal((await gw.stop()).code, 0, gw.stderrText.slice(-2000)); });

  it('--health exits 0 against a live gateway and 1 where nothing listens, within its deadline', () => {
    assert.equal(run(['--health', '--listen', `127.0.0.1:${gw.port}`]).status, 0);
    assert.equal(run(['--health'], { HLSGATE_LISTEN: `0.0.0.0:${gw.port}` }).status, 0, 'a wildcard is probed on loopback');
    const t0 = Date.now();
    const down = run(['--health', '--listen', '127.0.0.1:1']);
    assert.equal(down.status, 1);
    assert.match(down.stderr, /did not answer 200/);
    assert.ok(Date.now() - t0 < 5000);
  });

  it('/healthz, /readyz and /metrics answer 405 to methods other than GET and HEAD', async () => {
    for (const p of ['/healthz', '/readyz', '/metrics']) {
      for (const m of ['POST', 'PUT', 'DELETE']) {
        const r = await request(gw.port, `${m} ${p} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n`);
        assert.equal(r.status, 405, `${m} ${p}`);
        assert.equal(r.headers.allow, 'GET, HEAD');
        assert.equal(JSON.parse(r.body).request_id, r.headers['x-request-id']);
      }
      assert.equal((await get(gw.port, p)).status, 200);
    }
  });

  it('/metrics has the standard process_* series and hlsgate_build_info', async () => {
    const res = await get(gw.port, '/metrics');
    const fams = parsePrometheus(res.body);
    const v = (n) => Number(fams.find((f) => f.name === n)?.metrics[0].value);
    const rss = Number(/VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${gw.proc.pid}/status`, 'utf8'))[1]) * 1024;
    assert.ok(Math.abs(v('process_resident_memory_bytes') - rss) < rss * 0.5, `${v('process_resident_memory_bytes')} vs ${rss}`);
    assert.ok(v('process_cpu_seconds_total') > 0);
    // counted while /metrics was being answered: our connection was open then, maybe not now
    const fds = fs.readdirSync(`/proc/${gw.proc.pid}/fd`).length;
    assert.ok(Math.abs(v('process_open_fds') - fds) <= 2, `${v('process_open_fds')} vs ${fds}`);
    assert.ok(v('process_max_fds') >= 1024);
    const start = v('process_start_time_seconds');
    assert.ok(start <= Date.now() / 1000 && start > Date.now() / 1000 - 120, String(start));
    const info = fams.find((f) => f.name === 'hlsgate_build_info').metrics[0];
    assert.equal(info.value, '1');
    assert.match(info.labels.version, /^\d+\.\d+\.\d+$/);
    assert.match(info.labels.mbedtls, /^2\.\d+\.\d+$/);
    assert.ok(info.labels.commit && info.labels.libuv && info.labels.lua);
  });
});

describe('errors a viewer sees', () => {
  let gw;
  before(async () => {
    gw = await startGateway({ policyFile: path.join(ROOT, 'policies/policy.lua'),
                              env: { HLSGATE_JWT_SECRET: 'viewer-errors-secret-0123456789' } });
  });
  after(async () => { assert.equal((await gw.stop()).code, 0, gw.stderrText.slice(-2000)); });

  it('every JSON error has error, status and request_id, in that order, from the core or the policy', async () => {
    for (const [target, status] of [['/stream/hls/master.m3u8', 401], ['/stream/hls/master.m3u8?token=x.y.z', 401],
                                    ['/proxy', 400], ['/proxy?url=ftp%3A%2F%2Fx', 400], ['/nowhere', 404],
                                    ['/stream/token', 405]]) {
      const r = await get(gw.port, target);
      assert.equal(r.status, status, target);
      const body = JSON.parse(r.body);
      assert.deepEqual(Object.keys(body), ['error', 'status', 'request_id'], target);
      assert.equal(body.status, status);
      assert.equal(body.request_id, r.headers['x-request-id'], target);
      assert.equal(r.headers['cache-control'], 'no-store');
    }
  });
});

describe('--check --probe', () => {
  let s3;
  before(async () => { s3 = await startS3Server({ bucket: 'probe-media', accessKey: 'AKIDPROBE', secretKey: 'probe/secret' }); });
  after(async () => { await s3.close(); });
  const probe = (env) => runAsync(['--check', 'policies/policy.lua', '--probe'],
                             { HLSGATE_JWT_SECRET: 'probe-jwt-secret', S3_ENDPOINT: s3.endpoint, S3_BUCKET: s3.bucket,
                               AWS_ACCESS_KEY_ID: s3.accessKey, AWS_SECRET_ACCESS_KEY: s3.secretKey, ...env });

  it('reaches the configured bucket with the configured credentials, and says what is wrong', async () => {
    const ok = await probe({});
    assert.equal(ok.status, 0, ok.stdout + ok.stderr);
    assert.match(ok.stdout, /probe: OK: bucket probe-media at http:\/\/127\.0\.0\.1:\d+ reached, credentials accepted/);
    const secret = await probe({ AWS_SECRET_ACCESS_KEY: 'wrong' });
    assert.equal(secret.status, 1);
    assert.match(secret.stdout, /FAILED: .* answered 403 SignatureDoesNotMatch: AWS_SECRET_ACCESS_KEY/);
    assert.ok(!secret.stdout.includes('wrong') || /is wrong/.test(secret.stdout), 'the secret is never printed');
    const key = await probe({ AWS_ACCESS_KEY_ID: 'AKIDNOBODY' });
    assert.equal(key.status, 1);
    assert.match(key.stdout, /InvalidAccessKeyId/);
    const bucket = await probe({ S3_BUCKET: 'no-such-bucket' });
    assert.equal(bucket.status, 1);
    assert.match(bucket.stdout, /404 NoSuchBucket: S3_BUCKET does not exist there/);
    const down = await probe({ S3_ENDPOINT: 'http://127.0.0.1:1' });
    assert.equal(down.status, 1);
    assert.match(down.stdout, /FAILED: http:\/\/127\.0\.0\.1:1 is not reachable/);
  });

  it('without a bucket: the demo directory', () => {
    const dir = tempDir('hg-probe-demo-');
    const r = run(['--check', 'policies/policy.lua', '--probe'], { HLSGATE_JWT_SECRET: 'x', S3_BUCKET: '', HLSGATE_DEMO_DIR: dir });
    assert.equal(r.status, 0, r.stdout);
    assert.match(r.stdout, /S3_BUCKET is not set: \/stream\/hls\/ serves the directory .* \(found\)/);
    const missing = run(['--check', 'policies/policy.lua', '--probe'], { HLSGATE_JWT_SECRET: 'x', S3_BUCKET: '', HLSGATE_DEMO_DIR: '/nonexistent-demo' });
    assert.equal(missing.status, 1);
  });
});

