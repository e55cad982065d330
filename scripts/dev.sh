#!/usr/bin/env bash
# `make dev`: the local stack, then the API on 127.0.0.1:$HOIST_API_PORT (foreground).
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$HOIST_ROOT"
bash scripts/stack.sh start
cargo build -q -p hoist-dev
(cd web && npm run --silent build)
echo "dev: open http://127.0.0.1:$HOIST_API_PORT/dev/login?owner=alice for the web uploader" >&2
echo "dev: a token for owner 'alice':  export TOKEN=\$(make -s token OWNER=alice)" >&2
exec "$CARGO_TARGET_DIR/debug/hoist-dev" serve --port "$HOIST_API_PORT"
