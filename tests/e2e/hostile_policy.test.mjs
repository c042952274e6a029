// Hostile (careless) policies, end to end (issue #11 item 2): the real binary with one
// worker runs a policy that does each pathological thing on request. Each answers 500
// (JSON, request id) within a bounded time, /healthz on the same worker keeps answering
// meanwhile and after, and a well-behaved route keeps working. Also: huge or invalid
// responses from a policy, and the default redirect bound of an http origin (#12).
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';

import { get, startGateway } from './lib/gateway.mjs';
import { startOrigin } from './lib/origin.mjs';

const enc = encodeURIComponent;

const POLICY = `
local hg = require("hlsgate")
local routes = {}
local q3000 = ("a"):rep(3000)
routes["/find"] = function(req) if req.query.q:find("a*a*a*b") then return "found" end return "no" end
routes["/sfind"] = function(req) return tostring(string.find(req.query.q, "a*a*a*b")) end
routes["/match"] = function() return tostring(q3000:match("(a*)(a*)(a*)b")) end
routes["/gmatch"] = function() for x in q3000:gmatch("a-a-a-b") do end return "no" end
routes["/gsub"] = function() return (q3000:gsub("a*a*a*b", "x")) end
routes["/pcall"] = function() -- catching the refusal does not help either
  for i = 1, 1e9 do pcall(string.find, q3000, "a*a*a*b") end return "escaped"
end
routes["/rep"] = function() return "len " .. #((""):rep(1e15)) end
routes["/rep_big"] = function() return ("x"):rep(1e12) end
routes["/concat"] = function()
  local t = {} for i = 1, 100000 do t[i] = "" end
  for i = 1, 1e9 do table.concat(t) end return "escaped"
end
routes["/concat_meta"] = function()
  return table.concat(setmetatable({}, { __index = function() return "" end }), "", 1, 1e12)
end
routes["/sort"] = function()
  local t = {} for i = 1, 100000 do t[i] = i end
  for i = 1, 1e9 do table.sort(t) end return "escaped"
end
routes["/sort_bad"] = function()
  local t = {} for i = 1, 100000 do t[i] = i % 13 end
  table.sort(t, function(a, b) return true end) return "sorted"
end
routes["/format"] = function()
  local s = ("x"):rep(1000000)
  for i = 1, 1e9 do local y = string.format("%s%s", s, s) end return "escaped"
end
routes["/concat_op"] = function()
  local s = ("x"):rep(4000000)
  for i = 1, 1e9 do local y = s .. "x" end return "escaped"
end
routes["/eq"] = function() -- one instruction that costs megabytes: the deadline stops it
  local a, b = ("x"):rep(1000):rep(8000), ("x"):rep(1000):rep(7000) .. ("x"):rep(1000):rep(1000)
  local n = 0
  while true do if a == b then n = n + 1 end end
end
routes["/utf8"] = function()
  local s = ("x"):rep(8000000)
  for i = 1, 1e9 do utf8.len(s) end return "escaped"
end
routes["/coroutine"] = function() -- threads inherit the hook and the meter
  return coroutine.wrap(function() local q = ("a"):rep(3000) while true do q:find("a*a*b") end end)()
end
routes["/print"] = function() print('{"forged":"access log line"}') return tostring(io.stdout) == "nil" and "printed" or "stdout" end
routes["/io_write"] = function() io.write("not json\\n") return "written" end
routes["/stdin"] = function() for l in io.lines() do end return "read" end
routes["/exit"] = function() os.exit(3) end
routes["/execute"] = function() os.execute("sleep 30") return "slept" end
routes["/sethook"] = function() debug.sethook() while true do end end
routes["/load_binary"] = function() return tostring(load(string.dump(function() end))) end
routes["/gc"] = function() local t = {} for i = 1, 300000 do t[i] = {} end for i = 1, 1e9 do collectgarbage() end end
-- careless responses
routes["/huge_body"] = function() return hg.response(200, ("b"):rep(1024):rep(4 * 1024)) end
routes["/huge_header"] = function() return { status = 200, headers = { ["X-Big"] = ("h"):rep(1024 * 1024) }, body = "x" } end
routes["/header_bool"] = function() return { status = 200, headers = { ["X-A"] = true }, body = "x" } end
routes["/header_table"] = function() return { status = 200, headers = { ["X-A"] = { "1", {} } }, body = "x" } end
routes["/header_name"] = function() return { status = 200, headers = { [1] = "x" }, body = "x" } end
routes["/body_table"] = function() return { status = 200, body = {} } end
routes["/status_str"] = function() return { status = "200 OK" } end
-- tables with metamethods, read after on_request returned (outside its budget): a raising
-- __index used to abort the process (Lua panic), a looping one would hang the worker
local raising = { __index = function() error("boom from __index") end, __len = function() error("boom") end }
local looping = { __index = function() while true do end end }
routes["/meta_top"] = function() return setmetatable({}, raising) end
routes["/meta_loop"] = function() return setmetatable({ status = 200 }, looping) end
routes["/meta_origin"] = function() return { origin = setmetatable({}, looping) } end
routes["/meta_headers"] = function()
  return { status = 200, headers = { ["X-A"] = setmetatable({}, raising) }, body = "x" }
end
routes["/meta_hosts"] = function()
  return { origin = { type = "http", url = "http://127.0.0.1:1/", allow_hosts = setmetatable({}, raising) } }
end
-- well-behaved
routes["/ok"] = function(req) return "ok " .. (req.query.i or "") end
routes["/fetch"] = function(req)
  return { origin = { type = "http", url = req.query.u, allow_private = true } }
end
return { on_request = function(req) local r = routes[req.path] if r then return r(req) end end }
`;

const HOSTILE = ['/find?q=' + 'a'.repeat(3000), '/sfind?q=' + 'a'.repeat(3000), '/match', '/gmatch',
  '/gsub', '/pcall', '/rep_big', '/concat', '/concat_meta', '/sort', '/format', '/concat_op',
  '/utf8', '/coroutine', '/io_write', '/stdin', '/exit', '/execute', '/sethook', '/load_binary', '/gc',
  '/meta_top', '/meta_loop', '/meta_origin'];

describe('hostile policies (one worker)', () => {
  let gw;
  before(async () => {
    gw = await startGateway({ policy: POLICY, workers: 1,
                              args: ['--lua-budget', '2000000', '--lua-memory', '64'] });
  });
  after(async () => {
    const { code } = await gw.stop();
    assert.equal(code, 0, `exit code (ASan leak check included):\n${gw.stderrText.slice(-3000)}`);
  });

  for (const target of HOSTILE) {
    it(`${target.slice(0, 40)}: 500 within 2 s, /healthz and /ok answer meanwhile and after`, async () => {
      const t0 = Date.now();
      const [bad, health, ok] = await Promise.all([
        get(gw.port, target), get(gw.port, '/healthz'), get(gw.port, '/ok?i=1')]);
      const ms = Date.now() - t0;
      assert.equal(bad.status, 500, `${target}: ${bad.status} ${bad.body.slice(0, 200)}`);
      const body = JSON.parse(bad.body);
      assert.equal(body.status, 500);
      assert.ok(body.request_id, 'request id in the error');
      assert.ok(ms < 2000, `${target} took ${ms} ms`);
      assert.equal(health.status, 200);
      assert.equal(ok.status, 200);
      assert.equal(ok.body, 'ok 1');
      const again = await get(gw.port, '/healthz');
      assert.equal(again.status, 200);
    });
  }

  it('a comparison of two 8 MB strings in a loop is stopped by the deadline (< 3 s)', async () => {
    const t0 = Date.now();
    const [bad, health] = await Promise.all([get(gw.port, '/eq'), get(gw.port, '/healthz')]);
    assert.equal(bad.status, 500);
    const id = JSON.parse(bad.body).request_id;
    await gw.waitForStderr(new RegExp(`request ${id}: policy error: .*time limit`));
    assert.ok(Date.now() - t0 < 3000, `took ${Date.now() - t0} ms`);
    assert.equal(health.status, 200);
  });

  it('an inconsistent sort comparator fails or finishes, quickly', async () => {
    const t0 = Date.now();
    const res = await get(gw.port, '/sort_bad');
    assert.ok([200, 500].includes(res.status));
    assert.ok(Date.now() - t0 < 2000);
  });

  it('print goes to the operational log, never into the access log on stdout', async () => {
    const res = await get(gw.port, '/print');
    assert.equal(res.body, 'printed');
    await gw.waitForStderr(/policy .*: \{"forged":"access log line"\}/);
    assert.ok(!gw.stdoutText.includes('forged'));
    for (const line of gw.stdoutText.split('\n').filter(Boolean)) JSON.parse(line); // all JSON
  });

  it('nested tables with metamethods are read raw: answered, the worker alive', async () => {
    const h = await get(gw.port, '/meta_headers'); // an empty list of values: no header
    assert.equal(h.status, 200);
    assert.equal(h.body, 'x');
    const o = await get(gw.port, '/meta_hosts'); // an empty allowlist: refused, not a crash
    assert.ok(o.status >= 400 && o.status < 600, String(o.status));
    assert.equal((await get(gw.port, '/healthz')).status, 200);
    await gw.waitForStderr(/returned a table with a metatable/);
  });

  it('rep of an empty string answers at once', async () => {
    const res = await get(gw.port, '/rep');
    assert.equal(res.status, 200);
    assert.equal(res.body, 'len 0');
  });

  it('the budget refusal is logged with the request id', async () => {
    const res = await get(gw.port, '/find?q=' + 'a'.repeat(3000));
    const id = JSON.parse(res.body).request_id;
    await gw.waitForStderr(new RegExp(`request ${id}: policy error: .*pattern too expensive`));
  });

  it('careless responses: a 4 MiB body is served whole', async () => {
    const res = await get(gw.port, '/huge_body');
    assert.equal(res.status, 200, gw.stderrText.slice(-1500));
    assert.equal(res.body.length, 4 * 1024 * 1024);
  });

  it('careless responses: a 1 MiB header value answers 500 (headers over 16 KiB)', async () => {
    const res = await get(gw.port, '/huge_header');
    assert.equal(res.status, 500);
    assert.ok(res.body.length < 1000);
    assert.equal((await get(gw.port, '/healthz')).status, 200);
  });

  for (const p of ['/header_bool', '/header_table', '/header_name', '/body_table', '/status_str']) {
    it(`careless responses: ${p} answers 500`, async () => {
      const res = await get(gw.port, p);
      assert.equal(res.status, 500, res.body);
      assert.equal((await get(gw.port, '/ok?i=2')).body, 'ok 2');
    });
  }
});

describe('http origin without max_redirects (#12)', () => {
  let gw, origin;
  before(async () => {
    const routes = {};
    for (let i = 0; i <= 8; i++) {
      routes[`/r/${i}`] = (req, res) => {
        if (i === 0) {
          res.writeHead(200, { 'Content-Type': 'application/vnd.apple.mpegurl' });
          return res.end('#EXTM3U\n');
        }
        res.writeHead(302, { Location: `/r/${i - 1}` });
        res.end();
      };
    }
    origin = await startOrigin({ routes });
    gw = await startGateway({ policy: POLICY, workers: 1 });
  });
  after(async () => {
    await origin?.close(); // first: an open origin would keep the run alive
    const { code } = await gw.stop();
    assert.equal(code, 0, gw.stderrText.slice(-3000));
  });

  it('follows the documented default of 5 redirects and refuses a sixth', async () => {
    const five = await get(gw.port, `/fetch?u=${enc(`${origin.base}/r/5`)}`);
    assert.equal(five.status, 200, five.body);
    assert.equal(five.body, '#EXTM3U\n');
    const six = await get(gw.port, `/fetch?u=${enc(`${origin.base}/r/6`)}`);
    assert.equal(six.status, 502, six.body);
    assert.match(JSON.parse(six.body).error, /redirect/);
  });
});

// A policy that hoards memory up to --lua-memory, then returns: what the core does after
// on_request (reading the answer, the error's traceback, an on_uri hook's argument and
// answer) allocates too. Any of those raising outside a protected call used to be a Lua
// panic: the whole process aborted (exit 134) on the first such request.
const HOARD_POLICY = `
local hoard
local function fill()
  hoard = {}
  for _, n in ipairs({ 4096, 256, 16 }) do
    pcall(function() while true do hoard[#hoard + 1] = ("x"):rep(n) .. #hoard end end)
  end
end
local origin = { type = "http", url = "http://127.0.0.1:1/x.m3u8", allow_private = true }
local routes = {
  ["/err"] = function() fill() error("boom") end,
  ["/err_number"] = function() fill() error(42.5) end,
  ["/response_number"] = function() fill() return { status = 200, headers = { ["X-A"] = 1.5 }, body = "x" } end,
  ["/response_bad"] = function() fill() return { status = 200, headers = { ["X-B"] = {} }, body = "x" } end,
  ["/plan_bad"] = function() fill() return { origin = origin, rewrite = 42 } end,
  ["/plan_hook"] = function() fill() return { origin = origin, on_uri = function() end } end,
  ["/uri_hook"] = function(req)
    return { origin = { type = "http", url = req.query.u, allow_private = true },
             on_uri = function(u) fill() return 1.5 end }
  end,
}
return { on_request = function(req)
  hoard = nil
  local r = routes[req.path]
  if r then return r(req) end
  return "ok"
end }
`;

describe('a policy at its memory cap (one worker, --lua-memory 1)', () => {
  let gw, origin;
  before(async () => {
    origin = await startOrigin({ routes: { '/m.m3u8': (req, res) => {
      res.writeHead(200, { 'Content-Type': 'application/vnd.apple.mpegurl' });
      res.end('#EXTM3U\n#EXT-X-TARGETDURATION:4\n#EXTINF:4,\na.ts\n#EXTINF:4,\nb.ts\n#EXT-X-ENDLIST\n');
    } } });
    gw = await startGateway({ policy: HOARD_POLICY, workers: 1, args: ['--lua-memory', '1'] });
  });
  after(async () => {
    await origin?.close();
    const { code } = await gw.stop();
    assert.equal(code, 0, `exit code (ASan leak check included):\n${gw.stderrText.slice(-3000)}`);
  });

  // valid answers may still be read (the collector frees the fill's garbage): 200 or 500
  const CASES = { '/err': [500], '/err_number': [500], '/plan_bad': [500], '/plan_hook': [500],
                  '/response_number': [200, 500], '/response_bad': [200, 500] };
  for (const [p, statuses] of Object.entries(CASES)) {
    it(`${p}: ${statuses.join(' or ')}, the process alive, the next request answered`, async () => {
      for (let i = 0; i < 3; i++) {
        const res = await get(gw.port, p);
        assert.ok(statuses.includes(res.status), `${res.status} ${res.body}`);
        if (res.status === 500) assert.ok(JSON.parse(res.body).request_id);
      }
      const ok = await get(gw.port, '/ok');
      assert.equal(ok.status, 200, gw.stderrText.slice(-2000));
      assert.equal(ok.body, 'ok');
    });
  }

  it('an on_uri hook hoarding memory: answered (200 or 500), the process alive', async () => {
    for (let i = 0; i < 3; i++) {
      const res = await get(gw.port, `/uri_hook?u=${enc(`${origin.base}/m.m3u8`)}`);
      assert.ok([200, 500].includes(res.status), `${res.status} ${res.body}`);
      assert.equal((await get(gw.port, '/ok')).body, 'ok');
    }
  });
});
