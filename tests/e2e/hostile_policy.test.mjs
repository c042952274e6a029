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

/** A one-worker gateway at --lua-memory 1 running `policy`, and an origin serving one
 * playlist (/m.m3u8); both stopped after the suite, the gateway's exit checked (ASan's
 * leak check included). Returns { gw, origin } once `before` has run. */
function atCap(policy) {
  const at = {};
  before(async () => {
    at.origin = await startOrigin({ routes: { '/m.m3u8': (req, res) => {
      res.writeHead(200, { 'Content-Type': 'application/vnd.apple.mpegurl' });
      res.end('#EXTM3U\n#EXT-X-TARGETDURATION:4\n#EXTINF:4,\na.ts\n#EXTINF:4,\nb.ts\n#EXT-X-ENDLIST\n');
    } } });
    at.gw = await startGateway({ policy, workers: 1, args: ['--lua-memory', '1'] });
  });
  after(async () => {
    await at.origin?.close();
    const { code } = await at.gw.stop();
    assert.equal(code, 0, `exit code (ASan leak check included):\n${at.gw.stderrText.slice(-3000)}`);
  });
  return at;
}

describe('a policy at its memory cap (one worker, --lua-memory 1)', () => {
  const at = atCap(HOARD_POLICY);

  // valid answers may still be read (the collector frees the fill's garbage): 200 or 500
  const CASES = { '/err': [500], '/err_number': [500], '/plan_bad': [500], '/plan_hook': [500],
                  '/response_number': [200, 500], '/response_bad': [200, 500] };
  for (const [p, statuses] of Object.entries(CASES)) {
    it(`${p}: ${statuses.join(' or ')}, the process alive, the next request answered`, async () => {
      for (let i = 0; i < 3; i++) {
        const res = await get(at.gw.port, p);
        assert.ok(statuses.includes(res.status), `${res.status} ${res.body}`);
        if (res.status === 500) assert.ok(JSON.parse(res.body).request_id);
      }
      const ok = await get(at.gw.port, '/ok');
      assert.equal(ok.status, 200, at.gw.stderrText.slice(-2000));
      assert.equal(ok.body, 'ok');
    });
  }

  it('an on_uri hook hoarding memory: answered (200 or 500), the process alive', async () => {
    for (let i = 0; i < 3; i++) {
      const res = await get(at.gw.port, `/uri_hook?u=${enc(`${at.origin.base}/m.m3u8`)}`);
      assert.ok([200, 500].includes(res.status), `${res.status} ${res.body}`);
      assert.equal((await get(at.gw.port, '/ok')).body, 'ok');
    }
  });
});

// The same, filled tight: after the arrays, a collection, then chains of small tables
// until not even one more fits, so that the next allocation anywhere fails even after
// the emergency collection (the fill above leaves room for small ones). Every place the
// core allocates after on_request then meets a full state.
// Lua: fills the state to its cap, arrays first, then chains of small tables until not
// even one more fits (into the policy's upvalue `hoard`).
const FILL_TIGHT = `
local function fill()
  hoard = {}
  for _, n in ipairs({ 4096, 256, 16 }) do
    pcall(function() while true do hoard[#hoard + 1] = ("x"):rep(n) .. #hoard end end)
  end
  collectgarbage()
  local f = function() while true do hoard = { hoard } end end
  pcall(f) collectgarbage() pcall(f)
  pcall(function() while true do hoard = { hoard, true } end end)
end
`;

const TIGHT_POLICY = `
local hg = require("hlsgate")
local hoard
${FILL_TIGHT}local origin = { type = "http", url = "http://127.0.0.1:1/x.m3u8", allow_private = true }
-- an on_uri hook keeps what it hoards in a local: alive while the core handles its error
-- (message handler, traceback), garbage afterwards (a hook that kept the state full for
-- good would leave no room for the next request's table: every request 500 until reload)
-- (fill itself may run out of memory outside its pcalls: caught here, or hoard stays set)
local function fill_local() pcall(fill) local h = hoard hoard = nil return h end
local function hooked(req, hook)
  return { origin = { type = "http", url = req.query.u, allow_private = true }, on_uri = hook }
end
local routes = {
  ["/err_table"] = function() fill() error({}) end,
  ["/err_nil"] = function() fill() error(nil) end,
  ["/err_close"] = function()
    local x <close> = setmetatable({}, { __close = function() fill() error({}) end })
    return "x"
  end,
  ["/many_values"] = function() local t = {} for i = 1, 200000 do t[i] = i end return table.unpack(t) end,
  ["/frozen"] = function() local p = hg.plan({ origin = origin, route = "f" }) fill() return p end,
  ["/plan_table"] = function()
    local p = hg.plan({ origin = origin, headers = { ["X-A"] = "b" } }) fill() return hg.plan_table(p)
  end,
  ["/gc_errors"] = function()
    for i = 1, 20 do setmetatable({}, { __gc = function() error("gc " .. i) end }) end
    for i = 1, 20 do setmetatable({}, { __gc = function() fill() error({}) end }) end
    fill() return { status = 200, headers = { ["X-N"] = 1.5 }, body = "x" }
  end,
  ["/uri_err_table"] = function(req) return hooked(req, function() local h = fill_local() error({ h }) end) end,
  ["/uri_err_nil"] = function(req) return hooked(req, function() local h = fill_local() error() end) end,
  ["/uri_yield"] = function(req) return hooked(req, function() local h = fill_local() coroutine.yield(h) end) end,
}
return { on_request = function(req)
  hoard = nil
  local r = routes[req.path]
  if r then return r(req) end
  return "ok"
end }
`;

describe('a policy at its memory cap, filled tight (one worker, --lua-memory 1)', () => {
  const at = atCap(TIGHT_POLICY);

  // what a full state may still manage to answer varies: 404 is a nil answer (hg.plan's
  // "nil, out of memory": its arena is allocated outside Lua's emergency collection, so the
  // previous request's garbage can make it fail), 502 the unreachable origin of a plan read
  const CASES = { '/err_table': [500], '/err_nil': [500],
                  '/err_close': [500], '/many_values': [200, 500], '/frozen': [404, 500, 502],
                  '/plan_table': [404, 500, 502], '/gc_errors': [200, 500],
                  '/uri_err_table?u=U': [500], '/uri_err_nil?u=U': [500], '/uri_yield?u=U': [500] };
  for (const [p, statuses] of Object.entries(CASES)) {
    it(`${p}: ${statuses.join(' or ')}, the process alive, the next request answered`, async () => {
      const target = p.replace('U', enc(`${at.origin.base}/m.m3u8`));
      for (let i = 0; i < 3; i++) {
        const res = await get(at.gw.port, target);
        assert.equal(at.gw.exited, null, `the process died: ${at.gw.stderrText.slice(-2000)}`);
        assert.ok(statuses.includes(res.status), `${res.status} ${res.body}`);
        if (res.status >= 500) assert.ok(JSON.parse(res.body).request_id);
        const ok = await get(at.gw.port, '/ok');
        assert.equal(ok.status, 200, at.gw.stderrText.slice(-2000));
        assert.equal(ok.body, 'ok');
      }
    });
  }
});

// A top-level coroutine.yield (not a callout) at the cap: the core pushed its own message
// onto the finished coroutine outside any protected call, a Lua panic (abort) when that
// allocation fails. The fill below leaves too little room for it once yield has run (the
// exact layout matters: this policy, its first request, aborts the binary every time).
describe('a top-level coroutine.yield at the memory cap (one worker, --lua-memory 1)', () => {
  let gw;
  before(async () => {
    gw = await startGateway({ workers: 1, args: ['--lua-memory', '1'], policy: `
local hoard
local function fill()
  hoard = {}
  for _, n in ipairs({ 4096, 256, 16 }) do
    pcall(function() while true do hoard[#hoard + 1] = ("x"):rep(n) .. #hoard end end)
  end
  collectgarbage()
  local f = function() while true do hoard = { hoard } end end
  pcall(f) collectgarbage() pcall(f)
  local g = function() while true do hoard = { hoard, true } end end
  pcall(g)
end
return { on_request = function(req)
  hoard = nil
  if req.path == "/count" then fill() local c = collectgarbage("count") return { status = 200, body = tostring(1048576 - c * 1024) } end
  if req.path == "/yield" then fill() coroutine.yield() end
  return "ok"
end }` });
  });
  after(async () => {
    if (gw.exited) return; // reported by the test
    const { code } = await gw.stop();
    assert.equal(code, 0, gw.stderrText.slice(-3000));
  });

  it('500 (JSON, request id), the process alive, the next request answered', async () => {
    for (const p of ['/yield', '/yield', '/yield']) {
      let res;
      try { res = await get(gw.port, p); } catch (e) { res = { status: e.message }; }
      assert.equal(gw.exited, null, `${p}: the process died ${JSON.stringify(gw.exited)}:\n${gw.stderrText.slice(-2000)}`);
      assert.equal(res.status, 500, res.body);
      assert.ok(JSON.parse(res.body).request_id);
      assert.equal((await get(gw.port, '/ok')).body, 'ok');
    }
  });
});

// A reusable plan table (policy `reuse = true`) the core freezes itself, with room for the
// frozen plan's userdata but not for its arena: hg.plan's "nil, out of memory" answer was
// read as if it were an error message (the log said "policy error: (null)").
describe('a reusable plan frozen by the core at the memory cap', () => {
  let gw;
  before(async () => {
    gw = await startGateway({ workers: 1, args: ['--lua-memory', '1'], policy: `
local hg = require("hlsgate")
local hoard, spare
${FILL_TIGHT}local origin = { type = "http", url = "http://127.0.0.1:1/x.m3u8", allow_private = true }
hg.plan({ origin = origin }) -- its metatable exists: freezing costs the userdata, then the arena
return { reuse = true, on_request = function(req)
  hoard = nil
  if req.path == "/r" then
    local t = { origin = origin, route = "r", reuse = { vary = { "origin" }, ttl = 5 } }
    spare = {}
    for i = 1, tonumber(req.query.n) do spare[i] = true end
    fill()
    spare = nil -- a gap of the size asked for
    collectgarbage()
    return t
  end
  return "ok"
end }` });
  });
  after(async () => {
    const { code } = await gw.stop();
    assert.equal(code, 0, gw.stderrText.slice(-3000));
  });

  it('each answer is 500 or 502, every failure logged with its reason', async () => {
    for (let n = 8; n <= 160; n += 8) {
      for (let i = 0; i < 3; i++) { // a target seen before is admitted for reuse: frozen
        const res = await get(gw.port, `/r?n=${n}`);
        assert.ok([500, 502].includes(res.status), `n=${n}: ${res.status} ${res.body}`);
        assert.equal((await get(gw.port, '/ok')).body, 'ok');
      }
    }
    assert.doesNotMatch(gw.stderrText, /policy error: \(null\)/);
  });
});
