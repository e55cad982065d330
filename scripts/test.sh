#!/usr/bin/env bash
# Runs every test: format and lint, unit tests, end-to-end tests against the local
# stack, the template check, and the deployable artifact under SAM (scripts/sam_local.sh). `make test` calls this,
# and so does CI (.ci/run).
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$HOIST_ROOT"
export PATH="$VENV_TOOLS/bin:$PATH"

step() { printf '\n==> %s\n' "$*"; }

step "install (cached in $HOIST_CACHE)"
bash scripts/install.sh

step "format and lint"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --quiet -- -D warnings

step "local stack"
started_stack=0
# Captured first: `status | grep -q` under pipefail fails on SIGPIPE when grep exits early.
stack_status=$(bash scripts/stack.sh status)
if grep -q "down" <<<"$stack_status"; then
  started_stack=1
fi
bash scripts/stack.sh start
if [ $started_stack -eq 1 ] && [ "${HOIST_KEEP_STACK:-0}" != 1 ]; then
  trap 'bash scripts/stack.sh stop clamd moto localstack' EXIT
fi

step "our moto wrapper answers queries as stock moto does"
"$VENV_MOTO/bin/python" scripts/moto_server_check.py

step "unit tests (no stack) and the protocol's mutants"
bash scripts/unit.sh
bash scripts/mutants.sh

step "end-to-end tests (local stack)"
cargo test --workspace --all-targets 2>&1 | grep -v '^{"' 

step "web uploader in headless Chromium (Uppy -> Companion routes -> S3 -> ready -> download)"
cargo build -q -p hoist-dev
(cd web && npm run --silent build && node --test test/*.test.mjs)

step "template and API document"
sam validate --lint
openapi-spec-validator docs/openapi.yaml

step "the deployable artifact under SAM's Lambda emulator (make sam-local: sam build, invoke every function, the API flow through start-api, arm64 build)"
bash scripts/sam_local.sh

echo
echo "all tests passed"
