#!/usr/bin/env bash
# tests/container/run.sh — build the hlsgate image with podman and test it as an operator
# would use it (SPEC §3, §10, §12):
#
#   * base image debian:bookworm-slim made locally (debootstrap minbase + podman import),
#     cached under $HLSGATE_CONTAINER_CACHE (default /var/cache/hlsgate-test);
#   * `podman build --format docker` of the Dockerfile from the current tree;
#   * the container runs read-only, non-root, all capabilities dropped, with a mounted
#     directory of HLS made by ffmpeg and a mounted policy directory; ffmpeg plays the
#     stream through it (every segment of both renditions, zero failures);
#   * edit the policy + `podman kill --signal HUP` → the new policy answers; a broken
#     policy + HUP → the previous one keeps serving;
#   * the reload-on-change sidecar (deploy/reloader) in the gateway's PID namespace turns a
#     kubelet-style ConfigMap symlink swap into a reload;
#   * TLS (docs/tls.md): a second container with a certificate directory mounted and the
#     HLSGATE_TLS_* environment serves HTTPS with HTTP/2 (same bytes as plain HTTP), and a
#     certificate replaced in the directory + HUP is what new handshakes get;
#   * HEALTHCHECK healthy (`podman healthcheck run`), PID 1 reaps re-parented orphans;
#   * `podman stop` → exits 0 promptly (exit code from `podman inspect`).
#
# When this machine cannot run containers at all (podman missing and not installable,
# no user namespaces, no Debian mirror for the base image…) it prints a line starting
# with "CONTAINER TEST SKIPPED:" and the summary "container: 0 passed, 0 failed, 1 skipped",
# and exits 0. Otherwise it ends with "container: N passed, M failed" (non-zero on failure).
#
# Environment: HLSGATE_CONTAINER_CACHE, HLSGATE_IMAGE (tag to build, localhost/hlsgate:test),
# KEEP=1 keeps the containers and the temporary directory for a post-mortem.
set -uo pipefail
cd "$(dirname "$0")/../.."
repo=$PWD

cache=${HLSGATE_CONTAINER_CACHE:-/var/cache/hlsgate-test}
image=${HLSGATE_IMAGE:-localhost/hlsgate:test}
base=debian:bookworm-slim
export CONTAINERS_CONF=$repo/tests/container/containers.conf
start_ts=$SECONDS

pass=0 fail=0
say() { printf 'container: %s\n' "$*" >&2; }
ok() { pass=$((pass + 1)); printf 'ok   - %s\n' "$*"; }
not_ok() { fail=$((fail + 1)); printf 'FAIL - %s\n' "$*"; }
check() { # check "description" command... — one test
  local what=$1; shift
  if "$@"; then ok "$what"; else not_ok "$what"; fi
}
skip() {
  echo "CONTAINER TEST SKIPPED: $*"
  echo "container: 0 passed, 0 failed, 1 skipped"
  exit 0
}
summary() {
  say "finished in $((SECONDS - start_ts)) s"
  echo "container: $pass passed, $fail failed"
  [ "$fail" -eq 0 ]
  exit $?
}

# ---- 1. tools: podman + runc (+ debootstrap for a cold cache), ffmpeg, curl ----------------
need=()
command -v podman >/dev/null 2>&1 || need+=(podman)
command -v runc >/dev/null 2>&1 || need+=(runc)
command -v ffmpeg >/dev/null 2>&1 || need+=(ffmpeg)
command -v curl >/dev/null 2>&1 || need+=(curl)
if ! podman image exists "$base" 2>/dev/null && [ ! -f "$cache/rootfs-bookworm.tar" ]; then
  command -v debootstrap >/dev/null 2>&1 || need+=(debootstrap)
fi
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    skip "missing ${need[*]} and cannot install them (not root, or no apt-get)"
  fi
  say "installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # Others may be running apt on the same machine: wait for the lock instead of failing.
  if ! { apt-get -o DPkg::Lock::Timeout=300 update -qq &&
         apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends "${need[@]}"; } \
       > "${TMPDIR:-/tmp}/hlsgate-container-apt.log" 2>&1; then
    tail -5 "${TMPDIR:-/tmp}/hlsgate-container-apt.log"
    skip "could not install ${need[*]} with apt-get (log: ${TMPDIR:-/tmp}/hlsgate-container-apt.log)"
  fi
fi
command -v podman >/dev/null 2>&1 || skip "podman is not installed"

# ---- 2. the base image, made locally (there is no registry) and cached ------------------------
# debootstrap's minbase is close to the official slim image; it gets the slim image's dpkg
# excludes, apt cleanup and the bookworm, -updates and -security sources.
make_rootfs_tar() {
  local dir=$cache/rootfs.tmp
  rm -rf "$dir" && mkdir -p "$cache" || return 1
  say "debootstrap --variant=minbase bookworm (about a minute, once)"
  debootstrap --variant=minbase bookworm "$dir" http://deb.debian.org/debian \
    > "$cache/debootstrap.log" 2>&1 || { tail -5 "$cache/debootstrap.log"; return 1; }
  cat > "$dir/etc/dpkg/dpkg.cfg.d/docker-slim" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-exclude /usr/share/lintian/*
EOF
  cat > "$dir/etc/apt/apt.conf.d/docker-clean" <<'EOF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache ""; Dir::Cache::srcpkgcache "";
EOF
  rm -f "$dir/etc/apt/sources.list"
  cat > "$dir/etc/apt/sources.list.d/debian.sources" <<'EOF'
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
  rm -rf "$dir"/var/lib/apt/lists/* "$dir"/var/cache/apt/archives/*.deb "$dir"/var/cache/apt/*.bin \
         "$dir"/usr/share/doc/*/[!c]* "$dir"/usr/share/man/* "$dir"/usr/share/info/* \
         "$dir"/usr/share/locale/* "$dir"/var/log/*.log "$dir"/tmp/*
  tar --numeric-owner -C "$dir" -cf "$cache/rootfs-bookworm.tar.tmp" . &&
    mv "$cache/rootfs-bookworm.tar.tmp" "$cache/rootfs-bookworm.tar" && rm -rf "$dir"
}
if ! podman image exists "$base"; then
  if [ ! -f "$cache/rootfs-bookworm.tar" ]; then
    command -v debootstrap >/dev/null 2>&1 || skip "debootstrap is not installed"
    make_rootfs_tar || skip "debootstrap could not make a bookworm root: $(tail -1 "$cache/debootstrap.log" 2>/dev/null)"
  fi
  say "podman import $cache/rootfs-bookworm.tar as $base"
  podman import --change 'CMD ["bash"]' "$cache/rootfs-bookworm.tar" "$base" >/dev/null 2>"$cache/import.log" ||
    { cat "$cache/import.log"; skip "podman cannot import an image here"; }
fi

# Can this machine run a container at all? (namespaces, cgroups, the OCI runtime)
probe=$(podman run --rm --net=none "$base" echo container-ok 2>&1)
[ "$probe" = container-ok ] || skip "podman cannot run a container here: $(printf '%s' "$probe" | tail -2)"

# ---- 3. the image ---------------------------------------------------------------------------
tmp=$(mktemp -d "${TMPDIR:-/tmp}/hlsgate-container.XXXXXX")
gw=hlsgate-ct-$$ rl=hlsgate-ct-reloader-$$ gwt=hlsgate-ct-tls-$$
cleanup() {
  if [ "${KEEP:-0}" = 1 ]; then say "KEEP=1: containers $gw $rl and $tmp kept"; return; fi
  podman rm -f --ignore -t 0 "$rl" "$gw" "$gwt" >/dev/null 2>&1
  rm -rf "$tmp"
}
trap cleanup EXIT

say "podman build --format docker -t $image ."
t0=$SECONDS
built=0
# Outside CI the tree may be mid-edit by others: retry a failed build twice, a minute apart.
attempts=3; [ -n "${CI:-}" ] && attempts=1
for attempt in $(seq 1 $attempts); do
  # The builder stage is tagged too, so pruning old untagged images keeps its layers (the
  # apt-get layer above all) as a cache for the next run.
  if timeout 900 podman build --format docker --network host --target build -t "$image-build" . \
       > "$tmp/build.log" 2>&1 &&
     timeout 900 podman build --format docker --network host -t "$image" . >> "$tmp/build.log" 2>&1; then
    built=1; break
  fi
  [ "$attempt" -lt "$attempts" ] || break
  say "build failed (attempt $attempt); retrying in 60 s"
  sleep 60
done
if [ "$built" = 1 ]; then
  ok "image builds from the current tree ($((SECONDS - t0)) s)"
  podman image prune -f >/dev/null 2>&1 # earlier builds of this tag, now untagged
else
  # No mirror reachable from a container means this machine cannot build images at all.
  probe=$(timeout 120 podman run --rm "$base" bash -c 'apt-get update >/dev/null 2>&1 && echo apt-ok' 2>&1 | tail -1)
  [ "$probe" = apt-ok ] || skip "a container cannot reach the Debian mirror, so the image cannot be built: $probe"
  tail -30 "$tmp/build.log"
  not_ok "image builds from the current tree (log above)"
  summary
fi

cfg() { podman image inspect --format "$1" "$image" 2>/dev/null; }
check "image: non-root user" test "$(cfg '{{.Config.User}}')" = 10001:10001
check "image: HEALTHCHECK kept (docker format)" grep -q -- '--health' <<< "$(cfg '{{json .Config.Healthcheck}}')"
check "image: STOPSIGNAL SIGTERM" test "$(cfg '{{.Config.StopSignal}}')" = SIGTERM
check "image: ENTRYPOINT /usr/local/bin/hlsgate" test "$(cfg '{{json .Config.Entrypoint}}')" = '["/usr/local/bin/hlsgate"]'
check "image: HLSGATE_POLICY=/etc/hlsgate/policy.lua" grep -q 'HLSGATE_POLICY=/etc/hlsgate/policy.lua' <<< "$(cfg '{{json .Config.Env}}')"
shipped_check() {
  podman run --rm --net=none --no-healthcheck "$image" --check /etc/hlsgate/policy.lua \
    > "$tmp/check.log" 2>&1 || { cat "$tmp/check.log"; return 1; }
}
check "image: the shipped policy passes hlsgate --check" shipped_check
size=$(cfg '{{.Size}}')
say "image size: $((size / 1000000)) MB"

# ---- 4. media and policy ----------------------------------------------------------------------
media=$cache/media
if [ ! -f "$media/sample/master.m3u8" ]; then
  say "making sample HLS with ffmpeg"
  rm -rf "$media" && mkdir -p "$media/sample"
  (cd "$media/sample" && ffmpeg -hide_banner -loglevel error -y \
    -f lavfi -i "testsrc2=size=320x180:rate=25" -f lavfi -i "sine=frequency=440:sample_rate=48000" \
    -t 12 -filter_complex "[0:v]split=2[hi][lo0];[lo0]scale=160:90[lo]" \
    -map "[hi]" -map "[lo]" -map 1:a -map 1:a \
    -c:v libx264 -preset ultrafast -g 50 -keyint_min 50 -sc_threshold 0 \
    -b:v:0 300k -b:v:1 100k -c:a aac -b:a 64k -ac 2 \
    -f hls -hls_time 2 -hls_playlist_type vod -hls_segment_filename 'v%v/seg%03d.ts' \
    -master_pl_name master.m3u8 -var_stream_map "v:0,a:0 v:1,a:1" 'v%v/index.m3u8') ||
    { not_ok "ffmpeg makes sample HLS"; summary; }
  chmod -R a+rX "$media"
fi
nseg=$(find "$media/sample" -name '*.ts' | wc -l)

# The policy directory mounted at /etc/hlsgate. v1 is the shipped default policy.
pol=$tmp/policy
mkdir -p "$pol"
cp policies/policy.lua "$pol/policy.lua"
chmod -R a+rX "$tmp"
# A policy = the default one plus /policy-version answering $1.
versioned_policy() {
  cat <<EOF
local hg = require("hlsgate")
local util = require("hlsgate.util")
local private_bucket = require("hlsgate.private_bucket")
local open_proxy = require("hlsgate.open_proxy")
return { on_request = util.router({
  { prefix = "/stream/", handler = private_bucket.from_env() },
  { prefix = "/proxy", handler = open_proxy.from_env() },
  { prefix = "/policy-version", handler = function() return hg.response(200, "$1") end },
}) }
EOF
}

# ---- 5. run ---------------------------------------------------------------------------------
secret=$(head -c 24 /dev/urandom | base64)
# Health checks are run by hand (`podman healthcheck run`): podman's timer needs systemd.
if ! podman run -d --name "$gw" --read-only --cap-drop=ALL --security-opt no-new-privileges \
      --health-interval=disable -p 127.0.0.1::8080 \
      -e HLSGATE_JWT_SECRET="$secret" -e HLSGATE_WORKERS=2 \
      -v "$media:/srv/hlsgate:ro" -v "$pol:/etc/hlsgate:ro" \
      "$image" > "$tmp/run.log" 2>&1; then
  cat "$tmp/run.log"
  not_ok "container starts"
  summary
fi
port=$(podman port "$gw" 8080/tcp | sed -n 's/.*:\([0-9]*\)$/\1/p' | head -1)
base_url=http://127.0.0.1:$port
ready=0
for _ in $(seq 1 100); do
  [ "$(curl -s -o /dev/null -w '%{http_code}' "$base_url/readyz")" = 200 ] && { ready=1; break; }
  sleep 0.1
done
if [ "$ready" = 1 ]; then ok "container up: /readyz 200 on 127.0.0.1:$port"; else
  podman logs "$gw" 2>&1 | tail -20
  not_ok "container up: /readyz 200 on 127.0.0.1:$port"
  summary
fi
check "runs as uid 10001, PID 1 is hlsgate" \
  test "$(podman exec "$gw" bash -c 'echo "$(id -u) $(cat /proc/1/comm)"')" = "10001 hlsgate"

http_body() { curl -s --max-time 5 "$base_url$1"; }
http_code() { curl -s --max-time 5 -o /dev/null -w '%{http_code}' "$base_url$1"; }

# Real playback: ffmpeg reads every stream of both renditions through the gateway.
url=$(podman exec "$gw" hlsgate token --prefix sample --ttl 600 | sed -n 's/^url: *//p')
play() {
  ffmpeg -hide_banner -loglevel warning -nostdin -i "$base_url$url" -map 0 -c copy -f null - \
    > "$tmp/ffmpeg.log" 2>&1
  local rc=$?
  if [ $rc -ne 0 ] || grep -Eiq 'Failed to open segment|HTTP error|Server returned|Invalid data|error' \
       <(grep -vi 'non monotonically increasing dts' "$tmp/ffmpeg.log"); then
    sed 's/^/    ffmpeg: /' "$tmp/ffmpeg.log" | head -10
    return 1
  fi
}
segs_ok() { # every segment of both renditions fetched, each 200/206; no other status
  local got
  # (the access log is buffered and flushed every second: give it two)
  for _ in $(seq 1 20); do
    got=$(podman logs "$gw" 2>/dev/null |
          grep -o '"path":"/stream/hls/v[01]/seg[0-9]*\.ts[^"]*","status":20[06]' |
          sed 's/?.*//' | sort -u | wc -l)
    [ "$got" -eq "$1" ] && break
    sleep 0.1
  done
  [ "$got" -eq "$1" ] || { say "distinct segments served with 200/206: $got, expected $1"; return 1; }
  ! podman logs "$gw" 2>/dev/null | grep '"path":"/stream/hls/' | grep -Evq '"status":20[06]'
}
check "ffmpeg plays the stream through the container (0 failed segments)" play
check "all $nseg segments of both renditions served (200/206), no error status" segs_ok "$nseg"
check "default policy: no /policy-version (404)" test "$(http_code /policy-version)" = 404

# Edit the mounted policy in place, as an operator would, then HUP.
versioned_policy v2 > "$pol/policy.lua"
check "edited policy not live before HUP" test "$(http_code /policy-version)" = 404
podman kill --signal HUP "$gw" >/dev/null
reloaded() { # wait until /policy-version answers $1
  for _ in $(seq 1 50); do [ "$(http_body /policy-version)" = "$1" ] && return 0; sleep 0.1; done
  say "/policy-version answers '$(http_body /policy-version)', expected '$1'"; return 1
}
check "podman kill --signal HUP: the new policy answers" reloaded v2

printf 'return { on_request = function(req) return nil end\n' > "$pol/policy.lua" # syntax error
podman kill --signal HUP "$gw" >/dev/null
sleep 0.5
check "broken policy + HUP: the previous policy keeps serving" reloaded v2
check "broken policy + HUP: the failure is logged as file:line" \
  grep -q 'policy.lua:[0-9]*:' <(podman logs "$gw" 2>&1)
check "stream still plays after reloads" play

# The Kubernetes reload sidecar: kubelet-style ConfigMap layout (policy.lua -> ..data/
# policy.lua, ..data -> ..<timestamp>), swapped atomically; the sidecar sees it and HUPs.
kubelet_update() { # kubelet_update VERSION — write a new data dir and swap ..data to it
  local d="..$(date +%Y_%m_%d_%H_%M_%S).$1"
  mkdir "$pol/$d" && versioned_policy "$1" > "$pol/$d/policy.lua" && chmod -R a+rX "$pol/$d"
  ln -sfn "$d" "$pol/..data_tmp" && mv -T "$pol/..data_tmp" "$pol/..data"
}
kubelet_update v3
ln -sfn ..data/policy.lua "$pol/policy.lua_tmp" && mv -T "$pol/policy.lua_tmp" "$pol/policy.lua"
podman kill --signal HUP "$gw" >/dev/null
check "ConfigMap layout (symlinked policy.lua) loads on HUP" reloaded v3
if podman run -d --name "$rl" --pid "container:$gw" --read-only --cap-drop=ALL --no-healthcheck \
     --security-opt no-new-privileges --net=none -e HLSGATE_RELOAD_INTERVAL=1 \
     -v "$pol:/etc/hlsgate:ro" --entrypoint /usr/local/bin/hlsgate-reloader "$image" >/dev/null; then
  sleep 1.5 # let it take its first fingerprint
  pid_before=$(podman inspect -f '{{.State.Pid}}' "$gw")
  kubelet_update v4
  swapped() { for _ in $(seq 1 60); do [ "$(http_body /policy-version)" = v4 ] && return 0; sleep 0.1; done
              podman logs "$rl" 2>&1 | tail -5; return 1; }
  check "reloader sidecar: ConfigMap symlink swap → SIGHUP → new policy, no restart" swapped
  check "reloader sidecar: the gateway was not restarted (same PID)" \
    test "$(podman inspect -f '{{.State.Pid}}' "$gw")" = "$pid_before"
  podman rm -f -t 2 "$rl" >/dev/null 2>&1
else
  not_ok "reloader sidecar starts"
fi

# TLS: the certificate from a mounted directory (as a Kubernetes Secret volume would be).
tlsd=$tmp/tls
mkdir -p "$tlsd"
mkcert() { # mkcert NAME — a self-signed P-256 certificate for localhost in $tlsd/NAME.{crt,key}
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout "$tlsd/$1.key" \
    -out "$tlsd/$1.crt" -days 2 -subj /CN=localhost -addext subjectAltName=DNS:localhost 2>/dev/null
}
mkcert a && mkcert b && cp "$tlsd/a.crt" "$tlsd/tls.crt" && cp "$tlsd/a.key" "$tlsd/tls.key"
chmod -R a+rX "$tlsd"
if podman run -d --name "$gwt" --read-only --cap-drop=ALL --security-opt no-new-privileges \
     --health-interval=disable -p 127.0.0.1::8443 \
     -e HLSGATE_JWT_SECRET="$secret" -e HLSGATE_WORKERS=2 -e HLSGATE_TLS_LISTEN=0.0.0.0:8443 \
     -e HLSGATE_TLS_CERT=/etc/hlsgate-tls/tls.crt -e HLSGATE_TLS_KEY=/etc/hlsgate-tls/tls.key \
     -v "$media:/srv/hlsgate:ro" -v "$tlsd:/etc/hlsgate-tls:ro" "$image" > "$tmp/run-tls.log" 2>&1; then
  tport=$(podman port "$gwt" 8443/tcp | sed -n 's/.*:\([0-9]*\)$/\1/p' | head -1)
  turl() { curl -s --max-time 5 --http2 --cacert "$tlsd/$1.crt" --resolve "localhost:$tport:127.0.0.1" \
             -w '%{http_version}' -o "$tmp/tls-body" "https://localhost:$tport$2"; }
  tls_up() { for _ in $(seq 1 100); do [ "$(turl a /readyz)" = 2 ] && return 0; sleep 0.1; done
             podman logs "$gwt" 2>&1 | tail -5; return 1; }
  check "TLS container: HTTPS with HTTP/2 on 8443 (certificate from a mounted directory)" tls_up
  seg=$(sed -n 's#^url: */stream/hls/master.m3u8#/stream/hls/v0/seg000.ts#p' <<< \
        "$(podman exec "$gw" hlsgate token --prefix sample --ttl 600)")
  tls_same() { [ "$(turl a "$seg")" = 2 ] && cmp -s "$tmp/tls-body" "$media/sample/v0/seg000.ts"; }
  check "TLS container: a segment over HTTP/2 is the file's bytes" tls_same
  fp() { openssl s_client -connect "127.0.0.1:$tport" -servername localhost </dev/null 2>/dev/null |
         openssl x509 -noout -fingerprint -sha256; }
  want=$(openssl x509 -in "$tlsd/b.crt" -noout -fingerprint -sha256)
  cp "$tlsd/b.crt" "$tlsd/tls.crt" && cp "$tlsd/b.key" "$tlsd/tls.key" && chmod a+r "$tlsd"/tls.*
  podman kill --signal HUP "$gwt" >/dev/null
  swapped_cert() { for _ in $(seq 1 50); do [ "$(fp)" = "$want" ] && return 0; sleep 0.1; done; return 1; }
  check "TLS container: certificate replaced + HUP → new handshakes get it" swapped_cert
  podman rm -f -t 2 "$gwt" >/dev/null 2>&1
else
  cat "$tmp/run-tls.log"
  not_ok "TLS container starts"
fi

# Health check, as the runtime runs it (HEALTHCHECK CMD via exec).
health() { local out; out=$(podman healthcheck run "$gw" 2>&1); local rc=$?
           [ $rc -eq 0 ] || say "healthcheck: rc=$rc $out"; [ $rc -eq 0 ]; }
check "podman healthcheck run: healthy" health
check "HEALTHCHECK command fails when nothing listens on its port" \
  bash -c '! podman exec -e HLSGATE_LISTEN=127.0.0.1:1 "$1" /usr/local/bin/hlsgate --health 2>/dev/null' _ "$gw"

# PID 1 duties: an orphan re-parented to PID 1 (a grandchild of `podman exec`) must be reaped.
podman exec "$gw" bash -c '(sleep 0.2 &) ; true'
sleep 1
zombies() { podman exec "$gw" bash -c 'n=0; for s in /proc/[0-9]*/stat; do read -r l < "$s" 2>/dev/null || continue; r=${l##*) }; [ "${r%% *}" = Z ] && n=$((n+1)); done; echo $n'; }
check "PID 1 reaps re-parented orphans (no zombies)" test "$(zombies)" = 0

# Stop: SIGTERM drains and exits 0, promptly.
t0=$(date +%s%N)
podman stop -t 30 "$gw" >/dev/null 2>&1
ms=$((($(date +%s%N) - t0) / 1000000))
code=$(podman inspect -f '{{.State.ExitCode}}' "$gw")
check "podman stop: exit code 0 (got $code)" test "$code" = 0
check "podman stop: stopped promptly (${ms} ms < 5000)" test "$ms" -lt 5000
check "podman stop: the gateway logged its drain and stop" \
  bash -c "podman logs '$gw' 2>&1 | grep -q SIGTERM && podman logs '$gw' 2>&1 | grep -q stopped"

summary
