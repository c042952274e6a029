// The listener (issue 11, item 8): a port another process listens on is a startup error
// (SO_REUSEPORT would otherwise let a second hlsgate join silently and the kernel split
// the traffic between two policies), while the workers of one process share it.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';

import { BIN, get, sleep, startGateway } from './lib/gateway.mjs';

const POLICY = (name) => `
local hg = require("hlsgate")
return { on_request = function(req) return hg.response(200, "${name}") end }
`;

/** Runs a second hlsgate to completion (or kills it after `timeout`). */
function runSecond(args, policyPath, timeout = 5000) {
  return new Promise((resolve) => {
    const t0 = Date.now();
    const p = spawn(BIN, ['--workers', '2', '--policy', policyPath, ...args],
                    { env: { ...process.env, ASAN_OPTIONS: 'detect_leaks=0' } });
    let stderr = '';
    p.stderr.on('data', (d) => { stderr += d; });
    const timer = setTimeout(() => p.kill('SIGKILL'), timeout);
    p.on('exit', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stderr, ms: Date.now() - t0 });
    });
  });
}

describe('listener', () => {
  let gw;
  before(async () => {
    gw = await startGateway({ policy: POLICY('first'), workers: 4 });
  });
  after(async () => {
    if (gw && !gw.exited) assert.equal((await gw.stop()).code, 0, gw.stderrText.slice(-2000));
  });

  it('a second hlsgate on the same address exits non-zero within 2 s, naming it', async () => {
    const r = await runSecond(['--listen', `127.0.0.1:${gw.port}`], gw.policyPath);
    assert.notEqual(r.code, 0, r.stderr);
    assert.equal(r.signal, null, 'it exits by itself');
    assert.ok(r.ms < 2000, `${r.ms} ms`);
    assert.match(r.stderr, new RegExp(`cannot listen on 127\\.0\\.0\\.1:${gw.port}: .*(in use|another process)`));
    assert.doesNotMatch(r.stderr, / ready: /);
  });

  it('so does one on the wildcard address of the same port', async () => {
    const r = await runSecond(['--listen', `0.0.0.0:${gw.port}`], gw.policyPath);
    assert.notEqual(r.code, 0, r.stderr);
    assert.match(r.stderr, new RegExp(`cannot listen on 0\\.0\\.0\\.0:${gw.port}`));
  });

  it('and one when another program listens there (no SO_REUSEPORT)', async () => {
    const srv = net.createServer();
    await new Promise((res) => srv.listen({ port: 0, host: '127.0.0.1' }, res));
    const port = srv.address().port;
    try {
      const r = await runSecond(['--listen', `127.0.0.1:${port}`], gw.policyPath);
      assert.notEqual(r.code, 0, r.stderr);
      assert.match(r.stderr, /another process/);
    } finally {
      srv.close();
    }
  });

  it('the first keeps serving every request, on all its workers', async () => {
    const answers = await Promise.all(Array.from({ length: 50 }, () => get(gw.port, '/x')));
    assert.ok(answers.every((r) => r.status === 200 && r.body === 'first'));
  });

  it('a restart on the same port works once the first is gone (TIME_WAIT does not block)', async () => {
    const port = gw.port;
    await get(gw.port, '/x'); // leaves a connection in TIME_WAIT on the server side
    assert.equal((await gw.stop()).code, 0);
    await sleep(50);
    const gw2 = await startGateway({ policy: POLICY('second'), workers: 2, args: ['--listen', `127.0.0.1:${port}`] });
    try {
      // it listens on its ephemeral port and on the old one
      const res = await get(port, '/x');
      assert.equal(res.body, 'second');
    } finally {
      const st = await gw2.stop();
      assert.equal(st.code, 0, `${JSON.stringify(st)}\n${gw2.stderrText.slice(-4000)}`);
    }
  });
});
