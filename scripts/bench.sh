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
# Thumbnails, ours against libvips' vipsthumbnail (Debian's libvips-tools; bench-only).
command -v vipsthumbnail >/dev/null || { apt-get update -qq && apt-get install -y -qq libvips-tools time; }
cargo bench -p hoist-e2e --bench thumbnails 2>/dev/null | grep -v '^{"' | tee bench/thumbnails.md
# moto under Hoist's DynamoDB calls: stock moto_server against scripts/moto_server.py.
"$VENV_MOTO/bin/python" scripts/bench_moto.py 250 5 | tee bench/moto_health.md
# Large files in windows: time to verdict by number of workers (the CLI uploads the files).
cargo build -q --release -p hoist-cli
cargo bench -p hoist-e2e --bench windows 2>/dev/null | grep -v '^{"' | tee bench/windows.md
echo "machine: $(nproc) cores, $(uname -m), $(date -u +%Y-%m-%d); LocalStack, moto, clamd and the workers share them" | tee -a bench/windows.md

# hoist put vs the AWS CLI and rclone on the stack `make dev` runs, what each sends, and where
# the time goes (bench/put_throughput.md); then the client's own ceiling against an S3 that
# costs next to nothing (bench/put_ceiling.md). Peers and profilers are bench-only: the AWS
# CLI in its own venv, rclone, perf and GNU time from Debian, py-spy in the tools venv.
VENV_AWSCLI="$HOIST_CACHE/venv-awscli"
if [ ! -x "$VENV_AWSCLI/bin/aws" ]; then
  python3 -m venv "$VENV_AWSCLI" && "$VENV_AWSCLI/bin/pip" install -q 'awscli==1.46.*'
fi
for tool in rclone:rclone perf:linux-perf /usr/bin/time:time objdump:binutils; do
  command -v "${tool%%:*}" >/dev/null || { apt-get update -qq && apt-get install -y -qq "${tool#*:}"; }
done
[ -x "$VENV_TOOLS/bin/py-spy" ] || "$VENV_TOOLS/bin/pip" install -q py-spy
cargo build -q --release -p hoist-dev  # the API as `make dev` serves it
cargo build -q -p hoist-dev            # the browser bench's server, as the browser tests start it
cargo build -q --release -p hoist-cli
cargo bench -p hoist-cli --bench kill_resume 2>/dev/null | grep -v '^{"' | tee bench/kill_resume.md
export AWS_CLI="$VENV_AWSCLI/bin/aws" PY_SPY="$VENV_TOOLS/bin/py-spy"
{
  "$HOIST_BOTO_PYTHON" scripts/bench_put.py
  echo
  "$HOIST_BOTO_PYTHON" scripts/bench_put.py --capture
  echo
  "$HOIST_BOTO_PYTHON" scripts/bench_put.py --profile
} | tee bench/put_throughput.md
cargo bench -p hoist-cli --bench ceiling 2>/dev/null | grep -v '^{"' | tee bench/put_ceiling.md
# The browser path: 1 GiB through the page in headless Chromium, against the CLI
# (Chromium and the page's packages as `make test` installs them).
(cd web && npm run --silent build && node bench.mjs) | tee bench/browser_upload.md

# Cold starts of every function under SAM's Lambda emulator (bench/sam_local.md): the
# artifact `make sam-local` builds, one fresh container per invocation, 5 rounds.
docker_was_up=$(bash scripts/docker.sh status | head -1)
bash scripts/docker.sh start >/dev/null
HOIST_SAM_STEPS=build bash scripts/sam_local.sh >/dev/null
PATH="$VENV_TOOLS/bin:$PATH" RUNS=5 python3 scripts/bench_sam_coldstart.py | tee bench/sam_coldstart.txt
[ "$docker_was_up" = "docker: up" ] || bash scripts/docker.sh stop
