// crypto_interop.test.mjs — our C crypto (through the Lua module) against independent
// implementations: JWTs both ways with npm `jsonwebtoken`, and SigV4 presigned and
// header-signed requests against a signature-verifying, private S3 (s3rver, see
// lib/s3server.mjs), which must accept ours and refuse tampered ones with 403.
//
// The Lua module is found through HLSGATE_LUA_CPATH (default <repo>/build/lib/?.so, the
// sanitizer build of `make test`); if it was built with ASan, lua runs with the ASan
// runtime preloaded. Run: node --test tests/e2e/  (after `npm ci` in tests/).
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import http from 'node:http';
import { createRequire } from 'node:module';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';

import { startS3Server } from './lib/s3server.mjs';

const require = createRequire(import.meta.url);
const jsonwebtoken = require('jsonwebtoken');

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const CPATH = process.env.HLSGATE_LUA_CPATH || path.join(ROOT, 'build/lib/?.so');

// ---- running Lua with the hlsgate module ----------------------------------------------

let luaEnv;
function luaEnvironment() {
  if (luaEnv) return luaEnv;
  const so = CPATH.split(';').map((p) => p.replace('?', 'hlsgate')).find((p) => existsSync(p));
  assert.ok(so, `hlsgate Lua module not found on ${CPATH} (build it, or set HLSGATE_LUA_CPATH)`);
  luaEnv = { ...process.env };
  let sanitized = false;
  try {
    sanitized = /libasan/.test(execFileSync('ldd', [so], { encoding: 'utf8' }));
  } catch {
    sanitized = false;
  }
  if (sanitized) {
    const lib = (name) => execFileSync('gcc', [`-print-file-name=${name}`], { encoding: 'utf8' }).trim();
    luaEnv.LD_PRELOAD = `${lib('libasan.so')}:${lib('libubsan.so')}`;
    luaEnv.ASAN_OPTIONS = 'detect_leaks=0';
  }
  return luaEnv;
}

// Runs `body` (Lua) with `hg` = require "hlsgate", `cjson`, and `input` = the decoded
// JSON of `input`; the chunk must return a value, which comes back JSON-decoded.
function lua(body, input = {}) {
  const prog = `
    package.cpath = os.getenv("HG_CPATH") .. ";" .. package.cpath
    local hg = require("hlsgate")
    local cjson = require("cjson")
    local input = cjson.decode(os.getenv("HG_INPUT"))
    local result = (function() ${body} end)()
    io.write(cjson.encode(result))`;
  const out = execFileSync('lua5.4', ['-e', prog], {
    env: { ...luaEnvironment(), HG_CPATH: CPATH, HG_INPUT: JSON.stringify(input) },
    encoding: 'utf8',
  });
  return JSON.parse(out);
}

// ---- JWT ------------------------------------------------------------------------------

describe('JWT interop with jsonwebtoken', () => {
  const secret = 'a-32-byte-secret-for-hs256-tests!';

  for (const alg of ['HS256', 'HS384', 'HS512']) {
    test(`a token minted by hg.jwt.sign (${alg}) verifies with jsonwebtoken`, () => {
      const exp = Math.floor(Date.now() / 1000) + 600;
      const { token } = lua(
        `return { token = assert(hg.jwt.sign({ sub = "hls", pfx = "videos/a", exp = input.exp },
           input.secret, { alg = input.alg, kid = "k1" })) }`,
        { secret, alg, exp },
      );
      const claims = jsonwebtoken.verify(token, secret, { algorithms: [alg] });
      assert.deepEqual(claims, { sub: 'hls', pfx: 'videos/a', exp });
      const { header } = jsonwebtoken.decode(token, { complete: true });
      assert.deepEqual(header, { alg, typ: 'JWT', kid: 'k1' });
      assert.throws(() => jsonwebtoken.verify(token, 'wrong', { algorithms: [alg] }), /invalid signature/);
    });

    test(`a token minted by jsonwebtoken (${alg}) verifies with hg.jwt.verify`, () => {
      const token = jsonwebtoken.sign({ sub: 'hls', pfx: 'videos/b' }, secret, {
        algorithm: alg,
        expiresIn: 600,
        keyid: 'k2',
      });
      const r = lua(
        `local c, err = hg.jwt.verify(input.token, { k2 = input.secret }, { alg = input.alg, leeway = 5 })
         return { claims = c, err = err }`,
        { token, secret, alg },
      );
      assert.equal(r.err, undefined);
      assert.equal(r.claims.sub, 'hls');
      assert.equal(r.claims.pfx, 'videos/b');
      assert.ok(r.claims.exp > r.claims.iat); // jsonwebtoken adds iat
    });
  }

  test('hg.jwt.verify rejects jsonwebtoken tokens with the wrong key, alg or none', () => {
    const check = (token, alg, want) => {
      const r = lua(
        `local c, err = hg.jwt.verify(input.token, input.secret, { alg = input.alg })
         return { ok = c ~= nil, err = err }`,
        { token, secret, alg },
      );
      assert.equal(r.ok, false);
      assert.equal(r.err, want);
    };
    const payload = { sub: 'hls' };
    check(jsonwebtoken.sign(payload, 'other-secret', { expiresIn: 60 }), 'HS256', 'signature mismatch');
    check(jsonwebtoken.sign(payload, secret, { algorithm: 'HS512', expiresIn: 60 }), 'HS256', 'alg not allowed');
    check(jsonwebtoken.sign(payload, null, { algorithm: 'none', expiresIn: 60 }), 'HS256', 'alg none not allowed');
    check(jsonwebtoken.sign({ ...payload, exp: Math.floor(Date.now() / 1000) - 10 }, secret), 'HS256', 'token expired');
    check(jsonwebtoken.sign({ ...payload, nbf: Math.floor(Date.now() / 1000) + 600, exp: 4102444800 }, secret),
      'HS256', 'token not yet valid (nbf)');
  });
});

// ---- S3 -------------------------------------------------------------------------------

// GET/HEAD with full control of the Host header (the connection always goes to the
// local server, whatever host the URL names).
function request(port, url, { method = 'GET', headers = {} } = {}) {
  const u = new URL(url);
  return new Promise((resolve, reject) => {
    const req = http.request(
      { host: '127.0.0.1', port, method, path: u.pathname + u.search, headers: { host: u.host, ...headers } },
      (res) => {
        const chunks = [];
        res.on('data', (c) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks) }));
      },
    );
    req.on('error', reject);
    req.end();
  });
}

describe('SigV4 against a signature-verifying private S3 (s3rver)', () => {
  let s3;
  const BUCKET = 'hls-bucket';
  const SEG = Buffer.from([0x47, 0x40, 0x11, 0x10, 0x00, 0xff, 0x0d, 0x0a]); // binary-ish TS bytes
  const KEY1 = 'video/seg 001.ts';
  const KEY2 = "a+b/ünï~(1)!*'.m3u8";
  const PLAYLIST = '#EXTM3U\n#EXT-X-VERSION:3\n';

  before(async () => {
    s3 = await startS3Server({
      bucket: BUCKET,
      accessKey: 'AKIDHLSGATETEST',
      secretKey: 'wJalrXUtnFEMI/K7MDENG+bPxRfiCYtest/key',
    });
    await s3.putObject(KEY1, SEG, 'video/mp2t');
    await s3.putObject(KEY2, PLAYLIST, 'application/vnd.apple.mpegurl');
  });
  after(async () => {
    await s3?.close();
  });

  const opts = (extra = {}) => ({
    endpoint: s3.endpoint,
    bucket: BUCKET,
    access_key: s3.accessKey,
    secret_key: s3.secretKey,
    region: 'us-east-1',
    ...extra,
  });
  const presign = (o) => lua('return { url = assert(hg.s3.presign(input)) }', o).url;
  const signHeaders = (o) =>
    lua('local h, url = hg.s3.sign_headers(input); assert(h, url); return { headers = h, url = url }', o);

  test('the bucket is private: unsigned requests get 403 AccessDenied', async () => {
    const r = await request(s3.port, `${s3.endpoint}/${BUCKET}/video/seg%20001.ts`);
    assert.equal(r.status, 403);
    assert.match(r.body.toString(), /AccessDenied/);
  });

  test('a presigned GET is accepted (path-style, non-default port)', async () => {
    const url = presign(opts({ key: KEY1, expires: 300 }));
    assert.ok(url.startsWith(`${s3.endpoint}/${BUCKET}/video/seg%20001.ts?`));
    const r = await request(s3.port, url);
    assert.equal(r.status, 200, r.body.toString());
    assert.deepEqual(r.body, SEG);
    // through fetch too, as a browser/player would
    const f = await fetch(url);
    assert.equal(f.status, 200);
    assert.deepEqual(Buffer.from(await f.arrayBuffer()), SEG);
  });

  test('a presigned GET of a key with reserved and UTF-8 characters is accepted', async () => {
    const url = presign(opts({ key: KEY2 }));
    const r = await request(s3.port, url);
    assert.equal(r.status, 200, r.body.toString());
    assert.equal(r.body.toString(), PLAYLIST);
  });

  test('a presigned HEAD is accepted', async () => {
    const url = presign(opts({ key: KEY1, method: 'HEAD' }));
    const r = await request(s3.port, url, { method: 'HEAD' });
    assert.equal(r.status, 200);
    assert.equal(Number(r.headers['content-length']), SEG.length);
  });

  test('presigned with a session token and extra response parameters is accepted', async () => {
    const url = presign(opts({ key: KEY1, session_token: 'FQoGZXIvYXdzE//session+token=',
      query: { 'response-content-type': 'application/octet-stream' } }));
    assert.match(url, /X-Amz-Security-Token=/);
    const r = await request(s3.port, url);
    assert.equal(r.status, 200, r.body.toString());
    assert.equal(r.headers['content-type'], 'application/octet-stream');
  });

  // Virtual-hosted addressing is not exercised here: s3rver 5.0.0 builds the SigV4
  // canonical URI of a virtual-hosted request as "/<bucket>/<key>" (its SigV2 rule), where
  // S3 signs the path as sent ("/<key>"). Our virtual-hosted signing is pinned instead by
  // the published S3 documentation vectors (VECTORS.md §1.4: aeeed9bb…, f0e8bdb8…) in
  // tests/unit/crypto/test_sigv4.c and tests/spec/s3_spec.lua.

  test('tampered presigned URLs are refused with 403', async () => {
    const url = presign(opts({ key: KEY1, expires: 300 }));
    const tampered = [
      url.replace('seg%20001.ts', 'seg%20002.ts'),                               // another object
      url.replace(/X-Amz-Signature=([0-9a-f])/, (m, c) => `X-Amz-Signature=${c === '0' ? '1' : '0'}`),
      url.replace('X-Amz-Expires=300', 'X-Amz-Expires=3000'),                    // longer life
      url.replace(/X-Amz-Date=\d{8}T(\d\d)/, (m, h) => m.slice(0, -2) + String((Number(h) + 1) % 24).padStart(2, '0')),
    ];
    for (const t of tampered) {
      assert.notEqual(t, url);
      const r = await request(s3.port, t);
      assert.equal(r.status, 403, t);
      assert.match(r.body.toString(), /SignatureDoesNotMatch|AccessDenied/);
    }
    // signed with the wrong secret
    const wrong = presign(opts({ key: KEY1, secret_key: 'not-the-secret' }));
    assert.equal((await request(s3.port, wrong)).status, 403);
  });

  test('an expired presigned URL is refused with 403', async () => {
    const url = presign(opts({ key: KEY1, expires: 60, time: Math.floor(Date.now() / 1000) - 3600 }));
    const r = await request(s3.port, url);
    assert.equal(r.status, 403);
    assert.match(r.body.toString(), /expired/);
  });

  test('a header-signed GET is accepted (and HEAD, and with a session token)', async () => {
    for (const extra of [{}, { payload_hash: 'UNSIGNED-PAYLOAD' }, { session_token: 'tok/+=' }]) {
      const { headers, url } = signHeaders(opts({ key: KEY1, ...extra }));
      assert.equal(headers.host, `127.0.0.1:${s3.port}`);
      const r = await request(s3.port, url, { headers });
      assert.equal(r.status, 200, r.body.toString());
      assert.deepEqual(r.body, SEG);
    }
    const { headers, url } = signHeaders(opts({ key: KEY2, method: 'HEAD' }));
    const r = await request(s3.port, url, { method: 'HEAD', headers });
    assert.equal(r.status, 200);
  });

  test('a header-signed GET with a signed Range header is accepted', async () => {
    const { headers, url } = signHeaders(opts({ key: KEY1, headers: { range: 'bytes=0-3' } }));
    assert.match(headers.authorization, /SignedHeaders=host;range;x-amz-content-sha256;x-amz-date,/);
    const r = await request(s3.port, url, { headers });
    assert.equal(r.status, 206, r.body.toString());
    assert.deepEqual(r.body, SEG.subarray(0, 4));
  });

  test('tampered header-signed requests are refused with 403', async () => {
    const { headers, url } = signHeaders(opts({ key: KEY1 }));
    const bad = [
      { url: url.replace('seg%20001', 'seg%20002'), headers },
      { url, headers: { ...headers, authorization: headers.authorization.replace(/.$/, (c) => (c === '0' ? '1' : '0')) } },
      { url, headers: { ...headers, 'x-amz-content-sha256': 'UNSIGNED-PAYLOAD' } },
      { url, headers: { ...headers, 'x-amz-date': headers['x-amz-date'].replace(/(\d)Z$/, (m, d) => `${(Number(d) + 1) % 10}Z`) } },
    ];
    for (const b of bad) {
      assert.notDeepEqual(b, { url, headers });
      const r = await request(s3.port, b.url, { headers: b.headers });
      assert.equal(r.status, 403, JSON.stringify(b));
      assert.match(r.body.toString(), /SignatureDoesNotMatch/);
    }
  });
});
