// browser.mjs — real-browser harness: plain local HTTP origins (a page origin and a media
// origin that sends no CORS headers) and Debian's Chromium driven by playwright-core
// (SPEC §12). No browser download: only /usr/bin/chromium is used.
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { createRequire } from 'node:module';

import { ROOT, tempDir } from './gateway.mjs';

const require = createRequire(import.meta.url);

export const CHROMIUM = process.env.HLSGATE_CHROMIUM || '/usr/bin/chromium';
export const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic',
  '--no-first-run', '--disable-background-networking', '--disable-component-update',
  '--disable-sync'];

const TYPES = {
  '.html': 'text/html; charset=utf-8', '.js': 'text/javascript; charset=utf-8',
  '.m3u8': 'application/vnd.apple.mpegurl', '.ts': 'video/mp2t', '.m4s': 'video/iso.segment',
  '.mp4': 'video/mp4', '.key': 'application/octet-stream', '.map': 'application/json',
};

/**
 * A plain static HTTP server on 127.0.0.1 (its own port, so its own origin). `routes` maps
 * a URL path to a file; otherwise files are served from `dir` (if given). It sends no
 * CORS headers whatsoever. Every request is recorded in `.log` as
 * {method, path, origin, userAgent, status}.
 */
export async function startStatic({ dir = null, routes = {} } = {}) {
  const log = [];
  const server = http.createServer((req, res) => {
    const p = decodeURIComponent(new URL(req.url, 'http://x').pathname);
    const entry = { method: req.method, path: req.url, origin: req.headers.origin || null,
                    userAgent: req.headers['user-agent'] || null, status: 0 };
    log.push(entry);
    const reply = (status, headers, body) => {
      entry.status = status;
      res.writeHead(status, headers);
      res.end(req.method === 'HEAD' ? undefined : body);
    };
    if (req.method !== 'GET' && req.method !== 'HEAD') return reply(405, { Allow: 'GET, HEAD' }, '');
    let file = routes[p];
    if (!file && dir) {
      file = path.join(dir, p);
      if (!file.startsWith(dir + path.sep)) return reply(400, {}, 'bad path');
    }
    if (!file || !fs.existsSync(file) || !fs.statSync(file).isFile()) {
      return reply(404, { 'Content-Type': 'text/plain' }, 'not found');
    }
    const body = fs.readFileSync(file);
    reply(200, { 'Content-Type': TYPES[path.extname(file)] || 'application/octet-stream',
                 'Content-Length': body.length, 'Cache-Control': 'no-store' }, body);
  });
  await new Promise((res, rej) => { server.once('error', rej); server.listen(0, '127.0.0.1', res); });
  const port = server.address().port;
  return {
    server, log, port, base: `http://127.0.0.1:${port}`,
    stop: () => new Promise((res) => { server.closeAllConnections(); server.close(res); }),
  };
}

/** The page origin: /player.html (tests/e2e/fixtures) and /hls.min.js (npm hls.js). */
export function startPageOrigin() {
  const hlsDist = path.join(ROOT, 'tests/node_modules/hls.js/dist');
  return startStatic({ routes: {
    '/player.html': path.join(ROOT, 'tests/e2e/fixtures/player.html'),
    '/hls.min.js': path.join(hlsDist, 'hls.min.js'),
  } });
}

/**
 * Launches Debian's Chromium headless with a throw-away profile. Throws (never skips)
 * when the binary is missing: the browser test must fail loudly on a machine without it.
 * `ignoreHTTPSErrors` lets the page use a gateway whose certificate is a test CA's.
 */
export async function launchChromium({ ignoreHTTPSErrors = false } = {}) {
  if (!fs.existsSync(CHROMIUM)) {
    throw new Error(`${CHROMIUM} is missing: install Debian's chromium (apt-get install -y chromium)`);
  }
  const { chromium } = require('playwright-core');
  const userDataDir = tempDir('hg-chromium-');
  const context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS,
    viewport: { width: 660, height: 420 }, ignoreHTTPSErrors, // (the TLS listener's test certificates)
  });
  return {
    context, userDataDir,
    async close() {
      await context.close();
      fs.rmSync(userDataDir, { recursive: true, force: true });
    },
  };
}

/**
 * Opens `pageUrl` in a new tab and records what the browser saw: console messages of type
 * error, page errors, failed requests, and every response with its status.
 * (responses: {url, status, type, acao} — acao is Access-Control-Allow-Origin.)
 * `until(snapshot)` is polled (every 100 ms, on window.__snapshot()) until it returns true
 * or `timeout` passes. Returns { ok, snapshot, consoleErrors, pageErrors, failedRequests,
 * responses, elapsedMs, page } (the page stays open: the caller closes it).
 */
export async function playIn(context, pageUrl, { until, timeout = 30000, onPage = null } = {}) {
  const page = await context.newPage();
  if (onPage) await onPage(page); // e.g. DevTools protocol listeners, before the first request
  const out = { consoleErrors: [], pageErrors: [], failedRequests: [], responses: [], page };
  page.on('console', (m) => { if (m.type() === 'error') out.consoleErrors.push(m.text()); });
  page.on('pageerror', (e) => out.pageErrors.push(String(e)));
  page.on('requestfailed', (r) => out.failedRequests.push({ url: r.url(), error: r.failure()?.errorText }));
  page.on('response', (r) => {
    const h = r.headers();
    out.responses.push({ url: r.url(), status: r.status(), type: h['content-type'] || null,
                         acao: h['access-control-allow-origin'] || null });
  });
  const t0 = Date.now();
  await page.goto(pageUrl, { waitUntil: 'load' });
  const end = t0 + timeout;
  for (;;) {
    out.snapshot = await page.evaluate(() => window.__snapshot());
    if (until(out.snapshot)) { out.ok = true; break; }
    if (Date.now() > end) { out.ok = false; break; }
    await new Promise((r) => setTimeout(r, 100));
  }
  out.elapsedMs = Date.now() - t0;
  return out;
}
