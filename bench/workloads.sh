# bench/workloads.sh — the five workloads, sourced by bench/run.sh (which
# defines the servers, ports, sampling helpers and record()). Each wl_<x> takes
# a server name (wsgate | pushpin) and records one JSON line per measurement.
# Nothing here asserts on time: it measures, and "pass" is only zero loss.

ws_url() { # server [query] -> client URL on the server's /bench route
  case $1 in
    wsgate) echo "ws://127.0.0.1:$EP/bench${2:+?$2}" ;;
    pushpin) echo "ws://127.0.0.1:$HP/bench${2:+?$2}" ;;
  esac
}
tok_args() { # server kind -> wsload token options
  [ "$1" = wsgate ] && echo "--tokens $tmp/wsgate/tok-$2 --token-mode query" || true
}
wait_file() { # file seconds
  for _ in $(seq $(($2 * 10))); do [ -s "$1" ] && return 0; sleep 0.1; done
  return 1
}
fcalc() { python3 -c "print(round($1, 3))"; }
target() { eval echo "\$TARGET_$1"; }

# Publishes through the server's API: server channel benchpub-args...
publish() {
  local s=$1 ch=$2
  shift 2
  if [ "$s" = wsgate ]; then
    "$B/benchpub" --port "$AP" --path "/v1/channels/$ch/messages" \
      --header "Authorization: Bearer $API_TOKEN" --body '{"data":"@T@"}' "$@"
  else
    "$B/benchpub" --port "$PP" --path /publish/ \
      --body "{\"items\":[{\"channel\":\"$ch\",\"formats\":{\"ws-message\":{\"content\":\"@T@\"}}}]}" "$@"
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
  local s=$1 out="$tmp/a-$s.json" ready="$tmp/a-$s.ready" t
  t=$(target "$s")
  local rss_before
  rss_before=$(rss_kb "$t")
  # shellcheck disable=SC2046
  "$B/wsload" --url "$(ws_url "$s")" $(tok_args "$s" idle) --conns "$N_IDLE" --inflight 200 \
    --sources "$sources" --mode idle --duration "$HOLD" --ready-file "$ready" >"$out" &
  local lp=$!
  pids+=("$lp")
  wait_file "$ready" 300 || { kill "$lp"; return 1; }
  sleep 2
  local c0 t0 c1 t1 rss
  c0=$(cpu_s "$t") t0=$(date +%s.%N)
  sleep $((HOLD / 2))
  rss=$(rss_kb "$t")
  local rest=$((HOLD - HOLD / 2 - 4))
  [ "$rest" -ge 1 ] || rest=1
  sleep "$rest"
  c1=$(cpu_s "$t") t1=$(date +%s.%N)
  wait "$lp" || true
  local r open closed
  r=$(cat "$out")
  open=$(jget "$r" open) closed=$(jget "$r" closed_early)
  record "{\"workload\":\"a\",\"server\":\"$s\",\"conns\":$N_IDLE,\"open\":$open,\"closed_early\":$closed,
    \"hold_s\":$HOLD,\"rss_kib\":$rss,\"rss_kib_before\":$rss_before,
    \"rss_kib_per_conn\":$(fcalc "$rss / max($open,1)"),
    \"idle_cpu_pct\":$(fcalc "($c1 - $c0) / ($t1 - $t0) * 100"),
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
    "$B/wsload" --url "$(ws_url "$s" "$q")" $(tok_args "$s" fan) --conns "$subs" --inflight 200 \
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
      \"open\":$opened,\"published\":$(jget "$p" ok),\"received\":$(jget "$r" received),
      \"lost\":$(($(jget "$p" ok) * opened - $(jget "$r" received))),
      \"all_reached_ms\":$(jget "$r" latency_ms.max)}"
    local goal
    for goal in $FAN_RATES; do
      local rate c0 c1 ok rx lost
      rate=$(fcalc "max($goal / $subs, 1)")
      interval "$lp" "$out" >/dev/null
      c0=$(cpu_s "$t")
      p=$(publish "$s" fan --rate "$rate" --duration "$STEP_S" --conns 8)
      drain "$lp" "$out" $(($(jget "$p" ok) * opened))
      r=$(interval "$lp" "$out")
      c1=$(cpu_s "$t")
      ok=$(jget "$p" ok) rx=$(jget "$r" received)
      lost=$((ok * opened - rx))
      [ "$lost" -lt 0 ] && lost=0
      record "{\"workload\":\"b\",\"server\":\"$s\",\"subscribers\":$subs,\"open\":$opened,\"step\":\"rate\",
        \"goal_deliveries_per_s\":$goal,\"publish_per_s\":$rate,\"published\":$ok,
        \"publish_errors\":$(jget "$p" errors),\"api_ms\":$(python3 -c 'import json,sys;print(json.dumps(json.loads(sys.argv[1])["api_ms"]))' "$p"),
        \"received\":$rx,\"lost\":$lost,\"closed_early\":$(jget "$r" closed_early),
        \"deliveries_per_s\":$(fcalc "$rx / max($(jget "$r" last_rx_s), 0.001)"),
        \"latency_ms\":$(python3 -c 'import json,sys;print(json.dumps(json.loads(sys.argv[1])["latency_ms"]))' "$r"),
        \"cpu_s_per_1000\":$(fcalc "($c1 - $c0) / max($rx, 1) * 1000"),\"pass\":$([ "$lost" = 0 ] && echo true || echo false)}"
      [ "$lost" = 0 ] || break
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
    local out="$tmp/c-$s-$rate.json" ready="$tmp/c-$s-$rate.ready" per
    per=$(python3 -c "print(max(1, $rate * $STEP_S // $C_CONNS))")
    breset
    # shellcheck disable=SC2046
    "$B/wsload" --url "$(ws_url "$s")" $(tok_args "$s" idle) --conns "$C_CONNS" --inflight 200 \
      --sources "$sources" --mode send --rate "$rate" --count "$per" --size 64 \
      --duration $((STEP_S * 4)) --ready-file "$ready" >"$out" &
    local lp=$!
    pids+=("$lp")
    wait_file "$ready" 120 || { kill "$lp"; return 1; }
    local c0 c1 st sent got
    c0=$(cpu_s "$t")
    wait "$lp" || true
    sent=$(jget "$(cat "$out")" sent)
    for _ in $(seq 100); do
      st=$(bstats)
      got=$(jget "$st" messages)
      [ "$got" -ge "$sent" ] && break
      sleep 0.1
    done
    c1=$(cpu_s "$t")
    local lost=$((sent - got))
    [ "$lost" -lt 0 ] && lost=0
    record "{\"workload\":\"c\",\"server\":\"$s\",\"conns\":$C_CONNS,\"offered_per_s\":$rate,
      \"sent\":$sent,\"received\":$got,\"lost\":$lost,
      \"duplicates\":$(jget "$st" duplicates),\"out_of_order\":$(jget "$st" out_of_order),
      \"frames_per_s\":$(fcalc "$got / max($(jget "$st" span_s), 0.001)"),
      \"latency_ms\":$(python3 -c 'import json,sys;print(json.dumps(json.loads(sys.argv[1])["latency_ms"]))' "$st"),
      \"cpu_s_per_1000\":$(fcalc "($c1 - $c0) / max($got, 1) * 1000"),
      \"pass\":$([ "$lost" = 0 ] && echo true || echo false)}"
    [ "$lost" = 0 ] || break
    python3 -c "import json,sys;sys.exit(json.loads(sys.argv[1])['latency_ms']['p99'] > 5000)" "$st" || break
  done
}

# Connection ids on wsgate's /bench route, one a line, from the control API.
wsgate_ids() {
  python3 - "$AP" "$API_TOKEN" <<'EOF'
import json, sys, urllib.request
port, tok = sys.argv[1], sys.argv[2]
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
sys.exit(0 if n else 1)
EOF
}

# (d) control-API sends to random connections of D_CONNS (wrk, keep-alive).
wl_d() {
  local s=$1 t out="$tmp/d-$s.json" ready="$tmp/d-$s.ready"
  t=$(target "$s")
  local q=""
  [ "$s" = pushpin ] && q="--conn-query"
  # shellcheck disable=SC2046
  "$B/wsload" --url "$(ws_url "$s")" $(tok_args "$s" idle) $q --conns "$D_CONNS" --inflight 200 \
    --sources "$sources" --mode recv --duration 100000 --ready-file "$ready" >"$out" &
  local lp=$!
  pids+=("$lp")
  wait_file "$ready" 300 || { kill "$lp"; return 1; }
  local url
  if [ "$s" = wsgate ]; then
    if ! wsgate_ids >"$tmp/d-ids" 2>"$tmp/d-ids.err"; then
      kill "$lp"
      wait "$lp" 2>/dev/null || true
      record "{\"workload\":\"d\",\"server\":\"$s\",\"not_run\":\"control API could not list connections: $(head -c 120 "$tmp/d-ids.err" | tr '\n"' '  ')\"}"
      return 0
    fi
    url="http://127.0.0.1:$AP"
  else
    url="http://127.0.0.1:$PP"
  fi
  sleep 1
  interval "$lp" "$out" >/dev/null
  local c0 c1 w r
  c0=$(cpu_s "$t")
  w=$(BENCH_TARGET=$s BENCH_N=$D_CONNS BENCH_IDS="$tmp/d-ids" BENCH_TOKEN="${API_TOKEN:-}" \
    wrk -t1 -c32 -d"${D_SECS}s" --latency -s "$here/send.lua" "$url")
  local done
  done=$(python3 -c 'import re,sys;m=re.search(r"(\d+) requests in",sys.argv[1]);print(m.group(1) if m else 0)' "$w")
  drain "$lp" "$out" "$done"
  r=$(interval "$lp" "$out")
  c1=$(cpu_s "$t")
  kill "$lp" 2>/dev/null || true
  wait "$lp" 2>/dev/null || true
  echo "$w" >"$tmp/d-$s.wrk"
  python3 - "$w" "$r" "$s" "$c0" "$c1" >>"$tmp/results.jsonl" <<'EOF'
import json, re, sys
w, r, s, c0, c1 = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3], float(sys.argv[4]), float(sys.argv[5])
def ms(v):
    m = re.match(r"([\d.]+)(us|ms|s)", v)
    return round(float(m.group(1)) * {"us": 1e-3, "ms": 1, "s": 1e3}[m.group(2)], 3)
done = int(re.search(r"(\d+) requests in", w).group(1))
bad = re.search(r"Non-2xx or 3xx responses: (\d+)", w)
bad = int(bad.group(1)) if bad else 0
errs = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", w)
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", w).group(1))
p99 = ms(re.search(r"\s99%\s+(\S+)", w).group(1))
ok = done - bad
print(json.dumps({"workload": "d", "server": s, "requests": done, "non_2xx": bad,
    "socket_errors": errs.group(0) if errs else "", "req_per_s": rps, "api_p99_ms": p99,
    "received": r["received"], "lost": max(0, ok - r["received"]), "delivery_ms": r["latency_ms"],
    "cpu_s_per_1000": round((c1 - c0) / max(r["received"], 1) * 1000, 3),
    "pass": bad == 0 and ok <= r["received"]}))
EOF
}

# (e) new connections admitted by an HTTP authorizer, <= 200 in flight.
wl_e() {
  local s=$1 t out="$tmp/e-$s.json" url
  t=$(target "$s")
  if [ "$s" = wsgate ]; then url="ws://127.0.0.1:$EP/authz"; else url=$(ws_url "$s"); fi
  breset
  local c0 c1 r
  c0=$(cpu_s "$t")
  "$B/wsload" --url "$url" --conns "$E_CONNS" --inflight 200 --sources "$sources" --mode idle \
    --duration 0.1 >"$out" || true
  c1=$(cpu_s "$t")
  r=$(cat "$out")
  local open failed
  open=$(jget "$r" open) failed=$(jget "$r" failed)
  record "{\"workload\":\"e\",\"server\":\"$s\",\"conns\":$E_CONNS,\"open\":$open,\"failed\":$failed,
    \"authorizations\":$(jget "$(bstats)" authorizations),
    \"connects_per_s\":$(jget "$r" connects_per_s),
    \"handshake_ms\":$(python3 -c 'import json,sys;print(json.dumps(json.loads(sys.argv[1])["handshake_ms"]))' "$r"),
    \"cpu_s_per_1000\":$(fcalc "($c1 - $c0) / max($open, 1) * 1000"),
    \"pass\":$([ "$failed" = 0 ] && echo true || echo false)}"
  sleep 3
}
