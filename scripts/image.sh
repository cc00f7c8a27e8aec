#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Builds wsgate's container images with podman, without any registry (`make image`):
#
#   localhost/debian:bookworm        Debian bookworm minbase, made by mmdebstrap from the
#                                    Debian mirror of /etc/apt/sources.list* (once; kept)
#   localhost/wsgate:VERSION         deploy/docker/Dockerfile (multi-stage; also :latest)
#   localhost/wsgate-nats:VERSION    deploy/docker/nats.Dockerfile (chart's bundled NATS)
#   localhost/wsgate-postgres:VERSION deploy/docker/postgres.Dockerfile (bundled PostgreSQL)
#
# Usage: scripts/image.sh [--rebuild-base] [--only wsgate|nats|postgres]...
# podman runs with runc and deploy/docker/containers.conf (CONTAINERS_CONF), because
# crun fails on this kind of host's cgroup layout and podman's default open-file
# limit exceeds the host's hard limit. Images stay in podman's store (podman rmi to
# remove them). Needs scripts/deps.sh --deploy.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
export CONTAINERS_CONF="${CONTAINERS_CONF:-$root/deploy/docker/containers.conf}"
version="$(sed -n 's/^project(wsgate VERSION \([0-9.]*\).*/\1/p' CMakeLists.txt)"
base=localhost/debian:bookworm
rebuild_base=0
only=()
while [ $# -gt 0 ]; do
  case "$1" in
    --rebuild-base) rebuild_base=1 ;;
    --only) only+=("$2"); shift ;;
    *) echo "usage: scripts/image.sh [--rebuild-base] [--only wsgate|nats|postgres]..." >&2; exit 2 ;;
  esac
  shift
done
[ ${#only[@]} -gt 0 ] || only=(wsgate nats postgres)
for t in podman runc mmdebstrap; do
  command -v "$t" >/dev/null || { echo "image: $t missing: run scripts/deps.sh --deploy" >&2; exit 1; }
done

# The first http(s) mirror of the "bookworm" suite that apt itself uses.
mirror() {
  local m
  m="$(grep -hs -E '^(URIs:|deb )' /etc/apt/sources.list /etc/apt/sources.list.d/*.sources \
        /etc/apt/sources.list.d/*.list | grep -v security | grep -o 'https\?://[^ ]*' | head -n1)"
  echo "${m:-http://deb.debian.org/debian}"
}

if [ "$rebuild_base" = 1 ] || ! podman image exists "$base"; then
  m="$(mirror)"
  echo "image: making $base with mmdebstrap from $m" >&2
  mmdebstrap --quiet --variant=minbase --include=ca-certificates bookworm - "$m" |
    podman import --change 'CMD ["/bin/bash"]' - "$base" >/dev/null
fi

build() { # name dockerfile
  echo "image: building localhost/$1:$version" >&2
  podman build --runtime runc --network host --pull=never --build-arg BASE="$base" \
    -f "$2" -t "localhost/$1:$version" -t "localhost/$1:latest" . >&2
}
for o in "${only[@]}"; do
  case "$o" in
    wsgate) build wsgate deploy/docker/Dockerfile ;;
    nats) build wsgate-nats deploy/docker/nats.Dockerfile ;;
    postgres) build wsgate-postgres deploy/docker/postgres.Dockerfile ;;
    *) echo "image: unknown image '$o'" >&2; exit 2 ;;
  esac
done
podman images --filter reference='localhost/*' >&2
