// Viewer state shared by every replica (hlsgate.viewers in the private-bucket recipe,
// docs/callouts.md): two gateway processes on one real redis-server — a revocation through
// one is refused by both; a limit of two concurrent streams per viewer; Redis stopped
// mid-test (fail open / fail closed) and back; tokens bound to the client address behind
// a trusted proxy, or to the User-Agent.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import http from 'node:http';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';

import { BIN, ROOT, get, request, sleep, startGateway, tempDir, waitFor } from './lib/gateway.mjs';
import { makeHls } from './lib/media.mjs';
import { startRedis } from './lib/redis.mjs';

const SECRET = 'redis-e2e-secret-0123456789abcdef0123';
const ADMIN = 'redis-e2e-admin';
const POLICY = path.join(ROOT, 'policies/private_bucket.lua');

async function post(port, target, json) {
  const body = JSON.stringify(json);
  const r = await request(port, `POST ${target} HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer ${ADMIN}\r\n` +
                                `Content-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`);
  return { status: r.status, json: JSON.parse(r.body) };
}

async function mint(port, extra = {}) {
  const r = await post(port, '/stream/token', { prefix: 'videos/a', ttl: 600, ...extra });
  assert.equal(r.status, 200, JSON.stringify(r.json));
  return r.json.token;
}

const play = (port, token, headers = '') => get(port, `/stream/hls/master.m3u8?token=${token}`, headers);

describe('two gateways sharing one Redis', () => {
  let redis, gw1, gw2, closed, root;
  before(async () => {
    redis = await startRedis();
    root = tempDir('hg-redis-');
    makeHls(path.join(root, 'videos/a'));
    const env = { HLSGATE_JWT_SECRET: SECRET, HLSGATE_ADMIN_KEY: ADMIN, HLSGATE_DEMO_DIR: root,
                  HLSGATE_REDIS_URL: `${redis.url}/3`, HLSGATE_MAX_STREAMS: '2', HLSGATE_STREAM_LEASE: '2',
                  HLSGATE_REDIS_FAIL: 'open' };
    gw1 = await startGateway({ policyFile: POLICY, env, workers: 2 });
    gw2 = await startGateway({ policyFile: POLICY, env, workers: 2 });
    closed = await startGateway({ policyFile: POLICY, env: { ...env, HLSGATE_REDIS_FAIL: 'closed' } });
  });
  after(async () => {
    for (const g of [gw1, gw2, closed]) assert.equal((await g.stop()).code, 0, g.stderrText.slice(-3000));
    await redis.stop();
  });

  it('a token revoked through one gateway is refused by both within 1 s', async () => {
    const token = await mint(gw1.port, { uid: 'rev' });
    assert.equal((await play(gw1.port, token)).status, 200);
    assert.equal((await play(gw2.port, token)).status, 200);
    const r = await post(gw1.port, '/stream/revoke', { token });
    assert.equal(r.status, 200, JSON.stringify(r.json));
    assert.equal(r.json.revoked, true);
    const t0 = Date.now();
    await waitFor(async () => (await play(gw1.port, token)).status === 401 &&
                              (await play(gw2.port, token)).status === 401, 1000, 'not refused within 1 s');
    const ms = Date.now() - t0;
    console.log(`# revocation refused by both gateways after ${ms} ms`);
    assert.match((await play(gw2.port, token)).body, /token revoked/);
    // The key expires with the token (exp + leeway), in the configured database.
    const ttl = Number(redis.cli('-n', '3', 'TTL', `hlsgate:revoked:${JSON.parse(Buffer.from(token.split('.')[1], 'base64url')).jti}`).replace(/\D/g, ''));
    assert.ok(ttl > 600 && ttl <= 630, `TTL ${ttl}`);
    // Revocation without the admin key is refused.
    const anon = await request(gw2.port, 'POST /stream/revoke HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\n{}');
    assert.equal(anon.status, 401);
  });

  it('admits two concurrent streams per viewer, refuses a third until one stops', async () => {
    const [a, b, c] = [await mint(gw1.port, { uid: 'bob' }), await mint(gw2.port, { uid: 'bob' }),
                       await mint(gw1.port, { uid: 'bob' })];
    assert.equal((await play(gw1.port, a)).status, 200);
    assert.equal((await play(gw2.port, b)).status, 200);
    const third = await play(gw1.port, c);
    assert.equal(third.status, 429);
    assert.match(third.body, /too many concurrent streams/);
    assert.equal((await play(gw2.port, c)).status, 429, 'the limit holds on the other gateway too');
    assert.equal((await play(gw1.port, await mint(gw1.port, { uid: 'carol' }))).status, 200, 'per viewer');
    // b keeps reloading (on both gateways); a stops: its lease (2 s) runs out.
    let bOk = true;
    let admittedAt = null;
    const stopped = Date.now();
    while (admittedAt === null && Date.now() - stopped < 6000) {
      bOk &&= (await play(gw2.port, b)).status === 200 && (await play(gw1.port, b)).status === 200;
      if ((await play(gw2.port, c)).status === 200) admittedAt = Date.now();
      else await sleep(300);
    }
    assert.ok(bOk, 'the reloading player kept its stream');
    assert.ok(admittedAt, 'the third player was never admitted');
    const ms = admittedAt - stopped;
    console.log(`# third player admitted ${ms} ms after the first stopped reloading (lease 2 s)`);
    // Leases are scored in whole seconds: a slot frees more than 1 s and at most 2 s after
    // the stream's last request (which came a little before `stopped`).
    assert.ok(ms >= 700 && ms < 4500, `admitted after ${ms} ms`);
    assert.equal((await play(gw1.port, a)).status, 429, 'the first player is now the third');
  });

  it('keeps serving while Redis is down (fail open; fail closed answers 503) and recovers when it is back', async () => {
    const token = await mint(gw1.port, { uid: 'dora' });
    assert.equal((await play(closed.port, token)).status, 200);
    await redis.stop();
    const [r1, r2] = [await play(gw1.port, token), await play(gw2.port, token)];
    assert.equal(r1.status, 200, 'fail open');
    assert.equal(r2.status, 200, 'fail open');
    const t0 = Date.now();
    const r3 = await play(closed.port, token);
    assert.equal(r3.status, 503, 'fail closed');
    assert.ok(Date.now() - t0 < 1500);
    assert.match((await get(gw1.port, '/metrics')).body, /hlsgate_redis_errors_total [1-9]/);
    await gw1.waitForStderr(/viewer check failed, failing open/);
    await redis.start(); // same port, empty
    const back = Date.now();
    await waitFor(async () => (await play(closed.port, token)).status === 200, 10000,
                  'the fail-closed gateway did not recover');
    console.log(`# recovered ${Date.now() - back} ms after Redis came back`);
    // Shared state works again: a revocation through one gateway holds on the other.
    assert.equal((await post(gw1.port, '/stream/revoke', { token })).status, 200);
    await waitFor(async () => (await play(gw2.port, token)).status === 401, 10000, 'revocation after recovery');
    const m = (await get(closed.port, '/metrics')).body;
    assert.match(m, /hlsgate_callouts_total\{target="redis",outcome="ok"\} [1-9]/);
    assert.match(m, /hlsgate_callouts_total\{target="redis",outcome="error"\} [1-9]/);
    assert.match(m, /hlsgate_redis_connections [1-9]/);
  });
});

describe('tokens bound to the viewer', () => {
  let ip, ua, root;
  before(async () => {
    root = tempDir('hg-bind-');
    makeHls(path.join(root, 'videos/a'));
    const env = { HLSGATE_JWT_SECRET: SECRET, HLSGATE_ADMIN_KEY: ADMIN, HLSGATE_DEMO_DIR: root };
    ip = await startGateway({ policyFile: POLICY,
                              env: { ...env, HLSGATE_BIND_CLIENT: 'ip', HLSGATE_TRUSTED_PROXIES: '127.0.0.1/32, ::1' } });
    ua = await startGateway({ policyFile: POLICY, env: { ...env, HLSGATE_BIND_CLIENT: 'ua' } });
  });
  after(async () => {
    for (const g of [ip, ua]) assert.equal((await g.stop()).code, 0, g.stderrText.slice(-3000));
  });

  it('to the client address, read from X-Forwarded-For behind a trusted proxy', async () => {
    const token = await mint(ip.port, { client_ip: '203.0.113.7' });
    const xff = (v) => `X-Forwarded-For: ${v}\r\n`;
    assert.equal((await play(ip.port, token, xff('203.0.113.7'))).status, 200);
    assert.equal((await play(ip.port, token, xff('198.51.100.9, 203.0.113.7'))).status, 200,
                 'what the client wrote further left is not believed');
    assert.equal((await play(ip.port, token, xff('203.0.113.7, 198.51.100.9'))).status, 403);
    assert.equal((await play(ip.port, token)).status, 403, 'the proxy itself is not the viewer');
    const unbound = await mint(ua.port); // minted by a gateway that does not bind
    assert.equal((await play(ip.port, unbound, xff('203.0.113.7'))).status, 403);
  });

  it('to the User-Agent', async () => {
    const token = await mint(ua.port, { user_agent: 'Player/1.0' });
    assert.equal((await play(ua.port, token, 'User-Agent: Player/1.0\r\n')).status, 200);
    const other = await play(ua.port, token, 'User-Agent: curl/8\r\n');
    assert.equal(other.status, 403);
    assert.match(other.body, /bound to another client/);
  });
});

describe('docs/examples/callouts.lua (the examples of docs/callouts.md)', () => {
  let redis, gw, svc;
  before(async () => {
    redis = await startRedis();
    svc = http.createServer((req, res) => res.writeHead(200, { 'Content-Type': 'application/json' })
      .end(JSON.stringify({ sky: 'clear', accept: req.headers.accept })));
    await new Promise((r) => svc.listen(0, '127.0.0.1', r));
    gw = await startGateway({ policyFile: path.join(ROOT, 'docs/examples/callouts.lua'),
                              env: { HLSGATE_REDIS_URL: redis.url, HLSGATE_REDIS_TIMEOUT_MS: '500',
                                     WEATHER_URL: `http://127.0.0.1:${svc.address().port}/now` } });
  });
  after(async () => {
    assert.equal((await gw.stop()).code, 0, gw.stderrText.slice(-3000));
    await redis.stop();
    svc.close();
  });

  it('hg.redis.call', async () => {
    assert.deepEqual(JSON.parse((await get(gw.port, '/count?page=a')).body), { views: 1 });
    assert.deepEqual(JSON.parse((await get(gw.port, '/count?page=a')).body), { views: 2 });
    assert.equal(redis.cli('GET', 'views:a'), '"2"');
  });

  it('hg.redis.pipeline', async () => {
    const r = JSON.parse((await get(gw.port, '/pipeline')).body);
    assert.equal(r.set, 'OK');
    assert.equal(r.get, 'hello');
    assert.equal(r.missing, true);
    assert.match(r.wrong, /^WRONGTYPE/);
  });

  it('hg.http.request', async () => {
    const r = await get(gw.port, '/weather');
    assert.equal(r.status, 200);
    assert.equal(r.headers['content-type'], 'application/json');
    assert.deepEqual(JSON.parse(r.body), { sky: 'clear', accept: 'application/json' });
  });

  it('a hung Redis: calls answer within their timeout, other requests are not delayed', async () => {
    assert.equal((await get(gw.port, '/count?page=h')).status, 200);
    redis.proc.kill('SIGSTOP'); // accepts nothing, answers nothing
    try {
      const t0 = Date.now();
      const hung = get(gw.port, '/count?page=h');
      for (let i = 0; i < 5; i++) {
        const t1 = Date.now();
        assert.equal((await get(gw.port, '/weather')).status, 200);
        assert.ok(Date.now() - t1 < 300, `an HTTP callout took ${Date.now() - t1} ms meanwhile`);
      }
      const r = await hung;
      const ms = Date.now() - t0;
      assert.equal(r.status, 503);
      assert.match(r.body, /timed out/);
      assert.ok(ms >= 450 && ms < 1500, `answered after ${ms} ms (timeout 500 ms)`);
    } finally {
      redis.proc.kill('SIGCONT');
    }
    await waitFor(async () => (await get(gw.port, '/count?page=h')).status === 200, 5000, 'no recovery after SIGCONT');
  });
});

describe('HLSGATE_REDIS_URL', () => {
  it('a URL the client cannot use stops the gateway at start, saying why', () => {
    for (const [url, why] of [['rediss://r:6380', /TLS\) is not supported/], ['redis://r:99999', /bad port/]]) {
      const r = spawnSync(BIN, ['--listen', '127.0.0.1:0', '--policy', POLICY], {
        env: { ...process.env, HLSGATE_REDIS_URL: url }, encoding: 'utf8', timeout: 10000 });
      assert.notEqual(r.status, 0);
      assert.match(r.stderr, why);
    }
  });
});

describe('Redis AUTH and SELECT', () => {
  let redis, good, bad;
  before(async () => {
    redis = await startRedis({ args: ['--requirepass', 'p@ss:word'] });
    const policyFile = path.join(ROOT, 'docs/examples/callouts.lua');
    good = await startGateway({ policyFile, env: { HLSGATE_REDIS_URL: `redis://:p@ss:word@127.0.0.1:${redis.port}/5` } });
    bad = await startGateway({ policyFile, env: { HLSGATE_REDIS_URL: `redis://:wrong@127.0.0.1:${redis.port}` } });
  });
  after(async () => {
    for (const g of [good, bad]) assert.equal((await g.stop()).code, 0, g.stderrText.slice(-3000));
    await redis.stop();
  });

  it('authenticates and selects the database of the URL; a wrong password fails the calls', async () => {
    assert.deepEqual(JSON.parse((await get(good.port, '/count?page=auth')).body), { views: 1 });
    assert.equal(redis.cli('-n', '5', 'GET', 'views:auth'), '"1"');
    assert.equal(redis.cli('-n', '0', 'EXISTS', 'views:auth'), '(integer) 0');
    const r = await get(bad.port, '/count?page=auth');
    assert.equal(r.status, 503);
    assert.match(r.body, /AUTH\/SELECT refused: WRONGPASS/);
    assert.doesNotMatch(good.stderrText + bad.stderrText, /p@ss:word|wrong@/, 'no password in the logs');
  });
});
