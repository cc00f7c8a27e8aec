#!/usr/bin/env bash
# Installs every build, test and run dependency of wsgate from Debian bookworm's
# archive. Idempotent: when everything is present it checks with dpkg-query and
# returns in well under a second without touching the network.
#
# Usage: scripts/deps.sh [--bench | --fuzz]
#   --bench adds wrk, gnuplot and pushpin; --fuzz adds clang with its libFuzzer
#   and sanitizer runtimes and llvm-symbolizer (make fuzz)
set -euo pipefail

pkgs=(
  build-essential cmake pkg-config clang-format
  libwebsockets-dev libwebsockets-evlib-ev libev-dev libhttp-parser-dev libmicrohttpd-dev libpq-dev libsqlite3-dev
  libcurl4-openssl-dev libnats-dev libjansson-dev libjwt-dev libyaml-dev
  libpcre2-dev libcmocka-dev libssl-dev libgnutls28-dev zlib1g-dev openssl
  nats-server postgresql sqlite3 curl python3 procps
)
case "${1:-}" in
  --bench) pkgs+=(wrk gnuplot-nox pushpin) ;;
  --fuzz) pkgs+=(clang libclang-rt-dev llvm) ;;
esac

missing=()
for p in "${pkgs[@]}"; do
  st=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
  [ "$st" = "install ok installed" ] || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "deps: installing ${missing[*]}" >&2
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
