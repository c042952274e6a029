// tls.mjs — certificates for the TLS listener tests (openssl, as an operator would make
// them) and small TLS/HTTP/2 client helpers on node's own tls and http2 modules.
import { execFileSync, spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import http2 from 'node:http2';
import path from 'node:path';
import tls from 'node:tls';

/** A test CA in `dir` (ca.pem, ca.key). */
export function makeCa(dir) {
  const o = (args) => execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
  o(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', 'ca.key',
     '-out', 'ca.pem', '-days', '2', '-subj', '/CN=hlsgate listener test CA']);
  return { dir, pem: path.join(dir, 'ca.pem') };
}

/**
 * A server certificate signed by the CA in `dir`, for `names` (DNS SANs; 127.0.0.1 is
 * added as an IP SAN). `rsa` picks an RSA key instead of P-256. Returns {cert, key} paths.
 */
export function makeCert(dir, base, names, { rsa = false } = {}) {
  const o = (args) => execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
  const keyArgs = rsa ? ['-newkey', 'rsa:2048'] : ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1'];
  o(['req', ...keyArgs, '-nodes', '-keyout', `${base}.key`, '-out', `${base}.csr`, '-subj', `/CN=${names[0]}`]);
  fs.writeFileSync(path.join(dir, `${base}.ext`),
                   `subjectAltName=${names.map((n) => `DNS:${n}`).join(',')},IP:127.0.0.1\n`);
  o(['x509', '-req', '-in', `${base}.csr`, '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial',
     '-out', `${base}.pem`, '-days', '2', '-extfile', `${base}.ext`]);
  return { cert: path.join(dir, `${base}.pem`), key: path.join(dir, `${base}.key`) };
}

/** The SHA-256 fingerprint of a PEM certificate file (as node's tls reports it). */
export function fingerprint(certFile) {
  return new crypto.X509Certificate(fs.readFileSync(certFile)).fingerprint256;
}

/** The port of the gateway's TLS listener (the first one logged). */
export function tlsPort(gw) {
  return Number(/main: listening on 127\.0\.0\.1:(\d+) \(TLS/.exec(gw.stderrText)[1]);
}

/** Opens a TLS connection; resolves with the socket once the handshake is done. */
export function tlsConnect(port, { servername = 'localhost', ca, alpn = ['http/1.1'], ...rest } = {}) {
  return new Promise((resolve, reject) => {
    const s = tls.connect({ host: '127.0.0.1', port, servername, ca: ca && fs.readFileSync(ca),
                            ALPNProtocols: alpn, ...rest }, () => resolve(s));
    s.once('error', reject);
  });
}

/** An HTTP/2 session to the gateway over TLS, trusting `ca`. */
export async function h2session(port, ca, opts = {}) {
  const s = http2.connect(`https://localhost:${port}`, { ca: fs.readFileSync(ca), ...opts });
  s.on('error', () => {});
  await new Promise((res, rej) => { s.once('connect', res); s.once('error', rej); });
  return s;
}

/** One request on an HTTP/2 session: {status, headers, body (Buffer)}. */
export function h2get(session, p, headers = {}) {
  return new Promise((resolve, reject) => {
    const req = session.request({ ':path': p, ...headers });
    const chunks = [];
    let head;
    req.on('response', (h) => { head = h; });
    req.on('data', (d) => chunks.push(d));
    req.on('end', () => resolve({ status: head?.[':status'], headers: head, body: Buffer.concat(chunks) }));
    req.on('error', reject);
    req.end();
  });
}

/** curl against the TLS listener: {version, status, body (Buffer)}. */
export function curl(port, p, { ca, http = '--http2', extra = [] } = {}) {
  const r = spawnSync('curl', ['-sS', http, '--cacert', ca, '--resolve', `localhost:${port}:127.0.0.1`,
                               '-o', '-', '-w', '\n%{http_version} %{http_code}', ...extra,
                               `https://localhost:${port}${p}`], { maxBuffer: 64 << 20 });
  if (r.status !== 0) throw new Error(`curl ${p}: ${r.stderr}`);
  const out = r.stdout;
  const nl = out.lastIndexOf(0x0a);
  const [version, status] = out.subarray(nl + 1).toString().split(' ');
  return { version, status: Number(status), body: out.subarray(0, nl) };
}
