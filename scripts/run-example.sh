#!/usr/bin/env bash
# `make run`: starts the example backend (examples/backend.py) and wsgate
# standalone with examples/standalone.yaml, prints how to connect, and stops
# both on Ctrl-C.
set -euo pipefail
bin=${1:-build/wsgate}
config=${2:-examples/standalone.yaml}

"$bin" check-config --config "$config" >/dev/null

python3 examples/backend.py 9000 &
backend=$!
trap 'kill $backend 2>/dev/null || true' EXIT

token=$("$bin" token --config "$config" --route /chat --sub alice --ttl 1h)
api_token=$("$bin" token --config "$config" --api --scope admin --ttl 1h)
cat <<TXT

wsgate standalone — edge ws://127.0.0.1:8080/chat, control API http://127.0.0.1:8081/v1
Connect a client (any WebSocket client; the token can also go in an
"Authorization: Bearer" header or a "bearer.<token>" subprotocol):
  ws://127.0.0.1:8080/chat?token=$token
Talk back through the control API:
  curl -H "Authorization: Bearer $api_token" http://127.0.0.1:8081/v1/connections
  curl -H "Authorization: Bearer $api_token" -H 'content-type: text/plain' \\
       -d hello http://127.0.0.1:8081/v1/channels/lobby/messages
Ctrl-C stops both.

TXT
"$bin" standalone --config "$config"
