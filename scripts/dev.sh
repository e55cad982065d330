#!/usr/bin/env bash
# `make dev`: the local stack, then the API on 127.0.0.1:$HOIST_API_PORT (foreground).
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$HOIST_ROOT"
bash scripts/stack.sh start
# Release by default: the API answers as fast here as it does deployed (a debug build
# spends ~3x the CPU per call, taken from LocalStack on a small machine; bench/README.md).
# HOIST_DEV_PROFILE=debug rebuilds faster while changing the code.
if [ "${HOIST_DEV_PROFILE:-release}" = debug ]; then
  cargo build -q -p hoist-dev
  dev_bin="$CARGO_TARGET_DIR/debug/hoist-dev"
else
  cargo build -q --release -p hoist-dev
  dev_bin="$CARGO_TARGET_DIR/release/hoist-dev"
fi
(cd web && npm run --silent build)
echo "dev: open http://127.0.0.1:$HOIST_API_PORT/dev/login?owner=alice for the web uploader" >&2
echo "dev: a token for owner 'alice':  export TOKEN=\$(make -s token OWNER=alice)" >&2
exec "$dev_bin" serve --port "$HOIST_API_PORT"
