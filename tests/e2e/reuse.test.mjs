// Reusing plans (docs/policy-api.md): a policy with `reuse = true` answers a request
// its on_request already answered (twice: the first time only records it was seen) with
// hg.plan(t, { vary, ttl, expires }) without running on_request again — exactly for the same method, target, scheme and vary
// headers, within ttl and before expires, and never across a reload. Without the flag
// a recipe's reusable plans are never reused (a wrapper's checks always run).
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';

import { ROOT, get, request, sleep, startGateway, tempDir } from './lib/gateway.mjs';
import { startOrigin } from './lib/origin.mjs';

const PLAYLIST = '#EXTM3U\n#EXT-X-TARGETDURATION:4\n#EXTINF:4,\nseg0.ts\n#EXT-X-ENDLIST\n';

// on_request counts its runs (one worker: one Lua state); /count reports them.
const policy = (reuse) => `
local hg = require("hlsgate")
local runs = 0
local ROOT = os.getenv("REUSE_ROOT")
return {
  reuse = ${reuse},
  on_request = function(req)
    if req.path == "/count" then return hg.json(200, { runs = runs }) end
    runs = runs + 1
    if req.path == "/gate" and req.headers["x-allowed"] ~= "yes" then return hg.error(403, "not allowed") end
    if req.path == "/t" or req.path == "/th" then -- a plain table with a reuse rule
      local t = { origin = { type = "file", root = ROOT, path = "a.m3u8" }, cache_ttl = 0,
                  reuse = { vary = { "origin" } } }
      if req.path == "/th" then t.on_uri = function() return nil end end -- per request: not reused
      t.headers = { ["X-Edited"] = "by a wrapper" }
      return t
    end
    if req.path == "/p" or req.path == "/gate" then
      return hg.plan({ origin = { type = "file", root = ROOT, path = "a.m3u8" }, cache_ttl = 0,
                       headers = { ["X-Origin-Seen"] = req.headers.origin or "none" }, route = "p" },
                     { vary = { "Origin" }, ttl = tonumber(req.query.ttl) or 60,
                       expires = tonumber(req.query.exp) })
    end
  end,
}
`;

describe('reusing plans', () => {
  let dir, gw, plain;
  const runs = async (g) => JSON.parse((await get(g.port, '/count')).body).runs;
  before(async () => {
    dir = tempDir('hg-reuse-');
    fs.writeFileSync(path.join(dir, 'a.m3u8'), PLAYLIST);
    gw = await startGateway({ policy: policy('true'), env: { REUSE_ROOT: dir } });
    plain = await startGateway({ policy: policy('false'), env: { REUSE_ROOT: dir } });
  });
  after(async () => {
    for (const g of [gw, plain]) assert.equal((await g.stop()).code, 0, g.stderrText.slice(-3000));
  });

  it('answers the same request again without on_request, with the same bytes', async () => {
    const n0 = await runs(gw);
    const a = await get(gw.port, '/p?x=1'); // seen once: not kept (admission)
    assert.equal(a.status, 200);
    assert.equal(await runs(gw), n0 + 1);
    await get(gw.port, '/p?x=1'); // seen again: kept
    for (let i = 0; i < 3; i++) {
      const b = await get(gw.port, '/p?x=1');
      assert.equal(b.body, PLAYLIST);
      assert.equal(b.headers['x-origin-seen'], 'none');
    }
    assert.equal(await runs(gw), n0 + 2);
    // another target, another method: asked again
    await get(gw.port, '/p?x=2');
    const head = await request(gw.port, 'HEAD /p?x=1 HTTP/1.1\r\nHost: t\r\n\r\n', { head: true });
    assert.equal(head.status, 200);
    assert.equal(await runs(gw), n0 + 4);
    const log = gw.accessLog().filter((l) => l.path === '/p?x=1');
    assert.ok(log.length >= 2 && log.every((l) => l.status === 200));
  });

  it('asks again for another value of a vary header, and answers each as its own', async () => {
    await get(gw.port, '/p?v=1'); // the target seen: what follows is kept when asked
    await get(gw.port, '/p?v=2');
    await get(gw.port, '/p?v=3');
    const n0 = await runs(gw);
    const seen = [];
    for (const o of ['https://a.example', 'https://a.example', 'https://b.example', 'https://b.example']) {
      seen.push((await get(gw.port, '/p?v=1', `Origin: ${o}\r\n`)).headers['x-origin-seen']);
    }
    assert.deepEqual(seen, ['https://a.example', 'https://a.example', 'https://b.example', 'https://b.example']);
    assert.equal(await runs(gw), n0 + 2);
    // repeated headers count as joined, and an absent one differs from an empty one
    await get(gw.port, '/p?v=2', 'Origin: x\r\nOrigin: y\r\n');
    assert.equal((await get(gw.port, '/p?v=2', 'Origin: x, y\r\n')).headers['x-origin-seen'], 'x, y');
    assert.equal(await runs(gw), n0 + 3);
    assert.equal((await get(gw.port, '/p?v=3')).headers['x-origin-seen'], 'none');
    assert.equal((await get(gw.port, '/p?v=3', 'Origin: \r\n')).headers['x-origin-seen'], '');
    assert.equal(await runs(gw), n0 + 5);
  });

  it('reuses a plan table with a reuse rule too, as the policy left it, but not one with on_uri', async () => {
    const n0 = await runs(gw);
    for (let i = 0; i < 4; i++) {
      const r = await get(gw.port, '/t');
      assert.equal(r.status, 200);
      assert.equal(r.body, PLAYLIST);
      assert.equal(r.headers['x-edited'], 'by a wrapper');
    }
    assert.equal(await runs(gw), n0 + 2); // seen, kept, then reused twice
    for (let i = 0; i < 3; i++) assert.equal((await get(gw.port, '/th')).status, 200);
    assert.equal(await runs(gw), n0 + 5);
    assert.equal((await get(plain.port, '/t')).status, 200); // without the policy's consent:
    const p0 = await runs(plain);
    await get(plain.port, '/t');
    assert.equal(await runs(plain), p0 + 1); // asked every time
  });

  it('stops reusing after ttl and after expires', async () => {
    const n0 = await runs(gw);
    const exp = Math.floor(Date.now() / 1000) + 1;
    for (let i = 0; i < 3; i++) {
      await get(gw.port, '/p?ttl=1');
      await get(gw.port, `/p?exp=${exp}`);
    }
    assert.equal(await runs(gw), n0 + 4); // each: seen, kept, reused
    await sleep(2100);
    await get(gw.port, '/p?ttl=1');
    await get(gw.port, `/p?exp=${exp}`);
    assert.equal(await runs(gw), n0 + 6);
  });

  it('forgets every plan on reload', async () => {
    await get(gw.port, '/p?r=1');
    const from = gw.stderrText.length;
    gw.writePolicy(policy('true'));
    gw.signal('SIGHUP');
    await gw.waitForStderr(/reloading policy/, { from });
    await sleep(200);
    await get(gw.port, '/p?r=1');
    assert.equal(await runs(gw), 1); // the new state ran it: nothing reused from the old
  });

  it('never reuses without reuse = true: a wrapper\'s check runs every time', async () => {
    const n0 = await runs(plain);
    await get(plain.port, '/p?x=1');
    await get(plain.port, '/p?x=1');
    assert.equal(await runs(plain), n0 + 2);
    assert.equal((await get(plain.port, '/gate', 'X-Allowed: yes\r\n')).status, 200);
    assert.equal((await get(plain.port, '/gate')).status, 403);
  });

  it('refuses bad reuse rules and frozen plans with on_uri, loudly', async () => {
    const g = await startGateway({ policy: `
      local hg = require("hlsgate")
      return { reuse = true, on_request = function(req)
        local t = { origin = { type = "file", root = "/nonexistent", path = "a.m3u8" } }
        if req.path == "/ttl" then return hg.plan(t, { ttl = 0 }) end
        if req.path == "/vary" then return hg.plan(t, { vary = { "bad header" } }) end
        if req.path == "/opt" then return hg.plan(t, { varry = { "origin" } }) end
        if req.path == "/hook" then t.on_uri = function() end return hg.plan(t) end
        if req.path == "/read" then return hg.plan(t).origin end
      end }` });
    try {
      for (const p of ['/ttl', '/vary', '/opt', '/hook', '/read']) {
        const res = await get(g.port, p);
        assert.equal(res.status, 500, p);
      }
      for (const re of [/reuse\.ttl must be 1\.\.3600/, /reuse\.vary must be a list of header names/,
                        /unknown option 'varry'/, /frozen plan cannot have on_uri/,
                        /has no fields to read or set/]) {
        await g.waitForStderr(re); // (the log arrives through a pipe)
      }
    } finally {
      assert.equal((await g.stop()).code, 0, g.stderrText.slice(-3000));
    }
  });
});

describe('the open proxy, reusing its plans', () => {
  let origin, gw, media;
  before(async () => {
    media = tempDir('hg-reuse-proxy-');
    fs.mkdirSync(path.join(media, 'v'));
    fs.writeFileSync(path.join(media, 'v/index.m3u8'), PLAYLIST);
    origin = await startOrigin({ root: media });
    gw = await startGateway({ policyFile: path.join(ROOT, 'policies/open_proxy.lua'),
                              env: { HLSGATE_ALLOW_PRIVATE: '1',
                                     HLSGATE_CORS_ORIGINS: 'https://a.example, https://b.example' } });
  });
  after(async () => {
    await origin.close();
    assert.equal((await gw.stop()).code, 0, gw.stderrText.slice(-3000));
  });

  it('answers each Origin and each Host with its own CORS header and URLs', async () => {
    const target = `/proxy?url=${encodeURIComponent(`${origin.base}/v/index.m3u8`)}`;
    const cases = [['https://a.example', 'one.example'], ['https://b.example', 'one.example'],
                   ['https://a.example', 'two.example'], ['https://evil.example', 'one.example'],
                   ['https://a.example', 'one.example'], [null, 'one.example']];
    for (let round = 0; round < 2; round++) {
      for (const [o, host] of cases) {
        const r = await request(gw.port, `GET ${target} HTTP/1.1\r\nHost: ${host}\r\n` +
                                         (o ? `Origin: ${o}\r\n` : '') + '\r\n');
        assert.equal(r.status, 200);
        const allowed = o === 'https://a.example' || o === 'https://b.example';
        assert.equal(r.headers['access-control-allow-origin'], allowed ? o : undefined, `${o} ${host}`);
        assert.match(r.body, new RegExp(`^http://${host.replace('.', '\\.')}/proxy\\?url=`, 'm'));
      }
    }
  });
});

// reuse.token: a plan reused across viewers whose tokens verify with the same claims. The
// policy below checks a JWT itself and says, in its rule, what of the token it read.
const tokenPolicy = `
local hg = require("hlsgate")
local runs = 0
local ROOT = os.getenv("REUSE_ROOT")
local KEYS = { k2 = "second-secret", "first-secret" }
local VERIFY = { alg = "HS256", leeway = 0 }
return {
  reuse = true,
  on_request = function(req)
    if req.path == "/count" then return hg.json(200, { runs = runs }) end
    runs = runs + 1
    local claims, why = hg.jwt.verify(req.query.token or "", KEYS, VERIFY)
    if not claims then return hg.error(401, "invalid token: " .. why) end
    if claims.sub ~= "hls" then return hg.error(403, "not for streaming") end
    local tok = req.query.token
    return {
      origin = { type = "file", root = ROOT, path = claims.pfx .. "/a.m3u8" }, cache_ttl = 0,
      rewrite = { default = "proxy" }, private = true,
      proxy = { from = "http://file.invalid/" .. claims.pfx .. "/", to = "/v/", params = { token = tok } },
      headers = { ["X-Pfx"] = claims.pfx, ["X-Echo"] = req.query.echo and tok or nil,
                  ["X-Target"] = req.query.target and req.target or nil },
      reuse = { vary = { "origin" }, token = { param = "token", keys = KEYS, verify = VERIFY, claims = { "sub", "pfx" } } },
    }
  end,
}
`;

describe('reusing a plan for every viewer (reuse.token)', () => {
  let dir, gw;
  let jti = 0;
  const b64 = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
  const mint = (claims, { secret = 'first-secret', kid } = {}) => {
    const head = b64({ alg: 'HS256', typ: 'JWT', ...(kid ? { kid } : {}) });
    const body = b64({ sub: 'hls', pfx: 'a', exp: Math.floor(Date.now() / 1000) + 600, jti: String(++jti), ...claims });
    const sig = crypto.createHmac('sha256', secret).update(`${head}.${body}`).digest('base64url');
    return `${head}.${body}.${sig}`;
  };
  const runs = async () => JSON.parse((await get(gw.port, '/count')).body).runs;
  const tokensIn = (body) => [...body.matchAll(/[?&]token=([^&\s"]+)/g)].map((m) => decodeURIComponent(m[1]));
  before(async () => {
    dir = tempDir('hg-reuse-token-');
    for (const p of ['a', 'b']) {
      fs.mkdirSync(path.join(dir, p));
      fs.writeFileSync(path.join(dir, p, 'a.m3u8'), `#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\n${p}/v.m3u8\n#EXT-X-STREAM-INF:BANDWIDTH=2\nw.m3u8\n`);
    }
    gw = await startGateway({ policy: tokenPolicy, env: { REUSE_ROOT: dir } });
  });
  after(async () => assert.equal((await gw.stop()).code, 0, gw.stderrText.slice(-3000)));

  it('answers new viewers without on_request, each with their own token in every URI', async () => {
    const n0 = await runs();
    for (let i = 0; i < 12; i++) {
      const t = mint({}, i % 3 === 2 ? { secret: 'second-secret', kid: 'k2' } : {});
      const r = await get(gw.port, `/x/a.m3u8?token=${t}`);
      assert.equal(r.status, 200, r.body);
      assert.equal(r.headers['x-pfx'], 'a');
      assert.deepEqual(tokensIn(r.body), [t, t], r.body);
    }
    assert.equal(await runs(), n0 + 2); // the first seen, the second kept, then none
  });

  it('leaves every token it cannot vouch for to on_request', async () => {
    await get(gw.port, `/y/a.m3u8?token=${mint({})}`);
    await get(gw.port, `/y/a.m3u8?token=${mint({})}`); // kept
    const n0 = await runs();
    assert.equal((await get(gw.port, `/y/a.m3u8?token=${mint({})}`)).status, 200);
    assert.equal(await runs(), n0);
    const good = mint({});
    const cases = [
      [mint({}, { secret: 'wrong' }), 401],                      // signature
      [mint({ exp: Math.floor(Date.now() / 1000) - 5 }), 401],    // expired
      [mint({ sub: 'admin' }), 403],                              // a claim the plan depends on
      [`${good.slice(0, -2)}xx`, 401],                            // tampered
      ['', 401], ['not.a.token', 401],
    ];
    for (const [t, status] of cases) {
      const r = await get(gw.port, `/y/a.m3u8?token=${t}`);
      assert.equal(r.status, status, t);
      assert.ok(!r.body.includes(good));
    }
    assert.equal(await runs(), n0 + cases.length);
    // another prefix: its own plan, never the kept one
    const b = mint({ pfx: 'b' });
    const rb = await get(gw.port, `/y/a.m3u8?token=${b}`);
    assert.equal(rb.headers['x-pfx'], 'b');
    assert.match(rb.body, /^\/v\/b\/v\.m3u8\?token=/m);
    assert.equal(await runs(), n0 + cases.length + 1);
    // the token twice: which one would the policy read? on_request decides
    await get(gw.port, `/y/a.m3u8?token=${mint({})}&token=${mint({})}`);
    assert.equal(await runs(), n0 + cases.length + 2);
    // another Origin (vary): on_request
    await get(gw.port, `/y/a.m3u8?token=${mint({})}`, 'Origin: https://o.example\r\n');
    assert.equal(await runs(), n0 + cases.length + 3);
  });

  it('takes the token as req.query decodes it', async () => {
    const enc = (t) => t.replace(/\./g, '%2E').replace(/-/g, '%2d');
    await get(gw.port, `/z/a.m3u8?token=${enc(mint({}))}`);
    await get(gw.port, `/z/a.m3u8?token=${enc(mint({}))}`);
    const n0 = await runs();
    const t = mint({});
    const r = await get(gw.port, `/z/a.m3u8?token=${enc(t)}`);
    assert.equal(r.status, 200);
    assert.deepEqual(tokensIn(r.body), [t, t]);
    assert.equal(await runs(), n0);
  });

  it('never keeps a plan that holds the token anywhere but the bound param', async () => {
    const n0 = await runs();
    for (let i = 0; i < 5; i++) {
      const t = mint({});
      const r = await get(gw.port, `/w/a.m3u8?echo=1&token=${t}`);
      assert.equal(r.headers['x-echo'], t); // each viewer's own, never another's
      assert.deepEqual(tokensIn(r.body), [t, t]);
    }
    assert.equal(await runs(), n0 + 5);
    // the token as written (percent-encoded) echoed through req.target: never shared either
    for (let i = 0; i < 4; i++) {
      const t = mint({});
      const r = await get(gw.port, `/w/a.m3u8?target=1&token=${t.replace(/e/g, '%65')}`);
      assert.ok(decodeURIComponent(r.headers['x-target']).endsWith(`token=${t}`), r.headers['x-target']);
    }
  });

  it('gives a memoized plan back to its viewer with their own token, whoever was served it since', async () => {
    // A recipe that keeps one hg.plan per target (as the open proxy does) returns the same
    // frozen plan again once the reuse entry is gone; a viewer served it in between, with
    // their token bound, must have left nothing of theirs in it (a kept output key, say).
    let jtiMemo = 0;
    const mintS = () => {
      const head = b64({ alg: 'HS256', typ: 'JWT' });
      const body = b64({ sub: 'hls', exp: Math.floor(Date.now() / 1000) + 600, jti: `m${++jtiMemo}` });
      return `${head}.${body}.${crypto.createHmac('sha256', 's').update(`${head}.${body}`).digest('base64url')}`;
    };
    const origin = await startOrigin({ routes: { '/a.m3u8': (req, res) => {
      res.writeHead(200, { 'Content-Type': 'application/vnd.apple.mpegurl' });
      res.end('#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\nv.m3u8\n');
    } } });
    const g = await startGateway({ env: { ORIGIN: origin.base }, policy: `
      local hg = require("hlsgate")
      local VERIFY = { alg = "HS256", leeway = 0 }
      local memo = {}
      return { reuse = true, on_request = function(req)
        local tok = req.query.token
        if not hg.jwt.verify(tok or "", "s", VERIFY) then return hg.error(401, "no") end
        memo[req.target] = memo[req.target] or hg.plan({
          origin = { type = "http", url = os.getenv("ORIGIN") .. "/a.m3u8", allow_private = true },
          rewrite = { default = "proxy" }, private = false, cache_ttl = 30,
          proxy = { from = os.getenv("ORIGIN") .. "/", to = "/v/", params = { token = tok } },
        }, { ttl = 1, token = { param = "token", keys = "s", verify = VERIFY, claims = { "sub" } } })
        return memo[req.target]
      end }` });
    try {
      const A = mintS(), B = mintS();
      for (let i = 0; i < 2; i++) await get(g.port, `/p.m3u8?token=${A}`, 'Range: bytes=0-\r\n'); // kept
      const rb = await get(g.port, `/p.m3u8?token=${B}`); // A's plan, B's token bound
      assert.deepEqual(tokensIn(rb.body), [B]);
      await sleep(1200); // the entry is gone: on_request gives A's memoized plan again
      const ra = await get(g.port, `/p.m3u8?token=${A}`);
      assert.deepEqual(tokensIn(ra.body), [A], ra.body);
    } finally {
      await origin.close();
      assert.equal((await g.stop()).code, 0, g.stderrText.slice(-3000));
    }
  });

  it('refuses bad token rules loudly', async () => {
    const g = await startGateway({ policy: `
      local hg = require("hlsgate")
      return { reuse = true, on_request = function(req)
        local t = { origin = { type = "file", root = "/nonexistent", path = "a.m3u8" } }
        local rules = {
          ["/param"] = { param = "", keys = "k", verify = { alg = "HS256" } },
          ["/alg"] = { param = "token", keys = "k", verify = {} },
          ["/now"] = { param = "token", keys = "k", verify = { alg = "HS256", now = 1 } },
          ["/keys"] = { param = "token", keys = {}, verify = { alg = "HS256" } },
          ["/claims"] = { param = "token", keys = "k", verify = { alg = "HS256" }, claims = "pfx" },
        }
        return hg.plan(t, { token = rules[req.path] })
      end }` });
    try {
      for (const p of ['/param', '/alg', '/now', '/keys', '/claims']) assert.equal((await get(g.port, p)).status, 500, p);
      for (const re of [/reuse\.token\.param must be/, /opts\.alg is required/, /opts\.now is not allowed here/,
                        /reuse\.token\.keys: no key/, /reuse\.token\.claims must be a list/]) {
        await g.waitForStderr(re);
      }
    } finally {
      assert.equal((await g.stop()).code, 0, g.stderrText.slice(-3000));
    }
  });
});
