# SPDX-License-Identifier: MIT
# The README's commands. Everything real lives in CMake; this file only chains
# "install what is missing -> configure -> build -> run/test".
#   make run       install deps, build, start `wsgate standalone` with examples/standalone.yaml
#   make install   build, then install under PREFIX (default /usr/local) into DESTDIR: the
#                  binary, libwsgate, wsgate.1, SYSCONFDIR/wsgate/wsgate.yaml, wsgate.service
#   make test      install deps, check formatting, build with -Werror, run every ctest
#                  (unit, integration, e2e, selftest, fuzz replay) but the long fault
#                  tests (label "long"), then `make sanitize`.
#   make test-faults  build, run the hard-fault tests of a cluster (label "faults":
#                  kill -9 / SIGSTOP of nats-server, PostgreSQL, an API, an edge cut off
#                  from NATS by a network namespace: root, nftables; docs/testing.md)
#                  This is what CI runs (.ci/run).
#   make sanitize  build $(BUILD)-asan with ASan+UBSan and run every ctest again there:
#                  the e2e and integration gateways are that binary, and any sanitizer
#                  report, crash or unexpected exit fails the run (docs/testing.md)
#   make bench     run the benchmark suite (bench/README.md)
#   make reliability  build (release and ASan/UBSan), run tests/reliability, write
#                  docs/reliability.md; non-zero if any case fails (docs/testing.md)
#   make image     build the container images with podman from Debian packages, no registry
#                  (scripts/image.sh; deploy/docker/, deploy/helm/wsgate/README.md)
#   make fuzz      build the libFuzzer targets with clang ($(BUILD)-fuzz) and run each for
#                  FUZZ_SECONDS (default 60); any finding fails it (docs/testing.md)
# After each ctest run, a test that was skipped fails `make test` unless
# tests/skip-allowlist.txt names it with a reason (tests/check_skips.py).
BUILD ?= build
JOBS ?= $(shell nproc)
CONFIG ?= examples/standalone.yaml
FUZZ_SECONDS ?= 60

.PHONY: all deps build run install test test-faults unit format format-check sanitize fuzz bench reliability clean image

all: build

deps:
	@scripts/deps.sh

$(BUILD)/CMakeCache.txt:
	cmake -S . -B $(BUILD) -DWSGATE_WERROR=ON

build: deps $(BUILD)/CMakeCache.txt
	cmake --build $(BUILD) -j $(JOBS)

run: build
	@scripts/run-example.sh $(BUILD)/wsgate $(CONFIG)

# PREFIX (default /usr/local) and DESTDIR (a staging root) as usual; files
# listed in docs/install.md. The build's CMAKE_INSTALL_PREFIX is not used.
PREFIX ?= /usr/local
install: build
	DESTDIR="$(DESTDIR)" cmake --install $(BUILD) --prefix "$(PREFIX)"

# $(call ctest_all,DIR): every ctest in DIR but the long fault tests (label
# "long": `make test-faults`), then no skip outside the allowlist
# $(call ctest_all,DIR,ARGS): the same with ctest ARGS instead of -LE long
define ctest_all
	rm -f $(1)/skipped-tests.txt
	cd $(1) && WSGATE_SKIP_LOG=$(abspath $(1))/skipped-tests.txt ctest --output-on-failure -j $(JOBS) $(or $(2),-LE '^long$$')
	python3 tests/check_skips.py tests/skip-allowlist.txt $(1)/skipped-tests.txt
endef

test: build format-check
	$(call ctest_all,$(BUILD))
	$(MAKE) sanitize

# every test labelled "faults" (tests/faults/: minutes each, one at a time;
# integration/test_cluster_hardkill.py, also in `make test`): docs/testing.md
test-faults: build
	@scripts/deps.sh --faults
	$(call ctest_all,$(BUILD),-L '^faults$$')

unit: build
	cd $(BUILD) && ctest --output-on-failure -L unit

sanitize: deps
	cmake -S . -B $(BUILD)-asan -DWSGATE_WERROR=ON -DWSGATE_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug
	cmake --build $(BUILD)-asan -j $(JOBS)
	$(call ctest_all,$(BUILD)-asan)

# A separate clang build: every library instrumented for libFuzzer and
# ASan/UBSan (no -Werror: clang warns where gcc, the reference, does not).
# New inputs found go to a temp dir; crashing ones to $(BUILD)-fuzz/fuzz-crashes/.
fuzz:
	@scripts/deps.sh --fuzz
	cmake -S . -B $(BUILD)-fuzz -DCMAKE_C_COMPILER=clang -DWSGATE_FUZZ=ON
	cmake --build $(BUILD)-fuzz -j $(JOBS) --target fuzz_targets
	scripts/fuzz.sh $(BUILD)-fuzz $(FUZZ_SECONDS)

image:
	@scripts/deps.sh --deploy
	@scripts/image.sh

format:
	@git ls-files '*.c' '*.h' | xargs -r clang-format -i

format-check: deps
	@bad=$$(git ls-files '*.c' '*.h' | xargs -r clang-format --dry-run -Werror 2>&1 | grep -o '^[^:]*\.[ch]' | sort -u); \
	if [ -n "$$bad" ]; then echo "not clang-formatted (run 'make format'):"; echo "$$bad"; exit 1; fi

bench: build
	@scripts/deps.sh --bench
	@bench/run.sh $(BUILD)

# RELIABILITY_OVERLOAD_SECONDS=N sets the overload case's sending time (default 10 s);
# RELIABILITY_ARGS passes more options (e.g. --only 'api|SSRF', see run.py --help).
reliability: build
	cmake -S . -B $(BUILD)-asan -DWSGATE_WERROR=ON -DWSGATE_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug
	cmake --build $(BUILD)-asan -j $(JOBS)
	python3 tests/reliability/run.py --bin $(BUILD)/wsgate --asan-bin $(BUILD)-asan/wsgate \
		--out docs/reliability.md $(RELIABILITY_ARGS)

clean:
	rm -rf $(BUILD) $(BUILD)-asan $(BUILD)-fuzz
