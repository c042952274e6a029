#!/usr/bin/env bash
# run-demo.sh — start hlsgate on the default policy with sample video (the README's first
# command ends here). Generates a two-rendition H.264/AAC HLS sample with ffmpeg into
# $HLSGATE_DEMO_DIR/sample (once), mints a token for it and prints a playable URL.
# Configure with the usual environment variables; S3_BUCKET switches to a real bucket;
# HLSGATE_DEMO_SECONDS sets the sample's length (default 60).
set -euo pipefail
cd "$(dirname "$0")/.."

bin=${HLSGATE_BIN:-build/release/hlsgate}
export HLSGATE_DEMO_DIR=${HLSGATE_DEMO_DIR:-$PWD/var/demo}
# Security: loopback unless told otherwise; the demo's open proxy needs no key, so on any
# other interface it would relay for anyone on the network (set HLSGATE_LISTEN to expose).
export HLSGATE_LISTEN=${HLSGATE_LISTEN:-127.0.0.1:8080}
sample=$HLSGATE_DEMO_DIR/sample
seconds=${HLSGATE_DEMO_SECONDS:-60}

if [ ! -f "$sample/master.m3u8" ]; then
  echo "run-demo: generating $seconds s of sample HLS in $sample…" >&2
  mkdir -p "$sample"
  (cd "$sample" && ffmpeg -hide_banner -loglevel error -y \
    -f lavfi -i "testsrc2=size=1280x720:rate=25" -f lavfi -i "sine=frequency=440:sample_rate=48000" \
    -t "$seconds" -filter_complex "[0:v]split=2[hi][lo0];[lo0]scale=640:360[lo]" \
    -map "[hi]" -map "[lo]" -map 1:a -map 1:a \
    -c:v libx264 -preset veryfast -profile:v main -g 50 -keyint_min 50 -sc_threshold 0 \
    -b:v:0 2500k -b:v:1 800k -c:a aac -b:a 96k -ac 2 \
    -f hls -hls_time 4 -hls_playlist_type vod -hls_segment_filename 'v%v/seg%03d.ts' \
    -master_pl_name master.m3u8 -var_stream_map "v:0,a:0 v:1,a:1" 'v%v/index.m3u8')
fi

# A secret for this demo, kept so tokens survive restarts.
if [ -z "${HLSGATE_JWT_SECRET:-}" ]; then
  [ -f "$HLSGATE_DEMO_DIR/secret" ] || head -c 32 /dev/urandom | base64 > "$HLSGATE_DEMO_DIR/secret"
  HLSGATE_JWT_SECRET=$(cat "$HLSGATE_DEMO_DIR/secret")
  export HLSGATE_JWT_SECRET
fi

port=${HLSGATE_LISTEN##*:}
host=
case ${HLSGATE_LISTEN%:*} in
  127.*|\[::1\]|::1) ;; # loopback only: no LAN URL to show
  *) host=$(hostname -I 2>/dev/null | awk '{print $1}') ;;
esac
url=$("$bin" token --prefix sample --ttl "${HLSGATE_TOKEN_TTL:-86400}" | sed -n 's/^url: *//p')
# `exec` below keeps this PID: it is the gateway's, the one HUP and TERM go to.
cat >&2 <<MSG

hlsgate demo — watch it in a browser:

    http://127.0.0.1:$port/watch#$url

or play this URL in ffplay, VLC, Safari or any hls.js player:

    http://127.0.0.1:$port$url
${host:+    http://$host:$port$url
}
  open CORS proxy: http://127.0.0.1:$port/proxy?url=<absolute m3u8 URL>
  reload the policy: kill -HUP $$      stop: Ctrl-C (or kill $$)
  listening on $HLSGATE_LISTEN${host:+ (reachable from the network)}${host:- (this machine only)}; to serve other machines:
    HLSGATE_LISTEN=0.0.0.0:$port HLSGATE_PROXY_SIGN_KEY=\$(head -c 32 /dev/urandom | base64) make run

MSG
exec "$bin" --policy "${HLSGATE_POLICY:-policies/policy.lua}"
