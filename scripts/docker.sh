#!/usr/bin/env bash
# The container engine SAM's Lambda emulator needs, and what function containers need to
# reach the local stack. Usage: docker.sh start|stop|status
#
# - Debian's docker.io (dockerd) started in the background by PID (no systemd here);
#   left alone when a Docker engine already answers.
# - The base image SAM builds its emulation image on, `public.ecr.aws/lambda/provided:al2023`:
#   no registry is reachable, so it is made offline from Debian's packages (debootstrap
#   minbase, cached in $HOIST_CACHE/images) and imported under that tag. It only has to
#   start SAM's Runtime Interface Emulator and our static-enough `bootstrap`s; the ClamAV
#   layer brings its own loader and libraries, so it does not need this image's glibc.
# - Function containers reach the host at the Docker bridge's gateway, not at 127.0.0.1:
#   socat forwards the bridge address's LocalStack and moto ports to the stack on
#   127.0.0.1 (bound to the bridge address only, never to other interfaces).
set -euo pipefail
source "$(dirname "$0")/env.sh"

BRIDGE_IP="${HOIST_BRIDGE_IP:-172.17.0.1}"
IMAGE=public.ecr.aws/lambda/provided
ROOTFS_TAR="$HOIST_CACHE/images/bookworm-minbase.tar"

install() {
  local missing=()
  command -v dockerd >/dev/null || missing+=(docker.io)
  command -v debootstrap >/dev/null || missing+=(debootstrap)
  command -v socat >/dev/null || missing+=(socat)
  if [ ${#missing[@]} -gt 0 ]; then
    echo "docker: installing ${missing[*]} (apt)" >&2
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
}

engine_up() { timeout 5 docker info >/dev/null 2>&1; }

start_engine() {
  engine_up && return 0
  setsid dockerd --host unix:///var/run/docker.sock >"$HOIST_RUN/dockerd.log" 2>&1 </dev/null &
  echo $! >"$HOIST_RUN/dockerd.pid"
  for _ in $(seq 1 60); do engine_up && return 0; sleep 0.5; done
  echo "docker: dockerd did not start; log:" >&2; tail -n 20 "$HOIST_RUN/dockerd.log" >&2; exit 1
}

base_image() {
  if docker image inspect "$IMAGE:al2023" >/dev/null 2>&1; then return 0; fi
  if [ ! -s "$ROOTFS_TAR" ]; then
    echo "docker: building the offline base image (debootstrap, about a minute)" >&2
    local root
    root=$(mktemp -d)
    debootstrap --variant=minbase bookworm "$root" http://deb.debian.org/debian >"$HOIST_RUN/debootstrap.log" 2>&1
    mkdir -p "$(dirname "$ROOTFS_TAR")"
    tar -C "$root" -cf "$ROOTFS_TAR.tmp" . && mv "$ROOTFS_TAR.tmp" "$ROOTFS_TAR"
    rm -rf "$root"
  fi
  docker import "$ROOTFS_TAR" "$IMAGE:al2023" >/dev/null
  # SAM asks for the tag of the functions' architecture (this machine's, under sam local).
  case "$(uname -m)" in aarch64) docker tag "$IMAGE:al2023" "$IMAGE:al2023-arm64" ;; *) docker tag "$IMAGE:al2023" "$IMAGE:al2023-x86_64" ;; esac
}

forward() { # name, port
  local name=$1 port=$2
  alive "$name" && return 0
  setsid socat "TCP-LISTEN:$port,bind=$BRIDGE_IP,reuseaddr,fork" "TCP:127.0.0.1:$port" \
    >"$HOIST_RUN/$name.log" 2>&1 </dev/null &
  echo $! >"$HOIST_RUN/$name.pid"
}

case "${1:-}" in
  start)
    install
    start_engine
    base_image
    forward fwd-localstack "$LOCALSTACK_PORT"
    forward fwd-moto "$MOTO_PORT"
    echo "docker: engine up, base image $IMAGE:al2023, stack reachable from containers at $BRIDGE_IP" >&2
    ;;
  stop)
    # Containers SAM left behind (ours only: SAM labels them) go before the engine we started.
    if engine_up; then
      ids=$(docker ps -aq --filter label=sam.cli.container.type 2>/dev/null || true)
      [ -z "$ids" ] || docker rm -f $ids >/dev/null 2>&1 || true
    fi
    stop_one fwd-localstack; stop_one fwd-moto; stop_one dockerd 100 ;;
  status)
    engine_up && echo "docker: up" || echo "docker: down"
    alive fwd-localstack && echo "forwarders: up" || echo "forwarders: down" ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
