#!/usr/bin/env bash
# run-long.sh BUILD_DIR [SECONDS] [OUT_DIR] — the long fuzz run (docs/security.md): every
# built fuzz_* target at once, each for SECONDS (default 1800), at the lowest CPU priority,
# on its seed corpus plus what earlier long runs found (OUT_DIR/corpus/<target>, kept).
# Crashes land in OUT_DIR/artifacts/<target>/; each target's libFuzzer log (final stats:
# runs, exec/s, coverage, corpus size, peak RSS) in OUT_DIR/<target>.log. Exit status: 0
# when no target found anything. Build first:
#   CC=clang cmake -S . -B build/fuzz -DHG_FUZZ=ON && cmake --build build/fuzz --target fuzzers
set -uo pipefail
build=$1 secs=${2:-1800} out=${3:-tests/.tmp/fuzz-long}
root=$(cd "$(dirname "$0")/../.." && pwd)
mkdir -p "$out"
pids=() names=()
for bin in "$build"/tests/fuzz/fuzz_*; do
  [ -x "$bin" ] || continue
  name=$(basename "$bin")
  mkdir -p "$out/corpus/$name" "$out/artifacts/$name"
  seeds=()
  [ -d "$root/tests/fuzz/corpus/$name" ] && seeds+=("$root/tests/fuzz/corpus/$name")
  case $name in *rewrite*|*hls*) seeds+=("$root/tests/data/conformance/playlists") ;; esac
  nice -n 19 "$bin" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix="$out/artifacts/$name/" "$out/corpus/$name" "${seeds[@]}" >"$out/$name.log" 2>&1 &
  pids+=($!) names+=("$name")
done
[ ${#pids[@]} -gt 0 ] || { echo "fuzz-long: no fuzz target in $build"; exit 1; }
fail=0
for i in "${!pids[@]}"; do
  if wait "${pids[$i]}"; then status=ok; else status=FAILED; fail=$((fail + 1)); fi
  runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$out/${names[$i]}.log" | grep -o '[0-9]*$')
  cov=$(grep -o 'cov: [0-9]*' "$out/${names[$i]}.log" | tail -1)
  echo "fuzz-long: ${names[$i]} $status — ${runs:-?} runs in $secs s, ${cov:-cov: ?}, corpus $(ls "$out/corpus/${names[$i]}" | wc -l)"
done
echo "fuzz-long: $((${#pids[@]} - fail)) passed, $fail failed"
[ "$fail" -eq 0 ]
