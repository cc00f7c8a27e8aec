#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# bench/run.sh — runs wsgate's benchmark suite, standalone and as a cluster,
# and, in the same run, Pushpin as the reference peer (bench/README.md).
# Called by `make bench`.
#
# Usage: bench/run.sh [BUILD_DIR]
# Knobs (environment):
#   BENCH_QUICK=1        small N and short durations (a trial in a few minutes)
#   BENCH_SERVERS="wsgate wsgate-cluster pushpin wsgate-tls wsgate-deflate"
#                        which servers to measure (wsgate-cluster is in the
#                        default only when nats-server and PostgreSQL are
#                        installed; wsgate-tls is standalone with edge.tls:
#                        the workloads over wss://, e twice: full
#                        handshakes, then resuming TLS sessions (recorded
#                        apart); wsgate-deflate is
#                        standalone with `compression: on` on its routes,
#                        wsload negotiating permessage-deflate);
#                        not in the default: wsgate-grip and wsgate-aws,
#                        standalone with the /bench route in protocol:
#                        grip / aws (docs/compat.md), workloads c and d only;
#                        and wsgate-stream, standalone with the /bench
#                        route's backend a ws:// backend stream served by
#                        bench-backend (docs/webhooks.md "Backend
#                        streams"), workloads c and d only
#   BENCH_PAYLOAD=64     bytes of each message in b, c, d
#   BENCH_DEFLATE_PAYLOAD=1024   the same for wsgate-deflate (the edge does
#                        not compress messages under 256 bytes)
#   BENCH_WORKLOADS="a b c d e"      which workloads to run
#   BENCH_FAN="1000 10000 18000"     (b) subscriber counts
#   BENCH_FAN_RATES="10000 ..."      (b) deliveries/s asked for at each step
#   BENCH_C_RATES="1000 ... 40000"   (c) frames/s asked for at each step
#   BENCH_OUT=DIR        where results go (default bench/results)
# Starts bench-backend, wsgate standalone, a wsgate cluster (through
# deploy/local/cluster.sh: nats-server, PostgreSQL, 2 edges, 2 APIs,
# 2 dispatchers) and Pushpin on free loopback ports in a temp dir, runs the
# workloads with wsload / benchpub / wrk, samples CPU and RSS of the server
# processes from /proc, prints a table and writes <date>.json and <date>.png
# under BENCH_OUT. Everything it started is stopped by PID (Pushpin and the
# cluster's processes by session) on exit.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
build=$(cd "${1:-$root/build}" && pwd)
out_dir=${BENCH_OUT:-$here/results}
PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
have_cluster_deps() { { command -v nats-server >/dev/null || [ -x /usr/sbin/nats-server ]; } && [ -x "$PG_BIN/postgres" ]; }
if have_cluster_deps; then default_servers="wsgate wsgate-cluster pushpin wsgate-tls wsgate-deflate"; else default_servers="wsgate pushpin wsgate-tls wsgate-deflate"; fi
servers=${BENCH_SERVERS:-$default_servers}
workloads=${BENCH_WORKLOADS:-"a b c d e f"}
quick=${BENCH_QUICK:-0}

if [ "$quick" = 1 ]; then
  N_IDLE=1000 HOLD=6 FAN="100 1000" STEP_S=2 C_CONNS=100 C_RATES="1000 2500 5000"
  D_CONNS=1000 D_SECS=3 E_CONNS=1000 SCALE_N=6000 SCALE_EDGES=3
else
  N_IDLE=18000 HOLD=120 FAN="1000 10000 18000" STEP_S=5 C_CONNS=1000
  C_RATES="1000 2500 5000 10000 20000 40000" D_CONNS=10000 D_SECS=10 E_CONNS=10000
  SCALE_N=100000 SCALE_EDGES=6
fi
SCALE_N=${BENCH_SCALE_N:-$SCALE_N}             # (f) idle connections over the cluster's edges
SCALE_EDGES=${BENCH_SCALE_EDGES:-$SCALE_EDGES} # (f) edge processes (at most 18,000 each)
HOLD=${BENCH_HOLD:-$HOLD} # (a) seconds held
FAN=${BENCH_FAN:-$FAN} # subscriber counts
C_RATES=${BENCH_C_RATES:-$C_RATES}
FAN_RATES=${BENCH_FAN_RATES:-"10000 40000 80000 120000 160000"} # target deliveries/s per step
PAYLOAD=${BENCH_PAYLOAD:-64}                 # bytes per message in b, c, d
DEFLATE_PAYLOAD=${BENCH_DEFLATE_PAYLOAD:-1024} # the same for wsgate-deflate
for v in "$PAYLOAD" "$DEFLATE_PAYLOAD"; do # benchpub builds a body of at most 4 KiB
  [[ $v =~ ^[0-9]+$ ]] && [ "$v" -ge 40 ] && [ "$v" -le 3000 ] ||
    { echo "bench: BENCH_PAYLOAD / BENCH_DEFLATE_PAYLOAD must be 40..3000 bytes, not '$v'" >&2; exit 2; }
done

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
chmod 711 "$tmp" # PostgreSQL (the cluster's, run as `postgres`) reaches its data dir below
pids=()     # plain processes we started
sessions=() # sessions we started with setsid (the server and, for Pushpin, the
            # condure/zurl/proxy/handler children it spawns in their own groups)
stop_session() { # sid signal
  local p
  for p in $(pgrep -s "$1" 2>/dev/null); do kill "-$2" "$p" 2>/dev/null || true; done
}
cleanup() {
  stop_cluster
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
record() { # one JSON object (may span lines) -> one line of results.jsonl,
  # with the load average when it was recorded (the machine is shared)
  python3 -c 'import json,sys;d=json.loads(sys.argv[1]);d.setdefault("loadavg",open("/proc/loadavg").read().split()[:3]);print(json.dumps(d))' "$1" >>"$tmp/results.jsonl"
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
procs_of() { # "pid:<p> sid:<session> kids:<p> ..." -> pids
  local t
  for t in $1; do
    case $t in
      pid:*) echo "${t#pid:}" ;;
      sid:*) pgrep -s "${t#sid:}" || true ;;
      # PostgreSQL's backends each call setsid(): the postmaster and its children
      kids:*) echo "${t#kids:}" && { pgrep -P "${t#kids:}" || true; } ;;
    esac
  done
}
cpu_s() { # target -> CPU seconds (user+system) of its processes
  local t=0 p v
  for p in $(procs_of "$1"); do
    v=$(sed 's/^.*) //' "/proc/$p/stat" 2>/dev/null | awk '{print $12+$13}') || continue
    t=$((t + ${v:-0}))
  done
  awk -v t="$t" -v c="$clk" 'BEGIN{printf "%.3f\n", t / c}' # a JSON number (bc prints .5)
}
mem_kb() { # target field file -> the field summed over its processes, KiB
  local t=0 p v
  for p in $(procs_of "$1"); do
    v=$(awk -v f="$2:" '$1 == f {print $2}' "/proc/$p/$3" 2>/dev/null) || continue
    t=$((t + ${v:-0}))
  done
  echo $t
}
rss_kb() { mem_kb "$1" VmRSS status; } # target -> summed VmRSS
# target -> summed Pss (shared pages split between the processes sharing
# them: PostgreSQL's backends all map its shared buffers)
pss_kb() { mem_kb "$1" Pss smaps_rollup; }

# --- backend ------------------------------------------------------------------
BP=$(free_port) BWP=$(free_port) # webhooks (HTTP) and the backend stream (ws://)
"$B/bench-backend" "$BP" 2 "$BWP" >"$tmp/backend.log" 2>&1 &
pids+=($!)
wait_port "$BP" 10 && wait_port "$BWP" 10 || { echo "bench: backend did not start" >&2; exit 1; }
bstats() { curl -s "http://127.0.0.1:$BP/stats"; }
breset() { curl -s -X POST "http://127.0.0.1:$BP/reset" >/dev/null; }

# --- servers --------------------------------------------------------------------
start_wsgate() { start_standalone wsgate; }
# The same over wss:// (edge.tls with a throw-away certificate; wsload does
# not verify it). The control API stays plain http.
start_wsgate-tls() { start_standalone wsgate-tls tls; }
# compression: on for both routes (permessage-deflate; wsload offers it)
start_wsgate-deflate() { start_standalone wsgate-deflate deflate; }
# The compatibility modes (docs/compat.md) on the /bench route, which c and d
# use: Pushpin's WebSocket-over-HTTP with GRIP, and AWS API Gateway's
# Lambda-proxy events with @connections (one event per request: batch_max 1)
start_wsgate-grip() { start_standalone wsgate-grip grip; }
start_wsgate-aws() { start_standalone wsgate-aws aws; }
# The /bench route's backend a ws:// backend stream (bench-backend's WS_PORT):
# c's frames go as events over one WebSocket, batch_max 16 as the webhooks
start_wsgate-stream() { start_standalone wsgate-stream stream; }
start_standalone() { # name [tls|deflate|grip|aws|stream]
  local d="$tmp/$1" v=${1//-/_}
  EP=$(free_port) AP=$(free_port)
  mkdir -p "$d"
  sed -e "s|@EDGE_PORT@|$EP|; s|@API_PORT@|$AP|; s|@RUNDIR@|$d|; s|@BACKEND_PORT@|$BP|g" \
    "$here/wsgate-bench.yaml" >"$d/wsgate.yaml"
  if [ "${2:-}" = tls ]; then
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj /CN=127.0.0.1 \
      -keyout "$d/key.pem" -out "$d/cert.pem" 2>/dev/null || { WSGATE_WHY="openssl req failed"; return 1; }
    sed -i "s|^  listen: 127.0.0.1:$EP\$|&\n  tls: {cert_file: $d/cert.pem, key_file: $d/key.pem}|" "$d/wsgate.yaml"
  fi
  if [ "${2:-}" = deflate ]; then
    sed -i 's|^  - path: .*$|&\n    compression: on|' "$d/wsgate.yaml"
    [ "$(grep -c '^    compression: on$' "$d/wsgate.yaml")" = 2 ] || { WSGATE_WHY="could not set compression: on"; return 1; }
  fi
  if [ "${2:-}" = grip ] || [ "${2:-}" = aws ]; then
    sed -i "s|^  - path: /bench\$|&\n    protocol: $2|" "$d/wsgate.yaml"
    [ "$(grep -c "^    protocol: $2\$" "$d/wsgate.yaml")" = 1 ] || { WSGATE_WHY="could not set protocol: $2"; return 1; }
  fi
  if [ "${2:-}" = aws ]; then # the /bench route is the only one with batch_max
    sed -i -e 's|^    protocol: aws$|&\n    aws: {region: us-east-1, access_keys: [{id: AKIAWSGATEBENCH00001, secret: "bench-aws-secret-0123456789abcdef0123"}]}|' \
      -e 's|^      batch_max: 16$|      batch_max: 1|' "$d/wsgate.yaml"
    grep -q '^      batch_max: 1$' "$d/wsgate.yaml" || { WSGATE_WHY="could not set batch_max: 1"; return 1; }
  fi
  if [ "${2:-}" = stream ]; then # the first backend line is /bench's
    sed -i "0,\|^    backend: http://127.0.0.1:$BP/events\$|s||    backend: ws://127.0.0.1:$BWP/stream|" "$d/wsgate.yaml"
    [ "$(grep -c "^    backend: ws://127.0.0.1:$BWP/stream\$" "$d/wsgate.yaml")" = 1 ] || { WSGATE_WHY="could not set the stream backend"; return 1; }
  fi
  [ -x "$build/wsgate" ] || { WSGATE_WHY="wsgate binary did not build"; return 1; }
  setsid "$build/wsgate" standalone --config "$d/wsgate.yaml" >"$d/out.log" 2>&1 &
  local p=$!
  sessions+=("$p")
  eval "SID_$v=$p"
  if ! wait_port "$EP" 15; then WSGATE_WHY="wsgate did not listen: $(tail -c 300 "$d/out.log" | tr '\n' ' ')"; return 1; fi
  eval "TARGET_$v=sid:$p"
  mint_tokens "$d"
}
# Tokens for a wsgate config in DIR (DIR/tok-idle, DIR/tok-fan, API_TOKEN):
# `wsgate token` where it can; mint.py (stdlib HS256) for the channels claim,
# which `wsgate token` has no option for. Both wsgate servers share the
# template's secrets, so the API token is the same for both.
mint_tokens() { # dir
  local cfg="$1/wsgate.yaml"
  "$build/wsgate" token --config "$cfg" --route /bench --sub u-idle --ttl 2h >"$1/tok-idle" 2>/dev/null ||
    python3 "$here/mint.py" "bench-client-secret-0123456789abcdef" u-idle >"$1/tok-idle"
  python3 "$here/mint.py" "bench-client-secret-0123456789abcdef" u-fan '["fan"]' >"$1/tok-fan"
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
  SID_pushpin=$p
  wait_port "$HP" 20 && wait_port "$PP" 20 || { echo "bench: pushpin did not start" >&2; return 1; }
  sleep 1
  TARGET_pushpin="sid:$p"
}

# The cluster: deploy/local/cluster.sh with chosen ports, its own state dir
# and pointer file (so it runs beside a developer's cluster), driven without a
# terminal: it writes STATE/addresses once every process is ready and stops
# everything it started, by PID, on SIGTERM.
CLUSTER_PID=""
stop_cluster() {
  [ -n "$CLUSTER_PID" ] || return 0
  local st="$tmp/wsgate-cluster/state" name p
  if kill -TERM "$CLUSTER_PID" 2>/dev/null; then
    for _ in $(seq 1200); do kill -0 "$CLUSTER_PID" 2>/dev/null || break; sleep 0.1; done
  fi
  kill -0 "$CLUSTER_PID" 2>/dev/null && echo "bench: cluster.sh did not stop in 120 s: SIGKILL to its processes" >&2
  kill -KILL "$CLUSTER_PID" 2>/dev/null || true
  # whatever is left (cluster.sh killed mid-stop): every session it started
  [ -f "$st/pids" ] && while read -r name p; do stop_session "$p" KILL; done <"$st/pids"
  CLUSTER_PID=""
}
start_wsgate-cluster() {
  local d="$tmp/wsgate-cluster"
  mkdir -p "$d"
  have_cluster_deps || { WSGATE_WHY="nats-server or PostgreSQL ($PG_BIN) not installed"; return 1; }
  [ -x "$build/wsgate" ] || { WSGATE_WHY="wsgate binary did not build"; return 1; }
  CEP0=$(free_port) CEP1=$(free_port) CAP0=$(free_port) CAP1=$(free_port) CNATS=$(free_port) CPG=$(free_port)
  # the standalone template; store, nats, listen addresses and edge ids are
  # set per process by cluster.sh; the ready line it waits for is at info
  sed -e "s|@EDGE_PORT@|$CEP0|; s|@API_PORT@|$CAP0|; s|@RUNDIR@|$d|; s|@BACKEND_PORT@|$BP|g" \
    -e "s|level: warn|level: info|; s|format: text|format: json|" \
    "$here/wsgate-bench.yaml" >"$d/wsgate.yaml"
  CLUSTER_POINTER="$d/pointer" STATE_DIR="$d/state" CONFIG="$d/wsgate.yaml" WSGATE_BIN="$build/wsgate" \
    EDGE_PORTS="$CEP0 $CEP1" API_PORTS="$CAP0 $CAP1" NATS_PORT=$CNATS PG_PORT=$CPG \
    OPS_PORTS="$(free_port) $(free_port) $(free_port) $(free_port)" \
    PG_BIN="$PG_BIN" KEEP_STATE=1 "$root/deploy/local/cluster.sh" start >"$d/cluster.log" 2>&1 &
  CLUSTER_PID=$!
  for _ in $(seq 1800); do
    [ -s "$d/state/addresses" ] && break
    kill -0 "$CLUSTER_PID" 2>/dev/null || break
    sleep 0.1
  done
  if [ ! -s "$d/state/addresses" ]; then
    WSGATE_WHY="cluster did not start: $(tail -c 400 "$d/cluster.log" | tr '\n"' '  ')"
    return 1
  fi
  # targets: the wsgate processes together (what the workloads report), and
  # nats-server and PostgreSQL separately; each was started in its own session
  local name p
  TARGET_wsgate_cluster="" TARGET_nats="" TARGET_postgres="" CLUSTER_PROCS=""
  while read -r name p; do
    case $name in
      nats) TARGET_nats="sid:$p" ;;
      postgres) TARGET_postgres="kids:$p" ;;
      *) TARGET_wsgate_cluster="$TARGET_wsgate_cluster sid:$p" ;;
    esac
    CLUSTER_PROCS="$CLUSTER_PROCS $name:$p"
  done <"$d/state/pids"
  echo "bench: cluster up: edges $CEP0 $CEP1, APIs $CAP0 $CAP1 (state $d/state)" >&2
  mint_tokens "$d"
}

. "$here/workloads.sh"

# One server at a time: started before its workloads, stopped after, so an
# idle server (the cluster's consumers poll NATS) does not share the cores
# with the one being measured.
stop_server() { # server
  case $1 in
    wsgate-cluster) stop_cluster ;;
    *)
      local sid
      sid=$(eval echo "\${SID_${1//-/_}:-}")
      [ -n "$sid" ] || return 0
      stop_session "$sid" TERM
      for _ in $(seq 300); do [ -z "$(pgrep -s "$sid")" ] && break; sleep 0.1; done
      stop_session "$sid" KILL
      ;;
  esac
}
# Waits (at most 60 s) until the server's processes use under 5% of a core
# over a second: each workload measures itself, not the tail of the one
# before (18,000 disconnects after a or b take the server a few seconds).
settle() { # server
  local t c0 c1 i
  t=$(target "$1")
  for i in $(seq 60); do
    c0=$(cpu_s "$t")
    sleep 1
    c1=$(cpu_s "$t")
    awk -v a="$c0" -v b="$c1" 'BEGIN{exit !(b - a < 0.05)}' && break
  done
  [ "$i" -gt 1 ] && echo "bench: $1 settled after ${i} s" >&2
  return 0
}
for s in $servers; do
  WSGATE_WHY=""
  if ! "start_$s"; then
    echo "bench: $s not started: ${WSGATE_WHY:-}" >&2
    for w in $workloads; do
      record "{\"workload\":\"$w\",\"server\":\"$s\",\"not_run\":\"${WSGATE_WHY:-server did not start}\"}"
    done
    stop_server "$s"
    continue
  fi
  for w in $workloads; do
    if ! runs_on "$s" "$w"; then
      record "{\"workload\":\"$w\",\"server\":\"$s\",\"not_run\":\"$(runs_on "$s" "$w" why)\"}"
      continue
    fi
    settle "$s"
    echo "bench: workload $w on $s (load average: $(cut -d' ' -f1-3 /proc/loadavg))" >&2
    "wl_$w" "$s" || record "{\"workload\":\"$w\",\"server\":\"$s\",\"not_run\":\"workload failed: see log\"}"
  done
  stop_server "$s"
done

mkdir -p "$out_dir"
python3 "$here/report.py" "$tmp/results.jsonl" "$out_dir" "$quick" "$N_IDLE" "$HOLD"
