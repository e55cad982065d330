#!/usr/bin/env bash
# The local AWS stack: LocalStack (S3+SQS, presigned signatures checked) and moto
# (DynamoDB), on 127.0.0.1 only. Usage: stack.sh start|stop|status|seed
# Every process we start is recorded by PID in $HOIST_RUN and stopped by that PID only.
set -euo pipefail
source "$(dirname "$0")/env.sh"

health_localstack() { curl -fsS -m 2 "http://127.0.0.1:$LOCALSTACK_PORT/_localstack/health" 2>/dev/null | grep -q '"s3": "\(available\|running\)"'; }
health_moto() { curl -fsS -m 2 -o /dev/null "http://127.0.0.1:$MOTO_PORT/moto-api/" 2>/dev/null; }

alive() { [ -f "$HOIST_RUN/$1.pid" ] && kill -0 "$(cat "$HOIST_RUN/$1.pid")" 2>/dev/null; }

launch() { # name, command...
  local name=$1; shift
  if alive "$name"; then return 0; fi
  # setsid: its own process group, so stop can end it and its children together.
  setsid "$@" >"$HOIST_RUN/$name.log" 2>&1 < /dev/null &
  echo $! >"$HOIST_RUN/$name.pid"
}

wait_for() { # name, check function, seconds
  local name=$1 check=$2 limit=$3 i=0
  until $check; do
    i=$((i + 1))
    if [ $i -gt $((limit * 5)) ]; then
      echo "stack: $name did not become ready in ${limit}s; last log lines:" >&2
      tail -n 30 "$HOIST_RUN/$name.log" >&2 || true
      exit 1
    fi
    if ! alive "$name"; then
      echo "stack: $name exited; log:" >&2; tail -n 30 "$HOIST_RUN/$name.log" >&2 || true; exit 1
    fi
    sleep 0.2
  done
}

start() {
  bash "$HOIST_ROOT/scripts/install.sh"
  if ! health_localstack; then
    launch localstack env GATEWAY_LISTEN="127.0.0.1:$LOCALSTACK_PORT" SERVICES=s3,sqs DNS_ADDRESS=0 \
      DISABLE_EVENTS=1 SKIP_SSL_CERT_DOWNLOAD=1 S3_SKIP_SIGNATURE_VALIDATION=0 SQS_ENDPOINT_STRATEGY=path \
      LOCALSTACK_HOST="127.0.0.1:$LOCALSTACK_PORT" \
      "$VENV_LOCALSTACK/bin/python" -m localstack.runtime.main
  fi
  if ! health_moto; then
    launch moto "$VENV_MOTO/bin/moto_server" -H 127.0.0.1 -p "$MOTO_PORT"
  fi
  health_localstack || wait_for localstack health_localstack 90
  health_moto || wait_for moto health_moto 30
  seed
  echo "stack: LocalStack on 127.0.0.1:$LOCALSTACK_PORT, moto on 127.0.0.1:$MOTO_PORT, seeded" >&2
}

seed() {
  "$VENV_LOCALSTACK/bin/python" "$HOIST_ROOT/scripts/seed.py"
}

stop_one() {
  local name=$1 pid
  [ -f "$HOIST_RUN/$name.pid" ] || return 0
  pid=$(cat "$HOIST_RUN/$name.pid")
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL -- "-$pid" 2>/dev/null || true
  fi
  rm -f "$HOIST_RUN/$name.pid"
}

stop() {
  for n in "$@"; do stop_one "$n"; done
}

case "${1:-}" in
  start) start ;;
  stop) shift; if [ $# -eq 0 ]; then stop devserver moto localstack; else stop "$@"; fi ;;
  seed) seed ;;
  status)
    health_localstack && echo "localstack: up" || echo "localstack: down"
    health_moto && echo "moto: up" || echo "moto: down" ;;
  *) echo "usage: $0 start|stop [name...]|status|seed" >&2; exit 2 ;;
esac
