# SPDX-License-Identifier: MIT
# bench/workloads.sh — the six workloads, sourced by bench/run.sh (which
# defines the servers, ports, sampling helpers and record()). Each wl_<x> takes
# a server name (wsgate | wsgate-cluster | pushpin | wsgate-tls |
# wsgate-deflate | wsgate-grip | wsgate-aws | wsgate-stream) and records one JSON line
# per measurement. Nothing here asserts on time: it measures, and "pass" is
# only zero loss.

url_args() { # server [path] [query] -> wsload --url options (the cluster: both edges)
  local path=${2:-/bench} q=${3:+?$3}
  case $1 in
    wsgate | wsgate-grip | wsgate-aws | wsgate-stream) echo "--url ws://127.0.0.1:$EP$path$q" ;;
    # a 101 without permessage-deflate fails the connection (wsload --deflate)
    wsgate-deflate) echo "--url ws://127.0.0.1:$EP$path$q --deflate" ;;
    wsgate-tls) echo "--url wss://127.0.0.1:$EP$path$q" ;;
    wsgate-cluster) echo "--url ws://127.0.0.1:$CEP0$path$q --url ws://127.0.0.1:$CEP1$path$q" ;;
    pushpin) echo "--url ws://127.0.0.1:$HP$path$q" ;;
  esac
}
is_wsgate() { [ "${1#wsgate}" != "$1" ]; } # wsgate, wsgate-cluster, wsgate-tls, wsgate-deflate, -grip, -aws, -stream
# The compatibility-mode servers change only the /bench route's protocol,
# which only c (client frames to the backend) and d (sends from the backend)
# go through in that protocol: a and e measure connections (the same edge
# and auth), b publishes through the native API; those are not run there.
# wsgate-stream likewise: only c's frames (and d's sends, which the
# backend does not see) differ from wsgate.
runs_on() { # server workload [why] -> 0 when the workload runs on the server
  case $1:$2 in
    wsgate-grip:[abe] | wsgate-aws:[abe])
      [ -z "${3:-}" ] || echo "compatibility mode: only c and d use the route's protocol (a, e: the same edge and auth as wsgate; b: the native publish API)"
      return 1 ;;
    wsgate-stream:[abe])
      [ -z "${3:-}" ] || echo "backend stream: only c (and d) differ from wsgate (a, e: the same edge and auth; b: the native publish API)"
      return 1 ;;
    wsgate-cluster:f) ;;
    *:f)
      [ -z "${3:-}" ] || echo "the cluster only: more connections than one process may hold"
      return 1 ;;
  esac
}
tok_args() { # server kind -> wsload token options
  if is_wsgate "$1"; then echo "--tokens $tmp/$1/tok-$2 --token-mode query"; fi
}
api_port() { # server [index] -> a control-API port (the cluster has two)
  case $1 in
    wsgate | wsgate-tls | wsgate-deflate | wsgate-grip | wsgate-aws | wsgate-stream) echo "$AP" ;;
    wsgate-cluster) [ "${2:-0}" = 1 ] && echo "$CAP1" || echo "$CAP0" ;;
  esac
}
wait_file() { # file seconds
  for _ in $(seq $(($2 * 10))); do [ -s "$1" ] && return 0; sleep 0.1; done
  return 1
}
fcalc() { python3 -c "print(round($1, 3))"; }
payload() { # server -> bytes per message in b, c, d
  [ "$1" = wsgate-deflate ] && echo "$DEFLATE_PAYLOAD" || echo "$PAYLOAD"
}
# JSON-like padding (chat records, as wsload's) that makes a message whose
# stamp "t=<19 digits> c=0 n=<k> " comes first about `bytes` long;
# JSON-escaped (json=1) for a JSON body, raw otherwise.
filler() { # bytes json
  python3 - "$1" "$2" <<'EOF'
import json, random, sys
n, esc = int(sys.argv[1]) - 30, sys.argv[2] == "1"
r, words, out = random.Random(12345), "hello world meeting at noon the build passed deploy queue room ok".split(), ""
while len(out) < n:
    out += '{"id":%d,"user":"u-%04d","type":"chat.message","text":"%s","ts":%d},' % (
        r.randrange(10**6), r.randrange(9973), " ".join(r.choice(words) for _ in range(3)), 1700000000 + r.randrange(10**6))
out = out[:max(n, 0)]
print(json.dumps(out)[1:-1] if esc else out, end="")
EOF
}
# wsgate-deflate: every message of at least 256 bytes must have travelled
# compressed (the edge skips smaller ones): wsload's count of compressed
# messages against all of them; true for the other servers
deflate_ok() { # server payload compressed all
  [ "$1" != wsgate-deflate ] || [ "$2" -lt 256 ] || [ "$3" = "$4" ]
}
target() { local v="TARGET_${1//-/_}"; echo "${!v}"; }

# CPU seconds per process of the server as a JSON object: for the cluster
# every process cluster.sh started (edges, APIs, dispatchers, nats,
# postgres with its backends), to see which one limits it; {} otherwise.
cpu_snap() { # server
  [ "$1" = wsgate-cluster ] || { echo "{}"; return; }
  local np out="" name p t
  for np in $CLUSTER_PROCS; do
    name=${np%%:*} p=${np#*:}
    if [ "$name" = postgres ]; then t="kids:$p"; else t="sid:$p"; fi
    out="$out\"$name\":$(cpu_s "$t"),"
  done
  echo "{${out%,}}"
}
# CPU seconds per thread name (/proc/PID/task/*/stat, threads of one name
# summed) of a standalone server's processes, to see which thread limits it
# (edge, dispatcher, disp-stream, bus, api…); {} for the cluster and Pushpin.
thread_snap() { # server
  case $1 in wsgate-cluster | pushpin) echo "{}"; return ;; esac
  local p
  for p in $(procs_of "$(target "$1")"); do cat /proc/"$p"/task/*/stat 2>/dev/null; done |
    python3 -c 'import json,sys
out = {}
for ln in sys.stdin:
    name, rest = ln[ln.index("(") + 1:ln.rindex(")")], ln[ln.rindex(")") + 2:].split()
    out[name] = out.get(name, 0) + (int(rest[11]) + int(rest[12])) / float(sys.argv[1])
print(json.dumps({k: round(v, 3) for k, v in out.items()}))' "$clk"
}
cpu_delta() { # snap-before snap-after -> {name: seconds}
  python3 -c 'import json,sys;a,b=json.loads(sys.argv[1]),json.loads(sys.argv[2])
print(json.dumps({k: round(b[k]-a.get(k,0),3) for k in b}))' "$1" "$2"
}

# Publishes through the server's API: server channel benchpub-args...
# (The cluster: through its first API; the fan-out work is on the edges.)
# Each message is "t=<ns> c=0 n=<k> " and JSON-like text, payload() bytes.
publish() {
  local s=$1 ch=$2 f
  shift 2
  f=" $(filler "$(payload "$s")" 1)"
  if is_wsgate "$s"; then
    "$B/benchpub" --port "$(api_port "$s")" --path "/v1/channels/$ch/messages" \
      --header "Authorization: Bearer $API_TOKEN" --body "{\"data\":\"@T@$f\"}" "$@"
  else
    "$B/benchpub" --port "$PP" --path /publish/ \
      --body "{\"items\":[{\"channel\":\"$ch\",\"formats\":{\"ws-message\":{\"content\":\"@T@$f\"}}}]}" "$@"
  fi
}

# Waits until a recv-mode wsload has received `expected` messages in the
# current interval, or its count stopped growing for 3 s (drain), max 60 s.
drain() { # pid outfile expected
  local last=-1 same=0 now
  for _ in $(seq 120); do
    now=$(jget "$(interval "$1" "$2" USR2)" received)
    [ "$now" -ge "$3" ] && return 0
    if [ "$now" = "$last" ]; then same=$((same + 1)); else same=0; fi
    [ "$same" -ge 6 ] && return 0
    last=$now
    sleep 0.5
  done
}

# Prints the next interval line of a wsload running in recv mode (SIGUSR1:
# and start a new interval; SIGUSR2: without).
interval() { # pid outfile [signal]
  local before
  before=$(wc -l <"$2")
  kill "-${3:-USR1}" "$1"
  for _ in $(seq 400); do
    [ "$(wc -l <"$2")" -gt "$before" ] && break
    sleep 0.05
  done
  tail -n 1 "$2"
}

# (a) N authenticated idle connections held HOLD s: RSS per connection, idle CPU.
wl_a() {
  local s=$1 t
  local out="$tmp/a-$s.json" ready="$tmp/a-$s.ready"
  t=$(target "$s")
  local rss_before
  rss_before=$(rss_kb "$t")
  # shellcheck disable=SC2046
  "$B/wsload" $(url_args "$s") $(tok_args "$s" idle) --conns "$N_IDLE" --inflight 200 \
    --sources "$sources" --mode idle --duration "$HOLD" --ready-file "$ready" >"$out" &
  local lp=$!
  pids+=("$lp")
  wait_file "$ready" 300 || { kill "$lp"; return 1; }
  sleep 2
  local c0 t0 c1 t1 rss infra0 infra1 infra="{}"
  c0=$(cpu_s "$t") t0=$(date +%s.%N) infra0=$(cpu_snap "$s")
  sleep $((HOLD / 2))
  rss=$(rss_kb "$t")
  if [ "$s" = wsgate-cluster ]; then # nats-server and PostgreSQL beside, not in, the sum
    infra="{\"nats_rss_kib\":$(rss_kb "$TARGET_nats"),\"postgres_pss_kib\":$(pss_kb "$TARGET_postgres"),
      \"postgres_rss_kib\":$(rss_kb "$TARGET_postgres")"
  fi
  local rest=$((HOLD - HOLD / 2 - 4))
  [ "$rest" -ge 1 ] || rest=1
  sleep "$rest"
  c1=$(cpu_s "$t") t1=$(date +%s.%N) infra1=$(cpu_snap "$s")
  if [ "$s" = wsgate-cluster ]; then
    infra="$infra,\"idle_cpu_pct_by_process\":$(python3 -c 'import json,sys
d=json.loads(sys.argv[1]);print(json.dumps({k: round(v/float(sys.argv[2])*100,2) for k,v in d.items()}))' \
      "$(cpu_delta "$infra0" "$infra1")" "$(fcalc "$t1 - $t0")")}"
  fi
  wait "$lp" || true
  local r open closed
  r=$(cat "$out")
  open=$(jget "$r" open) closed=$(jget "$r" closed_early)
  record "{\"workload\":\"a\",\"server\":\"$s\",\"conns\":$N_IDLE,\"open\":$open,\"closed_early\":$closed,
    \"hold_s\":$HOLD,\"rss_kib\":$rss,\"rss_kib_before\":$rss_before,
    \"rss_kib_per_conn\":$(fcalc "$rss / max($open,1)"),
    \"rss_kib_per_conn_above_start\":$(fcalc "($rss - $rss_before) / max($open,1)"),
    \"idle_cpu_pct\":$(fcalc "($c1 - $c0) / ($t1 - $t0) * 100"),\"infra\":$infra,
    \"deflate_negotiated\":$(jget "$r" deflate.negotiated),
    \"pass\":$([ "$open" = "$N_IDLE" ] && [ "$closed" = 0 ] && echo true || echo false)}"
}

# (b) fan-out to one channel with S subscribers: one message to all, then
# rising publish rates (targets in deliveries/s).
wl_b() {
  local s=$1 t subs
  t=$(target "$s")
  for subs in $FAN; do
    local out="$tmp/b-$s-$subs.json" ready="$tmp/b-$s-$subs.ready"
    local q=""
    [ "$s" = pushpin ] && q="ch=fan"
    # shellcheck disable=SC2046
    "$B/wsload" $(url_args "$s" /bench "$q") $(tok_args "$s" fan) --conns "$subs" --inflight 200 \
      --sources "$sources" --mode recv --duration 100000 --ready-file "$ready" >"$out" &
    local lp=$!
    pids+=("$lp")
    wait_file "$ready" 300 || { kill "$lp"; return 1; }
    sleep 1
    local opened
    opened=$(cat "$ready") # losses are counted against the connections that opened
    interval "$lp" "$out" >/dev/null
    local p r
    p=$(publish "$s" fan --count 1)
    drain "$lp" "$out" "$opened"
    r=$(interval "$lp" "$out")
    record "{\"workload\":\"b\",\"server\":\"$s\",\"subscribers\":$subs,\"step\":\"one\",
      \"payload_bytes\":$(payload "$s"),\"received_compressed\":$(jget "$r" received_compressed),
      \"open\":$opened,\"published\":$(jget "$p" ok),\"received\":$(jget "$r" received),
      \"lost\":$(($(jget "$p" ok) * opened - $(jget "$r" received))),
      \"all_reached_ms\":$(jget "$r" latency_ms.max)}"
    local goal
    for goal in $FAN_RATES; do
      local rate c0 c1 ok rx lost p0 p1 rz
      rate=$(fcalc "max($goal / $subs, 1)")
      interval "$lp" "$out" >/dev/null
      c0=$(cpu_s "$t") p0=$(cpu_snap "$s")
      p=$(publish "$s" fan --rate "$rate" --duration "$STEP_S" --conns 8)
      drain "$lp" "$out" $(($(jget "$p" ok) * opened))
      r=$(interval "$lp" "$out")
      c1=$(cpu_s "$t") p1=$(cpu_snap "$s")
      ok=$(jget "$p" ok) rx=$(jget "$r" received) rz=$(jget "$r" received_compressed)
      lost=$((ok * opened - rx))
      [ "$lost" -lt 0 ] && lost=0
      record "{\"workload\":\"b\",\"server\":\"$s\",\"subscribers\":$subs,\"open\":$opened,\"step\":\"rate\",
        \"goal_deliveries_per_s\":$goal,\"publish_per_s\":$rate,\"published\":$ok,
        \"publish_errors\":$(jget "$p" errors),\"api_ms\":$(python3 -c 'import json,sys;print(json.dumps(json.loads(sys.argv[1])["api_ms"]))' "$p"),
        \"received\":$rx,\"lost\":$lost,\"closed_early\":$(jget "$r" closed_early),
        \"deliveries_per_s\":$(fcalc "$rx / max($(jget "$r" last_rx_s), 0.001)"),
        \"latency_ms\":$(python3 -c 'import json,sys;print(json.dumps(json.loads(sys.argv[1])["latency_ms"]))' "$r"),
        \"cpu_s_per_1000\":$(fcalc "($c1 - $c0) / max($rx, 1) * 1000"),\"cpu_s_by_process\":$(cpu_delta "$p0" "$p1"),
        \"payload_bytes\":$(payload "$s"),\"received_compressed\":$rz,
        \"pass\":$([ "$lost" = 0 ] && deflate_ok "$s" "$(payload "$s")" "$rz" "$rx" && echo true || echo false)}"
      [ "$lost" = 0 ] && deflate_ok "$s" "$(payload "$s")" "$rz" "$rx" || break
      python3 -c "import json,sys;sys.exit(json.loads(sys.argv[1])['latency_ms']['p99'] > 5000)" "$r" || break
    done
    kill "$lp" 2>/dev/null || true
    wait "$lp" 2>/dev/null || true
    sleep 2
  done
}

# (c) client frames that become webhooks, at rising rates.
wl_c() {
  local s=$1 t rate
  t=$(target "$s")
  for rate in $C_RATES; do
    local out="$tmp/c-$s-$rate.json" ready="$tmp/c-$s-$rate.ready" go="$tmp/c-$s-$rate.go" per
    per=$(python3 -c "print(max(1, $rate * $STEP_S // $C_CONNS))")
    breset
    # shellcheck disable=SC2046
    "$B/wsload" $(url_args "$s") $(tok_args "$s" idle) --conns "$C_CONNS" --inflight 200 \
      --sources "$sources" --mode send --rate "$rate" --count "$per" --size "$(payload "$s")" \
      --duration $((STEP_S * 4)) --ready-file "$ready" --start-file "$go" >"$out" &
    local lp=$!
    pids+=("$lp")
    wait_file "$ready" 120 || { kill "$lp"; return 1; }
    local c0 c1 st sent failed got p0 p1 h0 h1 last=-1 same=0 sz
    # the "before" sample, then the senders start (sampling takes seconds on
    # a loaded machine: taken while they sent, it missed part of the step)
    c0=$(cpu_s "$t") p0=$(cpu_snap "$s") h0=$(thread_snap "$s")
    : >"$go"
    wait "$lp" || true
    sent=$(jget "$(cat "$out")" sent) failed=$(jget "$(cat "$out")" failed)
    sz=$(jget "$(cat "$out")" deflate.sent_compressed)
    # wait for the backlog: until every frame arrived, or none arrived for
    # 5 s (what is missing then is lost), at most 120 s
    for _ in $(seq 1200); do
      st=$(bstats)
      # distinct frames: a duplicate (at-least-once) does not hide a loss
      got=$(($(jget "$st" messages) - $(jget "$st" duplicates)))
      [ "$got" -ge "$sent" ] && break
      if [ "$got" = "$last" ]; then same=$((same + 1)); else same=0; fi
      [ "$same" -ge 50 ] && break
      last=$got
      sleep 0.1
    done
    c1=$(cpu_s "$t") p1=$(cpu_snap "$s") h1=$(thread_snap "$s")
    local lost=$((sent - got)) ooo
    [ "$lost" -lt 0 ] && lost=0
    ooo=$(jget "$st" out_of_order)
    # a step whose connections did not all open measured nothing: not a pass
    record "{\"workload\":\"c\",\"server\":\"$s\",\"conns\":$C_CONNS,\"offered_per_s\":$rate,
      \"failed_connections\":$failed,\"sent\":$sent,\"received\":$got,\"lost\":$lost,
      \"duplicates\":$(jget "$st" duplicates),\"out_of_order\":$ooo,
      \"stream_frames\":$(jget "$st" stream_frames),
      \"frames_per_s\":$(fcalc "$got / max($(jget "$st" span_s), 0.001)"),
      \"latency_ms\":$(python3 -c 'import json,sys;print(json.dumps(json.loads(sys.argv[1])["latency_ms"]))' "$st"),
      \"cpu_s_per_1000\":$(fcalc "($c1 - $c0) / max($got, 1) * 1000"),\"cpu_s_by_process\":$(cpu_delta "$p0" "$p1"),
      \"cpu_s_by_thread\":$(cpu_delta "$h0" "$h1"),
      \"payload_bytes\":$(payload "$s"),\"sent_compressed\":$sz,
      \"pass\":$([ "$lost" = 0 ] && [ "$ooo" = 0 ] && [ "$failed" = 0 ] && deflate_ok "$s" "$(payload "$s")" "$sz" "$sent" && echo true || echo false)}"
    [ "$lost" = 0 ] && [ "$ooo" = 0 ] && [ "$failed" = 0 ] && deflate_ok "$s" "$(payload "$s")" "$sz" "$sent" || break
    python3 -c "import json,sys;sys.exit(json.loads(sys.argv[1])['latency_ms']['p99'] > 5000)" "$st" || break
  done
}

# Connection ids on wsgate's /bench route, one a line, from the control API
# (port). Exits 1 unless exactly `want` are listed: the cluster's registry
# may still hold rows of connections an earlier workload closed (after
# workload a's 18,000 it took ~25 s to catch up here), and sends to those
# answer 410.
wsgate_ids() { # port want
  python3 - "$1" "$API_TOKEN" "$2" <<'EOF'
import json, sys, urllib.request
port, tok, want = sys.argv[1], sys.argv[2], int(sys.argv[3])
cursor, n = "", 0
while True:
    url = "http://127.0.0.1:%s/v1/connections?route=/bench&limit=1000%s" % (port, "&cursor=" + cursor if cursor else "")
    req = urllib.request.Request(url, headers={"Authorization": "Bearer " + tok})
    d = json.load(urllib.request.urlopen(req, timeout=10))
    items = d.get("items") or d.get("connections") or d.get("data") or []
    for it in items:
        print(it["id"])
        n += 1
    cursor = d.get("next_cursor") or d.get("cursor") or ""
    if not cursor or not items:
        break
sys.exit(0 if n == want else 1)
EOF
}

# (d) control-API sends to random connections of D_CONNS (wrk, keep-alive).
# The cluster: one wrk per API (16 connections each, as a load balancer in
# front of both would spread them); requests add up, API p99 is the larger
# of the two.
wl_d() {
  local s=$1 t
  local out="$tmp/d-$s.json" ready="$tmp/d-$s.ready"
  t=$(target "$s")
  local q=""
  [ "$s" = pushpin ] && q="--conn-query"
  breset # wsgate-grip: the backend counts the OPENs it answered (below)
  # shellcheck disable=SC2046
  "$B/wsload" $(url_args "$s") $(tok_args "$s" idle) $q --conns "$D_CONNS" --inflight 200 \
    --sources "$sources" --mode recv --duration 100000 --ready-file "$ready" >"$out" &
  local lp=$!
  pids+=("$lp")
  wait_file "$ready" 300 || { kill "$lp"; return 1; }
  local urls=() opened
  opened=$(cat "$ready")
  if is_wsgate "$s"; then
    # the cluster's registry records connections from their connect and
    # disconnect events: wait (at most 120 s) until it lists the open ones only
    local ok=0
    for _ in $(seq 120); do
      wsgate_ids "$(api_port "$s")" "$opened" >"$tmp/d-ids" 2>"$tmp/d-ids.err" && { ok=1; break; }
      sleep 1
    done
    if [ "$ok" != 1 ]; then
      kill "$lp"
      wait "$lp" 2>/dev/null || true
      record "{\"workload\":\"d\",\"server\":\"$s\",\"not_run\":\"control API listed $(wc -l <"$tmp/d-ids") of $opened connections: $(head -c 120 "$tmp/d-ids.err" | tr '\n"' '  ')\"}"
      return 0
    fi
    # wsgate-grip: each connection is subscribed to its own channel by the
    # backend's answer to OPEN (GRIP subscribe): wait (at most 60 s) until
    # the backend answered every OPEN, then a second for the edge to apply it
    if [ "$s" = wsgate-grip ]; then
      for _ in $(seq 600); do [ "$(jget "$(bstats)" authorizations)" -ge "$opened" ] && break; sleep 0.1; done
      [ "$(jget "$(bstats)" authorizations)" -ge "$opened" ] || echo "bench: wsgate-grip: only $(jget "$(bstats)" authorizations) of $opened OPENs answered; sends to the others will be lost" >&2
    fi
    urls=("http://127.0.0.1:$(api_port "$s" 0)")
    [ "$s" = wsgate-cluster ] && urls+=("http://127.0.0.1:$(api_port "$s" 1)")
  else
    urls=("http://127.0.0.1:$PP")
  fi
  sleep 1
  interval "$lp" "$out" >/dev/null
  local c0 c1 p0 p1 r i wp=() files=() done=0
  local per=$((32 / ${#urls[@]})) j=0
  is_wsgate "$s" && [ "$s" != wsgate-grip ] || j=1 # wsgate's send takes text/plain; publish (GRIP) JSON
  c0=$(cpu_s "$t") p0=$(cpu_snap "$s")
  for i in "${!urls[@]}"; do
    BENCH_SEED=$((i * 7919)) BENCH_TARGET=$s BENCH_N=$D_CONNS BENCH_FILL=" $(filler "$(payload "$s")" "$j")" BENCH_IDS="$tmp/d-ids" BENCH_TOKEN="${API_TOKEN:-}" \
      wrk -t1 -c"$per" -d"${D_SECS}s" --latency -s "$here/send.lua" "${urls[$i]}" >"$tmp/d-$s-$i.wrk" &
    wp+=($!)
    files+=("$tmp/d-$s-$i.wrk")
  done
  pids+=("${wp[@]}")
  for i in "${wp[@]}"; do wait "$i" || true; done
  for i in "${files[@]}"; do
    done=$((done + $(python3 -c 'import re,sys;m=re.search(r"(\d+) requests in",open(sys.argv[1]).read());print(m.group(1) if m else 0)' "$i")))
  done
  drain "$lp" "$out" "$done"
  r=$(interval "$lp" "$out")
  c1=$(cpu_s "$t") p1=$(cpu_snap "$s")
  kill "$lp" 2>/dev/null || true
  wait "$lp" 2>/dev/null || true
  record "$(python3 - "$r" "$s" "$c0" "$c1" "$(cpu_delta "$p0" "$p1")" "$(payload "$s")" "${files[@]}" <<'EOF'
import json, re, sys
r, s, c0, c1, by = json.loads(sys.argv[1]), sys.argv[2], float(sys.argv[3]), float(sys.argv[4]), json.loads(sys.argv[5])
size = int(sys.argv[6])
# wsgate-deflate: every message >= 256 bytes must have arrived compressed
zok = s != "wsgate-deflate" or size < 256 or r["received_compressed"] == r["received"]
def ms(v):
    m = re.match(r"([\d.]+)(us|ms|s)", v)
    return round(float(m.group(1)) * {"us": 1e-3, "ms": 1, "s": 1e3}[m.group(2)], 3)
done = bad = 0
rps = p99 = 0.0
errs = []
for f in sys.argv[7:]:
    w = open(f).read()
    done += int(re.search(r"(\d+) requests in", w).group(1))
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", w)
    bad += int(m.group(1)) if m else 0
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", w)
    if m:
        errs.append(m.group(0))
    rps += float(re.search(r"Requests/sec:\s+([\d.]+)", w).group(1))
    p99 = max(p99, ms(re.search(r"\s99%\s+(\S+)", w).group(1)))
ok = done - bad
print(json.dumps({"workload": "d", "server": s, "apis": len(sys.argv) - 7, "requests": done, "non_2xx": bad,
    "payload_bytes": size, "received_compressed": r["received_compressed"],
    "socket_errors": "; ".join(errs), "req_per_s": round(rps, 1), "api_p99_ms": p99,
    "received": r["received"], "lost": max(0, ok - r["received"]), "delivery_ms": r["latency_ms"],
    "cpu_s_per_1000": round((c1 - c0) / max(r["received"], 1) * 1000, 3), "cpu_s_by_process": by,
    "pass": bad == 0 and ok <= r["received"] and zok}))
EOF
)"
}

# (e) new connections admitted by an HTTP authorizer, <= 200 in flight.
# wsgate-tls runs it twice and records both: every connection a full TLS
# handshake, then (tls_resume) every connection but the first resuming the
# newest session ticket, as a browser that has been to the site does.
wl_e() {
  e_run "$1"
  if [ "$1" = wsgate-tls ]; then
    settle "$1"
    e_run "$1" --tls-resume
  fi
}
e_run() { # server [--tls-resume]
  local s=$1 t path=/bench resume=false
  local out="$tmp/e-$s${2:-}.json"
  [ "${2:-}" = --tls-resume ] && resume=true
  t=$(target "$s")
  is_wsgate "$s" && path=/authz
  breset
  local c0 c1 p0 p1 r
  c0=$(cpu_s "$t") p0=$(cpu_snap "$s")
  # shellcheck disable=SC2046
  "$B/wsload" $(url_args "$s" "$path") --conns "$E_CONNS" --inflight 200 --sources "$sources" --mode idle \
    --duration 0.1 ${2:+"$2"} >"$out" || true
  c1=$(cpu_s "$t") p1=$(cpu_snap "$s")
  r=$(cat "$out")
  local open failed
  open=$(jget "$r" open) failed=$(jget "$r" failed)
  record "{\"workload\":\"e\",\"server\":\"$s\",\"conns\":$E_CONNS,\"open\":$open,\"failed\":$failed,
    \"tls_resume\":$resume,\"tls_resumed\":$(jget "$r" tls_resumed),
    \"authorizations\":$(jget "$(bstats)" authorizations),
    \"connects_per_s\":$(jget "$r" connects_per_s),
    \"handshake_ms\":$(python3 -c 'import json,sys;print(json.dumps(json.loads(sys.argv[1])["handshake_ms"]))' "$r"),
    \"cpu_s_per_1000\":$(fcalc "($c1 - $c0) / max($open, 1) * 1000"),\"cpu_s_by_process\":$(cpu_delta "$p0" "$p1"),
    \"deflate_negotiated\":$(jget "$r" deflate.negotiated),
    \"pass\":$([ "$failed" = 0 ] && echo true || echo false)}"
  sleep 3
}

# (f) scale, the cluster only: SCALE_N idle connections spread over
# SCALE_EDGES edge processes of one cluster (cluster.sh's two and the rest
# started here with the same config: the 20,000 open-file limit is per
# process), one wsload process per edge, all in channel "fan"; then one
# publish through the API reaches all of them. Reports the time from the
# publish to the last delivery, the edges' RSS per connection and how many
# connections were held and lost.
wl_f() {
  local s=$1 i per port
  local edges=() lps=() outs=() eps=("$CEP0" "$CEP1") esess=()
  per=$(((SCALE_N + SCALE_EDGES - 1) / SCALE_EDGES))
  for ((i = 2; i < SCALE_EDGES; i++)); do
    port=$(free_port)
    setsid env WSGATE_STORE="postgres://postgres@127.0.0.1:$CPG/wsgate" WSGATE_NATS="nats://127.0.0.1:$CNATS" \
      WSGATE_EDGE_LISTEN="127.0.0.1:$port" WSGATE_EDGE_ID="bench-scale-edge-$i" WSGATE_OPS_LISTEN="127.0.0.1:$(free_port)" \
      "$build/wsgate" edge --config "$tmp/wsgate-cluster/wsgate.yaml" >"$tmp/f-edge-$i.log" 2>&1 </dev/null &
    esess+=($!)
    sessions+=($!)
    eps+=("$port")
  done
  for port in "${eps[@]:2}"; do
    wait_port "$port" 30 || { echo "bench: f: an extra edge did not listen (logs $tmp/f-edge-*.log)" >&2; f_stop; return 1; }
  done
  # the edges that hold the connections: cluster.sh's two and ours
  local held="" np
  for np in $CLUSTER_PROCS; do case ${np%%:*} in edge*) held="$held sid:${np#*:}" ;; esac; done
  for i in "${esess[@]}"; do held="$held sid:$i"; done
  local rss0 t0 t1
  rss0=$(rss_kb "$held")
  t0=$(date +%s.%N)
  for ((i = 0; i < SCALE_EDGES; i++)); do
    outs+=("$tmp/f-$i.json")
    # shellcheck disable=SC2046
    "$B/wsload" --url "ws://127.0.0.1:${eps[$i]}/bench" $(tok_args "$s" fan) --conns "$per" --inflight 100 \
      --sources "$sources" --mode recv --duration 100000 --ready-file "$tmp/f-$i.ready" >"${outs[$i]}" &
    lps+=($!)
    pids+=($!)
  done
  local opened=0 n
  for ((i = 0; i < SCALE_EDGES; i++)); do
    wait_file "$tmp/f-$i.ready" 600 || { echo "bench: f: wsload $i did not finish connecting" >&2; f_stop; return 1; }
    n=$(cat "$tmp/f-$i.ready")
    opened=$((opened + n))
  done
  t1=$(date +%s.%N)
  sleep 5 # the registry's rows and the subscriptions settle
  for ((i = 0; i < SCALE_EDGES; i++)); do interval "${lps[$i]}" "${outs[$i]}" >/dev/null; done
  local rss p rx=0 closed=0 reached=0 r
  rss=$(rss_kb "$held")
  p=$(publish "$s" fan --count 1)
  for ((i = 0; i < SCALE_EDGES; i++)); do
    drain "${lps[$i]}" "${outs[$i]}" "$(cat "$tmp/f-$i.ready")"
    r=$(interval "${lps[$i]}" "${outs[$i]}")
    rx=$((rx + $(jget "$r" received)))
    closed=$((closed + $(jget "$r" closed_early)))
    reached=$(python3 -c "print(max($reached, $(jget "$r" latency_ms.max)))")
  done
  record "{\"workload\":\"f\",\"server\":\"$s\",\"conns\":$SCALE_N,\"edges\":$SCALE_EDGES,\"open\":$opened,
    \"connect_s\":$(fcalc "$t1 - $t0"),\"published\":$(jget "$p" ok),\"received\":$rx,\"closed_early\":$closed,
    \"lost\":$(($(jget "$p" ok) * opened - rx)),\"all_reached_ms\":$reached,
    \"edges_rss_kib\":$rss,\"edges_rss_kib_before\":$rss0,
    \"rss_kib_per_conn\":$(fcalc "$rss / max($opened, 1)"),
    \"rss_kib_per_conn_above_start\":$(fcalc "($rss - $rss0) / max($opened, 1)"),
    \"nats_rss_kib\":$(rss_kb "$TARGET_nats"),\"postgres_pss_kib\":$(pss_kb "$TARGET_postgres"),
    \"pass\":$([ "$opened" = $((per * SCALE_EDGES)) ] && [ "$closed" = 0 ] && [ "$rx" -ge "$opened" ] && echo true || echo false)}"
  f_stop
}
f_stop() { # clients first (their disconnects reach the registry), then our edges
  local p
  for p in "${lps[@]:-}"; do [ -n "$p" ] && kill -TERM "$p" 2>/dev/null || true; done
  for p in "${lps[@]:-}"; do [ -n "$p" ] && wait "$p" 2>/dev/null || true; done
  for p in "${esess[@]:-}"; do [ -n "$p" ] && stop_session "$p" TERM; done
  for p in "${esess[@]:-}"; do
    [ -n "$p" ] || continue
    for _ in $(seq 300); do [ -z "$(pgrep -s "$p")" ] && break; sleep 0.1; done
    stop_session "$p" KILL
  done
}
