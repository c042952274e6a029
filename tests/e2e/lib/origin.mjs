// origin.mjs — small real HTTP(S) origins for the e2e tests: a static file server that
// sends no CORS headers and counts requests, plus hooks for scripted behaviour.
import fs from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import path from 'node:path';

const TYPES = { '.m3u8': 'application/vnd.apple.mpegurl', '.ts': '', '.m4s': 'video/iso.segment', '.mp4': 'video/mp4' };

/**
 * Starts an origin on 127.0.0.1:0 serving `root`. `routes` maps a path to a handler
 * (req, res) for scripted cases (redirects, stalls, huge bodies). `tls` = {key, cert}
 * makes it HTTPS. Returns { port, base, hits (Map path → count), requests (array), close }.
 */
export async function startOrigin({ root, routes = {}, tls } = {}) {
  const hits = new Map();
  const requests = [];
  const handler = (req, res) => {
    const url = new URL(req.url, 'http://x');
    hits.set(url.pathname, (hits.get(url.pathname) || 0) + 1);
    requests.push({ method: req.method, url: req.url, headers: req.headers });
    if (routes[url.pathname]) return routes[url.pathname](req, res, url);
    const file = root && path.join(root, decodeURIComponent(url.pathname));
    if (!file || !file.startsWith(root) || !fs.existsSync(file) || fs.statSync(file).isDirectory()) {
      res.writeHead(404, { 'Content-Type': 'text/plain' });
      return res.end('not found');
    }
    const type = TYPES[path.extname(file)];
    const headers = { 'Content-Length': fs.statSync(file).size };
    if (type) headers['Content-Type'] = type; // .ts: nothing better than the gateway's guess
    res.writeHead(200, headers);
    if (req.method === 'HEAD') return res.end();
    fs.createReadStream(file).pipe(res);
  };
  const server = tls ? https.createServer(tls, handler) : http.createServer(handler);
  const sockets = new Set();
  server.on('connection', (s) => { sockets.add(s); s.on('close', () => sockets.delete(s)); });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address();
  return {
    port, hits, requests, server,
    base: `${tls ? 'https' : 'http'}://127.0.0.1:${port}`,
    close: () => new Promise((r) => { for (const s of sockets) s.destroy(); server.close(r); }),
  };
}

/** Bytes of a synthetic object whose byte i is i % 251: any range of it can be checked. */
export function pattern(start, len) {
  const b = Buffer.allocUnsafe(len);
  for (let i = 0; i < len; i++) b[i] = (start + i) % 251;
  return b;
}
