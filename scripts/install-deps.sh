#!/usr/bin/env bash
# install-deps.sh [run|test] — install the Debian 12 packages hlsgate needs (as root).
# `run` installs what building and running needs; `test` adds what the test suites need.
# Packages already present are not reinstalled, so this is fast on a prepared machine.
set -euo pipefail

# lua5.4 must be in the same apt line as lua-busted, or apt pulls lua5.2 for busted.
run_pkgs=(build-essential cmake pkg-config ca-certificates liblua5.4-dev lua5.4 lua-cjson
          libuv1-dev node-llhttp libmbedtls-dev zlib1g-dev curl openssl ffmpeg)
# The container suite (tests/container/run.sh) needs podman, runc and, for its base image,
# debootstrap; it installs them itself when missing, and they are listed here so that
# `install-deps.sh test` says everything the test command installs.
test_pkgs=(lua-busted clang clang-tidy libclang-rt-14-dev chromium openssl podman runc debootstrap)

want=("${run_pkgs[@]}")
if [ "${1:-run}" = test ]; then
  want+=("${test_pkgs[@]}")
  # Node.js runs the e2e suites only; running the gateway never needs it.
  command -v node >/dev/null 2>&1 || want+=(nodejs)
  command -v npm >/dev/null 2>&1 || want+=(npm)
fi

missing=()
for p in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "install-deps: missing packages: ${missing[*]} (run as root, or install them)" >&2
    exit 1
  fi
  echo "install-deps: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" lua5.4 >/dev/null
fi

# The /watch page's player: the pinned hls.js, integrity-checked (no Node.js needed).
"$(dirname "$0")/fetch-player.sh" || echo "install-deps: the /watch page will play natively only" >&2
