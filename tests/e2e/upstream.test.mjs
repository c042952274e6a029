// Upstream (issue 5) end to end: the real binary against a signature-verifying private
// S3, a TLS origin with its own CA, and plain HTTP origins scripted for redirects,
// stalls, failures and a 200 MiB body read slowly.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';

import { connect, get, sleep, startGateway, tempDir } from './lib/gateway.mjs';
import { startOrigin, pattern } from './lib/origin.mjs';
import { startS3Server } from './lib/s3server.mjs';

const enc = encodeURIComponent;

// A test policy: /s3/<key> from the bucket in the environment, /fetch?u=<url> over http(s).
const POLICY = `
local hg = require("hlsgate")
local function env(n) local v = os.getenv(n) if v and v ~= "" then return v end end
return { on_request = function(req)
  local q = req.query
  if req.path:sub(1, 4) == "/s3/" then
    return { origin = { type = "s3", key = hg.url.decode(req.path:sub(5)), endpoint = env("S3_ENDPOINT"),
                        bucket = env("S3_BUCKET"), access_key = env("AWS_ACCESS_KEY_ID"),
                        secret_key = env("AWS_SECRET_ACCESS_KEY") },
             cache_ttl = tonumber(q.ttl or "0") }
  end
  if req.path == "/fetch" then
    local allow = q.private == "1" or nil
    if q.allow then allow = {} for c in q.allow:gmatch("[^,]+") do allow[#allow + 1] = c end end
    return { origin = { type = "http", url = q.u, allow_private = allow,
                        max_redirects = tonumber(q.redirects or "10") },
             cache_ttl = tonumber(q.ttl or "0"), timeout = tonumber(q.timeout or "10") }
  end
end }
`;

/** Streams `size` pattern bytes with backpressure; honours a single "bytes=a-b" range. */
function bigRoute(size) {
  return (req, res) => {
    let from = 0, to = size - 1, status = 200;
    const m = /^bytes=(\d+)-(\d*)$/.exec(req.headers.range || '');
    const headers = { 'Content-Type': 'video/mp2t', 'Accept-Ranges': 'bytes' };
    if (m) {
      from = Number(m[1]);
      to = m[2] ? Math.min(Number(m[2]), size - 1) : size - 1;
      status = 206;
      headers['Content-Range'] = `bytes ${from}-${to}/${size}`;
    }
    headers['Content-Length'] = to - from + 1;
    res.writeHead(status, headers);
    let off = from;
    const chunk = pattern(0, 251 * 1024); // aligned: any 251-multiple offset repeats it
    const pump = () => {
      while (off <= to) {
        const n = Math.min(to - off + 1, 64 * 1024);
        const start = off % 251;
        const ok = res.write(chunk.subarray(start, start + n));
        off += n;
        if (!ok) return res.once('drain', pump);
      }
      res.end();
    };
    pump();
  };
}

function rssKiB(pid) {
  const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(m[1]);
}

describe('S3 origin (private bucket, SigV4)', () => {
  let s3, gw;
  const env = (s, secret) => ({ S3_ENDPOINT: s.endpoint, S3_BUCKET: s.bucket,
                               AWS_ACCESS_KEY_ID: s.accessKey, AWS_SECRET_ACCESS_KEY: secret });
  before(async () => {
    s3 = await startS3Server({ bucket: 'media', accessKey: 'AKIDTEST', secretKey: 'secret/key+1' });
    await s3.putObject('videos/a/index.m3u8', '#EXTM3U\n#EXTINF:2,\nseg 1.ts\n', 'application/vnd.apple.mpegurl');
    await s3.putObject('videos/a/seg 1.ts', pattern(0, 100000), 'video/mp2t');
    gw = await startGateway({ policy: POLICY, env: env(s3, 'secret/key+1') });
  });
  after(async () => {
    assert.equal((await gw.stop()).code, 0, gw.stderrText.slice(-2000));
    await s3.close();
  });

  it('fetches with a signed request from a bucket that refuses unsigned ones', async () => {
    const direct = await fetch(`${s3.endpoint}/media/videos/a/index.m3u8`);
    assert.equal(direct.status, 403);
    const res = await get(gw.port, '/s3/videos/a/index.m3u8');
    assert.equal(res.status, 200);
    assert.equal(res.body, '#EXTM3U\n#EXTINF:2,\nseg 1.ts\n'); // no rewrite rule: kept as is
    const seg = await get(gw.port, `/s3/${enc('videos/a/seg 1.ts')}`);
    assert.equal(seg.status, 200);
    assert.equal(seg.headers['content-length'], '100000');
    assert.ok(s3.requests.some((r) => r.path === '/media/videos/a/seg%201.ts' && r.headerSigned));
    const range = await get(gw.port, `/s3/${enc('videos/a/seg 1.ts')}`, 'Range: bytes=1000-1999\r\n');
    assert.equal(range.status, 206);
    assert.equal(range.headers['content-range'], 'bytes 1000-1999/100000');
  });

  it('404 for a missing key; 502 for a wrong secret, the S3 error in the log and not in the answer', async () => {
    assert.equal((await get(gw.port, '/s3/videos/a/none.m3u8')).status, 404);
    const bad = await startGateway({ policy: POLICY, env: env(s3, 'wrong-secret') });
    const res = await get(bad.port, '/s3/videos/a/index.m3u8');
    assert.equal(res.status, 502);
    const body = JSON.parse(res.body);
    assert.deepEqual(Object.keys(body), ['error', 'status', 'request_id']);
    assert.equal(body.error, 'upstream error', 'a viewer never sees the bucket or the S3 code');
    assert.equal(body.request_id, res.headers['x-request-id']);
    // the operator's log has them, under the same request id
    const line = bad.stderrText.split('\n').find((l) => l.includes(body.request_id));
    assert.match(line, /s3 bucket media/);
    assert.match(line, /403 SignatureDoesNotMatch/);
    assert.ok(!res.body.includes('wrong-secret') && !bad.stderrText.includes('wrong-secret'), 'no secret in errors or logs');
    assert.equal((await bad.stop()).code, 0);
  });
});

describe('HTTPS origin', () => {
  let dir, origin, gw, plain;
  before(async () => {
    dir = tempDir('hg-tls-');
    const o = (args) => execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
    o(['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '2',
       '-subj', '/CN=hlsgate test CA']);
    o(['req', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'srv.key', '-out', 'srv.csr', '-subj', '/CN=localhost']);
    fs.writeFileSync(path.join(dir, 'ext'), 'subjectAltName=DNS:localhost\n');
    o(['x509', '-req', '-in', 'srv.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'srv.pem',
       '-days', '2', '-extfile', 'ext']);
    origin = await startOrigin({ tls: { key: fs.readFileSync(path.join(dir, 'srv.key')), cert: fs.readFileSync(path.join(dir, 'srv.pem')) },
                                 routes: { '/x.m3u8': (q, r) => { r.writeHead(200); r.end('#EXTM3U\n'); } } });
    gw = await startGateway({ policy: POLICY, args: ['--ca-file', path.join(dir, 'ca.pem')] });
    plain = await startGateway({ policy: POLICY });
  });
  after(async () => {
    assert.equal((await gw.stop()).code, 0);
    assert.equal((await plain.stop()).code, 0);
    await origin.close();
  });

  it('works with a trusted CA; an untrusted certificate and a wrong hostname are 502', async () => {
    const ok = await get(gw.port, `/fetch?private=1&u=${enc(`https://localhost:${origin.port}/x.m3u8`)}`);
    assert.equal(ok.status, 200);
    assert.equal(ok.body, '#EXTM3U\n');
    const untrusted = await get(plain.port, `/fetch?private=1&u=${enc(`https://localhost:${origin.port}/x.m3u8`)}`);
    assert.equal(untrusted.status, 502);
    assert.match(JSON.parse(untrusted.body).error, /certificate/i);
    const wrongName = await get(gw.port, `/fetch?private=1&u=${enc(`https://127.0.0.1:${origin.port}/x.m3u8`)}`);
    assert.equal(wrongName.status, 502);
    assert.match(JSON.parse(wrongName.body).error, /certificate|hostname/i);
  });
});

describe('plain HTTP origins', () => {
  let origin, gw;
  let slowHits = 0;
  let endless = null; // { sent, closedAt } of the last /endless.ts
  before(async () => {
    const routes = {
      '/big.ts': bigRoute(200 * 1024 * 1024),
      '/endless.ts': (q, r) => { // 6.5 MB/s for as long as someone reads
        const st = endless = { sent: 0, closedAt: null };
        r.writeHead(200, { 'Content-Type': 'video/mp2t' });
        const chunk = Buffer.alloc(65536, 0x47);
        const t = setInterval(() => { if (!r.destroyed) { r.write(chunk); st.sent += chunk.length; } }, 10);
        r.on('close', () => { st.closedAt = Date.now(); clearInterval(t); });
      },
      '/slow.m3u8': (q, r) => { slowHits++; setTimeout(() => { r.writeHead(200); r.end('#EXTM3U\n#EXT-X-ENDLIST\n'); }, 300); },
      '/stall': () => {}, // never answers
      '/final.m3u8': (q, r) => { r.writeHead(200); r.end('#EXTM3U\n'); },
    };
    for (let i = 1; i <= 25; i++) {
      routes[`/r${i}`] = (q, r) => { r.writeHead(302, { Location: i === 1 ? '/final.m3u8' : `/r${i - 1}` }); r.end(); };
    }
    origin = await startOrigin({ routes });
    routes['/to-loopback'] = (q, r) => { r.writeHead(302, { Location: `http://127.0.0.1:${origin.port}/final.m3u8` }); r.end(); };
    gw = await startGateway({ policy: POLICY, workers: 2,
                              env: { ASAN_OPTIONS: 'quarantine_size_mb=4:malloc_context_size=2:detect_leaks=1' } });
  });
  after(async () => {
    assert.equal((await gw.stop()).code, 0, gw.stderrText.slice(-2000));
    await origin.close();
  });

  it('follows a redirect chain of 3, refuses one of 20', async () => {
    const three = await get(gw.port, `/fetch?private=1&u=${enc(`${origin.base}/r3`)}`);
    assert.equal(three.status, 200);
    assert.equal(three.body, '#EXTM3U\n');
    const twenty = await get(gw.port, `/fetch?private=1&u=${enc(`${origin.base}/r20`)}`);
    assert.equal(twenty.status, 502);
    assert.match(JSON.parse(twenty.body).error, /redirect/);
  });

  it('refuses a redirect to 127.0.0.1 when loopback is not allowed', async () => {
    // The first hop is allowed (0.0.0.0 reaches this host as an "unspecified" address);
    // the redirect to loopback must be re-checked and refused.
    const before = origin.hits.get('/final.m3u8') || 0;
    const res = await get(gw.port, `/fetch?allow=unspecified&u=${enc(`http://0.0.0.0:${origin.port}/to-loopback`)}`);
    assert.equal(res.status, 403);
    assert.match(JSON.parse(res.body).error, /loopback.*HLSGATE_ALLOW_PRIVATE/);
    assert.equal(origin.hits.get('/final.m3u8') || 0, before, 'the loopback target was never requested');
  });

  it('a client that leaves mid-body stops the upstream download at once (no bandwidth for nobody)', async () => {
    // The gateway used to go on reading the origin to its end after the client's socket
    // was gone (its writes failed, nobody told the relay): an endless body, forever.
    const sock = net.connect(gw.port, '127.0.0.1');
    await new Promise((r) => sock.once('connect', r));
    sock.write(`GET /fetch?private=1&u=${enc(`${origin.base}/endless.ts`)} HTTP/1.1\r\nHost: t\r\n\r\n`);
    let got = 0;
    await new Promise((resolve) => sock.on('data', (d) => { got += d.length; if (got > 512 * 1024) resolve(); }));
    const left = Date.now();
    sock.destroy();
    for (let i = 0; i < 50 && !endless.closedAt; i++) await sleep(100);
    assert.ok(endless.closedAt, `the origin still sends after 5 s (${endless.sent} bytes)`);
    assert.ok(endless.closedAt - left < 3000, `closed ${endless.closedAt - left} ms after the client left`);
    assert.equal((await get(gw.port, '/healthz')).status, 200);
  });

  it('100 concurrent requests for the same cold playlist make exactly one upstream fetch', async () => {
    slowHits = 0;
    const url = `/fetch?private=1&ttl=60&u=${enc(`${origin.base}/slow.m3u8`)}`;
    const results = await Promise.all(Array.from({ length: 100 }, () => get(gw.port, url)));
    for (const r of results) {
      assert.equal(r.status, 200);
      assert.equal(r.body, '#EXTM3U\n#EXT-X-ENDLIST\n');
    }
    assert.equal(slowHits, 1);
  });

  it('relays 200 MiB to a slow reader without buffering it (RSS), and ranges exactly', async () => {
    const pid = gw.proc.pid;
    const c = await connect(gw.port);
    const sock = c.sock;
    sock.removeAllListeners('data');
    let got = 0, head = null, buf = Buffer.alloc(0);
    const base = rssKiB(pid);
    let peak = base;
    c.write(`GET /fetch?private=1&u=${enc(`${origin.base}/big.ts`)} HTTP/1.1\r\nHost: t\r\n\r\n`);
    const total = 200 * 1024 * 1024;
    await new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`stalled at ${got}`)), 60000);
      sock.on('data', (d) => {
        if (!head) {
          buf = Buffer.concat([buf, d]);
          const i = buf.indexOf('\r\n\r\n');
          if (i < 0) return;
          head = buf.subarray(0, i).toString();
          d = buf.subarray(i + 4);
        }
        got += d.length;
        // Read slowly: ~64 MB/s, far below what the origin can push.
        sock.pause();
        setTimeout(() => sock.resume(), d.length / 65536);
        if (got % (8 << 20) < d.length) peak = Math.max(peak, rssKiB(pid));
        if (got >= total) { clearTimeout(timer); resolve(); }
      });
    });
    c.close();
    assert.match(head, /^HTTP\/1\.1 200/);
    assert.match(head, /Content-Length: 209715200/i);
    const growth = (peak - base) / 1024;
    assert.ok(growth < 8, `RSS grew by ${growth.toFixed(1)} MiB while relaying 200 MiB`);

    const from = 123456789, len = 1000;
    const r = await get(gw.port, `/fetch?private=1&u=${enc(`${origin.base}/big.ts`)}`, `Range: bytes=${from}-${from + len - 1}\r\n`);
    assert.equal(r.status, 206);
    assert.equal(r.headers['content-range'], `bytes ${from}-${from + len - 1}/${total}`);
    assert.deepEqual(Buffer.from(r.body, 'latin1').length, len);
    const raw = await new Promise((resolve) => {
      const s = net.connect(gw.port, '127.0.0.1');
      let b = Buffer.alloc(0);
      s.on('data', (d) => { b = Buffer.concat([b, d]); });
      s.on('end', () => resolve(b));
      s.write(`GET /fetch?private=1&u=${enc(`${origin.base}/big.ts`)} HTTP/1.1\r\nHost: t\r\nConnection: close\r\nRange: bytes=${from}-${from + len - 1}\r\n\r\n`);
    });
    const body = raw.subarray(raw.indexOf('\r\n\r\n') + 4);
    assert.ok(body.equals(pattern(from, len)), 'the right bytes');
  });

  it('origin down → 502 quickly; origin silent → 504 at the timeout; others served meanwhile', async () => {
    const dead = net.createServer();
    await new Promise((r) => dead.listen(0, '127.0.0.1', r));
    const port = dead.address().port;
    await new Promise((r) => dead.close(r));
    let t0 = Date.now();
    const down = await get(gw.port, `/fetch?private=1&u=${enc(`http://127.0.0.1:${port}/x.m3u8`)}`);
    assert.equal(down.status, 502);
    assert.match(JSON.parse(down.body).error, /refused/);
    assert.ok(Date.now() - t0 < 2000);

    t0 = Date.now();
    const stalled = get(gw.port, `/fetch?private=1&timeout=1&u=${enc(`${origin.base}/stall`)}`);
    const during = [];
    for (let i = 0; i < 10; i++) { during.push((await get(gw.port, '/healthz')).status); await sleep(30); }
    const res = await stalled;
    const took = Date.now() - t0;
    assert.equal(res.status, 504);
    assert.ok(took >= 900 && took < 3000, `504 after ${took} ms`);
    assert.deepEqual(during, Array(10).fill(200));
  });
});
