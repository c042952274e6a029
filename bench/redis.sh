#!/usr/bin/env bash
# bench/redis.sh — the callout scenario (docs/callouts.md): req/s of a policy doing one
# Redis GET per request (hg.redis.call) against the same policy without it, on one
# hlsgate (2 workers) and a private redis-server, both on 127.0.0.1. The issue's goal: the
# Redis variant reaches at least half the req/s of the plain one. Also run by
# `bench/run.sh redis` (only this scenario) and at the end of `bench/run.sh`.
#
# The OpenResty peer is Debian's nginx with lua-nginx-module (libnginx-mod-http-lua,
# as bench/run.sh's), 2 workers, the same two routes: Debian 12 packages no
# lua-resty-redis (and third-party sources are not copied into this tree), so its GET is
# bench/peers/openresty/redis_get.lua, a cosocket with the keep-alive pool. Skipped when
# that module is not installed.
#
# Knobs: BENCH_DURATION (10), BENCH_WARMUP (2), BENCH_CONNS (32), BENCH_THREADS (1),
# BENCH_PORT_BASE (18400: uses BASE+8..BASE+10), BENCH_SKIP_BUILD=1.
# Needs: wrk, redis-server, curl, the build dependencies (scripts/install-deps.sh).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=$ROOT/build/release/hlsgate
DURATION=${BENCH_DURATION:-10}
WARMUP=${BENCH_WARMUP:-2}
CONNS=${BENCH_CONNS:-32}
THREADS=${BENCH_THREADS:-1}
BASE=${BENCH_PORT_BASE:-18400}
P_REDIS=$((BASE + 8))
P_HG=$((BASE + 9))
P_OR=$((BASE + 10))

log() { printf '[bench-redis %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "FAILED: $*"; exit 1; }
for c in wrk redis-server redis-cli curl; do command -v $c >/dev/null || die "$c is not installed"; done

PIDS=()
TMP=$(mktemp -d /tmp/hlsgate-bench-redis.XXXXXX)
cleanup() {
  local rc=$?
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  if ((rc)); then log "logs kept in $TMP"; else rm -rf "$TMP"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [[ "${BENCH_SKIP_BUILD:-0}" != 1 ]]; then
  log "building Release (build/release)"
  cmake -S "$ROOT" -B "$ROOT/build/release" -DCMAKE_BUILD_TYPE=Release >/dev/null
  cmake --build "$ROOT/build/release" -j2 --target hlsgate >/dev/null
fi
[[ -x $BIN ]] || die "$BIN missing"

log "starting redis-server on 127.0.0.1:$P_REDIS"
redis-server --port "$P_REDIS" --bind 127.0.0.1 --save '' --appendonly no >"$TMP/redis.log" 2>&1 &
PIDS+=("$!")
for _ in $(seq 100); do redis-cli -p "$P_REDIS" ping >/dev/null 2>&1 && break; sleep 0.1; done
redis-cli -p "$P_REDIS" set bench:key hello >/dev/null || die "redis-server did not start"

log "starting hlsgate (2 workers) on 127.0.0.1:$P_HG"
HLSGATE_REDIS_URL=redis://127.0.0.1:$P_REDIS "$BIN" --listen "127.0.0.1:$P_HG" --workers 2 \
  --policy "$ROOT/bench/policies/redis.lua" --drain-timeout 2 >/dev/null 2>"$TMP/hlsgate.err" &
PIDS+=("$!")
for _ in $(seq 100); do curl -sf -o /dev/null "http://127.0.0.1:$P_HG/healthz" && break; sleep 0.1; done
[[ $(curl -s "http://127.0.0.1:$P_HG/redis") == hello ]] || die "GET /redis did not answer hello"

OR=0
if command -v nginx >/dev/null && [[ -f /usr/lib/nginx/modules/ngx_http_lua_module.so ]]; then
  sed -e "s#@TMP@#$TMP#g" -e "s#@BENCH@#$ROOT/bench#g" -e "s#@PORT@#$P_OR#g" -e "s#@REDIS_PORT@#$P_REDIS#g" \
    "$ROOT/bench/peers/openresty/redis.conf.in" >"$TMP/openresty.conf"
  log "starting OpenResty (Debian nginx + lua) on 127.0.0.1:$P_OR"
  nginx -p "$TMP" -e "$TMP/openresty-error.log" -c "$TMP/openresty.conf" >/dev/null 2>&1 &
  PIDS+=("$!")
  for _ in $(seq 100); do curl -sf -o /dev/null "http://127.0.0.1:$P_OR/plain" && break; sleep 0.1; done
  [[ $(curl -s "http://127.0.0.1:$P_OR/redis") == hello ]] && OR=1 || log "OpenResty peer did not answer: skipped"
fi

rps() { # URL — req/s of a wrk run (after a warm-up); non-2xx answers fail the run
  local out=$TMP/wrk-$(echo "$1" | tr -c 'a-z0-9' _).txt
  wrk -t"$THREADS" -c"$CONNS" -d"$WARMUP"s "$1" >/dev/null
  wrk -t"$THREADS" -c"$CONNS" -d"$DURATION"s "$1" >"$out"
  ! grep -q 'Non-2xx' "$out" || die "non-2xx answers on $1: $(cat "$out")"
  awk '/^Requests\/sec/ {print $2}' "$out"
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a / b}'; }
PLAIN=$(rps "http://127.0.0.1:$P_HG/plain")
REDIS=$(rps "http://127.0.0.1:$P_HG/redis")
RATIO=$(ratio "$REDIS" "$PLAIN")
printf '\n| 2 workers, %d connections | plain req/s | one Redis GET per request, req/s | ratio (goal >= 0.5) |\n|---|---|---|---|\n' "$CONNS"
printf '| hlsgate (hg.redis.call) | %s | %s | %s |\n' "$PLAIN" "$REDIS" "$RATIO"
if ((OR)); then
  OPLAIN=$(rps "http://127.0.0.1:$P_OR/plain")
  OREDIS=$(rps "http://127.0.0.1:$P_OR/redis")
  printf '| OpenResty (Debian nginx + lua, cosocket GET) | %s | %s | %s |\n' "$OPLAIN" "$OREDIS" "$(ratio "$OREDIS" "$OPLAIN")"
  printf '| hlsgate / OpenResty | %s | %s | |\n' "$(ratio "$PLAIN" "$OPLAIN")" "$(ratio "$REDIS" "$OREDIS")"
else
  printf '| OpenResty | not run (no nginx lua module) | | |\n'
fi
awk -v r="$RATIO" 'BEGIN {exit !(r >= 0.5)}' || log "below the goal: ratio $RATIO"
