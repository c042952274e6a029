#!/usr/bin/env bash
# check-layers.sh — fails on any #include in src/ that points up a layer (or sideways to a
# folder the layer may not use). The table is docs/architecture.md's, and CMakeLists.txt
# links each folder's library against exactly these.
set -euo pipefail
cd "$(dirname "$0")/../src"

declare -A may=(
  [base]="base"
  [crypto]="base crypto"
  [url]="base url"
  [hls]="base url hls"
  [store]="base store"
  [http]="base url http"
  [upstream]="base url upstream"
  [lua]="base crypto url hls store http lua"
  [gateway]="base crypto url hls store http upstream lua gateway"
)

bad=0 files=0
for dir in */; do
  dir=${dir%/}
  if [ -z "${may[$dir]+x}" ]; then
    echo "check-layers: src/$dir/ is in no layer (add it to scripts/check-layers.sh and docs/architecture.md)"
    bad=$((bad + 1)); continue
  fi
  for f in "$dir"/*.[ch]; do
    [ -e "$f" ] || continue
    files=$((files + 1))
    while IFS=: read -r line inc; do
      target=${inc#*\"}; target=${target%%/*}
      case " ${may[$dir]} " in
        *" $target "*) ;;
        *) echo "src/$f:$line: includes \"${inc#*\"} — layer $dir may use only: ${may[$dir]}"; bad=$((bad + 1)) ;;
      esac
    done < <(grep -n '^#include "[a-z_]*/' "$f" | sed 's/^\([0-9]*\):#include /\1:/')
  done
done
echo "check-layers: $files files, $bad violations"
[ "$bad" -eq 0 ]
