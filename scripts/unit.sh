#!/usr/bin/env bash
# Every test that needs no local stack, in seconds once built: the unit tests of every
# crate (domain, state machine, use cases on in-memory ports with their crash windows,
# adapters' pure parts, CLI), the template checks and the IAM-vs-port-calls check.
# `make unit` runs this; `make test` runs it too, then everything that needs the stack.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$HOIST_ROOT"
cargo test --workspace --lib --bins --quiet 2>&1 | grep -v '^{"'
cargo test -p hoist-dev --test iam_policies --quiet 2>&1 | grep -v '^{"'
