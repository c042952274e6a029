// live.mjs — live streams made in real time for the e2e tests (SPEC §5 live, issue #10).
//
// - startLiveHls(dir): ffmpeg encodes a test pattern at real-time speed into a sliding-
//   window HLS playlist (what a packager writes into a directory or a bucket).
// - startPartSource(dir) + startLlhlsOrigin(source): ffmpeg cuts 0.5 s independent TS
//   parts in real time, and a small LL-HLS origin (RFC 8216bis §6.2.5.2) publishes them as
//   2 s segments with EXT-X-PART, EXT-X-PRELOAD-HINT, program date-times and blocking
//   playlist reloads (_HLS_msn/_HLS_part), with or without CORS headers.
// - mirrorToS3(dir, s3, prefix): uploads what ffmpeg writes into the signing S3 as it
//   appears (segments first, then the playlist that names them).
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';

const ENCODE = ['-c:v', 'libx264', '-preset', 'ultrafast', '-tune', 'zerolatency', '-pix_fmt', 'yuv420p',
                '-sc_threshold', '0'];

function ffmpeg(args) {
  const proc = spawn('ffmpeg', ['-hide_banner', '-loglevel', 'error', '-nostdin', ...args],
                     { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  proc.stderr.on('data', (d) => { stderr += d; });
  const exited = new Promise((r) => proc.on('exit', r));
  return {
    proc,
    get stderr() { return stderr; },
    async stop() { if (proc.exitCode === null) proc.kill('SIGKILL'); await exited; },
  };
}

/**
 * A live sliding-window HLS stream written to dir/live.m3u8 in real time: 1 s segments,
 * 6 in the window, old ones deleted. Returns { stop, stderr }.
 */
export function startLiveHls(dir, { segment = 1, window = 6 } = {}) {
  fs.mkdirSync(dir, { recursive: true });
  return ffmpeg(['-re', '-f', 'lavfi', '-i', 'testsrc2=size=320x180:rate=24', ...ENCODE,
                 '-g', String(24 * segment), '-keyint_min', String(24 * segment),
                 '-f', 'hls', '-hls_time', String(segment), '-hls_list_size', String(window),
                 '-hls_flags', 'delete_segments+temp_file+program_date_time',
                 '-hls_segment_filename', path.join(dir, 'seg%05d.ts'), path.join(dir, 'live.m3u8')]);
}

/**
 * Copies the live stream in `dir` into the S3 bucket under `prefix/` as it is written:
 * each finished segment once, then the playlist whenever it changed (so the bucket never
 * names a segment it does not hold). Returns { stop, uploads }.
 */
export function mirrorToS3(dir, s3, prefix) {
  const done = new Set();
  let lastList = '', busy = false, uploads = 0;
  const tick = async () => {
    if (busy) return;
    busy = true;
    try {
      const list = fs.existsSync(path.join(dir, 'live.m3u8')) ? fs.readFileSync(path.join(dir, 'live.m3u8'), 'utf8') : '';
      if (list && list !== lastList) {
        for (const name of list.split('\n').filter((l) => l.endsWith('.ts'))) {
          if (done.has(name)) continue;
          await s3.putObject(`${prefix}/${name}`, fs.readFileSync(path.join(dir, name)), 'video/mp2t');
          done.add(name);
          uploads++;
        }
        await s3.putObject(`${prefix}/live.m3u8`, list, 'application/vnd.apple.mpegurl');
        lastList = list;
        uploads++;
      }
    } catch { /* a segment deleted under us: the next tick sees the newer playlist */ }
    busy = false;
  };
  const timer = setInterval(tick, 100);
  return { stop: () => clearInterval(timer), get uploads() { return uploads; } };
}

/**
 * Cuts a real-time encode into 0.5 s TS parts (each starting on a key frame) in `dir`,
 * and follows ffmpeg's segment list. Returns { parts: [{file, start, duration, at}],
 * t0 (wall ms of media time 0), stop, onPart(fn) }.
 */
export async function startPartSource(dir, { part = 0.5 } = {}) {
  fs.mkdirSync(dir, { recursive: true });
  const list = path.join(dir, 'parts.csv');
  const fps = 24, gop = Math.round(fps * part);
  const enc = ffmpeg(['-re', '-f', 'lavfi', '-i', `testsrc2=size=320x180:rate=${fps}`, ...ENCODE,
                      '-g', String(gop), '-keyint_min', String(gop), '-bf', '0',
                      '-force_key_frames', `expr:gte(t,n_forced*${part})`,
                      '-f', 'segment', '-segment_time', String(part), '-segment_format', 'mpegts',
                      '-segment_list', list, '-segment_list_type', 'csv', '-segment_list_flags', '+live',
                      '-reset_timestamps', '0', path.join(dir, 'p%06d.ts')]);
  const src = { parts: [], t0: 0, listeners: new Set(), part,
                onPart(fn) { this.listeners.add(fn); return () => this.listeners.delete(fn); } };
  let seen = 0;
  const timer = setInterval(() => {
    let text;
    try { text = fs.readFileSync(list, 'utf8'); } catch { return; }
    const lines = text.split('\n').filter((l) => /^p\d+\.ts,/.test(l));
    for (; seen < lines.length; seen++) {
      const [file, start, end] = lines[seen].split(',');
      const p = { file: path.join(dir, file), start: Number(start), duration: Number(end) - Number(start) };
      if (!src.t0) src.t0 = Date.now() - Number(end) * 1000;
      src.parts.push(p);
      for (const fn of src.listeners) fn();
    }
  }, 20);
  src.stop = async () => { clearInterval(timer); await enc.stop(); };
  src.stderr = () => enc.stderr;
  return src;
}

/**
 * An LL-HLS origin over a part source: /ll/live.m3u8 (blocking reloads), /ll/seg<K>.ts
 * (whole segments), /ll/seg<K>.<J>.ts (parts). `partsPerSegment` parts make a segment.
 * `cors` adds Access-Control-Allow-Origin: * (the "play it directly" case). Counts every
 * request in `hits` (by path and query) and records queries in `log`.
 */
export async function startLlhlsOrigin(src, { partsPerSegment = 4, cors = false, window = 4 } = {}) {
  const P = partsPerSegment;
  const target = Math.ceil(src.part * P);
  const hits = new Map();
  const log = [];
  const complete = () => Math.floor(src.parts.length / P); // whole segments published
  const has = (msn, part) => (part === undefined ? complete() > msn : src.parts.length > msn * P + part);

  function playlist() {
    const n = src.parts.length, segs = complete();
    const first = Math.max(0, segs - window);
    const partFrom = Math.max(first, segs - 2); // parts for the last segments and the open one
    const iso = (s) => new Date(src.t0 + s * 1000).toISOString();
    const lines = ['#EXTM3U', '#EXT-X-VERSION:9', `#EXT-X-TARGETDURATION:${target}`,
                   `#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=${(src.part * 3).toFixed(1)}`,
                   `#EXT-X-PART-INF:PART-TARGET=${src.part.toFixed(3)}`, `#EXT-X-MEDIA-SEQUENCE:${first}`,
                   `#EXT-X-PROGRAM-DATE-TIME:${iso(src.parts[first * P]?.start ?? 0)}`];
    const partLine = (k, j) => {
      const p = src.parts[k * P + j];
      return `#EXT-X-PART:DURATION=${p.duration.toFixed(5)},URI="seg${k}.${j}.ts",INDEPENDENT=YES`;
    };
    for (let k = first; k < segs; k++) {
      if (k >= partFrom) for (let j = 0; j < P; j++) lines.push(partLine(k, j));
      const d = src.parts.slice(k * P, k * P + P).reduce((a, p) => a + p.duration, 0);
      lines.push(`#EXTINF:${d.toFixed(5)},`, `seg${k}.ts`);
    }
    for (let i = segs * P; i < n; i++) lines.push(partLine(segs, i - segs * P));
    lines.push(`#EXT-X-PRELOAD-HINT:TYPE=PART,URI="seg${Math.floor(n / P)}.${n % P}.ts"`);
    return lines.join('\n') + '\n';
  }

  /** Resolves true once pred() holds, false after `ms`. */
  const until = (pred, ms) => new Promise((resolve) => {
    if (pred()) return resolve(true);
    const stop = () => { off(); clearTimeout(timer); };
    const off = src.onPart(() => { if (pred()) { stop(); resolve(true); } });
    const timer = setTimeout(() => { stop(); resolve(false); }, ms);
  });

  const server = http.createServer(async (req, res) => {
    const url = new URL(req.url, 'http://x');
    const key = url.pathname + url.search;
    hits.set(key, (hits.get(key) || 0) + 1);
    log.push({ path: url.pathname, query: url.search, t: Date.now() });
    const headers = cors ? { 'Access-Control-Allow-Origin': '*' } : {};
    const send = (status, type, body) => {
      res.writeHead(status, { ...headers, 'Content-Type': type, 'Content-Length': body.length });
      res.end(body);
    };
    let m;
    if (url.pathname === '/ll/live.m3u8') {
      const msn = url.searchParams.get('_HLS_msn'), part = url.searchParams.get('_HLS_part');
      if (msn !== null) { // a blocking reload: hold until the playlist has it (3 × target)
        const M = Number(msn), J = part === null ? undefined : Number(part);
        if (!Number.isInteger(M) || (J !== undefined && !Number.isInteger(J))) return send(400, 'text/plain', 'bad directive');
        if (M > complete() + 2) return send(400, 'text/plain', 'msn too far ahead');
        if (!(await until(() => has(M, J), 3000 * target))) return send(503, 'text/plain', 'timeout');
      }
      return send(200, 'application/vnd.apple.mpegurl', Buffer.from(playlist()));
    }
    if ((m = /^\/ll\/seg(\d+)(?:\.(\d+))?\.ts$/.exec(url.pathname))) {
      const k = Number(m[1]), j = m[2] === undefined ? undefined : Number(m[2]);
      // a preload hint, or a part/segment just about to be published: wait a little
      if (!(await until(() => has(k, j === undefined ? P - 1 : j), 3000 * target))) return send(404, 'text/plain', 'gone');
      const files = j === undefined ? src.parts.slice(k * P, k * P + P) : [src.parts[k * P + j]];
      return send(200, 'video/mp2t', Buffer.concat(files.map((p) => fs.readFileSync(p.file))));
    }
    send(404, 'text/plain', 'not found');
  });
  const sockets = new Set();
  server.on('connection', (s) => { sockets.add(s); s.on('close', () => sockets.delete(s)); });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address();
  return {
    port, hits, log, target, base: `http://127.0.0.1:${port}`,
    close: () => new Promise((r) => { for (const s of sockets) s.destroy(); server.close(r); }),
  };
}
