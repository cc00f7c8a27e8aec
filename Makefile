# The README's commands. Everything real lives in CMake; this file only chains
# "install what is missing -> configure -> build -> run/test".
#   make run     install deps, build, start `wsgate standalone` with examples/standalone.yaml
#   make test    install deps, check formatting, build with -Werror, run every ctest,
#                then run the unit tests again under ASan+UBSan
#   make bench   run the benchmark suite (bench/README.md)
BUILD ?= build
JOBS ?= $(shell nproc)
CONFIG ?= examples/standalone.yaml

.PHONY: all deps build run test unit format format-check sanitize bench clean

all: build

deps:
	@scripts/deps.sh

$(BUILD)/CMakeCache.txt:
	cmake -S . -B $(BUILD) -DWSGATE_WERROR=ON

build: deps $(BUILD)/CMakeCache.txt
	cmake --build $(BUILD) -j $(JOBS)

run: build
	@scripts/run-example.sh $(BUILD)/wsgate $(CONFIG)

test: build format-check
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)
	$(MAKE) sanitize

unit: build
	cd $(BUILD) && ctest --output-on-failure -L unit

sanitize: deps
	cmake -S . -B $(BUILD)-asan -DWSGATE_WERROR=ON -DWSGATE_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug
	cmake --build $(BUILD)-asan -j $(JOBS)
	cd $(BUILD)-asan && ctest --output-on-failure -L unit

format:
	@git ls-files '*.c' '*.h' | xargs -r clang-format -i

format-check: deps
	@bad=$$(git ls-files '*.c' '*.h' | xargs -r clang-format --dry-run -Werror 2>&1 | grep -o '^[^:]*\.[ch]' | sort -u); \
	if [ -n "$$bad" ]; then echo "not clang-formatted (run 'make format'):"; echo "$$bad"; exit 1; fi

bench: build
	@scripts/deps.sh --bench
	@bench/run.sh $(BUILD)

clean:
	rm -rf $(BUILD) $(BUILD)-asan
