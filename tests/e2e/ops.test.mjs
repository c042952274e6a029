// Operations (issue 7): reloads under load, /metrics, the admin listener, and state that
// survives reloads (hg.shared).
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { describe, it } from 'node:test';

import { connect, get, sleep, startGateway, waitFor } from './lib/gateway.mjs';

const require = createRequire(import.meta.url);
const parsePrometheus = require('parse-prometheus-text-format');

const answer = (text) => `return { on_request = function(r)
  if r.path == "/count" then return tostring(require("hlsgate").shared.incr("hits", 1)) end
  return { status = 200, body = "${text}", route = "answer" }
end }\n`;

/** Parses /metrics with an independent Prometheus text-format parser. */
async function metrics(port, path = '/metrics') {
  const res = await get(port, path);
  assert.equal(res.status, 200);
  assert.match(res.headers['content-type'], /^text\/plain; version=0\.0\.4/);
  const families = parsePrometheus(res.body);
  const value = (name, labels = {}) => {
    const fam = families.find((f) => f.name === name);
    if (!fam) return undefined;
    const m = fam.metrics.find((x) => Object.entries(labels).every(([k, v]) => x.labels?.[k] === v));
    return m && (m.value !== undefined ? Number(m.value) : Number(m.count));
  };
  return { families, value, text: res.body };
}

describe('operations', () => {
  it('50 reloads of three policies and a broken one under load: no failure, exact counts', async () => {
    const gw = await startGateway({ policy: answer('A'), workers: 2 });
    const policies = ['A', 'B', 'C'];
    const good = []; // { answer, sentAt } for each successful reload, in order
    let stop = false;
    const results = []; // { start, end, body }
    const failures = [];
    const clients = Array.from({ length: 4 }, async () => {
      let c = await connect(gw.port);
      while (!stop) {
        const start = performance.now();
        try {
          c.write('GET /x HTTP/1.1\r\nHost: t\r\n\r\n');
          const [res] = await c.read(1);
          if (res.status !== 200) failures.push(`status ${res.status}`);
          results.push({ start, end: performance.now(), body: res.body });
        } catch (e) {
          failures.push(String(e));
          c.close();
          c = await connect(gw.port);
        }
      }
      c.close();
    });
    const t0 = performance.now();
    let expectOk = 0;
    let expectFailed = 0;
    for (let i = 0; i < 50; i++) {
      const from = gw.stderrText.length;
      if (i % 2 === 1) {
        gw.writePolicy('return { on_request = function() return "broken" end\n');
        gw.signal('SIGHUP');
        expectFailed++;
        await gw.waitForStderr(/reload failed/, { from });
      } else {
        const a = policies[(i / 2) % 3];
        gw.writePolicy(answer(a));
        good.push({ answer: a, sentAt: performance.now() });
        gw.signal('SIGHUP');
        expectOk++;
        await gw.waitForStderr(/reloading policy/, { from });
      }
      await sleep(Math.max(0, (10000 * (i + 1)) / 50 - (performance.now() - t0))); // ~10 s in all
    }
    await sleep(300);
    stop = true;
    await Promise.all(clients);
    assert.deepEqual(failures, []);
    assert.ok(results.length > 1000, `load applied: ${results.length} requests`);
    // Every answer comes from a policy that was loaded during the request: the one active
    // before it started (or its predecessor, while a reload was still being applied) or
    // one reloaded while it ran.
    const initial = { answer: 'A', sentAt: -Infinity };
    const timeline = [initial, ...good];
    for (const r of results) {
      let k = 0;
      while (k + 1 < timeline.length && timeline[k + 1].sentAt <= r.start) k++;
      const allowed = new Set([timeline[k].answer, timeline[Math.max(0, k - 1)].answer]);
      for (let j = k + 1; j < timeline.length && timeline[j].sentAt <= r.end; j++) allowed.add(timeline[j].answer);
      assert.ok(allowed.has(r.body), `"${r.body}" at ${r.start.toFixed(1)} not in ${[...allowed]}`);
    }
    const m = await metrics(gw.port);
    assert.equal(m.value('hlsgate_policy_reloads_total', { result: 'ok' }), expectOk);
    assert.equal(m.value('hlsgate_policy_reloads_total', { result: 'failed' }), expectFailed);
    assert.ok(m.value('hlsgate_requests_total', { route: 'answer', status: '200' }) >= results.length);
    const { code } = await gw.stop();
    assert.equal(code, 0, gw.stderrText.slice(-2000));
  });

  it('/metrics parses and its counters move as requests are made', async () => {
    const gw = await startGateway({ policy: answer('A'), workers: 2 });
    const before = await metrics(gw.port);
    assert.ok(before.families.some((f) => f.name === 'hlsgate_request_duration_seconds' && f.type === 'HISTOGRAM'));
    const version = before.families.find((f) => f.name === 'hlsgate_policy_info').metrics[0].labels.version;
    assert.match(version, /^[0-9a-f]{12}$/);
    for (let i = 0; i < 25; i++) await get(gw.port, '/x');
    for (let i = 0; i < 3; i++) await get(gw.port, '/healthz');
    const after = await metrics(gw.port);
    const n = (m, labels) => m.value('hlsgate_requests_total', labels) || 0;
    assert.equal(n(after, { route: 'answer', status: '200' }) - n(before, { route: 'answer', status: '200' }), 25);
    assert.equal(n(after, { route: 'healthz', status: '200' }) - n(before, { route: 'healthz', status: '200' }), 3);
    assert.ok(after.value('hlsgate_request_duration_seconds') >= before.value('hlsgate_request_duration_seconds') + 28);
    const c = await connect(gw.port); // the connection gauge sees an open connection
    await sleep(50);
    assert.ok((await metrics(gw.port)).value('hlsgate_connections') >= 1);
    c.close();
    // A reload changes the reported version.
    gw.writePolicy(answer('B'));
    gw.signal('SIGHUP');
    await waitFor(async () => (await get(gw.port, '/x')).body === 'B', 3000, 'no switch');
    const v2 = (await metrics(gw.port)).families.find((f) => f.name === 'hlsgate_policy_info').metrics[0].labels.version;
    assert.notEqual(v2, version);
    assert.match(gw.stderrText, new RegExp(`version ${v2}`));
    assert.equal((await gw.stop()).code, 0);
  });

  it('--admin-listen moves /metrics off the main listener; /healthz answers on both', async () => {
    const gw = await startGateway({ policy: answer('A'), args: ['--admin-listen', '127.0.0.1:0'] });
    const adminPort = Number(/admin listening on 127\.0\.0\.1:(\d+)/.exec(gw.stderrText)[1]);
    assert.equal((await get(gw.port, '/metrics')).body, 'A'); // the policy's, not ours
    assert.ok((await metrics(adminPort)).value('hlsgate_policy_reloads_total', { result: 'ok' }) === 0);
    assert.equal((await get(adminPort, '/healthz')).status, 200);
    assert.equal((await get(gw.port, '/healthz')).status, 200);
    assert.equal((await get(adminPort, '/readyz')).status, 200);
    assert.equal((await get(adminPort, '/x')).status, 404);
    assert.equal((await gw.stop()).code, 0);
  });

  it('hg.shared is shared by the workers and survives reloads', async () => {
    const gw = await startGateway({ policy: answer('A'), workers: 2 });
    const counts = [];
    for (let i = 0; i < 20; i++) counts.push(Number((await get(gw.port, '/count')).body));
    assert.deepEqual(counts, Array.from({ length: 20 }, (_, i) => i + 1)); // one counter, both workers
    gw.writePolicy(answer('B'));
    gw.signal('SIGHUP');
    await waitFor(async () => (await get(gw.port, '/x')).body === 'B', 3000, 'no switch');
    assert.equal(Number((await get(gw.port, '/count')).body), 21);
    assert.equal((await gw.stop()).code, 0);
  });
});
