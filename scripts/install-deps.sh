#!/usr/bin/env bash
# install-deps.sh [run|test] — install the Debian 12 packages hlsgate needs (as root).
# `run` installs what building and running needs; `test` adds what the test suites need.
# Packages already present are not reinstalled, so this is fast on a prepared machine.
set -euo pipefail

# lua5.4 must be in the same apt line as lua-busted, or apt pulls lua5.2 for busted.
# node-llhttp (llhttp's C sources, compiled at build time) is installed for the tests
# only: it depends on Node.js. To build and run, its .deb is unpacked into var/llhttp
# instead (below), so the run command installs no Node.js.
run_pkgs=(build-essential cmake pkg-config ca-certificates liblua5.4-dev lua5.4 lua-cjson
          libuv1-dev libmbedtls-dev libnghttp2-dev zlib1g-dev libhiredis-dev curl openssl ffmpeg)
# The container suite (tests/container/run.sh) needs podman, runc and, for its base image,
# debootstrap; it installs them itself when missing, and they are listed here so that
# `install-deps.sh test` says everything the test command installs.
test_pkgs=(lua-busted redis-server clang clang-tidy libclang-rt-14-dev chromium openssl podman runc debootstrap)

want=("${run_pkgs[@]}")
if [ "${1:-run}" = test ]; then
  want+=("${test_pkgs[@]}")
  want+=(node-llhttp)
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

# llhttp's C sources without installing node-llhttp (and so Node.js): the Debian package,
# downloaded by apt and unpacked into var/llhttp (CMakeLists.txt looks there).
repo=$(cd "$(dirname "$0")/.." && pwd)
if [ ! -f /usr/share/llhttp/llhttp.c ] && [ ! -f "$repo/var/llhttp/usr/share/llhttp/llhttp.c" ]; then
  tmp=$(mktemp -d)
  chmod 755 "$tmp" # apt's download sandbox user must be able to write there
  if (cd "$tmp" && { apt-get download -qq node-llhttp >/dev/null 2>&1 ||
                      { apt-get update -qq && apt-get download -qq node-llhttp >/dev/null 2>&1; }; }) &&
     [ -f "$tmp"/node-llhttp_*.deb ]; then
    mkdir -p "$repo/var/llhttp" && dpkg-deb -x "$tmp"/node-llhttp_*.deb "$repo/var/llhttp"
    echo "install-deps: llhttp sources unpacked from node-llhttp into var/llhttp" >&2
  else
    echo "install-deps: could not download node-llhttp (apt-get update first?)" >&2
    rm -rf "$tmp"
    exit 1
  fi
  rm -rf "$tmp"
fi

# The /watch page's player: the pinned hls.js, integrity-checked (no Node.js needed).
"$(dirname "$0")/fetch-player.sh" || echo "install-deps: the /watch page will play natively only" >&2
