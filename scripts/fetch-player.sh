#!/usr/bin/env bash
# fetch-player.sh [DIR] — put the pinned hls.js (www/hls.js.pin: version and sha512
# integrity, the same as tests/package-lock.json) at DIR/hls.min.js (default www/), for the
# /watch page. Run by install-deps.sh; needs no Node.js: the tarball comes from the npm
# registry with curl (npm's own configured registry when npm is installed, or
# $HLSGATE_NPM_REGISTRY) and is checked against the pinned integrity before anything is
# unpacked. Without it /watch still plays where the browser plays HLS natively (Safari).
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:-www}
read -r name version integrity < www/hls.js.pin
out=$dir/hls.min.js
stamp=$dir/.hls.min.js.version
if [ -f "$out" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$version $integrity" ]; then exit 0; fi

registry=${HLSGATE_NPM_REGISTRY:-${npm_config_registry:-}}
if [ -z "$registry" ] && command -v npm >/dev/null 2>&1; then registry=$(npm config get registry 2>/dev/null || true); fi
registry=${registry:-https://registry.npmjs.org/}
registry=${registry%/}

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
if ! curl -fsSL --retry 2 --max-time 60 -o "$tmp/pkg.tgz" "$registry/$name/-/$name-$version.tgz"; then
  echo "fetch-player: could not download $name $version; /watch will play natively only (Safari)" >&2
  exit 0
fi
# Security: the bytes must be exactly the pinned release (sha512, as npm's lockfile says).
got="sha512-$(openssl dgst -sha512 -binary "$tmp/pkg.tgz" | base64 -w0)"
if [ "$got" != "$integrity" ]; then
  echo "fetch-player: $name-$version.tgz does not match the pinned integrity ($got); not installed" >&2
  exit 1
fi
tar -xzf "$tmp/pkg.tgz" -C "$tmp" package/dist/hls.min.js
mkdir -p "$dir"
install -m 0644 "$tmp/package/dist/hls.min.js" "$out"
echo "$version $integrity" > "$stamp"
echo "fetch-player: $name $version installed at $out" >&2
