// Non-blocking callouts (docs/callouts.md): hg.http.request against a real HTTP service —
// the auth_request example (allowed, denied, fail closed, cached), a hung target that
// answers within its timeout without delaying others, cancellation when the client
// leaves, a reload while a request waits, and misuse raising where Lua cannot wait.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';

import { BIN, ROOT, connect, freePort, get, sleep, startGateway, tempDir, waitFor } from './lib/gateway.mjs';
import { makeHls } from './lib/media.mjs';
import { h2get, h2session, makeCa, makeCert, tlsPort } from './lib/tls.mjs';

/** The web application: /auth decides by cookie, /hang never answers, /slow?ms=N waits. */
async function startApp() {
  const app = { authCalls: 0, hangOpen: 0, hangClosedAt: [], port: 0 };
  app.server = http.createServer((req, res) => {
    const u = new URL(req.url, 'http://x');
    if (u.pathname === '/auth') {
      app.authCalls++;
      app.lastAuth = { cookie: req.headers.cookie, uri: req.headers['x-original-uri'] };
      const ok = /session=good/.test(req.headers.cookie || '');
      res.writeHead(ok ? 200 : 403, { 'Content-Type': 'text/plain' }).end(ok ? 'yes' : 'no');
    } else if (u.pathname === '/hang') {
      app.hangOpen++;
      req.socket.on('close', () => { app.hangOpen--; app.hangClosedAt.push(Date.now()); });
    } else if (u.pathname === '/slow') {
      setTimeout(() => res.writeHead(200, { 'X-Test': 'a' }).end(`slept ${u.searchParams.get('ms')}`),
                 Number(u.searchParams.get('ms') || 0));
    } else if (u.pathname === '/big') {
      res.writeHead(200).end('x'.repeat(Number(u.searchParams.get('mb') || 2) * 1024 * 1024));
    } else {
      res.writeHead(404).end();
    }
  });
  await new Promise((r) => app.server.listen(0, '127.0.0.1', r));
  app.port = app.server.address().port;
  app.url = `http://127.0.0.1:${app.port}`;
  return app;
}

const timed = async (fn) => { const t0 = Date.now(); const r = await fn(); return [r, Date.now() - t0]; };

describe('auth_request example (policies/examples/auth_request.lua)', () => {
  let app, gw, down, root;
  before(async () => {
    app = await startApp();
    root = tempDir('hg-auth-');
    makeHls(path.join(root, 'a'));
    const env = { HLSGATE_AUTH_URL: `${app.url}/auth`, HLSGATE_AUTH_TTL: '2', HLSGATE_DEMO_DIR: root };
    gw = await startGateway({ policyFile: path.join(ROOT, 'policies/examples/auth_request.lua'), env });
    const closed = await freePort(); // nothing listens there: the service is down
    down = await startGateway({ policyFile: path.join(ROOT, 'policies/examples/auth_request.lua'),
                                env: { ...env, HLSGATE_AUTH_URL: `http://127.0.0.1:${closed}/auth` } });
  });
  after(async () => {
    for (const g of [gw, down]) assert.equal((await g.stop()).code, 0, g.stderrText.slice(-3000));
    app.server.close();
  });

  it('serves an allowed viewer (200), refuses a denied one (403), caching each answer', async () => {
    const calls0 = app.authCalls;
    const ok = await get(gw.port, '/watch/a/master.m3u8', 'Cookie: session=good\r\n');
    assert.equal(ok.status, 200, ok.body);
    assert.match(ok.body, /^#EXTM3U/);
    assert.equal(app.lastAuth.uri, '/watch/a/master.m3u8');
    assert.equal(app.lastAuth.cookie, 'session=good');
    const again = await get(gw.port, '/watch/a/master.m3u8', 'Cookie: session=good\r\n');
    assert.equal(again.status, 200);
    assert.equal(app.authCalls - calls0, 1, 'the second request was answered from the cache');
    const no = await get(gw.port, '/watch/a/master.m3u8', 'Cookie: session=bad\r\n');
    assert.equal(no.status, 403);
    const no2 = await get(gw.port, '/watch/a/master.m3u8', 'Cookie: session=bad\r\n');
    assert.equal(no2.status, 403);
    assert.equal(app.authCalls - calls0, 2, 'one call per viewer per TTL');
    await sleep(2200); // the TTL ran out: asked again
    assert.equal((await get(gw.port, '/watch/a/master.m3u8', 'Cookie: session=good\r\n')).status, 200);
    assert.equal(app.authCalls - calls0, 3);
  });

  it('fails closed with 503 when the auth service is down', async () => {
    const [r, ms] = await timed(() => get(down.port, '/watch/a/master.m3u8', 'Cookie: session=good\r\n'));
    assert.equal(r.status, 503);
    assert.match(r.body, /authorization unavailable/);
    assert.ok(ms < 1500, `answered in ${ms} ms`);
    await down.waitForStderr(/auth_request failed, refusing: .*connection refused/);
  });
});

const POLICY = (version) => `
local hg = require("hlsgate")
local APP = os.getenv("APP")
local function call(p, t, ap) return hg.http.request{ url = APP .. p, timeout = t, allow_private = ap ~= false } end
return { on_request = function(req)
  local q = req.query
  if req.path == "/plain" then return hg.json(200, { v = "${version}" }) end
  if req.path == "/call" then
    local res, err = call(q.p or "/slow?ms=0", tonumber(q.t or 5), q.ap ~= "0")
    if not res then return hg.json(503, { err = err, v = "${version}" }) end
    return hg.json(200, { status = res.status, body = res.body, x = res.headers["x-test"], v = "${version}" })
  end
  if req.path == "/many" then
    local n, last = 0, nil
    for _ = 1, 100 do
      local r, e = call("/slow?ms=0", 5)
      if not r then last = e break end
      n = n + 1
    end
    return hg.json(200, { n = n, err = last })
  end
  if req.path == "/sort" then
    local ok, e = pcall(table.sort, { 3, 1, 2 }, function(a, b) call("/slow", 1) return a < b end)
    return hg.json(200, { err = tostring(e) })
  end
  if req.path == "/co" then
    local ok, e = pcall(coroutine.wrap(function() return call("/slow", 1) end))
    return hg.json(200, { err = tostring(e) })
  end
  if req.path == "/yield" then coroutine.yield() end
  if req.path == "/huge" then
    local res, err = hg.http.request{ url = APP .. "/big?mb=6", max_body = 8388608, allow_private = true }
    return hg.json(200, { err = err, len = res and #res.body })
  end
  if req.path == "/uri" then
    return { origin = { type = "file", root = os.getenv("ROOT"), path = "a/master.m3u8" },
             rewrite = { default = "keep" },
             on_uri = function(u) call("/slow", 1) end }
  end
end }
`;

describe('hg.http.request', () => {
  let app, gw, root;
  before(async () => {
    app = await startApp();
    root = tempDir('hg-call-');
    makeHls(path.join(root, 'a'));
    gw = await startGateway({ policy: POLICY('V1'), workers: 1, env: { APP: app.url, ROOT: root } });
  });
  after(async () => {
    assert.equal((await gw.stop()).code, 0, gw.stderrText.slice(-3000));
    app.server.close();
  });

  it('returns status, headers and body', async () => {
    const r = await get(gw.port, '/call?p=/slow%3Fms%3D5');
    assert.equal(r.status, 200, r.body);
    assert.deepEqual(JSON.parse(r.body), { status: 200, body: 'slept 5', x: 'a', v: 'V1' });
  });

  it('answers a request whose target hangs within its timeout, without delaying others', async () => {
    const hung = timed(() => get(gw.port, '/call?p=/hang&t=1'));
    await waitFor(() => app.hangOpen === 1, 2000, 'the callout never reached the app');
    // While it waits, the worker (one) serves other requests, callouts included, at once.
    for (let i = 0; i < 10; i++) {
      const [plain, ms] = await timed(() => get(gw.port, '/plain'));
      assert.equal(plain.status, 200);
      assert.ok(ms < 300, `a plain request took ${ms} ms`);
      const [other, ms2] = await timed(() => get(gw.port, '/call?p=/slow%3Fms%3D1'));
      assert.equal(other.status, 200, other.body);
      assert.ok(ms2 < 300, `another callout took ${ms2} ms`);
    }
    const [r, ms] = await hung;
    assert.equal(r.status, 503);
    assert.match(JSON.parse(r.body).err, /timed out|timeout/);
    assert.ok(ms >= 900 && ms < 2000, `the hung request answered after ${ms} ms (timeout 1 s)`);
  });

  it('cancels the pending call when the client goes away', async () => {
    const closedBefore = app.hangClosedAt.length;
    const c = await connect(gw.port);
    c.write('GET /call?p=/hang&t=30 HTTP/1.1\r\nHost: t\r\n\r\n');
    await waitFor(() => app.hangOpen === 1, 2000, 'the callout never reached the app');
    const left = Date.now();
    c.close();
    await waitFor(() => app.hangClosedAt.length > closedBefore, 2000,
                  'the callout was not cancelled when the client left');
    const ms = app.hangClosedAt.at(-1) - left;
    assert.ok(ms < 1000, `cancelled ${ms} ms after the client left`);
    await waitFor(() => gw.accessLog().some((l) => l.path.startsWith('/call?p=/hang&t=30') && l.status === 499),
                  2000, 'no 499 in the access log');
    const m = await get(gw.port, '/metrics');
    assert.match(m.body, /hlsgate_callouts_total\{target="http",outcome="cancelled"\} 1\n/);
    assert.match(m.body, /hlsgate_callouts_total\{target="http",outcome="timeout"\} [1-9]/);
    assert.match(m.body, /hlsgate_callout_http_duration_seconds_count [1-9]/);
  });

  it('caps callouts per request', async () => {
    const r = JSON.parse((await get(gw.port, '/many')).body);
    assert.equal(r.n, 16);
    assert.match(r.err, /too many callouts for one request \(limit 16\)/);
  });

  it('refuses private addresses unless the policy allows them, and bounds the body', async () => {
    const r = JSON.parse((await get(gw.port, '/call?p=/slow&ap=0')).body);
    assert.match(r.err, /loopback.*not allowed|not allowed/);
    const big = JSON.parse((await get(gw.port, '/call?p=/big')).body);
    assert.match(big.err, /too large/);
  });

  it('raises where Lua cannot wait: on_uri, a C call boundary, a coroutine of the policy, a bare yield', async () => {
    assert.match(JSON.parse((await get(gw.port, '/sort')).body).err, /cannot wait here/);
    assert.match(JSON.parse((await get(gw.port, '/co')).body).err, /coroutine the policy created/);
    assert.equal((await get(gw.port, '/yield')).status, 500);
    await gw.waitForStderr(/on_request yielded outside a callout/);
    const from = gw.stderrText.length;
    assert.equal((await get(gw.port, '/uri')).status, 500);
    await gw.waitForStderr(/callouts may only be made from on_request/, { from });
  });

  it('refuses a callout while the policy loads (hlsgate --check)', () => {
    const dir = tempDir('hg-load-');
    const file = path.join(dir, 'p.lua');
    fs.writeFileSync(file, 'local hg = require("hlsgate")\nhg.http.request{ url = "http://127.0.0.1:1/" }\n' +
                           'return { on_request = function() end }\n');
    const r = spawnSync(BIN, ['--check', file], { encoding: 'utf8' });
    assert.equal(r.status, 1);
    assert.match(r.stderr + r.stdout, /callouts may only be made from on_request/);
  });

  it('finishes a request suspended across SIGHUP on the policy it started with', async () => {
    const pending = get(gw.port, '/call?p=/slow%3Fms%3D1500');
    await sleep(300);
    const from = gw.stderrText.length;
    gw.writePolicy(POLICY('V2'));
    gw.signal('SIGHUP');
    await gw.waitForStderr(/reloading policy/, { from });
    await waitFor(async () => JSON.parse((await get(gw.port, '/plain')).body).v === 'V2', 3000,
                  'the new policy never answered');
    const r = await pending;
    assert.equal(r.status, 200, r.body);
    assert.deepEqual(JSON.parse(r.body), { status: 200, body: 'slept 1500', x: 'a', v: 'V1' });
  });

});

describe('hg.http.request at the memory cap', () => {
  let app, gw;
  before(async () => {
    app = await startApp();
    gw = await startGateway({ policy: POLICY('V1'), args: ['--lua-memory', '4'], env: { APP: app.url } });
  });
  after(async () => {
    assert.equal((await gw.stop()).code, 0, gw.stderrText.slice(-3000));
    app.server.close();
  });

  it('a body the Lua state has no room for is the call\'s error, not a crash', async () => {
    const r = await get(gw.port, '/huge');
    assert.equal(r.status, 200, r.body);
    assert.match(JSON.parse(r.body).err, /not enough memory/);
    assert.equal((await get(gw.port, '/plain')).status, 200, 'the worker lives on');
  });
});

describe('callouts over HTTP/2', () => {
  let app, gw, ca, port;
  before(async () => {
    app = await startApp();
    const dir = tempDir('hg-h2-call-');
    ca = makeCa(dir).pem;
    const c = makeCert(dir, 'a', ['localhost']);
    gw = await startGateway({ policy: POLICY('V1'), env: { APP: app.url },
                              args: ['--listen', '127.0.0.1:0', '--tls-cert', c.cert, '--tls-key', c.key] });
    port = tlsPort(gw);
  });
  after(async () => {
    assert.equal((await gw.stop()).code, 0, gw.stderrText.slice(-3000));
    app.server.close();
  });

  it('a stream waits on its callout while others on the connection are answered', async () => {
    const s = await h2session(port, ca);
    try {
      const slow = h2get(s, '/call?p=/slow%3Fms%3D500');
      const t0 = Date.now();
      const plain = await h2get(s, '/plain');
      assert.equal(plain.status, 200);
      assert.ok(Date.now() - t0 < 300, 'the other stream was not delayed');
      const r = await slow;
      assert.equal(r.status, 200);
      assert.equal(JSON.parse(r.body).body, 'slept 500');
    } finally {
      s.close();
    }
  });

  it('cancels the pending call when the stream is reset, and when the connection goes', async () => {
    for (const how of ['reset', 'close']) {
      const closedBefore = app.hangClosedAt.length;
      const s = await h2session(port, ca);
      const req = s.request({ ':path': '/call?p=/hang&t=30' });
      req.on('error', () => {});
      await waitFor(() => app.hangOpen === 1, 2000, 'the callout never reached the app');
      const left = Date.now();
      if (how === 'reset') req.close(8); // NGHTTP2_CANCEL
      else s.destroy();
      await waitFor(() => app.hangClosedAt.length > closedBefore, 2000, `not cancelled on ${how}`);
      assert.ok(app.hangClosedAt.at(-1) - left < 1000);
      s.destroy();
    }
    const plain = await h2get(await h2session(port, ca), '/plain');
    assert.equal(plain.status, 200);
  });
});
