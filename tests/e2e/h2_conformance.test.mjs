// HTTP/2 on the TLS listener against RFC 9113's MUSTs (issue 16). h2spec is neither in
// Debian 12 nor on npm, so this is a focused suite of our own: raw frames over TLS (node's
// tls, ALPN h2) where the client must misbehave, node's http2 client elsewhere. nghttp2
// does the protocol; these tests check that the integration keeps its promises: the
// preface, SETTINGS and their ACK, unknown frames ignored, stream id rules, the stream
// limit (REFUSED_STREAM), connection-specific headers, header list size (431), flow
// control windows, request bodies (413), and GOAWAY when the gateway drains.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';

import { ROOT, sleep, startGateway, tempDir, waitFor } from './lib/gateway.mjs';
import { h2get, h2session, makeCa, makeCert, tlsConnect, tlsPort } from './lib/tls.mjs';

const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n');
const T = { DATA: 0, HEADERS: 1, RST_STREAM: 3, SETTINGS: 4, PING: 6, GOAWAY: 7, WINDOW_UPDATE: 8, CONTINUATION: 9 };
const F = { END_STREAM: 1, ACK: 1, END_HEADERS: 4 };
const E = { NO_ERROR: 0, PROTOCOL_ERROR: 1, FLOW_CONTROL_ERROR: 3, REFUSED_STREAM: 7 };

function frame(type, flags, id, payload = Buffer.alloc(0)) {
  const h = Buffer.alloc(9);
  h.writeUIntBE(payload.length, 0, 3);
  h[3] = type;
  h[4] = flags;
  h.writeUInt32BE(id, 5);
  return Buffer.concat([h, payload]);
}

/** HPACK integer with an N-bit prefix (RFC 7541 §5.1). */
function hpackInt(v, bits, first = 0) {
  const max = (1 << bits) - 1;
  if (v < max) return [first | v];
  const out = [first | max];
  v -= max;
  while (v >= 128) { out.push((v % 128) + 128); v = Math.floor(v / 128); }
  out.push(v);
  return out;
}

/** A header block of literal fields without indexing, new names, no Huffman. */
function block(fields) {
  const parts = [];
  for (const [n, v] of fields) {
    const nb = Buffer.from(n), vb = Buffer.from(v);
    parts.push(Buffer.from([0]), Buffer.from(hpackInt(nb.length, 7)), nb, Buffer.from(hpackInt(vb.length, 7)), vb);
  }
  return Buffer.concat(parts);
}

const get = (p, extra = []) => block([[':method', 'GET'], [':scheme', 'https'], [':path', p], [':authority', 'localhost'], ...extra]);

function settings(pairs = []) {
  const b = Buffer.alloc(6 * pairs.length);
  pairs.forEach(([id, v], i) => { b.writeUInt16BE(id, i * 6); b.writeUInt32BE(v, i * 6 + 2); });
  return frame(T.SETTINGS, 0, 0, b);
}

/** A raw HTTP/2 connection: send frames, wait for frames matching a predicate. */
async function raw(port, ca, { preface = true, mySettings = [], ack = true } = {}) {
  const sock = await tlsConnect(port, { ca, alpn: ['h2'] });
  assert.equal(sock.alpnProtocol, 'h2');
  const frames = [];
  let buf = Buffer.alloc(0), closed = false;
  sock.on('data', (d) => {
    buf = Buffer.concat([buf, d]);
    while (buf.length >= 9) {
      const len = buf.readUIntBE(0, 3);
      if (buf.length < 9 + len) break;
      frames.push({ type: buf[3], flags: buf[4], id: buf.readUInt32BE(5) & 0x7fffffff, payload: buf.subarray(9, 9 + len) });
      buf = buf.subarray(9 + len);
    }
  });
  sock.on('close', () => { closed = true; });
  sock.on('error', () => {});
  const c = {
    sock, frames,
    get closed() { return closed; },
    send: (...fs_) => sock.write(Buffer.concat(fs_)),
    async wait(pred, what, timeout = 3000) {
      let f;
      await waitFor(() => (f = frames.find(pred)) || closed, timeout, `no ${what}; got ${JSON.stringify(frames.map((x) => [x.type, x.flags, x.id]))}`);
      if (!f) throw new Error(`connection closed before ${what}: ${JSON.stringify(frames.map((x) => [x.type, x.flags, x.id]))}`);
      return f;
    },
    goaway: () => c.wait((f) => f.type === T.GOAWAY, 'GOAWAY'),
  };
  if (preface) {
    c.send(PREFACE, settings(mySettings));
    await c.wait((f) => f.type === T.SETTINGS && !(f.flags & F.ACK), 'server SETTINGS');
    if (ack) c.send(frame(T.SETTINGS, F.ACK, 0));
    await c.wait((f) => f.type === T.SETTINGS && (f.flags & F.ACK), 'SETTINGS ACK');
  }
  return c;
}

const errorCode = (f) => (f.type === T.GOAWAY ? f.payload.readUInt32BE(4) : f.payload.readUInt32BE(0));

describe('HTTP/2 (RFC 9113) on the TLS listener', () => {
  let dir, ca, gw, port;

  before(async () => {
    dir = tempDir('hg-h2-');
    ca = makeCa(dir).pem;
    const c = makeCert(dir, 'srv', ['localhost']);
    gw = await startGateway({
      policyFile: path.join(ROOT, 'policies/policy.lua'), env: { HLSGATE_JWT_SECRET: 'x' },
      args: ['--listen', '127.0.0.1:0', '--tls-cert', c.cert, '--tls-key', c.key],
    });
    port = tlsPort(gw);
  });

  after(async () => {
    if (gw) assert.equal((await gw.stop()).code, 0, gw.stderrText.slice(-3000));
  });

  it('§3.4, §6.5: SETTINGS first, with the stream limit; ours acknowledged', async () => {
    const c = await raw(port, ca, { preface: false });
    c.send(PREFACE, settings([[4 /* INITIAL_WINDOW_SIZE */, 100000]]));
    const s = await c.wait((f) => f.type === T.SETTINGS && !(f.flags & F.ACK), 'server SETTINGS');
    assert.equal(c.frames[0], s, 'the server preface is a SETTINGS frame');
    const vals = {};
    for (let i = 0; i < s.payload.length; i += 6) vals[s.payload.readUInt16BE(i)] = s.payload.readUInt32BE(i + 2);
    assert.equal(vals[3], 128, 'SETTINGS_MAX_CONCURRENT_STREAMS');
    const ack = await c.wait((f) => f.type === T.SETTINGS && (f.flags & F.ACK), 'SETTINGS ACK');
    assert.equal(ack.payload.length, 0);
    c.sock.destroy();
  });

  it('§3.4: a bad connection preface is a connection error (no HTTP/1.1 answer)', async () => {
    const c = await raw(port, ca, { preface: false });
    c.send(Buffer.from('GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n'));
    await waitFor(() => c.closed, 3000, 'connection stayed open after a bad preface');
    const g = c.frames.find((f) => f.type === T.GOAWAY);
    if (g) assert.equal(errorCode(g), E.PROTOCOL_ERROR);
    assert.ok(!c.frames.some((f) => f.type === T.HEADERS));
  });

  it('§5.5: unknown frame types are ignored; PING is answered with its payload', async () => {
    const c = await raw(port, ca);
    c.send(frame(0xfa, 0xff, 0, Buffer.from('whatever')), frame(0xfb, 0, 1, Buffer.from('x')));
    const ping = Buffer.from('12345678');
    c.send(frame(T.PING, 0, 0, ping));
    const pong = await c.wait((f) => f.type === T.PING && (f.flags & F.ACK), 'PING ACK');
    assert.ok(pong.payload.equals(ping));
    // …and the connection still serves requests.
    c.send(frame(T.HEADERS, F.END_HEADERS | F.END_STREAM, 1, get('/healthz')));
    await c.wait((f) => f.type === T.DATA && f.id === 1, 'a response on stream 1');
    assert.ok(!c.frames.some((f) => f.type === T.GOAWAY));
    c.sock.destroy();
  });

  // (A HEADERS on a lower, already passed id is ignored by nghttp2 on purpose: it cannot
  // tell it from a late frame of a stream it reset, see its session.c.)
  it('§5.1.1: a client stream with an even id is a PROTOCOL_ERROR; DATA on an idle stream too', async () => {
    let c = await raw(port, ca);
    c.send(frame(T.HEADERS, F.END_HEADERS | F.END_STREAM, 2, get('/healthz')));
    assert.equal(errorCode(await c.goaway()), E.PROTOCOL_ERROR);
    c.sock.destroy();
    c = await raw(port, ca);
    c.send(frame(T.DATA, F.END_STREAM, 7, Buffer.from('x')));
    assert.equal(errorCode(await c.goaway()), E.PROTOCOL_ERROR);
    c.sock.destroy();
  });

  // nghttp2 refuses a stream past the limit with REFUSED_STREAM (retryable) while the
  // client may not have seen the limit yet (SETTINGS not acknowledged); once it has, a
  // client that still exceeds it gets a connection error.
  it('§5.1.2: streams beyond SETTINGS_MAX_CONCURRENT_STREAMS (128) are refused (REFUSED_STREAM)', async () => {
    const c = await raw(port, ca, { ack: false });
    // 128 requests left open (no END_STREAM: a body would follow), then one more.
    const open = [];
    for (let i = 0; i < 128; i++) open.push(frame(T.HEADERS, F.END_HEADERS, 1 + 2 * i, get('/healthz', [['content-length', '1']])));
    c.send(...open);
    const extra = 1 + 2 * 128;
    c.send(frame(T.HEADERS, F.END_HEADERS | F.END_STREAM, extra, get('/healthz')));
    const rst = await c.wait((f) => f.type === T.RST_STREAM && f.id === extra, 'RST_STREAM on the 129th stream');
    assert.equal(errorCode(rst), E.REFUSED_STREAM);
    assert.ok(!c.frames.some((f) => f.type === T.RST_STREAM && f.id < extra), 'the open streams are kept');
    // Closing one makes room.
    c.send(frame(T.RST_STREAM, 0, 1, Buffer.from([0, 0, 0, 8 /* CANCEL */])));
    c.send(frame(T.HEADERS, F.END_HEADERS | F.END_STREAM, extra + 2, get('/healthz')));
    await c.wait((f) => f.type === T.DATA && f.id === extra + 2 && (f.flags & F.END_STREAM), 'a response after room was made');
    // Finishing an open one answers it.
    c.send(frame(T.DATA, F.END_STREAM, 3, Buffer.from('x')));
    await c.wait((f) => f.type === T.HEADERS && f.id === 3, 'stream 3 answered');
    assert.ok(!c.frames.some((f) => f.type === T.GOAWAY));
    c.sock.destroy();
    // With the limit acknowledged, exceeding it ends the connection.
    const d = await raw(port, ca);
    const more = [];
    for (let i = 0; i < 129; i++) more.push(frame(T.HEADERS, F.END_HEADERS, 1 + 2 * i, get('/healthz', [['content-length', '1']])));
    d.send(...more);
    const g = await d.goaway();
    assert.equal(errorCode(g), E.PROTOCOL_ERROR);
    assert.match(g.payload.subarray(8).toString(), /max concurrent streams/);
    d.sock.destroy();
  });

  it('§8.2.2: a connection-specific header field makes the request malformed (stream error)', async () => {
    const c = await raw(port, ca);
    c.send(frame(T.HEADERS, F.END_HEADERS | F.END_STREAM, 1, get('/healthz', [['connection', 'keep-alive']])));
    const rst = await c.wait((f) => f.type === T.RST_STREAM && f.id === 1, 'RST_STREAM');
    assert.equal(errorCode(rst), E.PROTOCOL_ERROR);
    c.send(frame(T.HEADERS, F.END_HEADERS | F.END_STREAM, 3, get('/healthz')));
    await c.wait((f) => f.type === T.DATA && f.id === 3, 'the next stream answered');
    c.sock.destroy();
  });

  it('§8.3.1: a Host naming another entity than :authority is 400; a :path with a space is malformed', async () => {
    const c = await raw(port, ca);
    const status = async (id) => (await c.wait((f) => f.type === T.HEADERS && f.id === id, `response on ${id}`)).payload[0];
    // HPACK static table: 0x88 is ":status 200", 0x8c ":status 400" (the first field).
    c.send(frame(T.HEADERS, F.END_HEADERS | F.END_STREAM, 1, get('/healthz', [['host', 'evil.example']])));
    assert.equal(await status(1), 0x8c);
    const body = await c.wait((f) => f.type === T.DATA && f.id === 1, 'the error body');
    assert.match(body.payload.toString(), /Host and :authority differ/);
    c.send(frame(T.HEADERS, F.END_HEADERS | F.END_STREAM, 3, get('/healthz', [['host', 'LOCALHOST']])));
    assert.equal(await status(3), 0x88, 'the same entity is fine');
    // A space in :path: malformed (nghttp2 checks every byte), the stream is reset.
    c.send(frame(T.HEADERS, F.END_HEADERS | F.END_STREAM, 5, get('/healthz x')));
    const rst = await c.wait((f) => f.type === T.RST_STREAM && f.id === 5, 'RST_STREAM on 5');
    assert.equal(errorCode(rst), E.PROTOCOL_ERROR);
    c.sock.destroy();
  });

  it('header lists past the 16 KiB limit get 431, split over CONTINUATION frames too', async () => {
    const c = await raw(port, ca);
    const big = get('/healthz', [['x-big', 'a'.repeat(17000)]]);
    c.send(frame(T.HEADERS, 0, 1, big.subarray(0, 10000)), frame(T.CONTINUATION, F.END_HEADERS, 1, big.subarray(10000)));
    // END_STREAM was not set on HEADERS: end the stream with an empty DATA frame.
    c.send(frame(T.DATA, F.END_STREAM, 1));
    const h = await c.wait((f) => f.type === T.HEADERS && f.id === 1, 'response HEADERS');
    // The status is the first field: ":status 431" is not in HPACK's static table, so it
    // is a literal with the name index 8 (":status: 200") and the value "431".
    assert.ok(h.payload.includes(Buffer.from('431')), h.payload.toString('latin1'));
    // node's client says the same, with the body in JSON.
    const s = await h2session(port, ca);
    const r = await h2get(s, '/healthz', { 'x-big': 'b'.repeat(17000) });
    assert.equal(r.status, 431);
    assert.match(r.body.toString(), /request headers too large/);
    assert.equal((await h2get(s, '/healthz')).status, 200, 'the connection goes on');
    s.close();
    c.sock.destroy();
  });

  it('§6.9: the server sends no more than the flow-control window allows', async () => {
    const c = await raw(port, ca, { mySettings: [[4 /* INITIAL_WINDOW_SIZE */, 100]] });
    c.send(frame(T.HEADERS, F.END_HEADERS | F.END_STREAM, 1, get('/metrics')));
    await c.wait((f) => f.type === T.DATA && f.id === 1, 'DATA');
    await sleep(300);
    const data = () => c.frames.filter((f) => f.type === T.DATA && f.id === 1);
    assert.equal(data().reduce((n, f) => n + f.payload.length, 0), 100, 'exactly the window, then wait');
    assert.ok(!data().some((f) => f.flags & F.END_STREAM));
    const inc = Buffer.alloc(4);
    inc.writeUInt32BE(1 << 20);
    c.send(frame(T.WINDOW_UPDATE, 0, 1, inc));
    await c.wait((f) => f.type === T.DATA && f.id === 1 && (f.flags & F.END_STREAM), 'the rest after WINDOW_UPDATE');
    const body = Buffer.concat(data().map((f) => f.payload)).toString();
    assert.match(body, /hlsgate_requests_total/);
    assert.ok(body.length > 1000);
    // A WINDOW_UPDATE that overflows the window (§6.9.1) is a FLOW_CONTROL_ERROR.
    const max = Buffer.alloc(4);
    max.writeUInt32BE(0x7fffffff);
    c.send(frame(T.WINDOW_UPDATE, 0, 0, max), frame(T.WINDOW_UPDATE, 0, 0, max));
    assert.equal(errorCode(await c.goaway()), E.FLOW_CONTROL_ERROR);
    c.sock.destroy();
  });

  it('request bodies: within 64 KiB reach the policy, larger ones get 413', async () => {
    const s = await h2session(port, ca);
    const post = (n) => new Promise((resolve, reject) => {
      const q = s.request({ ':method': 'POST', ':path': '/healthz' });
      let st;
      q.on('response', (h) => { st = h[':status']; });
      q.on('data', () => {});
      q.on('end', () => resolve(st));
      q.on('error', reject);
      q.end(Buffer.alloc(n, 0x61));
    });
    assert.equal(await post(1000), 405); // /healthz is GET/HEAD: the request was read whole
    assert.equal(await post(70000), 413);
    s.close();
  });

  it('HEAD: the length of the body, no DATA', async () => {
    const s = await h2session(port, ca);
    const r = await h2get(s, '/metrics', { ':method': 'HEAD' });
    assert.equal(r.status, 200);
    assert.ok(Number(r.headers['content-length']) > 1000);
    assert.equal(r.body.length, 0);
    s.close();
  });

  it('a request never finished, or an answer whose window never opens, is cut at the timeouts', async () => {
    const c0 = makeCert(dir, 'srv3', ['localhost']);
    const g = await startGateway({
      policyFile: path.join(ROOT, 'policies/policy.lua'), env: { HLSGATE_JWT_SECRET: 'x' },
      args: ['--listen', '127.0.0.1:0', '--tls-cert', c0.cert, '--tls-key', c0.key, '--header-timeout', '1'],
    });
    try {
      const c = await raw(tlsPort(g), ca);
      const t0 = Date.now();
      c.send(frame(T.HEADERS, F.END_HEADERS, 1, get('/healthz', [['content-length', '5']]))); // no body follows
      await waitFor(() => c.closed, 5000, 'the connection outlived the header timeout');
      const ms = Date.now() - t0;
      assert.ok(ms >= 900 && ms < 4000, `closed after ${ms} ms`);
    } finally {
      assert.equal((await g.stop()).code, 0);
    }
  });

  it('§6.8: draining sends GOAWAY (NO_ERROR); a request in flight still completes', async () => {
    const c0 = makeCert(dir, 'srv2', ['localhost']);
    const g = await startGateway({
      policyFile: path.join(ROOT, 'policies/policy.lua'), env: { HLSGATE_JWT_SECRET: 'x' },
      args: ['--listen', '127.0.0.1:0', '--tls-cert', c0.cert, '--tls-key', c0.key],
    });
    const c = await raw(tlsPort(g), ca, { mySettings: [[4, 10]] });
    c.send(frame(T.HEADERS, F.END_HEADERS | F.END_STREAM, 1, get('/metrics')));
    await c.wait((f) => f.type === T.DATA && f.id === 1, 'DATA');
    g.signal('SIGTERM');
    const goaway = await c.goaway();
    assert.equal(errorCode(goaway), E.NO_ERROR);
    assert.equal(goaway.payload.readUInt32BE(0) & 0x7fffffff, 1, 'last stream id: the one in flight');
    const inc = Buffer.alloc(4);
    inc.writeUInt32BE(1 << 20);
    c.send(frame(T.WINDOW_UPDATE, 0, 1, inc));
    await c.wait((f) => f.type === T.DATA && f.id === 1 && (f.flags & F.END_STREAM), 'the rest of the response');
    await waitFor(() => c.closed, 5000, 'the gateway kept the connection after its last stream');
    assert.equal((await g.exit()).code, 0, g.stderrText.slice(-3000));
  });
});
