// End-to-end tests of the skeleton (issue 2): the real binary, raw HTTP/1.1, signals.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';

import { BIN, connect, get, request, sleep, startGateway, tempDir, waitFor } from './lib/gateway.mjs';

const HELLO = `
local hg = require("hlsgate")
local kept -- a request's headers table, kept past its request
return {
  on_request = function(req)
    if req.path == "/hello" then return hg.response(200, "hello") end
    if req.path == "/lazy" then
      local h = req.headers
      local out = { xa = h["x-a"], upper = h["X-A"] == nil, missing = h["x-missing"] == nil,
                    target = req.target, old_xa = kept and kept["x-a"] or "none",
                    old_xb = kept and (kept["x-b"] or "nil") or "none" }
      if req.query.all then
        h["x-mine"] = "set by the policy"
        h["x-b"] = "policy wins"
        local all = {}
        for k, v in pairs(h) do all[k] = v end
        out.all = all
      end
      kept = h
      return hg.json(200, out)
    end
    if req.path == "/echo" then
      return hg.json(200, { i = req.query.i, method = req.method, id = req.id,
                            body = req.body, a = req.headers["x-a"] })
    end
    if req.path == "/loop" then while true do end end
    if req.path == "/catch" then pcall(function() while true do end end) return "escaped" end
    if req.path == "/raise" then error("boom") end
    if req.path == "/badheader" then return { status = 200, headers = { ["X-A"] = "a\\r\\nX-B: b" } } end
    if req.path == "/mem" then local t = {} for i = 1, 1e9 do t[i] = ("x"):rep(1024) .. i end end
    if req.method == "POST" and req.path == "/post" then return hg.response(201, req.body or "") end
  end,
}
`;

const isJsonError = (res, status) => {
  assert.equal(res.status, status);
  assert.match(res.headers['content-type'], /application\/json/);
  const body = JSON.parse(res.body);
  assert.equal(body.status, status);
  assert.equal(typeof body.error, 'string');
  assert.ok(res.headers['x-request-id'], 'X-Request-Id on every response');
  return body;
};

describe('HTTP server', () => {
  let gw;
  before(async () => {
    gw = await startGateway({ policy: HELLO, workers: 2,
                              args: ['--header-timeout', '1', '--lua-budget', '2000000',
                                     '--lua-memory', '32'] });
  });
  after(async () => {
    const { code } = await gw.stop();
    assert.equal(code, 0, `exit code (ASan leak check included):\n${gw.stderrText.slice(-3000)}`);
  });

  it('serves a policy answer with X-Request-Id', async () => {
    const res = await get(gw.port, '/hello');
    assert.equal(res.status, 200);
    assert.equal(res.body, 'hello');
    assert.match(res.headers['x-request-id'], /^[0-9a-f]{32}$/);
    assert.equal(res.headers['content-length'], '5');
  });

  it('reuses a sane incoming X-Request-Id and replaces a bad one', async () => {
    const a = await get(gw.port, '/echo', 'X-Request-Id: abc-123\r\n');
    assert.equal(JSON.parse(a.body).id, 'abc-123');
    assert.equal(a.headers['x-request-id'], 'abc-123');
    const b = await get(gw.port, '/echo', 'X-Request-Id: "><script>\r\n');
    assert.match(b.headers['x-request-id'], /^[0-9a-f]{32}$/);
  });

  it('looks request headers up by name, and a kept table forgets what was not read', async () => {
    const hdr = 'X-A: 1\r\nx-a: 2\r\nX-B: from the client\r\nHost: lazy.example\r\n';
    // one connection: one worker, one Lua state answers all three
    const c = await connect(gw.port);
    c.write(`GET /lazy?all=1 HTTP/1.1\r\n${hdr}\r\nGET /lazy HTTP/1.1\r\n${hdr}\r\n` +
            `GET /lazy HTTP/1.1\r\n${hdr}\r\n`);
    const [a, b, d] = await c.read(3);
    c.close();
    const first = JSON.parse(a.body), second = JSON.parse(b.body), third = JSON.parse(d.body);
    assert.equal(first.xa, '1, 2'); // repeated names joined, any case
    assert.equal(first.upper, true); // names are lower-case, as in a plain table
    assert.equal(first.missing, true);
    assert.equal(first.target, '/lazy?all=1');
    assert.deepEqual(first.all, { 'x-a': '1, 2', 'x-b': 'policy wins', host: 'lazy.example',
                                  'x-mine': 'set by the policy' });
    assert.equal(second.target, '/lazy');
    assert.equal(second.old_xa, '1, 2'); // pairs filled it in
    assert.equal(second.old_xb, 'policy wins');
    assert.equal(third.old_xa, '1, 2'); // read while its request lived: kept
    assert.equal(third.old_xb, 'nil'); // never read: nil, never the freed request's memory
  });

  it('answers 1,000 sequential keep-alive requests on one connection', async () => {
    const c = await connect(gw.port);
    for (let i = 0; i < 1000; i++) {
      c.write(`GET /echo?i=${i} HTTP/1.1\r\nHost: t\r\n\r\n`);
      const [res] = await c.read(1);
      assert.equal(res.status, 200);
      assert.equal(JSON.parse(res.body).i, String(i));
      assert.equal(res.headers.connection, 'keep-alive');
    }
    assert.equal(c.closed, false);
    c.close();
  });

  it('answers 100 pipelined requests in order', async () => {
    const c = await connect(gw.port);
    let batch = '';
    for (let i = 0; i < 100; i++) batch += `GET /echo?i=${i} HTTP/1.1\r\nHost: t\r\n\r\n`;
    c.write(batch);
    const responses = await c.read(100);
    responses.forEach((res, i) => {
      assert.equal(res.status, 200);
      assert.equal(JSON.parse(res.body).i, String(i));
    });
    c.close();
  });

  it('answers 3,000 pipelined requests sent at once (reading pauses and resumes)', async () => {
    const c = await connect(gw.port);
    let batch = '';
    for (let i = 0; i < 3000; i++) batch += `GET /echo?i=${i} HTTP/1.1\r\nHost: t\r\nX-Pad: ${'p'.repeat(100)}\r\n\r\n`;
    assert.ok(batch.length > 256 * 1024, 'more than the server buffers while it answers');
    c.write(batch);
    const responses = await c.read(3000, { timeout: 30000 });
    responses.forEach((res, i) => assert.equal(JSON.parse(res.body).i, String(i)));
    c.close();
  });

  it('answers pipelined requests split at arbitrary byte boundaries', async () => {
    const c = await connect(gw.port);
    let batch = '';
    for (let i = 0; i < 20; i++) batch += `GET /echo?i=${i} HTTP/1.1\r\nHost: t\r\nX-A: ${i}\r\n\r\n`;
    for (let off = 0; off < batch.length; off += 7) {
      c.write(batch.slice(off, off + 7));
      await sleep(1);
    }
    const responses = await c.read(20);
    responses.forEach((res, i) => assert.equal(JSON.parse(res.body).a, String(i)));
    c.close();
  });

  it('HEAD gets headers without a body; OPTIONS without a route gets 204 Allow', async () => {
    const c = await connect(gw.port);
    c.write('HEAD /hello HTTP/1.1\r\nHost: t\r\n\r\n');
    const [head] = await c.read(1, { head: true });
    assert.equal(head.status, 200);
    assert.equal(head.headers['content-length'], '5');
    c.write('OPTIONS /anything HTTP/1.1\r\nHost: t\r\n\r\n');
    const [opt] = await c.read(1);
    assert.equal(opt.status, 204);
    assert.match(opt.headers.allow, /GET/);
    c.close();
  });

  it('404 for an unrouted GET, 405 with Allow for an unrouted method', async () => {
    isJsonError(await get(gw.port, '/nope'), 404);
    const res = await request(gw.port, 'DELETE /x HTTP/1.1\r\nHost: t\r\n\r\n');
    isJsonError(res, 405);
    assert.match(res.headers.allow, /GET/);
  });

  it('passes a POST body to the policy', async () => {
    const res = await request(gw.port, 'POST /post HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nabcde');
    assert.equal(res.status, 201);
    assert.equal(res.body, 'abcde');
  });

  it('431 for over-long headers, 414 for an over-long URI, 413 for a big body', async () => {
    isJsonError(await get(gw.port, '/hello', `X-Big: ${'a'.repeat(17 * 1024)}\r\n`), 431);
    let many = '';
    for (let i = 0; i < 101; i++) many += `X-H${i}: v\r\n`;
    isJsonError(await get(gw.port, '/hello', many), 431);
    isJsonError(await get(gw.port, `/hello?${'q'.repeat(8200)}`), 414);
    isJsonError(await request(gw.port,
      'POST /post HTTP/1.1\r\nHost: t\r\nContent-Length: 70000\r\n\r\n'), 413);
    const chunked = `POST /post HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n` +
      `${(40000).toString(16)}\r\n${'x'.repeat(40000)}\r\n`.repeat(2) + '0\r\n\r\n';
    isJsonError(await request(gw.port, chunked), 413);
  });

  it('405 for an unknown method, 400 for a malformed request line', async () => {
    isJsonError(await request(gw.port, 'BREW /pot HTTP/1.1\r\nHost: t\r\n\r\n'), 405);
    isJsonError(await request(gw.port, 'garbage\r\n\r\n'), 400);
    isJsonError(await request(gw.port, 'GET /x HTTP/9.9\r\n\r\n'), 400);
    isJsonError(await request(gw.port, 'GET /x HTTP/1.1\r\nBad Header\r\n\r\n'), 400);
  });

  it('cuts off a client that stops mid-headers with 408, serving others meanwhile', async () => {
    const slow = await connect(gw.port);
    slow.write('GET /hello HTTP/1.1\r\nHost: t\r\nX-Part');
    const t0 = Date.now();
    // Others are served while the slow client holds its connection.
    for (let i = 0; i < 5; i++) assert.equal((await get(gw.port, '/hello')).status, 200);
    const [res] = await slow.read(1, { timeout: 5000 });
    isJsonError(res, 408);
    assert.ok(Date.now() - t0 >= 900, 'not before the header timeout');
    await slow.waitClosed();
  });

  it('closes an idle connection that never sends a byte, silently', async () => {
    const idle = await connect(gw.port);
    await idle.waitClosed(5000);
  });

  it('answers an infinite loop with 500 within the budget, then serves the next request', async () => {
    const t0 = Date.now();
    const body = isJsonError(await get(gw.port, '/loop'), 500);
    assert.match(body.error, /budget/);
    assert.ok(Date.now() - t0 < 3000);
    const caught = await get(gw.port, '/catch'); // pcall cannot swallow the budget
    isJsonError(caught, 500);
    assert.equal((await get(gw.port, '/hello')).status, 200);
  });

  it('answers a raising policy with 500 and its request id, and logs the traceback', async () => {
    const res = await get(gw.port, '/raise');
    const body = isJsonError(res, 500);
    assert.equal(body.request_id, res.headers['x-request-id']);
    await gw.waitForStderr(new RegExp(`${body.request_id}: policy error: .*policy\\.lua:\\d+: boom`));
    assert.match(gw.stderrText, /stack traceback/);
    assert.equal((await get(gw.port, '/hello')).status, 200);
  });

  it('refuses header injection from a policy and survives its memory cap', async () => {
    isJsonError(await get(gw.port, '/badheader'), 500);
    isJsonError(await get(gw.port, '/mem'), 500);
    assert.equal((await get(gw.port, '/hello')).status, 200);
  });

  it('serves /healthz and /readyz without the policy', async () => {
    const h = await get(gw.port, '/healthz');
    assert.equal(h.status, 200);
    assert.deepEqual(JSON.parse(h.body), { status: 'ok' });
    assert.equal((await get(gw.port, '/readyz')).status, 200);
  });

  it('writes one JSON access-log line per request, with tokens redacted', async () => {
    const res = await get(gw.port, '/hello?token=s3cr3t.jwt.value&x=1&X-Amz-Signature=abcdef');
    await waitFor(() => gw.stdoutText.includes(res.headers['x-request-id']), 2000, 'no log line');
    const line = gw.accessLog().find((l) => l.id === res.headers['x-request-id']);
    assert.equal(line.status, 200);
    assert.equal(line.method, 'GET');
    assert.equal(line.path, '/hello?token=REDACTED&x=1&X-Amz-Signature=REDACTED');
    assert.equal(typeof line.duration_ms, 'number');
    assert.match(line.policy, /^[0-9a-f]{12}$/);
    assert.ok(!gw.stdoutText.includes('s3cr3t'), 'no token in the access log');
    assert.ok(!gw.stderrText.includes('s3cr3t'), 'no token in the error log');
  });
});

describe('command line', () => {
  it('--check exits 1 with file:line: on a syntax error, 0 on a good policy', () => {
    const dir = tempDir();
    const bad = path.join(dir, 'bad.lua');
    fs.writeFileSync(bad, 'return {\n  on_request = function(req)\n    return (\n  end,\n}\n');
    const r = spawnSync(BIN, ['--check', bad], { encoding: 'utf8' });
    assert.equal(r.status, 1);
    assert.match(r.stderr, new RegExp(`${bad.replace(/[.]/g, '\\.')}:\\d+: `));
    const good = path.join(dir, 'good.lua');
    fs.writeFileSync(good, 'return { on_request = function() return "ok" end }\n');
    const g = spawnSync(BIN, ['--check', good], { encoding: 'utf8' });
    assert.equal(g.status, 0, g.stderr);
    assert.match(g.stdout, /OK/);
    const norq = path.join(dir, 'norq.lua');
    fs.writeFileSync(norq, 'return { }\n');
    const n = spawnSync(BIN, ['--check', norq], { encoding: 'utf8' });
    assert.equal(n.status, 1);
    assert.match(n.stderr, /on_request/);
    const rt = path.join(dir, 'rt.lua');
    fs.writeFileSync(rt, 'local x = nil\nreturn x.y\n');
    const e = spawnSync(BIN, ['--check', rt], { encoding: 'utf8' });
    assert.equal(e.status, 1);
    assert.match(e.stderr, /rt\.lua:2: /);
  });

  it('--version and --help exit 0; an unknown flag exits 2', () => {
    assert.match(spawnSync(BIN, ['--version'], { encoding: 'utf8' }).stdout, /^hlsgate \d/);
    assert.match(spawnSync(BIN, ['--help'], { encoding: 'utf8' }).stdout, /--listen/);
    assert.equal(spawnSync(BIN, ['--bogus'], { encoding: 'utf8' }).status, 2);
  });

  it('refuses to start on a broken policy, naming file:line', () => {
    const dir = tempDir();
    const bad = path.join(dir, 'bad.lua');
    fs.writeFileSync(bad, 'return {{{\n');
    const r = spawnSync(BIN, ['--policy', bad, '--listen', '127.0.0.1:0'], { encoding: 'utf8', timeout: 10000 });
    assert.equal(r.status, 1);
    assert.match(r.stderr, /bad\.lua:\d+: /);
  });
});

const answer = (text) => `return { on_request = function() return "${text}" end }\n`;

describe('reload and drain', () => {
  it('20 SIGHUPs alternating good and broken policies under load: zero failures', async () => {
    const gw = await startGateway({ policy: answer('v0'), workers: 2 });
    let stop = false;
    let ok = 0;
    const failures = [];
    const seen = new Set();
    let last = 'v0';
    // Four keep-alive clients looping until told to stop.
    const clients = Array.from({ length: 4 }, async () => {
      let c = await connect(gw.port);
      while (!stop) {
        try {
          c.write('GET /x HTTP/1.1\r\nHost: t\r\n\r\n');
          const [res] = await c.read(1);
          if (res.status !== 200) failures.push(`status ${res.status}`);
          else { ok++; seen.add(res.body); last = res.body; }
        } catch (e) {
          failures.push(String(e));
          c.close();
          c = await connect(gw.port);
        }
      }
      c.close();
    });
    const current = async () => (await get(gw.port, '/x')).body;
    let expected = 'v0';
    for (let i = 1; i <= 20; i++) {
      await sleep(100); // spread the reloads over a few seconds of load
      const from = gw.stderrText.length;
      if (i % 2 === 0) {
        gw.writePolicy(`return { on_request = function() return "broken ${i}" end\n`); // syntax error
        gw.signal('SIGHUP');
        await gw.waitForStderr(/reload failed.*policy\.lua:\d+: /, { from });
        await sleep(50);
        assert.equal(await current(), expected, 'a broken reload keeps the old policy');
      } else {
        expected = `v${i}`;
        gw.writePolicy(answer(expected));
        gw.signal('SIGHUP');
        await waitFor(async () => (await current()) === expected &&
                                  (await current()) === expected, 3000,
                      `responses did not switch to ${expected}`);
      }
    }
    await sleep(200);
    stop = true;
    await Promise.all(clients);
    assert.deepEqual(failures, []);
    assert.ok(ok > 200, `load was applied (${ok} requests)`);
    for (const body of seen) assert.match(body, /^v\d+$/, 'only loaded policies answered');
    assert.equal(last, expected);
    const { code } = await gw.stop();
    assert.equal(code, 0, gw.stderrText.slice(-3000));
  });

  it('SIGTERM during an in-flight request: it completes, then exit 0', async () => {
    const gw = await startGateway({
      policy: 'return { on_request = function(r) return "got " .. #(r.body or "") end }\n',
      workers: 2,
    });
    const c = await connect(gw.port);
    // An upload that is still arriving when SIGTERM lands.
    c.write('POST /up HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nabcde');
    await sleep(200);
    const idle = await connect(gw.port); // an idle keep-alive connection is simply closed
    gw.signal('SIGTERM');
    await sleep(300);
    assert.equal(gw.exited, null, 'still draining');
    c.write('fghij');
    const [res] = await c.read(1);
    assert.equal(res.status, 200);
    assert.equal(res.body, 'got 10');
    assert.equal(res.headers.connection, 'close');
    await c.waitClosed();
    await idle.waitClosed();
    const { code } = await gw.exit();
    assert.equal(code, 0, gw.stderrText.slice(-3000));
  });

  it('while draining: SIGHUP is ignored, a second SIGTERM ends the drain now; exit 0, access log written', async () => {
    const gw = await startGateway({ policy: answer('x'), args: ['--drain-timeout', '60'] });
    for (let i = 0; i < 3; i++) assert.equal((await get(gw.port, `/before-${i}`)).status, 200);
    const c = await connect(gw.port); // a stuck upload keeps the drain going
    c.write('POST /up HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nab');
    await sleep(100);
    gw.signal('SIGTERM');
    await gw.waitForStderr(/SIGTERM: draining/);
    gw.signal('SIGHUP'); // its default action would end the process
    await gw.waitForStderr(/SIGHUP while draining: no reload/);
    await sleep(200);
    assert.equal(gw.exited, null, 'still draining');
    const t0 = Date.now();
    gw.signal('SIGTERM');
    const { code, signal } = await gw.exit(5000);
    assert.deepEqual({ code, signal }, { code: 0, signal: null }, gw.stderrText.slice(-3000));
    assert.ok(Date.now() - t0 < 3000, `${Date.now() - t0} ms`);
    assert.match(gw.stderrText, /SIGTERM while draining: closing the remaining connections now/);
    // the buffered access log (flushed once a second) was written before the exit
    for (let i = 0; i < 3; i++) assert.ok(gw.stdoutText.includes(`/before-${i}`), gw.stdoutText.slice(-2000));
    c.close();
  });

  // Two workers, a stuck upload on one of them: the other drains at once and its thread
  // ends (its loop closed). The second TERM must then reach only what is still running:
  // waking an exited worker's loop (uv_async_send on a closed loop) is libuv's abort().
  it('two workers, one stuck: a second SIGTERM after the idle worker exited ends the drain; exit 0', async () => {
    const gw = await startGateway({ policy: answer('x'), workers: 2, args: ['--drain-timeout', '60'] });
    const c = await connect(gw.port);
    c.write('POST /up HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nab');
    await sleep(100);
    gw.signal('SIGTERM');
    await gw.waitForStderr(/SIGTERM: draining/);
    await sleep(500); // the worker without the upload is gone by now
    assert.equal(gw.exited, null, 'still draining');
    gw.signal('SIGTERM');
    const { code, signal } = await gw.exit(5000);
    assert.deepEqual({ code, signal }, { code: 0, signal: null }, gw.stderrText.slice(-3000));
    c.close();
  });

  // An idle gateway drains in a few ms; a second TERM (Ctrl-C twice) may come while the
  // workers are exiting, after they exited but before the main loop noticed (its 20 ms
  // poll), or after it closed its handlers (joining, freeing, the leak check): exit 0
  // every time, never killed by the signal nor aborted.
  it('an idle gateway given SIGTERM twice, at any spacing: exit 0', async () => {
    for (const ms of [0, 5, 10, 15, 20, 25, 30, 40]) {
      const gw = await startGateway({ policy: answer('x'), workers: 2 });
      gw.signal('SIGTERM');
      const t0 = Date.now();
      while (Date.now() - t0 < ms) { /* spin: timers are too coarse here */ }
      gw.signal(ms % 10 ? 'SIGINT' : 'SIGTERM');
      const { code, signal } = await gw.exit(5000);
      assert.deepEqual({ code, signal }, { code: 0, signal: null }, `second signal after ${ms} ms:\n${gw.stderrText.slice(-3000)}`);
    }
  });

  it('SIGHUP storm and TERM/INT burst while draining with requests in flight on 2 workers: exit 0', async () => {
    const gw = await startGateway({ policy: answer('x'), workers: 2, args: ['--drain-timeout', '60'] });
    const conns = [];
    for (let i = 0; i < 6; i++) { // spread over both workers (SO_REUSEPORT)
      const c = await connect(gw.port);
      c.write(`POST /up-${i} HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nab`);
      conns.push(c);
    }
    await sleep(100);
    gw.signal('SIGTERM');
    await gw.waitForStderr(/SIGTERM: draining/);
    for (let i = 0; i < 20; i++) gw.signal('SIGHUP');
    await sleep(200);
    assert.equal(gw.exited, null, 'still draining');
    for (let i = 0; i < 10; i++) gw.signal(i % 2 ? 'SIGINT' : 'SIGTERM');
    for (let i = 0; i < 40 && !gw.exited; i++) { // more while the workers exit
      gw.signal(i % 2 ? 'SIGINT' : 'SIGTERM');
      await sleep(5);
    }
    const { code, signal } = await gw.exit(5000);
    assert.deepEqual({ code, signal }, { code: 0, signal: null }, gw.stderrText.slice(-3000));
    assert.doesNotMatch(gw.stderrText, /reloading (policy|TLS)/);
    for (const c of conns) c.close();
  });

  it('SIGTERM with a stuck client is bounded by the drain timeout', async () => {
    const gw = await startGateway({ policy: answer('x'), args: ['--drain-timeout', '1'] });
    const c = await connect(gw.port);
    c.write('POST /up HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nab');
    await sleep(100);
    const t0 = Date.now();
    const { code } = await gw.stop();
    assert.equal(code, 0, gw.stderrText.slice(-3000));
    assert.ok(Date.now() - t0 < 5000);
    c.close();
  });
});
