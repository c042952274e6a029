// Hostile clients (issue 11, item 7): request smuggling, floods, slow clients, resets.
// Raw `net` sockets against the real ASan-built binary. Every vector gets its documented
// status, in bounded time, on a connection that is then closed (nothing pipelined behind
// a framing error is ever answered), while a well-behaved client on another connection
// keeps being served throughout. The gateway must exit 0 with no sanitizer report.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';

import { get, parseResponses, sleep, startGateway } from './lib/gateway.mjs';

const POLICY = `
local hg = require("hlsgate")
return {
  on_request = function(req)
    if req.path == "/hello" then return hg.response(200, "hello") end
    if req.path == "/echo" then
      return hg.json(200, { host = req.headers.host, target = req.path, method = req.method,
                            body = req.body })
    end
    if req.method == "POST" and req.path == "/post" then return hg.response(201, req.body or "") end
  end,
}
`;

// A request that must never be answered when it follows a framing error.
const SECOND = 'GET /hello?second=1 HTTP/1.1\r\nHost: t\r\n\r\n';

/**
 * Opens a connection, writes `chunks` (strings/Buffers, with `gap` ms between them),
 * and collects everything until the server closes or `timeout` passes. Resolves with
 * { responses, closed, ms, raw }.
 */
async function exchange(port, chunks, { timeout = 3000, gap = 0, head = false } = {}) {
  const t0 = Date.now();
  const sock = net.connect(port, '127.0.0.1');
  let buf = Buffer.alloc(0);
  let closed = false;
  sock.on('data', (d) => { buf = Buffer.concat([buf, d]); });
  sock.on('error', () => {});
  const done = new Promise((res) => sock.on('close', () => { closed = true; res(); }));
  await new Promise((res, rej) => { sock.once('connect', res); sock.once('error', rej); });
  for (const c of [].concat(chunks)) {
    if (closed) break;
    sock.write(c);
    if (gap) await sleep(gap);
  }
  await Promise.race([done, sleep(timeout)]);
  const ms = Date.now() - t0;
  sock.destroy();
  const { responses } = parseResponses(buf, { head });
  return { responses, closed, ms, raw: buf.toString('latin1') };
}

/** Resident set size of a process, in KiB (Linux). */
const rssKiB = (pid) => Number(/VmRSS:\s+(\d+)/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))[1]);

/** A framing error: exactly one answer with `status`, Connection: close, an id, closed. */
async function rejects(port, raw, status, opts = {}) {
  const r = await exchange(port, [raw + (opts.noSecond ? '' : SECOND)], opts);
  assert.equal(r.responses.length, 1, `one answer only, got:\n${r.raw}`);
  const res = r.responses[0];
  assert.equal(res.status, status, r.raw);
  assert.equal(res.headers.connection, 'close');
  assert.match(res.headers['x-request-id'] || '', /^[0-9a-f]{32}$/, 'a non-empty X-Request-Id');
  assert.ok(r.closed, 'the server closes the connection');
  assert.ok(!/second=1|hello$/.test(r.raw), 'the pipelined request is not answered');
  assert.ok(r.ms < 2500, `answered in ${r.ms} ms`);
  return res;
}

describe('hostile clients', () => {
  let gw;
  let viewer;
  const viewerLog = { ok: 0, failed: [] };
  before(async () => {
    // ASan keeps freed memory in a quarantine (256 MiB by default): a small one keeps
    // the RSS figures about the gateway, not the sanitizer.
    gw = await startGateway({ policy: POLICY, workers: 2, args: ['--header-timeout', '1'],
                              env: { ASAN_OPTIONS: 'abort_on_error=0:detect_leaks=1:quarantine_size_mb=8' } });
    // The well-behaved client: one GET every 20 ms on fresh connections, throughout.
    let running = true;
    viewer = (async () => {
      while (running) {
        try {
          const res = await get(gw.port, '/hello');
          if (res.status === 200 && res.body === 'hello') viewerLog.ok++;
          else viewerLog.failed.push(`status ${res.status}`);
        } catch (e) {
          viewerLog.failed.push(String(e));
        }
        await sleep(20);
      }
    })();
    viewer.stop = () => { running = false; return viewer; };
  });
  after(async () => {
    await viewer.stop();
    const { code } = await gw.stop();
    assert.doesNotMatch(gw.stderrText, /AddressSanitizer|UndefinedBehaviorSanitizer|runtime error/);
    assert.equal(code, 0, `exit code (ASan leak check included):\n${gw.stderrText.slice(-3000)}`);
  });

  describe('request smuggling (RFC 9112)', () => {
    it('400 for obs-fold (a header line starting with whitespace)', async () => {
      await rejects(gw.port, 'GET /hello HTTP/1.1\r\nHost: t\r\nX-A: a\r\n b\r\n\r\n', 400);
      await rejects(gw.port, 'GET /hello HTTP/1.1\r\nHost: t\r\nX-A: a\r\n\tb\r\n\r\n', 400);
    });

    it('400 for obs-fold split across reads at the line start', async () => {
      const r = await exchange(gw.port, ['GET /hello HTTP/1.1\r\nHost: t\r\nX-A: a\r\n', ' b\r\n\r\n' + SECOND],
                               { gap: 50 });
      assert.equal(r.responses.length, 1);
      assert.equal(r.responses[0].status, 400);
      assert.ok(r.closed);
    });

    it('400 for whitespace between a field name and its colon', async () => {
      await rejects(gw.port, 'GET /hello HTTP/1.1\r\nHost : t\r\n\r\n', 400);
      await rejects(gw.port, 'GET /hello HTTP/1.1\r\nHost: t\r\nContent-Length : 5\r\n\r\nhello', 400);
    });

    it('400 for a bare CR (llhttp 8.1 ends a head at "\\r ")', async () => {
      await rejects(gw.port, 'GET /hello HTTP/1.1\r\nHost: t\r\nX:\r \n', 400);
      await rejects(gw.port, 'GET /hello HTTP/1.1\r\nHost: t\r\nX: a\rb\r\n\r\n', 400);
    });

    it('400 for an HTTP/0.9 request line, 505 for HTTP/2.0 in HTTP/1 syntax', async () => {
      await rejects(gw.port, 'GET /hello\r\n\r\n', 400);
      await rejects(gw.port, 'GET /hello HTTP/0.9\r\n\r\n', 400);
      await rejects(gw.port, 'GET /hello HTTP/2.0\r\nHost: t\r\n\r\n', 505);
    });

    it('400 for HTTP/1.1 without Host, with two Hosts, or with an invalid Host', async () => {
      await rejects(gw.port, 'GET /hello HTTP/1.1\r\n\r\n', 400);
      await rejects(gw.port, 'GET /hello HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n', 400);
      await rejects(gw.port, 'GET /hello HTTP/1.0\r\nHost: a\r\nhost: a\r\n\r\n', 400);
      for (const h of ['a b', 'a/b', 'a@b', 'a"b', 'a:80:80', 'a:x', '[::1', '', 'a\\b', 'a:123456']) {
        await rejects(gw.port, `GET /hello HTTP/1.1\r\nHost: ${h}\r\n\r\n`, 400);
      }
    });

    it('accepts a valid Host (name, IPv4, IPv6 literal, with port) and HTTP/1.0 without one', async () => {
      for (const h of ['example.com', 'example.com:8080', '127.0.0.1:1', '[::1]:8080', 'xn--bcher-kva.de']) {
        const r = await exchange(gw.port, [`GET /echo HTTP/1.1\r\nHost: ${h}\r\nConnection: close\r\n\r\n`]);
        assert.equal(r.responses[0]?.status, 200, h);
        assert.equal(JSON.parse(r.responses[0].body).host, h);
      }
      const r = await exchange(gw.port, ['GET /hello HTTP/1.0\r\n\r\n']);
      assert.equal(r.responses[0].status, 200);
      // optional whitespace around a value is not part of it (RFC 9110 §5.5)
      const ows = await exchange(gw.port, ['GET /echo HTTP/1.1\r\nHost: \t example.com \t \r\nConnection: close\r\n\r\n']);
      assert.equal(JSON.parse(ows.responses[0].body).host, 'example.com');
    });

    it('400 for Content-Length with Transfer-Encoding, and for two Content-Lengths', async () => {
      await rejects(gw.port, 'POST /post HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n', 400);
      await rejects(gw.port, 'POST /post HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n', 400);
      await rejects(gw.port, 'POST /post HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nContent-Length: 0\r\n\r\nhello', 400);
      await rejects(gw.port, 'POST /post HTTP/1.1\r\nHost: t\r\nContent-Length: 5, 0\r\n\r\nhello', 400);
      await rejects(gw.port, 'POST /post HTTP/1.1\r\nHost: t\r\nContent-Length: -1\r\n\r\n', 400);
    });

    it('501 for a Transfer-Encoding other than exactly "chunked"', async () => {
      await rejects(gw.port, 'POST /post HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n', 501);
      await rejects(gw.port, 'POST /post HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: identity\r\n\r\n', 501);
      // chunked not last, or twice: the length is unknowable (RFC 9112 §6.3: 400)
      await rejects(gw.port, 'POST /post HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n', 400);
      await rejects(gw.port, 'POST /post HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n', 400);
    });

    it('accepts valid chunk extensions (several, quoted, split across reads)', async () => {
      const body = '4;a=b;c=d\r\nabcd\r\n3;x="y;z";w\r\nefg\r\n0;e=f;g=h\r\n\r\n';
      const raw = `POST /post HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n${body}`;
      let r = await exchange(gw.port, [raw + 'GET /hello HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n']);
      assert.deepEqual(r.responses.map((x) => [x.status, x.body]), [[201, 'abcdefg'], [200, 'hello']]);
      // one byte per read: every extension boundary falls between two reads once
      r = await exchange(gw.port, [...(raw.replace('Host: t', 'Host: t\r\nConnection: close'))], { gap: 1 });
      assert.deepEqual(r.responses.map((x) => [x.status, x.body]), [[201, 'abcdefg']]);
    });

    it('400 for a malformed chunk (bad size, missing CRLF, oversized)', async () => {
      const pre = 'POST /post HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n';
      await rejects(gw.port, `${pre}zz\r\nab\r\n0\r\n\r\n`, 400);
      await rejects(gw.port, `${pre}2\r\nabc\r\n0\r\n\r\n`, 400);
      await rejects(gw.port, `${pre}ffffffffffffffffff\r\n`, 400);
      await rejects(gw.port, `${pre}4;a=b c\r\nabcd\r\n0\r\n\r\n`, 400);
    });

    it('answers an Upgrade request as a plain one, with an id, then closes', async () => {
      const r = await exchange(gw.port, ['GET /hello HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n' + SECOND]);
      assert.equal(r.responses.length, 1, r.raw);
      assert.equal(r.responses[0].status, 200);
      assert.match(r.responses[0].headers['x-request-id'], /^[0-9a-f]{32}$/);
      assert.equal(r.responses[0].headers.connection, 'close');
      assert.ok(r.closed);
    });

    it('absolute-form: the authority replaces Host (RFC 9112 §3.2.2)', async () => {
      const r = await exchange(gw.port, ['GET http://good.example:81/echo?x=1 HTTP/1.1\r\nHost: evil\r\nConnection: close\r\n\r\n']);
      assert.equal(r.responses[0].status, 200);
      assert.deepEqual(JSON.parse(r.responses[0].body).host, 'good.example:81');
      assert.deepEqual(JSON.parse(r.responses[0].body).target, '/echo');
      await rejects(gw.port, 'GET http://a b/echo HTTP/1.1\r\nHost: t\r\n\r\n', 400);
      await rejects(gw.port, 'GET http://u@evil/echo HTTP/1.1\r\nHost: t\r\n\r\n', 400);
    });

    it('405 for CONNECT, 400 for a target in neither origin nor absolute form', async () => {
      await rejects(gw.port, 'CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n', 405);
      await rejects(gw.port, 'GET * HTTP/1.1\r\nHost: t\r\n\r\n', 400);
      await rejects(gw.port, 'GET hello HTTP/1.1\r\nHost: t\r\n\r\n', 400);
    });

    it('OPTIONS * reaches the policy (204: the default preflight answer), keep-alive', async () => {
      const r = await exchange(gw.port, ['OPTIONS * HTTP/1.1\r\nHost: t\r\n\r\n' + SECOND.replace('\r\n\r\n', '\r\nConnection: close\r\n\r\n')]);
      assert.deepEqual(r.responses.map((x) => x.status), [204, 200]);
    });

    it('400/405 for invalid bytes in the method, target and header names', async () => {
      await rejects(gw.port, 'G\x01T /hello HTTP/1.1\r\nHost: t\r\n\r\n', 400);
      await rejects(gw.port, 'BREW /hello HTTP/1.1\r\nHost: t\r\n\r\n', 405);
      await rejects(gw.port, 'GET /he\x7fllo HTTP/1.1\r\nHost: t\r\n\r\n', 400);
      await rejects(gw.port, 'GET /he llo HTTP/1.1\r\nHost: t\r\n\r\n', 400);
      await rejects(gw.port, 'GET /hello HTTP/1.1\r\nHost: t\r\nX\x01Y: a\r\n\r\n', 400);
      await rejects(gw.port, 'GET /hello HTTP/1.1\r\nHost: t\r\nX-A: a\x00b\r\n\r\n', 400);
      await rejects(gw.port, 'GET /hello HTTP/1.1\r\nHost: t\r\nX-A: a\rb\r\n\r\n', 400);
      await rejects(gw.port, 'GET /hello HTTP/1.1\nHost: t\n\n', 400);
    });
  });

  describe('floods and huge lines', () => {
    it('414 for a 1 MB request line, answered before the line ends', async () => {
      await rejects(gw.port, `GET /${'a'.repeat(1 << 20)} HTTP/1.1\r\nHost: t\r\n\r\n`, 414, { noSecond: true });
    });

    it('431 for a header flood (many small headers) and for one huge header', async () => {
      let many = 'GET /hello HTTP/1.1\r\nHost: t\r\n';
      for (let i = 0; i < 5000; i++) many += `X-${i}: ${i}\r\n`;
      await rejects(gw.port, `${many}\r\n`, 431);
      await rejects(gw.port, `GET /hello HTTP/1.1\r\nHost: t\r\nX-Big: ${'b'.repeat(1 << 20)}\r\n\r\n`, 431, { noSecond: true });
    });

    it('413 for a body above the limit, without 100-continue', async () => {
      const r = await exchange(gw.port, ['POST /post HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 100000000\r\n\r\n']);
      assert.equal(r.responses.length, 1);
      assert.equal(r.responses[0].status, 413);
      assert.ok(!r.raw.includes('100 Continue'));
      assert.ok(r.closed);
      await rejects(gw.port, `POST /post HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n${('ffff\r\n' + 'x'.repeat(0xffff) + '\r\n').repeat(2)}`, 413, { noSecond: true });
    });

    it('Expect: 100-continue gets 100, then the answer', async () => {
      const r = await exchange(gw.port, ['POST /post HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 5\r\nConnection: close\r\n\r\n', 'hello'], { gap: 100 });
      assert.match(r.raw, /^HTTP\/1\.1 100 Continue\r\n\r\nHTTP\/1\.1 201 /);
      assert.ok(r.raw.endsWith('hello'));
    });

    it('answers 10,000 tiny pipelined requests in order, in bounded time', async (t) => {
      const n = 10000;
      let raw = '';
      for (let i = 0; i < n - 1; i++) raw += 'GET /hello HTTP/1.1\r\nHost: t\r\n\r\n';
      raw += 'GET /echo HTTP/1.1\r\nHost: last\r\nConnection: close\r\n\r\n';
      const r = await exchange(gw.port, [raw], { timeout: 60000 });
      t.diagnostic(`10,000 pipelined requests (${raw.length} bytes) answered in ${r.ms} ms`);
      assert.equal(r.responses.length, n);
      assert.ok(r.responses.slice(0, -1).every((x) => x.status === 200 && x.body === 'hello'));
      assert.equal(JSON.parse(r.responses[n - 1].body).host, 'last');
      assert.ok(r.ms < 60000, `${r.ms} ms`);
    });
  });

  describe('slow and vanishing clients', () => {
    it('408 for slowloris headers (one byte at a time), within the header timeout', async () => {
      const bytes = [...'GET /hello HTTP/1.1\r\nHost: t\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa'];
      const r = await exchange(gw.port, bytes, { gap: 100, timeout: 4000 });
      assert.equal(r.responses.length, 1);
      assert.equal(r.responses[0].status, 408);
      assert.ok(r.closed);
      assert.ok(r.ms < 3000, `${r.ms} ms`);
    });

    it('408 for a slow body, within the header timeout', async () => {
      const chunks = ['POST /post HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\n', ...'x'.repeat(40)];
      const r = await exchange(gw.port, chunks, { gap: 100, timeout: 4000 });
      assert.equal(r.responses[0]?.status, 408, r.raw);
      assert.ok(r.closed);
    });

    it('500 concurrent slowloris connections: each 408 within the timeout, memory bounded', async (t) => {
      const rss0 = rssKiB(gw.proc.pid);
      let peak = rss0;
      const sampler = setInterval(() => { peak = Math.max(peak, rssKiB(gw.proc.pid)); }, 50);
      const t0 = Date.now();
      const results = await Promise.all(Array.from({ length: 500 }, (_, i) =>
        exchange(gw.port, [...`GET /hello?${i} HTTP/1.1\r\nHost: t\r\nX-Slow: ${'s'.repeat(40)}`], { gap: 100, timeout: 6000 })));
      clearInterval(sampler);
      const ms = Date.now() - t0;
      assert.ok(results.every((r) => r.responses.length === 1 && r.responses[0].status === 408 && r.closed),
                JSON.stringify(results.find((r) => r.responses[0]?.status !== 408)?.raw));
      const worst = Math.max(...results.map((r) => r.ms));
      t.diagnostic(`500 slowloris: worst ${worst} ms, all in ${ms} ms; RSS ${rss0} -> peak ${peak} KiB (+${peak - rss0} KiB, ASan build)`);
      assert.ok(worst < 3000, `${worst} ms`);
      assert.ok(peak - rss0 < 64 * 1024, `RSS grew by ${peak - rss0} KiB`);
    });

    it('50 connections x 20 pipelined 15 KiB heads (just under the limits) stay bounded', async (t) => {
      const rss0 = rssKiB(gw.proc.pid);
      const head = `GET /hello HTTP/1.1\r\nHost: t\r\n${`X-F: ${'f'.repeat(160)}\r\n`.repeat(90)}\r\n`;
      const results = await Promise.all(Array.from({ length: 50 }, () => exchange(gw.port, [head.repeat(20)], { timeout: 10000 })));
      const rss1 = rssKiB(gw.proc.pid);
      t.diagnostic(`50 x 20 pipelined 15 KiB heads: RSS ${rss0} -> ${rss1} KiB`);
      assert.ok(results.every((r) => r.responses.length === 20 && r.responses.every((x) => x.status === 200)));
      assert.ok(rss1 - rss0 < 64 * 1024, `RSS grew by ${rss1 - rss0} KiB`);
    });

    it('survives 200 resets in the middle of heads and bodies', async () => {
      const parts = ['GET /hel', 'GET /hello HTTP/1.1\r\nHost: t\r\nX-A: ',
                     'POST /post HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nab',
                     'POST /post HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n4;a=b'];
      await Promise.all(Array.from({ length: 200 }, async (_, i) => {
        const s = net.connect(gw.port, '127.0.0.1');
        s.on('error', () => {});
        await new Promise((res) => s.once('connect', res));
        s.write(parts[i % parts.length]);
        await sleep(i % 7);
        s.resetAndDestroy();
      }));
      const res = await get(gw.port, '/hello');
      assert.equal(res.status, 200);
    });
  });

  it('the well-behaved client was served throughout', async () => {
    assert.deepEqual(viewerLog.failed, []);
    assert.ok(viewerLog.ok > 20, `${viewerLog.ok} answers`);
  });
});
