// gateway.mjs — end-to-end harness: start the real hlsgate binary on an ephemeral port
// with a given policy, talk HTTP to it (raw sockets when the test needs exact bytes),
// send it signals and collect its logs.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
export const BIN = process.env.HLSGATE_BIN || path.join(ROOT, 'build/hlsgate');

// Every temporary directory a test makes is removed when its process exits, whatever
// happened: the test command leaves the host as it found it.
const temps = new Set();
process.on('exit', () => {
  for (const d of temps) {
    try { fs.rmSync(d, { recursive: true, force: true }); } catch { /* already gone */ }
  }
});

export function tempDir(prefix = 'hlsgate-') {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  temps.add(d);
  return d;
}

/** Writes `text` to `file` atomically (write + rename), as an operator's editor would. */
export function writeAtomic(file, text) {
  const tmp = `${file}.tmp-${process.pid}`;
  fs.writeFileSync(tmp, text);
  fs.renameSync(tmp, file);
}

/**
 * Starts hlsgate. `policy` is Lua source written to a temp file (or pass `policyFile`).
 * Resolves once it logs that it is ready; rejects if it exits first.
 */
export async function startGateway({ policy, policyFile, args = [], env = {}, workers = 1,
                                     timeoutMs = 15000 } = {}) {
  const dir = tempDir();
  const file = policyFile || path.join(dir, 'policy.lua');
  if (policy !== undefined) fs.writeFileSync(file, policy);
  const proc = spawn(BIN, ['--listen', '127.0.0.1:0', '--workers', String(workers),
                           '--policy', file, ...args], {
    cwd: ROOT,
    // Access-log lines at once (a test reads them right after its requests); the
    // default buffering has its own test (hot_paths.test.mjs).
    env: { ...process.env, ASAN_OPTIONS: 'abort_on_error=0:detect_leaks=1', HLSGATE_ACCESS_LOG_BUFFER: '0', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const gw = {
    proc, dir, policyPath: file, port: 0, stdoutText: '', stderrText: '', exited: null,
    get base() { return `http://127.0.0.1:${this.port}`; },
    /** Access-log lines parsed as JSON. */
    accessLog() {
      return this.stdoutText.split('\n').filter(Boolean).map((l) => JSON.parse(l));
    },
    writePolicy(text) { writeAtomic(file, text); },
    signal(sig) { proc.kill(sig); },
    /** Waits until stderr matches `re` (counting from `from` chars). */
    waitForStderr(re, { from = 0, timeout = 5000 } = {}) {
      return waitFor(() => re.test(this.stderrText.slice(from)), timeout,
                     () => `stderr never matched ${re}:\n${this.stderrText.slice(-2000)}`);
    },
    /** Resolves with {code, signal} once it exits by itself (after a signal the test sent:
     *  a second SIGTERM while it drains would find the default action and kill it). */
    async exit(timeout = 15000) {
      await waitFor(() => this.exited, timeout, () => 'gateway did not exit');
      return this.exited;
    },
    /** Sends SIGTERM (unless already exited) and resolves with {code, signal}. */
    async stop(sig = 'SIGTERM', timeout = 15000) {
      if (!this.exited) proc.kill(sig);
      await waitFor(() => this.exited, timeout, () => 'gateway did not exit');
      return this.exited;
    },
  };
  proc.stdout.setEncoding('utf8');
  proc.stderr.setEncoding('utf8');
  proc.stdout.on('data', (d) => { gw.stdoutText += d; });
  proc.stderr.on('data', (d) => { gw.stderrText += d; });
  proc.on('exit', (code, signal) => { gw.exited = { code, signal }; });
  await waitFor(() => gw.exited || / ready: /.test(gw.stderrText), timeoutMs,
                () => `gateway did not start:\n${gw.stderrText}`);
  if (gw.exited) throw new Error(`gateway exited ${JSON.stringify(gw.exited)}:\n${gw.stderrText}`);
  gw.port = Number(/main: listening on 127\.0\.0\.1:(\d+)/.exec(gw.stderrText)[1]);
  return gw;
}

export async function waitFor(pred, timeout, what) {
  const end = Date.now() + timeout;
  for (;;) {
    if (await pred()) return;
    if (Date.now() > end) throw new Error(typeof what === 'function' ? what() : what);
    await sleep(20);
  }
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** A port that was free a moment ago (for programs that must be given a fixed port). */
export async function freePort() {
  const srv = net.createServer();
  await new Promise((r) => srv.listen(0, '127.0.0.1', r));
  const { port } = srv.address();
  await new Promise((r) => srv.close(r));
  return port;
}

/**
 * Parses as many complete HTTP/1.1 responses (Content-Length framed) as `buf` holds.
 * Returns { responses: [{status, headers, body}], rest } — headers have lower-case names.
 */
export function parseResponses(buf, { head = false } = {}) {
  const responses = [];
  let off = 0;
  for (;;) {
    const end = buf.indexOf('\r\n\r\n', off);
    if (end < 0) break;
    const lines = buf.subarray(off, end).toString('latin1').split('\r\n');
    const status = Number(lines[0].split(' ')[1]);
    const headers = {};
    for (const l of lines.slice(1)) {
      const i = l.indexOf(':');
      headers[l.slice(0, i).toLowerCase()] = l.slice(i + 1).trim();
    }
    const len = head || status === 204 || status === 304 || status < 200
      ? 0 : Number(headers['content-length'] || 0);
    if (buf.length < end + 4 + len) break;
    const body = buf.subarray(end + 4, end + 4 + len).toString('utf8');
    responses.push({ status, headers, body });
    off = end + 4 + len;
  }
  return { responses, rest: buf.subarray(off) };
}

/** A raw keep-alive connection: send bytes, await N parsed responses, see closes. */
export async function connect(port) {
  const sock = net.connect(port, '127.0.0.1');
  await new Promise((res, rej) => { sock.once('connect', res); sock.once('error', rej); });
  let buf = Buffer.alloc(0);
  let closed = false;
  let waiter = null;
  sock.on('data', (d) => { buf = Buffer.concat([buf, d]); waiter?.(); });
  sock.on('close', () => { closed = true; waiter?.(); });
  sock.on('error', () => {});
  const c = {
    sock,
    get closed() { return closed; },
    write(data) { sock.write(data); },
    /** Resolves with `n` responses (throws on timeout or early close). */
    async read(n = 1, { timeout = 5000, head = false } = {}) {
      const end = Date.now() + timeout;
      for (;;) {
        const { responses, rest } = parseResponses(buf, { head });
        if (responses.length >= n) { buf = rest; return responses; }
        if (closed) throw new Error(`connection closed after ${responses.length}/${n} responses`);
        const left = end - Date.now();
        if (left <= 0) throw new Error(`timeout after ${responses.length}/${n} responses`);
        await new Promise((r) => { waiter = r; setTimeout(r, Math.min(left, 50)); });
        waiter = null;
      }
    },
    /** Resolves once the server closed the connection (or rejects after timeout). */
    async waitClosed(timeout = 5000) {
      await waitFor(() => closed, timeout, 'server did not close the connection');
    },
    close() { sock.destroy(); },
  };
  return c;
}

/** One request on a fresh connection; resolves with the parsed response. */
export async function request(port, raw, opts) {
  const c = await connect(port);
  try {
    c.write(raw);
    return (await c.read(1, opts))[0];
  } finally {
    c.close();
  }
}

export const get = (port, target, headers = '') =>
  request(port, `GET ${target} HTTP/1.1\r\nHost: t\r\n${headers}\r\n`);
