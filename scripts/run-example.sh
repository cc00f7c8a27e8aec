#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# `make run`: starts the example backend (examples/backend.py) and wsgate
# standalone with examples/standalone.yaml, prints how to connect, and stops
# both on Ctrl-C or SIGTERM (forwarded to each, then waited for: nothing is
# left running, holding the ports or the queue file).
# The backend listens on the port of the config's first route backend.
set -euo pipefail
bin=${1:-build/wsgate}
config=${2:-examples/standalone.yaml}

summary=$("$bin" check-config --config "$config")
edge=$(sed -n 's/^  edge: *\([^ ]*\).*/\1/p' <<<"$summary")
api=$(sed -n 's/^  api: *\([^ ]*\).*/\1/p' <<<"$summary")
backend_port=$(sed -n 's|^    /chat -> http://127\.0\.0\.1:\([0-9]*\)/.*|\1|p' <<<"$summary")

# Background jobs of a script ignore SIGINT, so a Ctrl-C reaches only this
# shell, which forwards one SIGTERM to each (a second signal would make
# wsgate skip its drain).
pids=()
stop() {
    trap - TERM INT
    kill -TERM "${pids[@]}" 2>/dev/null || true
    wait "${pids[@]}" 2>/dev/null || true
}
trap 'stop; exit 143' TERM
trap 'stop; exit 130' INT
trap stop EXIT

python3 examples/backend.py "${backend_port:-9000}" &
pids+=($!)

token=$("$bin" token --config "$config" --route /chat --sub alice --ttl 1h)
api_token=$("$bin" token --config "$config" --api --scope admin --ttl 1h)
cat <<TXT

wsgate standalone — edge ws://$edge/chat, control API http://$api/v1
Connect a client (any WebSocket client; the token can also go in an
"Authorization: Bearer" header or a "bearer.<token>" subprotocol):
  ws://$edge/chat?token=$token
Talk back through the control API:
  curl -H "Authorization: Bearer $api_token" http://$api/v1/connections
  curl -H "Authorization: Bearer $api_token" -H 'content-type: text/plain' \\
       -d hello http://$api/v1/channels/lobby/messages
Ctrl-C stops both.

TXT
"$bin" standalone --config "$config" &
pids+=($!)
# wait returns when wsgate ends, or at once when a trapped signal arrives
status=0
wait "${pids[1]}" || status=$?
exit "$status"
