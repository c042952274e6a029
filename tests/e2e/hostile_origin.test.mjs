// Hostile origins (issue 11): origins that try to make the gateway use unbounded memory
// (amplifying playlists, gzip bombs, viewers that stop reading), serve script from the
// gateway's origin (HTML, SVG, XHTML through the open proxy), or break framing (lying
// lengths, endless and dripping bodies, redirect loops, huge headers, bad status lines,
// resets). Each case asserts the documented status, bounded time and bounded memory (the
// gateway's VmRSS from /proc), and that a well-behaved viewer fetching a normal playlist
// and segment in a loop keeps being served throughout.
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import zlib from 'node:zlib';

import { ROOT, connect, get, sleep, startGateway } from './lib/gateway.mjs';
import { startOrigin, pattern } from './lib/origin.mjs';

const enc = encodeURIComponent;
const MiB = 1024 * 1024;

// /fetch?u=<url>: a test policy over http with rewrite, content-type and timeout knobs.
const POLICY = `
return { on_request = function(req)
  local q = req.query
  if req.path ~= "/fetch" then return nil end
  local ct
  if q.ct then ct = { otherwise = q.ct, allow = q.allow and { q.allow } or nil } end
  return { origin = { type = "http", url = q.u, allow_private = true, max_redirects = 5 },
           rewrite = q.rw and { default = q.rw } or nil, content_types = ct,
           cache_ttl = tonumber(q.ttl or "0"), timeout = tonumber(q.timeout or "10"),
           headers = { ["Access-Control-Allow-Origin"] = "*" } }
end }
`;

function rssKiB(pid) {
  return Number(/VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))[1]);
}

/** Samples the gateway's RSS every 10 ms while `fn` runs; resolves {result, peakMiB} (growth). */
async function peakDuring(gw, fn, label = 'request') {
  const pid = gw.proc.pid, base = rssKiB(pid);
  let peak = base;
  const t = setInterval(() => { peak = Math.max(peak, rssKiB(pid)); }, 10);
  try {
    const result = await fn();
    peak = Math.max(peak, rssKiB(pid));
    console.log(`# ${label}: peak RSS growth ${((peak - base) / 1024).toFixed(1)} MiB`);
    return { result, growthMiB: (peak - base) / 1024 };
  } finally {
    clearInterval(t);
  }
}

/** Streams `size` pattern bytes with backpressure. */
function bigRoute(size) {
  return (req, res) => {
    res.writeHead(200, { 'Content-Type': 'video/mp2t', 'Content-Length': size });
    let off = 0;
    const chunk = pattern(0, 251 * 256);
    const pump = () => {
      while (off < size) {
        const n = Math.min(size - off, 64 * 251);
        const ok = res.write(chunk.subarray(off % 251, off % 251 + n));
        off += n;
        if (!ok) return res.once('drain', pump);
      }
      res.end();
    };
    res.on('close', () => { off = size; });
    pump();
  };
}

/** A raw TCP origin: `handler(sock, requestHead)` writes whatever bytes it likes. */
async function rawOrigin(handler) {
  const sockets = new Set();
  const srv = net.createServer((s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('error', () => {});
    let head = '';
    s.on('data', (d) => {
      if (head.includes('\r\n\r\n')) return;
      head += d.toString('latin1');
      if (head.includes('\r\n\r\n')) handler(s, head);
    });
  });
  await new Promise((r) => srv.listen(0, '127.0.0.1', r));
  return {
    base: `http://127.0.0.1:${srv.address().port}`,
    close: () => new Promise((r) => { for (const s of sockets) s.destroy(); srv.close(r); }),
  };
}

/**
 * A well-behaved viewer: fetches a normal playlist and a segment in a loop (fresh
 * connections) until stopped. stop() resolves {rounds, failures}.
 */
function startViewer(port, originBase, slowMs) {
  let stopped = false, rounds = 0;
  const failures = [];
  const loop = (async () => {
    while (!stopped) {
      const t0 = Date.now();
      try {
        const pl = await get(port, `/fetch?rw=absolute&u=${enc(`${originBase}/ok/index.m3u8`)}`);
        if (pl.status !== 200 || !pl.body.includes(`${originBase}/ok/seg.ts`)) failures.push(`playlist ${pl.status}`);
        const seg = await get(port, `/fetch?u=${enc(`${originBase}/ok/seg.ts`)}`);
        if (seg.status !== 200 || seg.body.length !== 100000) failures.push(`segment ${seg.status} ${seg.body.length}`);
        if (Date.now() - t0 > slowMs) failures.push(`slow round: ${Date.now() - t0} ms`);
      } catch (e) {
        failures.push(String(e));
      }
      rounds++;
      await sleep(20);
    }
  })();
  return { async stop() { stopped = true; await loop; return { rounds, failures }; } };
}

/**
 * Runs `fn` while a well-behaved viewer plays; asserts it was never failed nor kept
 * waiting more than `slowMs` for a playlist + segment round.
 */
async function withViewer(gw, origin, fn, { slowMs = 3000 } = {}) {
  const v = startViewer(gw.port, origin.base, slowMs);
  try {
    return await fn();
  } finally {
    const { rounds, failures } = await v.stop();
    assert.deepEqual(failures, [], 'the well-behaved viewer kept being served');
    assert.ok(rounds >= 1);
  }
}

/** GET on a raw socket; resolves {status, headers (lower-case), body (Buffer), complete}. */
function rawGet(port, target, extra = '') {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1');
    const chunks = [];
    s.on('data', (d) => chunks.push(d));
    s.on('error', reject);
    s.on('close', () => {
      const buf = Buffer.concat(chunks);
      const i = buf.indexOf('\r\n\r\n');
      if (i < 0) return reject(new Error('no head'));
      const lines = buf.subarray(0, i).toString('latin1').split('\r\n');
      const headers = {};
      for (const l of lines.slice(1)) { const c = l.indexOf(':'); headers[l.slice(0, c).toLowerCase()] = l.slice(c + 1).trim(); }
      let body = buf.subarray(i + 4);
      if (headers['transfer-encoding'] === 'chunked') {
        const parts = [];
        let p = 0;
        for (;;) {
          const e = body.indexOf('\r\n', p);
          if (e < 0) break;
          const n = parseInt(body.subarray(p, e).toString(), 16);
          if (!(n > 0)) break;
          parts.push(body.subarray(e + 2, e + 2 + n));
          p = e + 2 + n + 2;
        }
        body = Buffer.concat(parts);
      }
      const cl = headers['content-length'];
      resolve({ status: Number(lines[0].split(' ')[1]), headers, body,
                complete: cl === undefined || Number(cl) === body.length });
    });
    s.write(`GET ${target} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n${extra}\r\n`);
  });
}

describe('hostile origins', () => {
  let origin, raw, gw;
  const LONG = 'a'.repeat(6000);
  const routes = {};
  before(async () => {
    const seg = Buffer.alloc(100000, 'G');
    routes['/ok/index.m3u8'] = (q, r) => { r.writeHead(200, { 'Content-Type': 'application/vnd.apple.mpegurl' }); r.end('#EXTM3U\n#EXT-X-TARGETDURATION:4\n#EXTINF:4,\nseg.ts\n#EXT-X-ENDLIST\n'); };
    routes['/ok/seg.ts'] = (q, r) => { r.writeHead(200, { 'Content-Type': 'video/mp2t', 'Content-Length': seg.length }); r.end(seg); };
    origin = await startOrigin({ routes });
    gw = await startGateway({ policy: POLICY, workers: 2, args: ['--max-playlist', '4'],
                              env: { ASAN_OPTIONS: 'quarantine_size_mb=1:malloc_context_size=2:detect_leaks=1' } });
  });
  after(async () => {
    assert.equal((await gw.stop()).code, 0, gw.stderrText.slice(-3000));
    await origin.close();
    await raw?.close();
  });

  describe('memory amplification (item 1)', () => {
    it('tiny relative URIs under a 6 KB base URL: 502, not 121 MB of output', async () => {
      // 260 KB of "#EXTINF:1,\nb\n": each 13-byte entry would become a 6 KB absolute URL.
      const body = `#EXTM3U\n${'#EXTINF:1,\nb\n'.repeat(20000)}`;
      routes[`/${LONG}/amp.m3u8`] = (q, r) => { r.writeHead(200); r.end(body); };
      await withViewer(gw, origin, async () => {
        const t0 = Date.now();
        const { result: res, growthMiB } = await peakDuring(gw, () =>
          get(gw.port, `/fetch?rw=absolute&u=${enc(`${origin.base}/${LONG}/amp.m3u8`)}`), 'amplification');
        assert.equal(res.status, 502);
        assert.match(JSON.parse(res.body).error, /rewritten playlist larger than the limit/);
        assert.ok(Date.now() - t0 < 3000, `answered in ${Date.now() - t0} ms`);
        // The output limit is 32 × 260 KB + 64 KiB ≈ 8.4 MB (and its copy).
        assert.ok(growthMiB < 40, `RSS grew ${growthMiB.toFixed(1)} MiB`);
      });
    });

    it('a 100,000-segment playlist still rewrites (SPEC §5)', async () => {
      let body = '#EXTM3U\n#EXT-X-TARGETDURATION:4\n';
      for (let i = 0; i < 100000; i++) body += `#EXTINF:4.000,\nseg_${String(i).padStart(6, '0')}.ts\n`;
      routes['/vod/big.m3u8'] = (q, r) => { r.writeHead(200); r.end(body); };
      const res = await rawGet(gw.port, `/fetch?rw=absolute&u=${enc(`${origin.base}/vod/big.m3u8`)}`);
      assert.equal(res.status, 200);
      assert.equal(res.body.length, body.length + 100000 * `${origin.base}/vod/`.length);
    });

    it('concurrent max-size playlists: the process budget answers 503, RSS stays bounded', async () => {
      // --max-playlist 4 → 32 MiB of playlist bytes in flight at most; 12 × 3.5 MiB held
      // for a second would need 42 MiB.
      // Mostly long comment lines: this is about memory, not rewriting CPU.
      const line = `#${'c'.repeat(1000)}\n#EXTINF:4,\nseg.ts\n`;
      const body = Buffer.from(`#EXTM3U\n${line.repeat(Math.floor(3.5 * MiB / line.length))}`);
      routes['/slowbig.m3u8'] = (q, r) => {
        r.writeHead(200, { 'Content-Length': body.length });
        const cut = body.length - 1000; // all but the end now: every one is held at once
        r.write(body.subarray(0, cut));
        setTimeout(() => r.end(body.subarray(cut)), 1000);
      };
      await withViewer(gw, origin, async () => {
        const { result, growthMiB } = await peakDuring(gw, () => Promise.all(Array.from({ length: 12 }, (_, i) =>
          rawGet(gw.port, `/fetch?u=${enc(`${origin.base}/slowbig.m3u8?${i}`)}`))), '12 concurrent 3.5 MiB playlists');
        const statuses = result.map((r) => r.status).sort();
        assert.ok(statuses.includes(200), statuses.join());
        assert.ok(statuses.includes(503), statuses.join());
        for (const r of result) {
          if (r.status === 503) assert.equal(r.headers['retry-after'], '1');
          else assert.equal(r.body.length, body.length);
        }
        assert.ok(growthMiB < 120, `RSS grew ${growthMiB.toFixed(1)} MiB`);
      });
      // The budget is given back: one more goes through.
      assert.equal((await rawGet(gw.port, `/fetch?u=${enc(`${origin.base}/slowbig.m3u8?again`)}`)).status, 200);
    });

    it('an endless chunked playlist: 502 at --max-playlist, bounded memory', async () => {
      routes['/endless.m3u8'] = (q, r) => {
        r.writeHead(200, { 'Content-Type': 'application/vnd.apple.mpegurl' });
        r.write('#EXTM3U\n');
        const chunk = '#EXTINF:1,\nx.ts\n'.repeat(4096);
        const pump = () => { while (!r.destroyed && r.write(chunk)); if (!r.destroyed) r.once('drain', pump); };
        r.on('close', () => {});
        pump();
      };
      await withViewer(gw, origin, async () => {
        const t0 = Date.now();
        const { result: res, growthMiB } = await peakDuring(gw, () => get(gw.port, `/fetch?u=${enc(`${origin.base}/endless.m3u8`)}`), 'endless playlist');
        assert.equal(res.status, 502);
        assert.match(JSON.parse(res.body).error, /playlist larger than the limit/);
        assert.ok(Date.now() - t0 < 5000);
        assert.ok(growthMiB < 24, `RSS grew ${growthMiB.toFixed(1)} MiB`);
      });
    });

    it('a playlist dripping 1 byte/s: 504 at the timeout', async () => {
      routes['/drip.m3u8'] = (q, r) => {
        r.writeHead(200);
        const text = `#EXTM3U\n${'#EXTINF:1,\nx.ts\n'.repeat(200)}`;
        let i = 0;
        const t = setInterval(() => { if (r.destroyed || i >= text.length) { clearInterval(t); r.end(); } else r.write(text[i++]); }, 1000);
        r.on('close', () => clearInterval(t));
      };
      await withViewer(gw, origin, async () => {
        const t0 = Date.now();
        const res = await get(gw.port, `/fetch?timeout=2&u=${enc(`${origin.base}/drip.m3u8`)}`, '');
        const took = Date.now() - t0;
        assert.equal(res.status, 504);
        assert.ok(took >= 1900 && took < 4500, `504 after ${took} ms`);
      });
    });
  });

  describe('third-party HTML from the gateway origin (item 4)', () => {
    let proxy;
    const bodies = {
      '/x.html': ['text/html', '<script>alert(document.cookie)</script>'],
      '/upper.htm': ['TEXT/HTML; charset=UTF-8', '<script>1</script>'],
      '/noname.html': [null, '<script>1</script>'],
      '/img.svg': ['image/svg+xml', '<svg xmlns="http://www.w3.org/2000/svg"><script>1</script></svg>'],
      '/x.xhtml': ['application/xhtml+xml', '<html xmlns="http://www.w3.org/1999/xhtml"><script>1</script></html>'],
      '/x.xml': ['text/xml', '<a/>'],
      '/seg.ts': [null, 'G'.repeat(188)],
      '/sub.vtt': ['text/vtt', 'WEBVTT\n'],
      '/thumb.png': ['image/png', '\x89PNG'],
      '/steer.json': ['application/json', '{"VERSION":1}'],
      '/enc.key': ['application/octet-stream', '0123456789abcdef'],
    };
    before(async () => {
      for (const [p, [type, body]] of Object.entries(bodies)) {
        routes[p] = (q, r) => { r.writeHead(200, type ? { 'Content-Type': type } : {}); r.end(body); };
      }
      proxy = await startGateway({ policyFile: path.join(ROOT, 'policies/policy.lua'),
                                   env: { HLSGATE_ALLOW_PRIVATE: '1' } });
    });
    after(async () => { assert.equal((await proxy.stop()).code, 0, proxy.stderrText.slice(-2000)); });

    it('HTML, SVG, XHTML and XML through the open proxy are attachments in a CSP sandbox', async () => {
      for (const p of ['/x.html', '/upper.htm', '/noname.html', '/img.svg', '/x.xhtml', '/x.xml']) {
        const res = await get(proxy.port, `/proxy?url=${enc(`${origin.base}${p}`)}`);
        assert.equal(res.status, 200, p);
        assert.match(res.headers['content-disposition'], /^attachment/, p);
        assert.equal(res.headers['content-security-policy'], 'sandbox', p);
        assert.equal(res.headers['x-content-type-options'], 'nosniff', p);
      }
    });

    it('what a player needs stays inline, with nosniff', async () => {
      for (const p of ['/seg.ts', '/sub.vtt', '/thumb.png', '/steer.json', '/enc.key']) {
        const res = await get(proxy.port, `/proxy?url=${enc(`${origin.base}${p}`)}`);
        assert.equal(res.status, 200, p);
        assert.equal(res.headers['x-content-type-options'], 'nosniff', p);
        assert.ok(!/attachment/.test(res.headers['content-disposition'] || ''), `${p}: ${res.headers['content-disposition']}`);
      }
      const ts = await get(proxy.port, `/proxy?url=${enc(`${origin.base}/seg.ts`)}`);
      assert.equal(ts.headers['content-type'], 'video/mp2t'); // SPEC §9: the guess for .ts
      assert.equal(ts.headers['content-disposition'], 'inline; filename="seg.ts"');
      assert.equal(ts.headers['content-security-policy'], undefined); // media: nothing to sandbox
      const pl = await get(proxy.port, `/proxy?url=${enc(`${origin.base}/ok/index.m3u8`)}`);
      assert.equal(pl.headers['x-content-type-options'], 'nosniff');
    });

    it('the policy can refuse (403) or allow a type', async () => {
      const refused = await get(gw.port, `/fetch?ct=refuse&u=${enc(`${origin.base}/x.html`)}`);
      assert.equal(refused.status, 403);
      assert.match(JSON.parse(refused.body).error, /content type not allowed: text\/html/);
      assert.equal((await get(gw.port, `/fetch?ct=refuse&u=${enc(`${origin.base}/seg.ts`)}`)).status, 200);
      const allowed = await get(gw.port, `/fetch?ct=refuse&allow=text/*&u=${enc(`${origin.base}/x.html`)}`);
      assert.equal(allowed.status, 200);
      assert.equal(allowed.headers['content-disposition'], undefined);
    });
  });

  describe('gzip (item 6)', () => {
    const zeros = zlib.gzipSync(Buffer.alloc(64 * MiB), { level: 9 }); // ~64 KiB → 64 MiB
    before(() => {
      routes['/bomb.ts'] = (q, r) => { r.writeHead(200, { 'Content-Type': 'video/mp2t', 'Content-Encoding': 'gzip', 'Content-Length': zeros.length }); r.end(zeros); };
      routes['/gz.m3u8'] = (q, r) => {
        r.writeHead(200, { 'Content-Encoding': 'gzip' });
        r.end(zlib.gzipSync('#EXTM3U\n#EXTINF:4,\nseg.ts\n#EXT-X-ENDLIST\n'));
      };
      const gz = zlib.gzipSync('#EXTM3U\n#EXTINF:4,\nseg.ts\n#EXT-X-ENDLIST\n');
      const cut = gz.subarray(0, gz.length - 12); // the deflate end and the trailer missing
      routes['/cut.m3u8'] = (q, r) => { r.writeHead(200, { 'Content-Encoding': 'gzip', 'Content-Length': cut.length }); r.end(cut); };
      const bomb = zlib.gzipSync(Buffer.concat([Buffer.from('#EXTM3U\n'), Buffer.alloc(512 * MiB, '#')]), { level: 9 });
      routes['/bomb.m3u8'] = (q, r) => { r.writeHead(200, { 'Content-Encoding': 'gzip', 'Content-Length': bomb.length }); r.end(bomb); };
    });

    it('a gzip body is relayed as sent: the same bytes, Content-Encoding and Vary', async () => {
      const res = await rawGet(gw.port, `/fetch?u=${enc(`${origin.base}/bomb.ts`)}`, 'Accept-Encoding: gzip, br\r\n');
      assert.equal(res.status, 200);
      assert.equal(res.headers['content-encoding'], 'gzip');
      assert.match(res.headers.vary, /Accept-Encoding/);
      assert.ok(res.body.equals(zeros), `${res.body.length} bytes on the wire, origin sent ${zeros.length}`);
      assert.equal(origin.requests.at(-1).headers['accept-encoding'], 'gzip');
    });

    it('a viewer that does not take gzip makes us ask for identity; an origin that gzips anyway is still relayed as is', async () => {
      const res = await rawGet(gw.port, `/fetch?u=${enc(`${origin.base}/bomb.ts`)}`);
      assert.equal(origin.requests.at(-1).headers['accept-encoding'], 'identity');
      assert.equal(res.headers['content-encoding'], 'gzip');
      assert.equal(res.body.length, zeros.length);
    });

    it('a gzip playlist is decoded and rewritten', async () => {
      const res = await get(gw.port, `/fetch?rw=absolute&u=${enc(`${origin.base}/gz.m3u8`)}`, 'Accept-Encoding: gzip\r\n');
      assert.equal(res.status, 200);
      assert.equal(res.headers['content-encoding'], undefined);
      assert.equal(res.body, `#EXTM3U\n#EXTINF:4,\n${origin.base}/seg.ts\n#EXT-X-ENDLIST\n`);
    });

    it('a truncated gzip playlist: 502, never a partial rewrite', async () => {
      const res = await get(gw.port, `/fetch?rw=absolute&u=${enc(`${origin.base}/cut.m3u8`)}`, 'Accept-Encoding: gzip\r\n');
      assert.equal(res.status, 502);
      assert.match(JSON.parse(res.body).error, /invalid gzip body/);
    });

    it('a gzip bomb playlist: 502 quickly with bounded memory', async () => {
      await withViewer(gw, origin, async () => {
        const t0 = Date.now();
        const { result: res, growthMiB } = await peakDuring(gw, () =>
          get(gw.port, `/fetch?u=${enc(`${origin.base}/bomb.m3u8`)}`, 'Accept-Encoding: gzip\r\n'), 'gzip bomb playlist');
        assert.equal(res.status, 502);
        assert.match(JSON.parse(res.body).error, /playlist larger than the limit/);
        assert.ok(Date.now() - t0 < 3000, `${Date.now() - t0} ms`);
        assert.ok(growthMiB < 24, `RSS grew ${growthMiB.toFixed(1)} MiB`);
      });
    });
  });

  describe('viewers that stop reading (item 5)', () => {
    /** N viewers read the head of `target` then stop reading; resolves KiB of RSS each. */
    async function stalledKiB(target, N, label) {
      const pid = gw.proc.pid;
      const conns = [];
      const base = rssKiB(pid);
      await withViewer(gw, origin, async () => {
        for (let i = 0; i < N; i++) {
          const c = await connect(gw.port);
          c.write(`GET ${target} HTTP/1.1\r\nHost: t\r\n\r\n`);
          await c.read(1, { head: true, timeout: 10000 });
          c.sock.pause(); // stop reading: kernel buffers fill, then the gateway's queue
          conns.push(c);
        }
        await sleep(2500); // everything settles (and no spurious 1 s read timeout fires)
      });
      const growth = rssKiB(pid) - base;
      console.log(`# ${N} stalled viewers (${label}): RSS +${(growth / 1024).toFixed(1)} MiB, ${(growth / N).toFixed(0)} KiB per viewer`);
      for (const c of conns) assert.equal(c.closed, false, 'still connected while stalled');
      for (const c of conns) c.close();
      return growth / N;
    }

    it('each holds a bounded amount of gateway memory', async () => {
      routes['/huge.ts'] = bigRoute(256 * MiB);
      const perViewer = await stalledKiB(`/fetch?timeout=1&u=${enc(`${origin.base}/huge.ts`)}`, 40, 'relay');
      assert.ok(perViewer < 256, `${perViewer.toFixed(0)} KiB per stalled viewer`);
    });

    it('also when the object comes from the cache', async () => {
      routes['/cached.ts'] = bigRoute(24 * MiB);
      const target = `/fetch?ttl=300&u=${enc(`${origin.base}/cached.ts`)}`;
      const first = await rawGet(gw.port, target); // fills the cache
      assert.equal(first.body.length, 24 * MiB);
      const hits = origin.hits.get('/cached.ts');
      const perViewer = await stalledKiB(target, 20, 'cache hit');
      assert.equal(origin.hits.get('/cached.ts'), hits, 'served from the cache');
      assert.ok(perViewer < 256, `${perViewer.toFixed(0)} KiB per stalled viewer`);
      const again = await rawGet(gw.port, target); // and a cache hit is whole and right
      assert.ok(again.body.equals(pattern(0, 24 * MiB)));
    });

    it('a viewer that resumes after a pause longer than the read timeout gets every byte', async () => {
      const size = 24 * MiB;
      routes['/sum.ts'] = bigRoute(size);
      const s = net.connect(gw.port, '127.0.0.1');
      await new Promise((r) => s.once('connect', r));
      const hash = crypto.createHash('sha256');
      let head = null, buf = Buffer.alloc(0), got = 0;
      const done = new Promise((resolve, reject) => {
        s.on('data', (d) => {
          if (!head) {
            buf = Buffer.concat([buf, d]);
            const i = buf.indexOf('\r\n\r\n');
            if (i < 0) return;
            head = buf.subarray(0, i).toString();
            d = buf.subarray(i + 4);
            s.pause();
            setTimeout(() => s.resume(), 2500); // the upstream read timeout is 1 s
          }
          hash.update(d);
          got += d.length;
          if (got >= size) resolve();
        });
        s.on('close', () => (got >= size ? resolve() : reject(new Error(`closed after ${got} bytes`))));
      });
      s.write(`GET /fetch?timeout=1&u=${enc(`${origin.base}/sum.ts`)} HTTP/1.1\r\nHost: t\r\n\r\n`);
      await done;
      s.destroy();
      assert.match(head, /^HTTP\/1\.1 200/);
      assert.equal(got, size);
      assert.equal(hash.digest('hex'), crypto.createHash('sha256').update(pattern(0, size)).digest('hex'));
    });
  });

  describe('broken framing', () => {
    before(async () => {
      raw = await rawOrigin((s, head) => {
        const p = head.split(' ')[1];
        const pl = '#EXTM3U\n#EXTINF:4,\nseg.ts\n';
        if (p === '/short-cl.m3u8') { // says 10, sends more: only 10 are the body
          s.end(`HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n${pl}`);
        } else if (p === '/long-cl.m3u8') { // says 1000, sends less and closes
          s.end(`HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n${pl}`);
        } else if (p === '/long-cl.ts') {
          s.end(Buffer.concat([Buffer.from('HTTP/1.1 200 OK\r\nContent-Type: video/mp2t\r\nContent-Length: 1000000\r\n\r\n'), Buffer.alloc(300000, 0x47)]));
        } else if (p === '/huge-headers') {
          s.write('HTTP/1.1 200 OK\r\n');
          for (let i = 0; i < 2000; i++) s.write(`X-Junk-${i}: ${'j'.repeat(100)}\r\n`);
          s.end('Content-Length: 8\r\n\r\n#EXTM3U\n');
        } else if (p === '/bad-status') {
          s.end('HTTP/1.1 2000 OK\r\nContent-Length: 0\r\n\r\n');
        } else if (p === '/garbage') {
          s.end('<html>hello</html>\r\n\r\n');
        } else if (p === '/reset.ts') {
          s.write(Buffer.concat([Buffer.from('HTTP/1.1 200 OK\r\nContent-Type: video/mp2t\r\nContent-Length: 1000000\r\n\r\n'), Buffer.alloc(100000, 0x47)]));
          setTimeout(() => s.resetAndDestroy(), 100);
        } else if (p === '/reset.m3u8') {
          s.write(`HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n${pl}`);
          setTimeout(() => s.resetAndDestroy(), 100);
        } else if (p === '/loop') {
          s.end('HTTP/1.1 302 Found\r\nLocation: /loop\r\nContent-Length: 0\r\n\r\n');
        } else {
          s.end('HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n');
        }
      });
    });

    it('answers each with its documented status, quickly, while others are served', async () => {
      const f = (p) => get(gw.port, `/fetch?u=${enc(`${raw.base}${p}`)}`);
      await withViewer(gw, origin, async () => {
        const t0 = Date.now();
        const short = await f('/short-cl.m3u8');
        assert.equal(short.status, 200); // the first 10 bytes are the body: "#EXTM3U\n#E"
        assert.equal(short.body, '#EXTM3U\n#E');
        for (const [p, status, re] of [
          ['/long-cl.m3u8', 502, /closed before the end/],
          ['/huge-headers', 502, /bad response/],
          ['/bad-status', 502, /bad response/],
          ['/garbage', 502, /bad response/],
          ['/reset.m3u8', 502, /reset|closed/],
          ['/loop', 502, /too many redirects/],
        ]) {
          const res = await f(p);
          assert.equal(res.status, status, `${p}: ${res.body}`);
          assert.match(JSON.parse(res.body).error, re, p);
        }
        assert.ok(Date.now() - t0 < 5000, `${Date.now() - t0} ms`);
      });
    });

    it('a media body cut short is never passed off as complete', async () => {
      for (const p of ['/long-cl.ts', '/reset.ts']) {
        const res = await rawGet(gw.port, `/fetch?u=${enc(`${raw.base}${p}`)}`);
        assert.equal(res.status, 200, p);
        assert.equal(res.headers['content-length'], '1000000', p);
        assert.equal(res.complete, false, `${p}: the viewer sees a truncated body (${res.body.length} bytes)`);
      }
    });
  });
});
