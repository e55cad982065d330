#!/usr/bin/env bash
# Runs the benchmarks and writes their raw output under bench/ (see bench/README.md).
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$HOIST_ROOT"
cargo bench -p shared --bench api_calls 2>/dev/null | tee bench/api_calls.md
cargo bench -p shared --bench sign_parts 2>/dev/null | grep -E "^sign_parts|time:|thrpt:" | tee bench/sign_parts.txt
echo "machine: $(nproc) cores, $(uname -m), $(date -u +%Y-%m-%d)" | tee -a bench/sign_parts.txt
# Needs the local stack (LocalStack, moto, clamd).
bash scripts/stack.sh start >/dev/null
cargo bench -p hoist-e2e --bench processing 2>/dev/null | grep -v '^{"' | tee bench/processing.md
