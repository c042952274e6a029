// media.mjs — real HLS test media made with ffmpeg, and ffmpeg as a real player.
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

/**
 * Writes a two-rendition H.264/AAC HLS stream into `dir`: master.m3u8, v0/ and v1/
 * (index.m3u8 + segments). flavor 'ts' (MPEG-TS segments) or 'fmp4' (init.mp4 + .m4s);
 * `encrypt` adds AES-128 with the key at v<N>/enc.key. Returns the list of files.
 */
export function makeHls(dir, { flavor = 'ts', encrypt = false, seconds = 12, segment = 2 } = {}) {
  fs.mkdirSync(dir, { recursive: true });
  const args = ['-hide_banner', '-loglevel', 'error', '-y',
    '-f', 'lavfi', '-i', 'testsrc2=size=320x180:rate=25',
    '-f', 'lavfi', '-i', 'sine=frequency=440:sample_rate=48000',
    '-t', String(seconds),
    '-filter_complex', '[0:v]split=2[hi][lo0];[lo0]scale=160:90[lo]',
    '-map', '[hi]', '-map', '[lo]', '-map', '1:a', '-map', '1:a',
    '-c:v', 'libx264', '-preset', 'ultrafast', '-g', String(25 * segment),
    '-keyint_min', String(25 * segment), '-sc_threshold', '0',
    '-b:v:0', '300k', '-b:v:1', '100k', '-c:a', 'aac', '-b:a', '64k', '-ac', '2',
    '-f', 'hls', '-hls_time', String(segment), '-hls_playlist_type', 'vod',
    '-master_pl_name', 'master.m3u8', '-var_stream_map', 'v:0,a:0 v:1,a:1'];
  if (flavor === 'fmp4') {
    args.push('-hls_segment_type', 'fmp4', '-hls_fmp4_init_filename', 'init.mp4',
              '-hls_segment_filename', 'v%v/seg%03d.m4s');
  } else {
    args.push('-hls_segment_filename', 'v%v/seg%03d.ts');
  }
  if (encrypt) {
    // One key for both renditions; the playlist names it relatively ("../enc.key" from
    // a variant directory), so the gateway must resolve and rewrite it.
    const key = Buffer.from('00112233445566778899aabbccddeeff', 'hex');
    fs.writeFileSync(path.join(dir, 'enc.key'), key);
    fs.writeFileSync(path.join(dir, 'keyinfo'), `../enc.key\n${path.join(dir, 'enc.key')}\n`);
    args.push('-hls_key_info_file', path.join(dir, 'keyinfo'));
  }
  args.push('v%v/index.m3u8');
  const r = spawnSync('ffmpeg', args, { cwd: dir, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`ffmpeg failed: ${r.stderr}`);
  if (encrypt) fs.rmSync(path.join(dir, 'keyinfo'));
  return listFiles(dir);
}

export function listFiles(dir, base = dir) {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? listFiles(path.join(dir, e.name), base)
                    : [path.relative(base, path.join(dir, e.name))]);
}

/**
 * Plays `url` to the end with ffmpeg (every stream copied to a null muxer). ffmpeg
 * exits 0 even when a segment fails, so its log is scanned for failures too.
 * Asynchronous on purpose: origins served by this test process must keep running.
 */
export function ffplay(url, { timeout = 60000 } = {}) {
  return new Promise((resolve) => {
    const p = spawn('ffmpeg', ['-hide_banner', '-loglevel', 'warning', '-i', url,
                               '-map', '0', '-c', 'copy', '-f', 'null', '-'],
                    { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    p.stderr.setEncoding('utf8');
    p.stderr.on('data', (d) => { stderr += d; });
    const timer = setTimeout(() => p.kill('SIGKILL'), timeout);
    p.on('close', (status) => {
      clearTimeout(timer);
      const failures = stderr.split('\n').filter((l) =>
        /Failed to open segment|HTTP error|Server returned|Invalid data|Error|error/i.test(l) &&
        !/non monotonically increasing dts/i.test(l));
      resolve({ status, stderr, failures });
    });
  });
}
