// redis.mjs — a private redis-server for a test: its own free port, no persistence, no
// disk; stop() and start() again on the same port (a Redis outage mid-test).
import { spawn, execFileSync } from 'node:child_process';

import { freePort, waitFor } from './gateway.mjs';

export async function startRedis({ port, args = [] } = {}) {
  const r = {
    port: port || await freePort(),
    proc: null,
    password: args.includes('--requirepass') ? args[args.indexOf('--requirepass') + 1] : null,
    exited: null,
    get url() { return `redis://127.0.0.1:${this.port}`; },
    /** Runs one command with redis-cli; returns its output, trimmed. */
    cli(...args) {
      return execFileSync('redis-cli', ['-p', String(this.port), '--no-raw', '--no-auth-warning',
                                        ...(this.password ? ['-a', this.password] : []), ...args.map(String)],
                          { encoding: 'utf8' }).trim();
    },
    async start() {
      this.exited = null;
      let out = '';
      this.proc = spawn('redis-server', ['--port', String(this.port), '--bind', '127.0.0.1',
                                         '--save', '', '--appendonly', 'no', '--daemonize', 'no', ...args],
                        { stdio: ['ignore', 'pipe', 'pipe'] });
      this.proc.stdout.on('data', (d) => { out += d; });
      this.proc.on('exit', (code, signal) => { this.exited = { code, signal }; });
      await waitFor(() => this.exited || /Ready to accept connections/.test(out), 10000,
                    () => `redis-server did not start:\n${out}`);
      if (this.exited) throw new Error(`redis-server exited:\n${out}`);
    },
    async stop() {
      if (!this.proc || this.exited) return;
      this.proc.kill('SIGKILL');
      await waitFor(() => this.exited, 5000, 'redis-server did not exit');
    },
  };
  await r.start();
  return r;
}
