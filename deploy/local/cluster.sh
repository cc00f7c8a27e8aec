#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# cluster.sh — a whole wsgate cluster as plain processes on this machine:
# nats-server (JetStream, file storage), PostgreSQL, `wsgate migrate`, then
# 2 edges, 2 control APIs and 2 dispatchers. Everything lives in one state
# directory (config, data, logs, PIDs); everything it started is stopped by
# PID on Ctrl-C, SIGTERM or `cluster.sh stop`, each with its exit status;
# it exits 1 when a wsgate role crashed or did not exit 0 on SIGTERM. See
# deploy/local/README.md.
#
#   deploy/local/cluster.sh [start]   run in the foreground until Ctrl-C
#   deploy/local/cluster.sh stop      stop a cluster started elsewhere
#   deploy/local/cluster.sh status    show what runs (PIDs, addresses)
#
# Environment (all optional):
#   WSGATE_BIN   the wsgate binary (default: build/wsgate of this checkout,
#                else `wsgate` on PATH)
#   BASE_PORT    first port (default 18080): edges BASE, BASE+1; APIs
#                BASE+10, BASE+11; NATS BASE+20; PostgreSQL BASE+21
#   EDGE_PORTS, API_PORTS  two ports each ("P0 P1"), NATS_PORT, PG_PORT:
#                chosen ports instead of the BASE_PORT layout (bench/run.sh)
#   CLUSTER_POINTER  file recording the running cluster's state directory
#                (default ${XDG_RUNTIME_DIR:-/tmp}/wsgate-local-cluster.dir);
#                a separate one lets a script run its own cluster beside
#                yours. A started cluster writes STATE_DIR/addresses once
#                every process is ready: scripts wait for that file
#   BACKEND      webhook URL of the generated route /chat
#                (default http://127.0.0.1:9000/events)
#   WEBHOOK_SECRET  webhook_secret of the generated route (default: a new
#                random one); give your backend the same
#   CONFIG       your own config file instead of the generated one; its
#                store, nats, listen addresses and edge ids are overridden
#   STATE_DIR    where everything goes (default: a new temp dir; kept after
#                stop so logs can be read, unless KEEP_STATE=0)
#   KEEP_STATE   1 (default) keep STATE_DIR after stop, 0 remove it
#   PG_BIN       PostgreSQL server binaries (default /usr/lib/postgresql/15/bin)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
POINTER="${CLUSTER_POINTER:-${XDG_RUNTIME_DIR:-/tmp}/wsgate-local-cluster.dir}"
BASE_PORT="${BASE_PORT:-18080}"
BACKEND="${BACKEND:-http://127.0.0.1:9000/events}"
KEEP_STATE="${KEEP_STATE:-1}"
GEN_SECRET="" # the generated route's webhook_secret (none with CONFIG)

die() { echo "cluster.sh: $*" >&2; exit 1; }
say() { echo "cluster.sh: $*"; }

find_bin() {
    if [[ -n "${WSGATE_BIN:-}" ]]; then
        [[ -x "$WSGATE_BIN" ]] || die "WSGATE_BIN=$WSGATE_BIN is not executable"
    elif [[ -x "$ROOT/build/wsgate" ]]; then
        WSGATE_BIN="$ROOT/build/wsgate"
    elif command -v wsgate >/dev/null; then
        WSGATE_BIN="$(command -v wsgate)"
    else
        die "no wsgate binary: build it (make) or set WSGATE_BIN"
    fi
    NATS_BIN="$(command -v nats-server || true)"
    [[ -n "$NATS_BIN" ]] || NATS_BIN=/usr/sbin/nats-server
    [[ -x "$NATS_BIN" ]] || die "nats-server not found"
    PG_BIN="${PG_BIN:-/usr/lib/postgresql/15/bin}"
    [[ -x "$PG_BIN/postgres" ]] || PG_BIN="$(dirname "$(command -v postgres || echo /x/x)")"
    [[ -x "$PG_BIN/postgres" ]] || die "PostgreSQL binaries not found (set PG_BIN)"
}

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# PostgreSQL refuses to run as root: then its commands run as `postgres`
# through setpriv, which execs (no extra process), so $! of a backgrounded
# "${AS_PG[@]}" postgres ... is the postmaster's PID.
AS_PG=()
[[ $(id -u) -eq 0 ]] && AS_PG=(setpriv --reuid=postgres --regid=postgres --clear-groups --)

# ---- stop ------------------------------------------------------------------

# describe_status STATUS: "exit 0", "exit 2", "signal 11 (SEGV)" for a
# status from `wait` (128+N: ended by signal N).
describe_status() {
    if (($1 > 128)); then echo "signal $(($1 - 128)) ($(kill -l "$1" 2>/dev/null || echo ?))"
    else echo "exit $1"; fi
}

# reap PID: sets ST to the exit status of PID when it is a child of this
# shell that has ended (bash keeps the status of reaped children; ENDED
# keeps it for a second look), else to "" (`cluster.sh stop` from another
# shell). Called directly, never in $(...): `wait` needs this shell.
declare -A ENDED=()
reap() {
    local st=0
    ST="${ENDED[$1]:-}"
    [[ -z "$ST" ]] || return 0
    wait "$1" 2>/dev/null || st=$?
    ((st == 127)) && return 0 # not our child
    ENDED[$1]=$st
    ST=$st
}

# Stops every PID in $STATE/pids, newest first: SIGTERM (SIGINT for
# PostgreSQL: fast shutdown), then SIGKILL after 25 s. Returns 1 when a
# wsgate role did not exit 0 (a graceful stop exits 0; a role that had
# died before, by a crash or an error, is reported with its status).
stop_all() {
    local state="$1" line name pid sig waited failed=0 lines=()
    [[ -f "$state/pids" ]] || return 0
    mapfile -t lines < <(tac "$state/pids") # not a pipe: `wait` needs this shell
    for line in "${lines[@]}"; do
        read -r name pid <<<"$line"
        if ! kill -0 "$pid" 2>/dev/null; then
            reap "$pid"
            if [[ -n "$ST" && "$ST" != 0 && "$name" != postgres && "$name" != nats ]]; then
                echo "cluster.sh: $name (pid $pid) had ended by $(describe_status "$ST")"
                failed=1
            fi
            continue
        fi
        sig=TERM
        [[ "$name" == postgres ]] && sig=INT
        kill -s "$sig" "$pid" 2>/dev/null || true
        waited=0
        while kill -0 "$pid" 2>/dev/null && ((waited < 250)); do
            sleep 0.1
            waited=$((waited + 1))
        done
        if kill -0 "$pid" 2>/dev/null; then
            echo "cluster.sh: $name (pid $pid) did not stop: SIGKILL"
            kill -s KILL "$pid" 2>/dev/null || true
            [[ "$name" == postgres || "$name" == nats ]] || failed=1
        else
            reap "$pid"
            echo "cluster.sh: stopped $name (pid $pid${ST:+, $(describe_status "$ST")})"
            [[ -z "$ST" || "$ST" == 0 || "$name" == postgres || "$name" == nats ]] || failed=1
        fi
    done
    : >"$state/pids"
    return "$failed"
}

cmd_stop() {
    [[ -f "$POINTER" ]] || die "no running cluster recorded in $POINTER"
    local state pid
    state="$(cat "$POINTER")"
    pid="$(cat "$state/cluster.sh.pid" 2>/dev/null || true)"
    if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then
        kill -s TERM "$pid"   # its trap stops everything it started
        while kill -0 "$pid" 2>/dev/null; do sleep 0.2; done
        say "stopped (state in $state)"
    else
        stop_all "$state"     # the script itself is gone: stop what it left
        rm -f "$POINTER"
    fi
}

cmd_status() {
    [[ -f "$POINTER" ]] || die "no running cluster recorded in $POINTER"
    local state name pid
    state="$(cat "$POINTER")"
    cat "$state/addresses" 2>/dev/null || true
    while read -r name pid; do
        if kill -0 "$pid" 2>/dev/null; then echo "  $name pid $pid running"
        else echo "  $name pid $pid NOT running"; fi
    done <"$state/pids"
}

# ---- start -----------------------------------------------------------------

record() { echo "$1 $2" >>"$STATE/pids"; }

# Every process is started through setsid (which execs: the PID stays the
# server's), in a session of its own, so a Ctrl-C in the terminal reaches
# only this script, which then stops them in order: wsgate roles (edges
# first drain and publish their disconnects), then PostgreSQL, then NATS.

# wait_for NAME PID PORT|- LOGFILE PATTERN: bounded wait until the process
# logs PATTERN (and listens on PORT); fails if it exits first.
wait_for() {
    local name="$1" pid="$2" port="$3" log="$4" pattern="$5" i
    for ((i = 0; i < 600; i++)); do
        kill -0 "$pid" 2>/dev/null || { tail -n 20 "$log" >&2; die "$name exited during start-up"; }
        if grep -q "$pattern" "$log" 2>/dev/null && { [[ "$port" == - ]] || port_busy "$port"; }; then
            return 0
        fi
        sleep 0.1
    done
    tail -n 20 "$log" >&2
    die "$name not ready after 60 s"
}

start_nats() {
    setsid "$NATS_BIN" -js -a 127.0.0.1 -p "$NATS_PORT" -sd "$STATE/nats" >"$STATE/logs/nats.log" 2>&1 &
    record nats $!
    wait_for nats $! "$NATS_PORT" "$STATE/logs/nats.log" "Server is ready"
}

start_postgres() {
    local data="$STATE/pg/data" sock="$STATE/pg/sock"
    mkdir -p "$sock"
    chmod 700 "$STATE/pg" "$sock"
    [[ $(id -u) -eq 0 ]] && chown -R postgres:postgres "$STATE/pg"
    if [[ ! -d "$data" ]]; then
        (cd "$STATE/pg" && "${AS_PG[@]}" "$PG_BIN/initdb" -D "$data" -U postgres --auth=trust \
            --encoding=UTF8 --locale=C --no-sync) >"$STATE/logs/initdb.log" 2>&1 ||
            { cat "$STATE/logs/initdb.log" >&2; die "initdb failed"; }
    fi
    cd "$STATE/pg"
    setsid "${AS_PG[@]}" "$PG_BIN/postgres" -D "$data" -c listen_addresses=127.0.0.1 -c port="$PG_PORT" \
        -c unix_socket_directories="$sock" -c logging_collector=off \
        >"$STATE/logs/postgres.log" 2>&1 </dev/null &
    record postgres $!
    cd "$STATE"
    local i
    for ((i = 0; i < 300; i++)); do
        "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres -t 2 && break
        sleep 0.2
    done
    "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT" -U postgres -t 2 ||
        { tail -n 20 "$STATE/logs/postgres.log" >&2; die "postgres not ready"; }
    if ! "$PG_BIN/psql" -X -q -A -t -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres \
        -c "SELECT 1 FROM pg_database WHERE datname = 'wsgate'" | grep -q 1; then
        "$PG_BIN/psql" -X -q -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres \
            -c 'CREATE DATABASE wsgate' >/dev/null
    fi
}

write_config() {
    API_SECRET="$(openssl rand -hex 32)"
    # the backend must verify with the same secret: WEBHOOK_SECRET (e.g.
    # `wsgate secret`, and examples/backend.py reads it too), else a new one
    WEBHOOK_SECRET="${WEBHOOK_SECRET:-whsec_$(openssl rand -base64 24)}"
    [[ "$WEBHOOK_SECRET" == whsec_?* ]] || die "WEBHOOK_SECRET must be whsec_<base64> (wsgate secret)"
    GEN_SECRET="$WEBHOOK_SECRET"
    cat >"$STATE/wsgate.yaml" <<EOF
# generated by deploy/local/cluster.sh; store, nats, listen addresses and
# edge ids come from WSGATE_* variables set per process
api:
  auth:
    jwt: {alg: HS256, secret: "$API_SECRET"}
edge:
  heartbeat_interval: 1s
  shutdown_grace: 5s
cluster:
  edge_timeout: 5s
log:
  level: info
  format: json
routes:
  - path: /chat
    backend: "$BACKEND"
    webhook_secret: "$WEBHOOK_SECRET"
    auth: {required: false}
EOF
    CONFIG="$STATE/wsgate.yaml"
}

# start_node NAME ROLE PORT|- [VAR=VALUE...]
start_node() {
    local name="$1" role="$2" port="$3"
    shift 3
    setsid env "$@" WSGATE_STORE="$STORE_URL" WSGATE_NATS="$NATS_URL" \
        "$WSGATE_BIN" "$role" --config "$CONFIG" >"$STATE/logs/$name.log" 2>&1 </dev/null &
    record "$name" $!
    # the ready line is logged at info, in JSON or text format
    wait_for "$name" $! "$port" "$STATE/logs/$name.log" 'wsgate ready'
}

on_signal() {
    local status=0
    trap - INT TERM
    echo
    say "stopping"
    stop_all "$STATE" || status=1
    rm -f "$POINTER" "$STATE/cluster.sh.pid"
    if ((status)); then
        say "a wsgate role crashed, failed or did not exit 0 on SIGTERM: logs kept in $STATE/logs"
    elif [[ "$KEEP_STATE" == 0 ]]; then rm -rf "$STATE"; else say "logs kept in $STATE/logs"; fi
    exit "$status"
}

cmd_start() {
    find_bin
    if [[ -f "$POINTER" ]]; then
        local old
        old="$(cat "$POINTER")"
        if kill -0 "$(cat "$old/cluster.sh.pid" 2>/dev/null || echo 0)" 2>/dev/null; then
            die "a cluster already runs (state $old): cluster.sh stop"
        fi
    fi
    local p
    read -r -a EDGE_PORTS <<<"${EDGE_PORTS:-$BASE_PORT $((BASE_PORT + 1))}"
    read -r -a API_PORTS <<<"${API_PORTS:-$((BASE_PORT + 10)) $((BASE_PORT + 11))}"
    # ops.listen (/healthz /readyz /metrics): dispatch0 dispatch1 edge0 edge1
    read -r -a OPS_PORTS <<<"${OPS_PORTS:-$((BASE_PORT + 30)) $((BASE_PORT + 31)) $((BASE_PORT + 32)) $((BASE_PORT + 33))}"
    NATS_PORT="${NATS_PORT:-$((BASE_PORT + 20))}"
    PG_PORT="${PG_PORT:-$((BASE_PORT + 21))}"
    [[ ${#EDGE_PORTS[@]} -eq 2 && ${#API_PORTS[@]} -eq 2 ]] ||
        die "EDGE_PORTS and API_PORTS take two ports each (\"P0 P1\")"
    [[ ${#OPS_PORTS[@]} -eq 4 ]] || die "OPS_PORTS takes four ports (\"D0 D1 E0 E1\")"
    for p in "${EDGE_PORTS[@]}" "${API_PORTS[@]}" "${OPS_PORTS[@]}" "$NATS_PORT" "$PG_PORT"; do
        [[ "$p" =~ ^[0-9]+$ ]] && ((p > 0 && p < 65536)) || die "bad port '$p'"
    done
    for p in "${EDGE_PORTS[@]}" "${API_PORTS[@]}" "${OPS_PORTS[@]}" "$NATS_PORT" "$PG_PORT"; do
        port_busy "$p" && die "port $p is in use (set BASE_PORT)"
    done
    STATE="${STATE_DIR:-$(mktemp -d /tmp/wsgate-local-XXXXXX)}"
    mkdir -p "$STATE/logs" "$STATE/nats" "$STATE/pg"
    chmod 755 "$STATE"
    : >"$STATE/pids"
    echo $$ >"$STATE/cluster.sh.pid"
    echo "$STATE" >"$POINTER"
    trap on_signal INT TERM
    trap 'stop_all "$STATE"' EXIT # a failed start leaves nothing running
    cd "$STATE"

    NATS_URL="nats://127.0.0.1:$NATS_PORT"
    STORE_URL="postgres://postgres@127.0.0.1:$PG_PORT/wsgate"
    say "state in $STATE"
    start_nats
    start_postgres
    if [[ -n "${CONFIG:-}" ]]; then
        CONFIG="$(cd "$(dirname "$CONFIG")" && pwd)/$(basename "$CONFIG")"
        ROUTES_NOTE="routes of $CONFIG"
    else
        ROUTES_NOTE="generated route /chat -> $BACKEND"
        write_config
    fi
    WSGATE_STORE="$STORE_URL" "$WSGATE_BIN" migrate --config "$CONFIG" >"$STATE/logs/migrate.log" 2>&1 ||
        { cat "$STATE/logs/migrate.log" >&2; die "wsgate migrate failed"; }
    # started dispatchers, APIs, edges, so that stop_all (newest first)
    # drains the edges while the others still run
    local i
    for i in 0 1; do
        start_node "dispatch$i" dispatch "${OPS_PORTS[$i]}" WSGATE_OPS_LISTEN="127.0.0.1:${OPS_PORTS[$i]}"
    done
    for i in 0 1; do
        start_node "api$i" api "${API_PORTS[$i]}" WSGATE_API_LISTEN="127.0.0.1:${API_PORTS[$i]}"
    done
    for i in 0 1; do
        start_node "edge$i" edge "${EDGE_PORTS[$i]}" \
            WSGATE_EDGE_LISTEN="127.0.0.1:${EDGE_PORTS[$i]}" WSGATE_EDGE_ID="local-edge-$i" \
            WSGATE_OPS_LISTEN="127.0.0.1:${OPS_PORTS[$((i + 2))]}"
    done
    trap - EXIT
    print_addresses | tee "$STATE/addresses"
    # wait for a signal; a node that dies is reported with its exit status
    # (a signal: it crashed), the rest keep running
    while true; do
        sleep 1 &
        wait $! || true
        while read -r name pid; do
            if ! kill -0 "$pid" 2>/dev/null && ! grep -q "^$name $pid gone" "$STATE/reported" 2>/dev/null; then
                reap "$pid"
                say "$name (pid $pid) ended${ST:+ by $(describe_status "$ST")}; its log: $STATE/logs/$name.log"
                echo "$name $pid gone" >>"$STATE/reported"
            fi
        done <"$STATE/pids"
    done
}

print_addresses() {
    local token="" ROUTE_PATH=/chat
    [[ "$ROUTES_NOTE" == generated* ]] || ROUTE_PATH="/<route>"
    token="$(WSGATE_STORE="$STORE_URL" "$WSGATE_BIN" token --config "$CONFIG" --api --scope admin --ttl 12h 2>/dev/null || true)"
    cat <<EOF

wsgate local cluster is up (state and logs: $STATE)
  edges (WebSocket):   ws://127.0.0.1:${EDGE_PORTS[0]}${ROUTE_PATH}   ws://127.0.0.1:${EDGE_PORTS[1]}${ROUTE_PATH}
  control APIs:        http://127.0.0.1:${API_PORTS[0]}   http://127.0.0.1:${API_PORTS[1]}
  dispatchers:         2, posting webhooks to the routes' backends ($ROUTES_NOTE)
  ops (/healthz /readyz /metrics): dispatchers http://127.0.0.1:${OPS_PORTS[0]} http://127.0.0.1:${OPS_PORTS[1]}, edges http://127.0.0.1:${OPS_PORTS[2]} http://127.0.0.1:${OPS_PORTS[3]}
  NATS:                $NATS_URL (JetStream store $STATE/nats)
  PostgreSQL:          $STORE_URL
  config:              $CONFIG${GEN_SECRET:+
  webhook secret:      $GEN_SECRET (the backend verifies with it: WEBHOOK_SECRET=... python3 examples/backend.py)}
  admin API token (12h):
    $token
Ctrl-C (or deploy/local/cluster.sh stop) stops everything.
EOF
}

case "${1:-start}" in
start) cmd_start ;;
stop) cmd_stop ;;
status) cmd_status ;;
-h | --help | help) sed -n '2,35p' "$0" | sed 's/^# \{0,1\}//' ;;
*) die "unknown command ${1} (start|stop|status)" ;;
esac
