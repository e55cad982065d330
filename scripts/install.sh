#!/usr/bin/env bash
# Idempotent install of everything the local stack and the tests need.
# Safe to run on every start: each step is skipped when already done.
set -euo pipefail
source "$(dirname "$0")/env.sh"
PINS="$HOIST_ROOT/../shared/pins"
[ -d "$PINS" ] || PINS="$HOIST_ROOT/scripts/pins"

make_venv() { # dir, marker, pip args...
  local dir=$1 marker=$2; shift 2
  if [ -f "$dir/.ok-$marker" ]; then return 0; fi
  echo "install: building $dir" >&2
  rm -rf "$dir"
  python3 -m venv "$dir"
  "$dir/bin/pip" install -q --upgrade pip >/dev/null 2>&1 || true
  "$dir/bin/pip" install -q "$@"
  touch "$dir/.ok-$marker"
}

make_venv "$VENV_LOCALSTACK" 1 -r "$PINS/localstack-core-4.13.1.txt" &
p1=$!
make_venv "$VENV_MOTO" 1 -r "$PINS/moto-5.2.5.txt" &
p2=$!
if [ "${HOIST_SKIP_TOOLS:-0}" != 1 ]; then
  make_venv "$VENV_TOOLS" 2 'cargo-lambda==1.9.2' 'aws-sam-cli==1.170.0' &
  p3=$!
else p3=""; fi
# ClamAV's daemon from Debian (root on these machines; services are not auto-started).
if ! command -v clamd >/dev/null 2>&1; then
  echo "install: clamav-daemon (apt)" >&2
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq clamav clamav-daemon >/dev/null
fi
# Chromium for the browser tests (Debian's; playwright cannot download its own here).
if [ "${HOIST_SKIP_BROWSER:-0}" != 1 ] && ! [ -x /usr/bin/chromium ]; then
  echo "install: chromium (apt)" >&2
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
fi
# The web uploader's npm dependencies (Uppy, esbuild, playwright-core), exactly as locked.
for dir in "$HOIST_ROOT/web" "$HOIST_ROOT/web/uppy5"; do
  if [ ! -d "$dir/node_modules" ] || [ "$dir/package-lock.json" -nt "$dir/node_modules/.package-lock.json" ]; then
    (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
  fi
done
wait $p1; wait $p2; [ -z "$p3" ] || wait $p3
if [ "${HOIST_SKIP_TOOLS:-0}" != 1 ] && [ ! -x "$VENV_TOOLS/bin/openapi-spec-validator" ]; then
  "$VENV_TOOLS/bin/pip" install -q 'openapi-spec-validator==0.7.*'
fi
echo "install: done" >&2
