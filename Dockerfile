# hlsgate container image — multi-stage on debian:bookworm-slim.
#
#   podman build --format docker -t hlsgate .      (or: docker build -t hlsgate .)
#   podman run -p 8080:8080 -e HLSGATE_JWT_SECRET=… hlsgate
#
# `--format docker` matters with podman/buildah: the OCI image format has no HEALTHCHECK,
# so podman drops it unless the image is written in Docker format. See docs/container.md.

# ---- builder: compile a Release binary and install it (plus lua/) under /usr/local ----
FROM debian:bookworm-slim AS build
ARG DEBIAN_FRONTEND=noninteractive
# lua5.4 in the same line as the Lua packages, so nothing pulls another Lua in (SPEC §12).
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      build-essential cmake pkg-config ca-certificates \
      liblua5.4-dev lua5.4 lua-cjson libuv1-dev node-llhttp libmbedtls-dev libnghttp2-dev zlib1g-dev \
      libhiredis-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# The whole tree (minus .dockerignore): CMakeLists.txt also configures tests/unit and bench.
COPY . .
RUN cmake -S . -B /tmp/build -DCMAKE_BUILD_TYPE=Release -DCMAKE_INSTALL_PREFIX=/usr/local \
 && cmake --build /tmp/build -j"$(nproc)" --target hlsgate \
 && cmake --install /tmp/build --strip \
 && /usr/local/bin/hlsgate --version

# ---- runtime: shared libraries only, non-root ----
FROM debian:bookworm-slim
ARG DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      libuv1 liblua5.4-0 libmbedtls14 libmbedx509-1 libmbedcrypto7 libnghttp2-14 lua-cjson zlib1g \
      libhiredis0.14 \
      ca-certificates \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin \
 && groupadd --system --gid 10001 hlsgate \
 && useradd --system --uid 10001 --gid 10001 --home-dir /nonexistent --no-create-home \
      --shell /usr/sbin/nologin hlsgate \
 && mkdir -p /etc/hlsgate /srv/hlsgate

COPY --from=build /usr/local/bin/hlsgate /usr/local/bin/hlsgate
COPY --from=build /usr/local/share/hlsgate /usr/local/share/hlsgate
# The default policy; mount a file or a directory (e.g. a ConfigMap) over it to change it,
# then `kill -s HUP` the container to reload.
COPY policies/policy.lua /etc/hlsgate/policy.lua
# The reload-on-change sidecar of deploy/kubernetes (run this same image with it as the
# command); it uses bash and coreutils only.
COPY deploy/reloader/hlsgate-reloader /usr/local/bin/hlsgate-reloader

# HLSGATE_DEMO_DIR: where the default policy serves /stream/hls/ from when no S3 bucket is
# configured (mount local HLS content here). Every other SPEC §9 variable is read at run time.
ENV HLSGATE_POLICY=/etc/hlsgate/policy.lua \
    HLSGATE_LISTEN=0.0.0.0:8080 \
    HLSGATE_DEMO_DIR=/srv/hlsgate

# Numeric, so Kubernetes' runAsNonRoot can verify it without /etc/passwd.
USER 10001:10001
WORKDIR /srv/hlsgate
# 8443: the TLS listener when HLSGATE_TLS_LISTEN (and a certificate) is given (docs/tls.md).
EXPOSE 8080 8443

# Health: `hlsgate --health` GETs /healthz on the admin listener, or on the first address
# of HLSGATE_LISTEN / --listen (reached on loopback when it is a wildcard), with a 2 s
# deadline: no shell, no curl, and it follows the listen port by itself.
HEALTHCHECK --interval=15s --timeout=3s --start-period=5s --retries=3 \
  CMD ["/usr/local/bin/hlsgate", "--health"]

# SIGTERM drains in-flight requests (up to --drain-timeout, default 30 s) and exits 0; give
# the runtime's stop timeout at least that much (podman stop -t, terminationGracePeriodSeconds).
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/hlsgate"]
