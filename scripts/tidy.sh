#!/usr/bin/env bash
# tidy.sh [BUILD_DIR] — clang-tidy (.clang-tidy: clang-analyzer-*, bugprone-*) over every C
# file of src/, warnings as errors, with BUILD_DIR's compile_commands.json (configured
# here). Prints "tidy: N passed, M failed" last.
set -uo pipefail
cd "$(dirname "$0")/.."
build=${1:-build/tidy}
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Debug -DCMAKE_EXPORT_COMPILE_COMMANDS=ON >/dev/null || exit 1
log=$(mktemp)
trap 'rm -f "$log"' EXIT
files=(src/*/*.c src/main.c)
pass=0 fail=0
for f in "${files[@]}"; do echo "$f"; done |
  xargs -P "$(nproc)" -I{} sh -c 'clang-tidy -p "$0" --quiet "$1" >"$2.$(echo "$1" | tr / _)" 2>&1; echo "$? $1" >>"$2.rc"' "$build" {} "$log"
while read -r rc f; do
  if [ "$rc" = 0 ]; then pass=$((pass + 1)); else
    fail=$((fail + 1)); grep -E "(warning|error):" "$log.$(echo "$f" | tr / _)" | sed 's#^.*/src/#src/#'
  fi
done < "$log.rc"
rm -f "$log".*
echo "tidy: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
