// TLS on the listener (issue 16, docs/tls.md): the same bytes over HTTPS with HTTP/2 and
// HTTP/1.1 as over plain HTTP, ALPN, the access log's protocol, SNI, no TLS < 1.2 and no
// weak cipher (openssl s_client), and certificates swapped on HUP: new handshakes get the
// new one while a connection opened before keeps working; a bad file keeps the old one.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { createRequire } from 'node:module';

import { ROOT, sleep, startGateway, tempDir, waitFor } from './lib/gateway.mjs';
import { makeHls } from './lib/media.mjs';
import { startOrigin } from './lib/origin.mjs';
import { curl, fingerprint, h2get, h2session, makeCa, makeCert, tlsConnect, tlsPort } from './lib/tls.mjs';

const require = createRequire(import.meta.url);
const jwt = require('jsonwebtoken');
const SECRET = 'tls-e2e-secret-0123456789abcdef';

describe('TLS listener', () => {
  let dir, ca, live, gw, port, token;

  before(async () => {
    dir = tempDir('hg-tls-listen-');
    ca = makeCa(dir).pem;
    const a = makeCert(dir, 'a', ['localhost']);
    makeCert(dir, 'b', ['b.test', '*.b.test'], { rsa: true });
    makeCert(dir, 'a2', ['localhost']); // the replacement for the HUP test
    live = { cert: path.join(dir, 'live.pem'), key: path.join(dir, 'live.key') };
    fs.copyFileSync(a.cert, live.cert);
    fs.copyFileSync(a.key, live.key);
    makeHls(path.join(dir, 'media/videos/a'), { encrypt: true, seconds: 6 });
    gw = await startGateway({
      policyFile: path.join(ROOT, 'policies/policy.lua'),
      env: { HLSGATE_JWT_SECRET: SECRET, HLSGATE_DEMO_DIR: path.join(dir, 'media') },
      args: ['--listen', '127.0.0.1:0', '--tls-cert', live.cert, '--tls-key', live.key,
             '--tls-cert', path.join(dir, 'b.pem'), '--tls-key', path.join(dir, 'b.key')],
    });
    port = tlsPort(gw);
    token = jwt.sign({ sub: 'hls', pfx: 'videos/a', exp: Math.floor(Date.now() / 1000) + 600 }, SECRET,
                     { algorithm: 'HS256' });
  });

  after(async () => {
    if (gw) assert.equal((await gw.stop()).code, 0, gw.stderrText.slice(-3000));
  });

  it('curl --http2 and --http1.1 over TLS get the bytes plain HTTP gets', async () => {
    const q = `?token=${token}`;
    const paths = ['/stream/hls/master.m3u8', '/stream/hls/v0/index.m3u8', '/stream/hls/v0/seg000.ts',
                   '/stream/hls/v1/seg001.ts', '/stream/hls/enc.key'];
    for (const p of paths) {
      const plain = await fetch(`${gw.base}${p}${q}`);
      assert.equal(plain.status, 200, p);
      const want = Buffer.from(await plain.arrayBuffer());
      const h2 = curl(port, p + q, { ca, http: '--http2' });
      const h1 = curl(port, p + q, { ca, http: '--http1.1' });
      assert.equal(h2.version, '2', p);
      assert.equal(h1.version, '1.1', p);
      assert.equal(h2.status, 200, p);
      assert.equal(h1.status, 200, p);
      assert.ok(want.length > 0);
      assert.ok(h2.body.equals(want), `${p}: HTTP/2 body differs (${h2.body.length} vs ${want.length})`);
      assert.ok(h1.body.equals(want), `${p}: HTTP/1.1 body differs`);
    }
    // HEAD over HTTP/2: the length, no body.
    const head = curl(port, `/stream/hls/v0/seg000.ts${q}`, { ca, extra: ['-I'] });
    assert.equal(head.status, 200);
    assert.match(head.body.toString(), /content-length: \d+/);
    // HEAD of an object nobody fetched yet (relayed from the origin, not the cache): the
    // stream closes with the head, which is the end of the answer, not a client gone.
    const fresh = curl(port, `/stream/hls/v1/seg002.ts${q}`, { ca, extra: ['-I'] });
    assert.equal(fresh.status, 200);
    await waitFor(() => gw.accessLog().some((l) => l.path.startsWith('/stream/hls/v1/seg002.ts')), 3000, 'no HEAD log line');
    const headLine = gw.accessLog().find((l) => l.path.startsWith('/stream/hls/v1/seg002.ts'));
    assert.equal(headLine.method, 'HEAD');
    assert.equal(headLine.status, 200, JSON.stringify(headLine));
    // The access log names the protocol of each request.
    await waitFor(() => gw.accessLog().filter((l) => l.path.startsWith('/stream/hls/v1/seg001.ts')).length >= 3,
                  3000, 'no access log lines');
    const protos = gw.accessLog().filter((l) => l.path.startsWith('/stream/hls/v1/seg001.ts')).map((l) => l.protocol);
    assert.deepEqual(protos.sort(), ['HTTP/1.1', 'HTTP/1.1', 'HTTP/2.0']);
  });

  it('metrics count HTTP/2 requests like any other', async () => {
    const s = await h2session(port, ca);
    try {
      const before = await h2get(s, '/metrics');
      const n = (t) => Number(/hlsgate_requests_total\{route="healthz",status="200"\} (\d+)/.exec(t)?.[1] || 0);
      for (let i = 0; i < 3; i++) assert.equal((await h2get(s, '/healthz')).status, 200);
      const afterM = await h2get(s, '/metrics');
      assert.equal(n(afterM.body.toString()) - n(before.body.toString()), 3, afterM.body.toString().slice(0, 2000));
    } finally {
      s.close();
    }
  });

  it('ALPN: h2 preferred, http/1.1 when offered alone, HTTP/1.1 without ALPN', async () => {
    for (const [alpn, want] of [[['h2', 'http/1.1'], 'h2'], [['http/1.1', 'h2'], 'h2'], [['http/1.1'], 'http/1.1']]) {
      const s = await tlsConnect(port, { ca, alpn });
      assert.equal(s.alpnProtocol, want, JSON.stringify(alpn));
      s.destroy();
    }
    const s = await tlsConnect(port, { ca, alpn: undefined });
    s.write('GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n');
    let out = '';
    for await (const d of s) out += d;
    assert.match(out, /^HTTP\/1\.1 200 /);
  });

  it('SNI picks the certificate that names the host; others get the first', async () => {
    const fp = (s) => s.getPeerX509Certificate().fingerprint256;
    const b = fingerprint(path.join(dir, 'b.pem'));
    const a = fingerprint(live.cert);
    for (const [name, want] of [['b.test', b], ['x.b.test', b], ['localhost', a], ['other.example', a]]) {
      const s = await tlsConnect(port, { ca, servername: name, rejectUnauthorized: false });
      assert.equal(fp(s), want, name);
      s.destroy();
    }
  });

  it('openssl s_client: TLS 1.0/1.1, weak and non-ECDHE ciphers are refused; 1.2 ECDHE-AEAD works', () => {
    const sc = (args) => spawnSync('openssl', ['s_client', '-connect', `127.0.0.1:${port}`, '-servername', 'localhost',
                                                ...args], { input: '', encoding: 'utf8', timeout: 10000 });
    const ok = (r) => r.status === 0 && /Cipher is (?!\(NONE\))/.test(r.stdout) && !/Cipher is \(NONE\)/.test(r.stdout);
    // Old protocols: the client needs security level 0 to even offer them.
    for (const v of ['-tls1', '-tls1_1']) {
      const r = sc([v, '-cipher', 'ALL:@SECLEVEL=0']);
      assert.ok(!ok(r), `${v} was accepted:\n${r.stdout}`);
    }
    for (const c of ['RC4-SHA', 'DES-CBC3-SHA', 'ECDHE-RSA-DES-CBC3-SHA', 'AES128-SHA', 'AES256-SHA256', 'AES128-GCM-SHA256',
                     'ECDHE-RSA-AES128-SHA', 'ECDHE-ECDSA-AES128-SHA', 'ECDHE-ECDSA-AES256-SHA384', 'DHE-RSA-AES128-GCM-SHA256',
                     'NULL-SHA256', 'ECDHE-ECDSA-NULL-SHA', 'EXP-RC4-MD5', 'aNULL']) {
      const r = sc(['-tls1_2', '-cipher', `${c}:@SECLEVEL=0`]);
      assert.ok(!ok(r), `${c} was accepted:\n${r.stdout}`);
    }
    for (const c of ['ECDHE-ECDSA-AES128-GCM-SHA256', 'ECDHE-ECDSA-AES256-GCM-SHA384', 'ECDHE-ECDSA-CHACHA20-POLY1305']) {
      const r = sc(['-tls1_2', '-cipher', c, '-CAfile', ca, '-verify_return_error']);
      assert.ok(ok(r), `${c} refused:\n${r.stdout}\n${r.stderr}`);
      assert.match(r.stdout, new RegExp(`Cipher is ${c}`));
    }
    // The RSA certificate (SNI b.test) with ECDHE-RSA-AEAD.
    const r = spawnSync('openssl', ['s_client', '-connect', `127.0.0.1:${port}`, '-servername', 'b.test', '-tls1_2',
                                    '-cipher', 'ECDHE-RSA-AES128-GCM-SHA256'], { input: '', encoding: 'utf8' });
    assert.ok(ok(r), r.stdout);
    // No default negotiation ends below TLS 1.2.
    const d = sc(['-CAfile', ca]);
    assert.match(d.stdout, /Protocol *: TLSv1\.2/);
  });

  it('HUP swaps the certificate for new handshakes; an open connection keeps working; a bad file keeps the old', async () => {
    const oldFp = fingerprint(live.cert);
    const newFp = fingerprint(path.join(dir, 'a2.pem'));
    assert.notEqual(oldFp, newFp);
    const old = await h2session(port, ca);
    const oldSocketFp = old.socket.getPeerX509Certificate().fingerprint256;
    assert.equal(oldSocketFp, oldFp);
    assert.equal((await h2get(old, '/healthz')).status, 200);
    // A bad certificate first: logged, nothing changes.
    fs.writeFileSync(live.cert, '-----BEGIN CERTIFICATE-----\nnot a certificate\n-----END CERTIFICATE-----\n');
    let from = gw.stderrText.length;
    gw.signal('SIGHUP');
    await gw.waitForStderr(/TLS reload failed, keeping the current certificates: .*live\.pem/, { from });
    let s = await tlsConnect(port, { ca });
    assert.equal(s.getPeerX509Certificate().fingerprint256, oldFp);
    s.destroy();
    // Then the good one.
    fs.copyFileSync(path.join(dir, 'a2.pem'), live.cert);
    fs.copyFileSync(path.join(dir, 'a2.key'), live.key);
    from = gw.stderrText.length;
    gw.signal('SIGHUP');
    await gw.waitForStderr(/reloading TLS certificates/, { from });
    await waitFor(async () => {
      const t = await tlsConnect(port, { ca });
      const f = t.getPeerX509Certificate().fingerprint256;
      t.destroy();
      return f === newFp;
    }, 3000, 'new handshakes never saw the new certificate');
    // The connection from before still works, on its old certificate.
    const r = await h2get(old, `/stream/hls/v0/seg000.ts?token=${token}`);
    assert.equal(r.status, 200);
    assert.ok(r.body.length > 1000);
    assert.equal(old.encrypted && oldSocketFp, oldFp); // the same connection as before the swap
    old.close();
    s = await tlsConnect(port, { ca });
    assert.equal(s.getPeerX509Certificate().fingerprint256, newFp);
    s.destroy();
  });
});

describe('TLS configuration errors', () => {
  it('a missing key, a key before its certificate, TLS options without --listen are refused', () => {
    const run = (args) => spawnSync(process.env.HLSGATE_BIN || path.join(ROOT, 'build/hlsgate'), args, { encoding: 'utf8' });
    let r = run(['--listen', '127.0.0.1:0', '--tls-cert', 'c.pem']);
    assert.equal(r.status, 2);
    assert.match(r.stderr, /missing its --tls-key/);
    r = run(['--listen', '127.0.0.1:0', '--tls-key', 'k.pem']);
    assert.equal(r.status, 2);
    assert.match(r.stderr, /--tls-key must follow its --tls-cert/);
    r = run(['--tls-cert', 'c.pem', '--tls-key', 'k.pem']);
    assert.equal(r.status, 2);
    assert.match(r.stderr, /must follow the --listen/);
  });

  it('an unreadable certificate stops the start with its name; env HLSGATE_TLS_* work', async () => {
    const dir = tempDir('hg-tls-env-');
    makeCa(dir);
    const c = makeCert(dir, 's', ['localhost']);
    await assert.rejects(startGateway({ policyFile: path.join(ROOT, 'policies/policy.lua'), env: { HLSGATE_JWT_SECRET: 'x' }, args: ['--listen', '127.0.0.1:0', '--tls-cert', path.join(dir, 'nope.pem'),
                                                                     '--tls-key', c.key] }),
                         /nope\.pem/);
    // Environment: HLSGATE_LISTEN is replaced by the flags, so use env alone here.
    const { spawn } = await import('node:child_process');
    const p = spawn(process.env.HLSGATE_BIN || path.join(ROOT, 'build/hlsgate'),
                    ['--workers', '1', '--policy', path.join(ROOT, 'policies/policy.lua')],
                    { env: { ...process.env, HLSGATE_LISTEN: '127.0.0.1:0', HLSGATE_TLS_LISTEN: '127.0.0.1:0',
                             HLSGATE_TLS_CERT: c.cert, HLSGATE_TLS_KEY: c.key, HLSGATE_JWT_SECRET: 'x' },
                      stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    p.stderr.on('data', (d) => { err += d; });
    try {
      await waitFor(() => / ready: /.test(err), 10000, () => `not ready:\n${err}`);
      const port = tlsPort({ stderrText: err });
      const r = curl(port, '/healthz', { ca: path.join(dir, 'ca.pem') });
      assert.equal(r.status, 200);
      assert.equal(r.version, '2');
    } finally {
      p.kill('SIGTERM');
      await new Promise((res) => p.once('exit', res));
    }
  });
});

// Signals while HTTP/2 streams wait on a stalled origin: the first TERM sends GOAWAY and
// drains, HUPs are ignored, an INT closes what is left now (the worker then exits), and a
// TERM after that must find no exited worker to wake (libuv aborts on a closed loop).
describe('TLS listener: signals while HTTP/2 streams are in flight', () => {
  it('TERM, a HUP storm, INT, then TERM again: exit 0, within a second of the INT', async () => {
    const dir = tempDir('hg-tls-sig-');
    const ca = makeCa(dir).pem;
    const c = makeCert(dir, 'a', ['localhost']);
    const origin = await startOrigin({ routes: { '/slow.ts': (req, res) => {
      res.writeHead(200, { 'Content-Type': 'video/mp2t', 'Content-Length': 1000000 });
      res.write(Buffer.alloc(1000)); // then nothing
    } } });
    const gw = await startGateway({
      policy: `return { on_request = function(req)
        if req.path == "/slow.ts" then
          return { origin = { type = "http", url = "${origin.base}/slow.ts", allow_private = true } }
        end
        return "ok" end }`,
      args: ['--drain-timeout', '60', '--listen', '127.0.0.1:0', '--tls-cert', c.cert, '--tls-key', c.key] });
    const sessions = [];
    try {
      for (let i = 0; i < 3; i++) {
        const s = await h2session(tlsPort(gw), ca);
        sessions.push(s);
        for (let j = 0; j < 3; j++) {
          const r = s.request({ ':path': '/slow.ts' });
          r.on('error', () => {});
          r.on('data', () => {});
          r.end();
        }
      }
      await sleep(300);
      gw.signal('SIGTERM');
      await gw.waitForStderr(/SIGTERM: draining/);
      for (let i = 0; i < 20; i++) gw.signal('SIGHUP');
      await sleep(200);
      assert.equal(gw.exited, null, 'still draining (streams in flight)');
      gw.signal('SIGINT');
      const t0 = Date.now();
      await gw.waitForStderr(/SIGINT while draining/);
      for (let i = 0; i < 40 && !gw.exited; i++) { // more, while the worker exits (an impatient operator)
        gw.signal('SIGTERM');
        await sleep(5);
      }
      const { code, signal } = await gw.exit(5000);
      assert.deepEqual({ code, signal }, { code: 0, signal: null }, gw.stderrText.slice(-3000));
      assert.ok(Date.now() - t0 < 1500, `${Date.now() - t0} ms`);
      assert.doesNotMatch(gw.stderrText, /reloading (policy|TLS)/);
    } finally {
      for (const s of sessions) s.destroy();
      await origin.close();
    }
  });
});
