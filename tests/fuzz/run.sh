#!/usr/bin/env bash
# run.sh BUILD_DIR SECONDS — run every built fuzz_* target for SECONDS on its corpus.
# Seeds: tests/fuzz/corpus/<target>/ if present; the rewriter also gets the shared
# playlist corpus. New inputs go to a scratch dir so the repository stays clean.
set -uo pipefail
build=$1 secs=$2
root=$(cd "$(dirname "$0")/../.." && pwd)
pass=0 fail=0
for bin in "$build"/tests/fuzz/fuzz_*; do
  [ -x "$bin" ] || continue
  name=$(basename "$bin")
  scratch=$(mktemp -d)
  seeds=()
  [ -d "$root/tests/fuzz/corpus/$name" ] && seeds+=("$root/tests/fuzz/corpus/$name")
  case $name in *rewrite*|*hls*) seeds+=("$root/tests/data/conformance/playlists") ;; esac
  mkdir -p "$scratch/corpus" "$scratch/artifacts"
  if "$bin" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=0 \
       -artifact_prefix="$scratch/artifacts/" "$scratch/corpus" "${seeds[@]}" >"$scratch.log" 2>&1; then
    pass=$((pass + 1)); echo "fuzz: $name ok ($secs s)"
  else
    fail=$((fail + 1)); echo "fuzz: $name FAILED"; tail -40 "$scratch.log"
    for a in "$scratch"/artifacts/*; do
      [ -f "$a" ] && { echo "reproducer $(basename "$a") (base64):"; base64 -w0 "$a"; echo; }
    done
  fi
  rm -rf "$scratch" "$scratch.log"
done
echo "fuzz: $pass passed, $fail failed"
# No target at all is a broken build (wrong directory, fuzzers not built), not a pass.
if [ $((pass + fail)) -eq 0 ]; then
  echo "fuzz: no fuzz_* target in $build/tests/fuzz (build them: cmake --build $build --target fuzzers)" >&2
  exit 1
fi
[ "$fail" -eq 0 ]
