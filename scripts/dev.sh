#!/usr/bin/env bash
# `make dev`: the local stack, then the API on 127.0.0.1:$HOIST_API_PORT (foreground).
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$HOIST_ROOT"
# Release by default: the API answers as fast here as it does deployed (a debug build
# spends more than twice the CPU per call, taken from LocalStack on a small machine;
# bench/README.md). HOIST_DEV_PROFILE=debug rebuilds faster while changing the code.
profile=${HOIST_DEV_PROFILE:-release}
case "$profile" in
  release) build_flags=(--release) ;;
  debug) build_flags=() ;;
  *) echo "dev: HOIST_DEV_PROFILE must be release or debug, not '$profile'" >&2; exit 2 ;;
esac
bash scripts/stack.sh start
cargo build -q "${build_flags[@]}" -p hoist-dev
dev_bin="$CARGO_TARGET_DIR/$profile/hoist-dev"
(cd web && npm run --silent build)
echo "dev: open http://127.0.0.1:$HOIST_API_PORT/dev/login?owner=alice for the web uploader" >&2
echo "dev: a token for owner 'alice':  export TOKEN=\$(make -s token OWNER=alice)" >&2
exec "$dev_bin" serve --port "$HOIST_API_PORT"
