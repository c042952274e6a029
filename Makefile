# hlsgate — convenience targets over CMake.
#   make run    install runtime deps, build (release), start the gateway on the default policy
#   make test   install test deps, build with ASan+UBSan, check the layers, run clang-tidy,
#               ctest, busted, the e2e suite, the container suite (podman), the fuzzers briefly
#   make build  release build only (build/release/hlsgate)
#   make install  the release build into PREFIX (default /usr/local): binary, Lua library,
#               policies, docs, systemd unit (docs/install.md)
SHELL := /bin/bash
JOBS ?= $(shell nproc)
ASAN_PRELOAD = $(shell gcc -print-file-name=libasan.so):$(shell gcc -print-file-name=libubsan.so)

.PHONY: run build install deps deps-test build-asan test test-unit test-lua test-e2e test-container fuzz tidy clean
PREFIX ?= /usr/local

deps:
	@scripts/install-deps.sh run

deps-test:
	@scripts/install-deps.sh test
	@cd tests && npm ci --silent --no-audit --no-fund
	@cd tests/container && npm ci --silent --no-audit --no-fund

build: deps
	@cmake -S . -B build/release -DCMAKE_BUILD_TYPE=Release >/dev/null
	@cmake --build build/release -j$(JOBS)

install: build
	@cmake --install build/release --prefix $(PREFIX)

run: build
	@scripts/run-demo.sh

build-asan: deps-test
	@cmake -S . -B build -DCMAKE_BUILD_TYPE=Debug -DHG_SANITIZE=ON >/dev/null
	@cmake --build build -j$(JOBS)

# Runs every suite even when one fails, then fails if any did; each runner prints its
# own summary line last.
test: build-asan
	@rc=0; \
	scripts/check-layers.sh || rc=1; \
	$(MAKE) --no-print-directory tidy || rc=1; \
	$(MAKE) --no-print-directory test-unit || rc=1; \
	$(MAKE) --no-print-directory test-lua || rc=1; \
	$(MAKE) --no-print-directory test-e2e || rc=1; \
	$(MAKE) --no-print-directory test-container || rc=1; \
	$(MAKE) --no-print-directory fuzz || rc=1; \
	exit $$rc

test-unit:
	@cd build && ctest --output-on-failure -j$(JOBS)

test-lua:
	@LD_PRELOAD=$(ASAN_PRELOAD) ASAN_OPTIONS=detect_leaks=0 busted

test-e2e:
	@HLSGATE_BIN=$(CURDIR)/build/hlsgate node --test --test-concurrency=1 tests/e2e/

# clang-tidy (clang-analyzer-*, bugprone-*; .clang-tidy), warnings as errors.
tidy:
	@scripts/tidy.sh build/tidy

# The Kubernetes manifests against the schemas, then the image built and run with podman
# (it says loudly when this machine cannot run containers).
test-container:
	@node --test tests/container/
	@tests/container/run.sh

# Builds the libFuzzer targets with clang and runs each briefly (FUZZ_SECONDS) on its
# seed corpus (tests/fuzz/corpus/<target>/, plus the shared playlists for the rewriter).
FUZZ_SECONDS ?= 20
fuzz: deps-test
	@CC=clang cmake -S . -B build/fuzz -DCMAKE_BUILD_TYPE=Debug -DHG_FUZZ=ON >/dev/null
	@cmake --build build/fuzz -j$(JOBS) --target fuzzers >/dev/null
	@tests/fuzz/run.sh build/fuzz $(FUZZ_SECONDS)

clean:
	rm -rf build
