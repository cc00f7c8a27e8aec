#!/usr/bin/env bash
# bench/run.sh — runs wsgate's benchmark suite and, in the same run, Pushpin as
# the reference peer (bench/README.md). Called by `make bench`.
#
# Usage: bench/run.sh [BUILD_DIR]
# Knobs (environment):
#   BENCH_QUICK=1        small N and short durations (a trial in about a minute)
#   BENCH_SERVERS="wsgate pushpin"   which servers to measure
#   BENCH_WORKLOADS="a b c d e"      which workloads to run
#   BENCH_OUT=DIR        where results go (default bench/results)
# Starts bench-backend, wsgate standalone and Pushpin on free loopback ports in
# a temp dir, runs the workloads with wsload / benchpub / wrk, samples CPU and
# RSS of the server processes from /proc, prints a table and writes
# <date>.json and <date>.png under BENCH_OUT. Everything it started is stopped
# by PID (Pushpin by process group) on exit.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
build=$(cd "${1:-$root/build}" && pwd)
out_dir=${BENCH_OUT:-$here/results}
servers=${BENCH_SERVERS:-"wsgate pushpin"}
workloads=${BENCH_WORKLOADS:-"a b c d e"}
quick=${BENCH_QUICK:-0}

if [ "$quick" = 1 ]; then
  N_IDLE=1000 HOLD=6 FAN="100 1000" STEP_S=2 C_CONNS=100 C_RATES="1000 2500 5000"
  D_CONNS=1000 D_SECS=3 E_CONNS=1000
else
  N_IDLE=18000 HOLD=120 FAN="1000 10000 18000" STEP_S=5 C_CONNS=1000
  C_RATES="1000 2500 5000 10000 20000 40000" D_CONNS=10000 D_SECS=10 E_CONNS=10000
fi
FAN_RATES=${BENCH_FAN_RATES:-"10000 40000 80000 160000"} # target deliveries/s per step

# The hard limit here is 20,000 open files per process: raise the soft limit
# and size every run below it (one server process holds N client sockets).
hard=$(ulimit -Hn)
ulimit -n "$hard"
echo "bench: open-file limit raised to the hard limit: $(ulimit -n) (runs sized to <= 18,000 connections per server process)"

# --- build the tools ---------------------------------------------------------
cmake --build "$build" --target wsload bench-backend benchpub -j2 >/dev/null
cmake --build "$build" --target wsgate -j2 >/dev/null 2>&1 || echo "bench: note: wsgate did not build; its workloads will say so"
B=$build/bench
for t in wsload bench-backend benchpub; do [ -x "$B/$t" ] || { echo "bench: $B/$t missing" >&2; exit 1; }; done
command -v wrk >/dev/null || { echo "bench: wrk missing (scripts/deps.sh --bench)" >&2; exit 1; }

tmp=$(mktemp -d /tmp/wsgate-bench.XXXXXX)
pids=()     # plain processes we started
sessions=() # sessions we started with setsid (the server and, for Pushpin, the
            # condure/zurl/proxy/handler children it spawns in their own groups)
stop_session() { # sid signal
  local p
  for p in $(pgrep -s "$1" 2>/dev/null); do kill "-$2" "$p" 2>/dev/null || true; done
}
cleanup() {
  for g in "${sessions[@]:-}"; do [ -n "$g" ] && stop_session "$g" TERM; done
  for p in "${pids[@]:-}"; do [ -n "$p" ] && kill -TERM "$p" 2>/dev/null || true; done
  sleep 2
  for g in "${sessions[@]:-}"; do [ -n "$g" ] && stop_session "$g" KILL; done
  for p in "${pids[@]:-}"; do [ -n "$p" ] && kill -KILL "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  [ "${BENCH_KEEP_TMP:-0}" = 1 ] || rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
wait_port() { # port seconds
  for _ in $(seq $(($2 * 10))); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.1
  done
  return 1
}
jget() { python3 -c 'import json,sys;d=json.loads(sys.argv[1]);
for k in sys.argv[2].split("."): d=d[k]
print(d)' "$1" "$2"; }
record() { # one JSON object (may span lines) -> one line of results.jsonl
  python3 -c 'import json,sys;print(json.dumps(json.loads(sys.argv[1])))' "$1" >>"$tmp/results.jsonl"
}

# Source addresses: Linux routes all of 127/8 to loopback; one source address
# gives only ~28k ephemeral ports, so connections are spread over several.
sources=127.0.0.1
for a in 127.0.0.2 127.0.0.3 127.0.0.4; do
  if python3 -c "import socket,sys;s=socket.socket();s.bind(('$a',0))" 2>/dev/null; then sources="$sources,$a"; fi
done
echo "bench: source addresses: $sources"

# --- process sampling (/proc) -------------------------------------------------
clk=$(getconf CLK_TCK)
procs_of() { # "pid:<p>" or "sid:<session>" -> pids
  case $1 in
    pid:*) echo "${1#pid:}" ;;
    sid:*) pgrep -s "${1#sid:}" || true ;;
  esac
}
cpu_s() { # target -> CPU seconds (user+system) of its processes
  local t=0 p v
  for p in $(procs_of "$1"); do
    v=$(sed 's/^.*) //' "/proc/$p/stat" 2>/dev/null | awk '{print $12+$13}') || continue
    t=$((t + ${v:-0}))
  done
  echo "scale=3; $t / $clk" | bc
}
rss_kb() { # target -> summed VmRSS in KiB
  local t=0 p v
  for p in $(procs_of "$1"); do
    v=$(awk '/^VmRSS:/{print $2}' "/proc/$p/status" 2>/dev/null) || continue
    t=$((t + ${v:-0}))
  done
  echo $t
}

# --- backend ------------------------------------------------------------------
BP=$(free_port)
"$B/bench-backend" "$BP" 2 >"$tmp/backend.log" 2>&1 &
pids+=($!)
wait_port "$BP" 10 || { echo "bench: backend did not start" >&2; exit 1; }
bstats() { curl -s "http://127.0.0.1:$BP/stats"; }
breset() { curl -s -X POST "http://127.0.0.1:$BP/reset" >/dev/null; }

# --- servers --------------------------------------------------------------------
start_wsgate() {
  EP=$(free_port) AP=$(free_port)
  mkdir -p "$tmp/wsgate"
  sed -e "s|@EDGE_PORT@|$EP|; s|@API_PORT@|$AP|; s|@RUNDIR@|$tmp/wsgate|; s|@BACKEND_PORT@|$BP|g" \
    "$here/wsgate-bench.yaml" >"$tmp/wsgate/wsgate.yaml"
  [ -x "$build/wsgate" ] || { WSGATE_WHY="wsgate binary did not build"; return 1; }
  setsid "$build/wsgate" standalone --config "$tmp/wsgate/wsgate.yaml" >"$tmp/wsgate/out.log" 2>&1 &
  local p=$!
  sessions+=("$p")
  if ! wait_port "$EP" 15; then WSGATE_WHY="wsgate did not listen: $(tail -c 300 "$tmp/wsgate/out.log" | tr '\n' ' ')"; return 1; fi
  TARGET_wsgate="sid:$p"
  # Tokens: `wsgate token` where it can; mint.py (stdlib HS256) for the
  # channels claim, which `wsgate token` has no option for.
  local cfg="$tmp/wsgate/wsgate.yaml"
  "$build/wsgate" token --config "$cfg" --route /bench --sub u-idle --ttl 2h >"$tmp/wsgate/tok-idle" 2>/dev/null ||
    python3 "$here/mint.py" "bench-client-secret-0123456789abcdef" u-idle >"$tmp/wsgate/tok-idle"
  python3 "$here/mint.py" "bench-client-secret-0123456789abcdef" u-fan '["fan"]' >"$tmp/wsgate/tok-fan"
  API_TOKEN=$("$build/wsgate" token --config "$cfg" --api --scope "send publish read" --ttl 2h 2>/dev/null ||
    python3 "$here/mint.py" "bench-api-secret-0123456789abcdef0123" bench "" "send publish read")
}
start_pushpin() {
  HP=$(free_port) PP=$(free_port)
  mkdir -p "$tmp/pushpin/log"
  sed -e "s|@RUNDIR@|$tmp/pushpin|g; s|@HTTP_PORT@|$HP|; s|@MAXCONN@|20000|; s|@PUSH_PORT@|$(free_port)|;
          s|@SUB_PORT@|$(free_port)|; s|@PUBLISH_PORT@|$PP|; s|@CMD_PORT@|$(free_port)|" \
    "$here/pushpin/pushpin.conf.in" >"$tmp/pushpin/pushpin.conf"
  echo "* 127.0.0.1:$BP,over_http" >"$tmp/pushpin/routes"
  setsid pushpin --config "$tmp/pushpin/pushpin.conf" --merge-output >"$tmp/pushpin/out.log" 2>&1 &
  local p=$!
  sessions+=("$p")
  wait_port "$HP" 20 && wait_port "$PP" 20 || { echo "bench: pushpin did not start" >&2; return 1; }
  sleep 1
  TARGET_pushpin="sid:$p"
}

. "$here/workloads.sh"

declare -A up
for s in $servers; do
  if "start_$s"; then up[$s]=1; else up[$s]=0; echo "bench: $s not started: ${WSGATE_WHY:-}" >&2; fi
done

for w in $workloads; do
  for s in $servers; do
    if [ "${up[$s]}" != 1 ]; then
      record "{\"workload\":\"$w\",\"server\":\"$s\",\"not_run\":\"${WSGATE_WHY:-server did not start}\"}"
      continue
    fi
    echo "bench: workload $w on $s" >&2
    "wl_$w" "$s" || record "{\"workload\":\"$w\",\"server\":\"$s\",\"not_run\":\"workload failed: see log\"}"
  done
done

mkdir -p "$out_dir"
python3 "$here/report.py" "$tmp/results.jsonl" "$out_dir" "$quick" "$N_IDLE" "$HOLD"
