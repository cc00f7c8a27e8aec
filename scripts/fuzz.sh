#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Runs libFuzzer targets of a -DWSGATE_FUZZ=ON build (`make fuzz` builds it):
# each tests/fuzz/fuzz_<name> for SECONDS, seeded with its committed corpus
# tests/fuzz/corpus/fuzz_<name>/, up to FUZZ_JOBS (default: nproc) at once.
#
# Usage: scripts/fuzz.sh BUILD_DIR SECONDS [fuzz_<name>...]   (default: all)
#
# - New inputs a run finds go to a temp dir removed at the end, never into
#   the repo (to keep one: copy it into the corpus, see docs/testing.md).
# - A crash, sanitizer report, leak, timeout (-timeout, s per input) or
#   out-of-memory (-rss_limit_mb) fails the run; the input that caused it
#   is left in BUILD_DIR/fuzz-crashes/fuzz_<name>/ and the run's log in
#   BUILD_DIR/fuzz-logs/fuzz_<name>.log.
# Exit status: 0 when every target ran clean, 1 otherwise, 2 on bad usage.
set -euo pipefail

if [ $# -lt 2 ]; then
  echo "usage: $0 BUILD_DIR SECONDS [fuzz_<name>...]" >&2
  exit 2
fi
build=$(cd "$1" && pwd)
secs=$2
shift 2
src=$(cd "$(dirname "$0")/.." && pwd)
jobs=${FUZZ_JOBS:-$(nproc)}
case "$secs" in '' | *[!0-9]*) echo "$0: SECONDS must be a whole number" >&2; exit 2 ;; esac

targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  for f in "$src"/tests/fuzz/fuzz_*.c; do
    targets+=("$(basename "$f" .c)")
  done
fi

crashes=$build/fuzz-crashes
logs=$build/fuzz-logs
new=$(mktemp -d "${TMPDIR:-/tmp}/wsgate-fuzz-new.XXXXXX")
trap 'rm -rf "$new"' EXIT
mkdir -p "$crashes" "$logs"
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:symbolize=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

run_one() {
  local name=$1 bin=$build/tests/fuzz/$1
  if [ ! -x "$bin" ]; then
    echo "$name: $bin not built (configure with -DWSGATE_FUZZ=ON)" >"$logs/$name.log"
    return 1
  fi
  mkdir -p "$crashes/$name" "$new/$name"
  # the first corpus dir receives what the run finds: the temp one
  "$bin" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
    -print_final_stats=1 -artifact_prefix="$crashes/$name/" \
    "$new/$name" "$src/tests/fuzz/corpus/$name" </dev/null >"$logs/$name.log" 2>&1
}

declare -A pid_of=()
failed=()
finish() { # waits for one job of pid_of to end
  local pid=$1 name=${pid_of[$1]}
  if wait "$pid"; then
    echo "fuzz: $name ok ($(grep -o 'stat::number_of_executed_units: *[0-9]*' "$logs/$name.log" |
      grep -o '[0-9]*$' || echo '?') runs)"
  else
    failed+=("$name")
    echo "fuzz: $name FAILED"
  fi
  unset "pid_of[$pid]"
}

echo "fuzz: ${#targets[@]} targets, ${secs}s each, $jobs at a time; logs in $logs"
for name in "${targets[@]}"; do
  while [ ${#pid_of[@]} -ge "$jobs" ]; do
    for pid in "${!pid_of[@]}"; do
      if ! kill -0 "$pid" 2>/dev/null; then finish "$pid"; fi
    done
    [ ${#pid_of[@]} -ge "$jobs" ] && sleep 1
  done
  run_one "$name" &
  pid_of[$!]=$name
done
for pid in "${!pid_of[@]}"; do finish "$pid"; done

if [ ${#failed[@]} -ne 0 ]; then
  for name in "${failed[@]}"; do
    echo "---- $name: last lines of $logs/$name.log"
    tail -n 40 "$logs/$name.log"
    for f in "$crashes/$name"/*; do
      [ -e "$f" ] && echo "input: $f   (reproduce: $build/tests/fuzz/$name $f)"
    done
  done
  echo "fuzz: FAILED: ${failed[*]}"
  exit 1
fi
echo "fuzz: all ${#targets[@]} targets ran ${secs}s without a finding"
