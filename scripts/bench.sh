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

# hoist put vs the AWS CLI on the same local S3 (the AWS CLI in its own venv; bench-only).
VENV_AWSCLI="$HOIST_CACHE/venv-awscli"
if [ ! -x "$VENV_AWSCLI/bin/aws" ]; then
  python3 -m venv "$VENV_AWSCLI" && "$VENV_AWSCLI/bin/pip" install -q 'awscli==1.46.*'
fi
command -v /usr/bin/time >/dev/null || { apt-get update -qq && apt-get install -y -qq time; }
cargo bench -p hoist-cli --bench kill_resume 2>/dev/null | grep -v '^{"' | tee bench/kill_resume.md
AWS_CLI="$VENV_AWSCLI/bin/aws" cargo bench -p hoist-cli --bench put_throughput 2>/dev/null | grep -v '^{"' | tee bench/put_throughput.md

# Cold starts of every function under SAM's Lambda emulator (bench/sam_local.md): the
# artifact `make sam-local` builds, one fresh container per invocation, 5 rounds.
docker_was_up=$(bash scripts/docker.sh status | head -1)
bash scripts/docker.sh start >/dev/null
HOIST_SAM_STEPS=build bash scripts/sam_local.sh >/dev/null
PATH="$VENV_TOOLS/bin:$PATH" RUNS=5 python3 scripts/bench_sam_coldstart.py | tee bench/sam_coldstart.txt
[ "$docker_was_up" = "docker: up" ] || bash scripts/docker.sh stop
