// Installing without containers (issue #15): `cmake --install` of the tested build into a
// scratch prefix, started from there (finding the Lua library installed next to it, not
// the source tree), and the hardened systemd unit checked with systemd-analyze when the
// machine has it.
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';

import { BIN, get, tempDir, waitFor } from './lib/gateway.mjs';

const BUILD = path.dirname(BIN);

describe('make install into a scratch prefix', () => {
  let prefix, gw, stderr = '';

  before(() => {
    prefix = tempDir('hg-install-');
    const r = spawnSync('cmake', ['--install', BUILD, '--prefix', prefix], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
  });
  after(async () => {
    if (gw && gw.exitCode === null) {
      gw.kill('SIGTERM');
      await new Promise((r) => gw.on('exit', r));
    }
    fs.rmSync(prefix, { recursive: true, force: true });
  });

  it('installs the binary, the Lua library, the policies, the docs and the unit', () => {
    for (const f of ['bin/hlsgate', 'share/hlsgate/lua/hlsgate/open_proxy.lua', 'share/hlsgate/policies/policy.lua',
                     'share/doc/hlsgate/README.md', 'share/doc/hlsgate/live.md', 'lib/systemd/system/hlsgate.service'])
      assert.ok(fs.existsSync(path.join(prefix, f)), f);
    const unit = fs.readFileSync(path.join(prefix, 'lib/systemd/system/hlsgate.service'), 'utf8');
    assert.match(unit, new RegExp(`^ExecStart=${prefix}/bin/hlsgate$`, 'm'));
    assert.match(unit, /^ExecReload=\/bin\/kill -HUP \$MAINPID$/m);
    assert.match(unit, /^ExecStartPre=.*--check/m);
    for (const d of ['NoNewPrivileges=yes', 'ProtectSystem=strict', 'DynamicUser=yes', 'CapabilityBoundingSet=$'])
      assert.match(unit, new RegExp(`^${d}`, 'm'));
  });

  it('the installed binary runs from anywhere on its own Lua library', async () => {
    // A policy that says where `require` found the library, next to the shipped recipes.
    const policy = path.join(prefix, 'share/hlsgate/policies/where.lua');
    fs.writeFileSync(policy, `local op = require("hlsgate.open_proxy")
      local proxy = op.new{}
      return { on_request = function(req)
        if req.path == "/where" then return package.searchpath("hlsgate.open_proxy", package.path) end
        return proxy(req)
      end }\n`);
    gw = spawn(path.join(prefix, 'bin/hlsgate'), ['--listen', '127.0.0.1:0', '--workers', '1', '--policy', policy],
               { cwd: '/', env: { ...process.env, ASAN_OPTIONS: 'detect_leaks=0' }, stdio: ['ignore', 'ignore', 'pipe'] });
    gw.stderr.setEncoding('utf8');
    gw.stderr.on('data', (d) => { stderr += d; });
    await waitFor(() => / ready: /.test(stderr) || gw.exitCode !== null, 15000, () => stderr);
    const port = Number(/listening on 127\.0\.0\.1:(\d+)/.exec(stderr)[1]);
    const where = await get(port, '/where');
    assert.equal(where.status, 200);
    assert.equal(path.resolve(where.body), path.join(prefix, 'share/hlsgate/lua/hlsgate/open_proxy.lua'));
    assert.equal((await get(port, '/proxy')).status, 400, 'the shipped recipe answers');
    assert.equal(spawnSync(path.join(prefix, 'bin/hlsgate'), ['--health', '--listen', `127.0.0.1:${port}`]).status, 0);
  });

  it('the systemd unit passes systemd-analyze verify and scores low exposure', (t) => {
    if (spawnSync('systemd-analyze', ['--version']).status !== 0) {
      t.diagnostic('systemd-analyze is not installed: unit checked textually only');
      return;
    }
    const unit = path.join(prefix, 'lib/systemd/system/hlsgate.service');
    const v = spawnSync('systemd-analyze', ['verify', unit], { encoding: 'utf8' });
    assert.equal(v.status, 0, v.stderr);
    const s = spawnSync('systemd-analyze', ['security', '--offline=true', unit], { encoding: 'utf8' });
    const level = Number(/Overall exposure level for hlsgate\.service: ([\d.]+)/.exec(s.stdout)?.[1]);
    t.diagnostic(`exposure ${level}`);
    assert.ok(level <= 2.0, s.stdout.slice(-400));
  });
});
