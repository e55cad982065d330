#!/usr/bin/env bash
# make sam-local: the deployable artifact, run for real. `sam build` builds the real
# template.yaml (every function, and the ClamAV layer); SAM's Lambda emulator then runs it
# in containers against the local stack:
#   1. `sam local invoke` runs every function with its events/ file; answers checked
#      (scripts/smoke.sh);
#   2. `sam local start-api` serves the template's routes and authorizer; the API flow
#      (scripts/api_flow.py) runs through it, with the processing jobs the queue really
#      holds handed to `sam local invoke ProcessFunction` (SAM has no SQS event source),
#      whose clamd is the layer's, started by its extension; and the same flow through the
#      dev server must answer identically.
# Exits non-zero on any failure. Everything it starts is stopped by PID at the end.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$HOIST_ROOT"
export PATH="$VENV_TOOLS/bin:$PATH"
# The Lambda binaries' profile: release without LTO, 16 codegen units. They wait on the
# network, not the CPU; LTO made each of the 13 binaries take a minute to link, per
# architecture, on every change to the shared crate. Set here, for the deploy build and
# the tested one alike, so what is tested is what deploys (bench/sam_local.md: sizes).
export CARGO_PROFILE_RELEASE_LTO=false CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16

step() { printf '\n==> sam-local: %s\n' "$*"; }
# Steps to run (all by default; a subset while working on one: HOIST_SAM_STEPS=api).
STEPS=",${HOIST_SAM_STEPS:-build,layer,invoke,update,api,other-arch},"
want() { [[ $STEPS == *",$1,"* ]]; }

# The functions run natively on this machine's architecture (arm64 stays the deploy default).
case "$(uname -m)" in x86_64) ARCH=x86_64 ;; aarch64) ARCH=arm64 ;; *) echo "unsupported $(uname -m)" >&2; exit 1 ;; esac
BUILD="$HOIST_CACHE/sam/build-$ARCH"
BRIDGE_IP="${HOIST_BRIDGE_IP:-172.17.0.1}"
SAM_API_PORT="${HOIST_SAM_API_PORT:-3000}"
SAM_LOG="$HOIST_RUN/sam-local.log"
: >"$SAM_LOG"

# Dev-only values (the same placeholders as scripts/env.sh), as a function container sees them.
PARAMS=(Architecture="$ARCH" JwtIssuer=hoist-dev-idp JwtAudience=hoist
        AllowedOrigins="http://127.0.0.1:$SAM_API_PORT" JwksJson='{"keys":[]}')

started=()
cleanup() {
  local rc=$?
  [ -z "${API_PID:-}" ] || { kill -TERM -- "-$API_PID" 2>/dev/null || true; wait "$API_PID" 2>/dev/null || true; }
  for what in "${started[@]}"; do
    case $what in
      docker) bash scripts/docker.sh stop ;;
      stack) bash scripts/stack.sh stop clamd moto localstack ;;
    esac
  done
  exit $rc
}
trap cleanup EXIT

step "local stack and container engine"
# Captured first: `status | grep -q` under pipefail fails on SIGPIPE when grep exits early.
stack_status=$(bash scripts/stack.sh status)
if grep -q down <<<"$stack_status"; then started+=(stack); fi
bash scripts/stack.sh start
docker_status=$(bash scripts/docker.sh status)
if grep -q 'docker: down' <<<"$docker_status"; then started+=(docker); fi
bash scripts/docker.sh start
cargo build -q -p hoist-dev

if want build; then
step "sam build ($ARCH, the real template.yaml, every function and the ClamAV layer)"
HOIST_ARCH=$ARCH sam build --beta-features --build-in-source --build-dir "$BUILD" \
  --parameter-overrides "${PARAMS[@]}" >>"$SAM_LOG" 2>&1 || { tail -n 40 "$SAM_LOG"; exit 1; }
python3 - "$BUILD" <<'PY'
import os, sys
build = sys.argv[1]
sizes = {d: os.path.getsize(os.path.join(build, d, "bootstrap")) for d in sorted(os.listdir(build))
         if os.path.isfile(os.path.join(build, d, "bootstrap"))}
assert len(sizes) >= 12, f"expected every function's bootstrap, found {sorted(sizes)}"
layer = sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(os.path.join(build, "ClamavLayer")) for f in fs)
print("sam-local: built " + ", ".join(f"{k} {v / 2**20:.1f} MiB" for k, v in sizes.items()) + f"; ClamavLayer {layer / 2**20:.1f} MiB")
PY
fi

if want layer; then
step "the ClamAV layer alone: clamd from the layer in an image holding nothing else (FROM scratch)"
# Proves the bundle needs nothing of the OS it runs on (Lambda's is Amazon Linux, not Debian).
scratch=$(mktemp -d)
mkdir -p "$scratch/opt" "$scratch/tmp"
cp -a "$BUILD/ClamavLayer/." "$scratch/opt/"
# Listening on the container's own interface so the host can reach it through a port
# published on 127.0.0.1 only; otherwise the layer's settings and limits, as they are.
sed 's/^TCPAddr .*/TCPAddr 0.0.0.0/' "$scratch/opt/clamav/etc/clamd.conf" >"$scratch/opt/clamav/etc/scratch.conf"
printf 'DatabaseDirectory /opt/clamav/db\nTemporaryDirectory /tmp\n' >>"$scratch/opt/clamav/etc/scratch.conf"
tar -C "$scratch" -c . | docker import - hoist-layer-only:test >/dev/null
rm -rf "$scratch"
loader=$(cd "$BUILD/ClamavLayer/clamav/lib" && ls ld-linux-*)
SCRATCH_PORT="${HOIST_SCRATCH_CLAMD_PORT:-13310}"
docker rm -f hoist-layer-only >/dev/null 2>&1 || true
docker run -d --name hoist-layer-only --label sam.cli.container.type=hoist-test -p "127.0.0.1:$SCRATCH_PORT:3310" \
  hoist-layer-only:test "/opt/clamav/lib/$loader" --library-path /opt/clamav/lib /opt/clamav/sbin/clamd \
  --config-file=/opt/clamav/etc/scratch.conf >/dev/null
python3 - "$SCRATCH_PORT" <<'PY' || { docker logs hoist-layer-only 2>&1 | tail -20; docker rm -f hoist-layer-only >/dev/null; exit 1; }
import socket, struct, sys, time
port = int(sys.argv[1])
def ask(payload):
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(b"zINSTREAM\0" + struct.pack(">I", len(payload)) + payload + struct.pack(">I", 0))
    out = b""
    while not out.endswith(b"\0"):
        chunk = s.recv(4096)
        if not chunk: break
        out += chunk
    return out.decode().strip("\0")
for _ in range(100):
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=1); s.sendall(b"zPING\0")
        if s.recv(8).startswith(b"PONG"): break
    except OSError: pass
    time.sleep(0.2)
eicar = rb"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
infected, clean = ask(eicar), ask(b"hello, layer")
assert "FOUND" in infected, infected
assert clean.endswith("OK"), clean
print(f"sam-local: layer-only clamd: EICAR -> {infected!r}, clean -> {clean!r}")
PY
docker rm -f hoist-layer-only >/dev/null
# freshclam (the definitions update's program) runs there too.
version=$(docker run --rm --label sam.cli.container.type=hoist-test hoist-layer-only:test \
  "/opt/clamav/lib/$loader" --library-path /opt/clamav/lib /opt/clamav/bin/freshclam --config-file=/opt/clamav/etc/freshclam.conf --version)
[[ $version == ClamAV* ]] || { echo "sam-local: layer-only freshclam: $version" >&2; exit 1; }
echo "sam-local: layer-only freshclam: $version"
fi

# The ClamAV definitions the process function's extension downloads at cold start (in AWS
# the definitions update keeps them there): here the project's test signatures.
DEFS_BUCKET=hoist-local-clamav-definitions
"$VENV_LOCALSTACK/bin/python" - "$DEFS_BUCKET" "$HOIST_ROOT"/scripts/clamav/*.ndb <<'PY'
import os, sys, boto3
s3 = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL_S3"])
bucket, files = sys.argv[1], sys.argv[2:]
try:
    s3.create_bucket(Bucket=bucket)
except s3.exceptions.BucketAlreadyOwnedByYou:
    pass
for f in files:
    s3.upload_file(f, bucket, "clamav/" + os.path.basename(f))
PY

# What SAM passes a container: only variables the template declares, overridden here.
ENV_FILE="$HOIST_RUN/sam-env.json"
JWKS=$("$CARGO_TARGET_DIR/debug/hoist-dev" jwks)
LOCALSTACK_PORT=$LOCALSTACK_PORT MOTO_PORT=$MOTO_PORT python3 - "$ENV_FILE" "$BRIDGE_IP" "$JWKS" "$SAM_API_PORT" "$DEFS_BUCKET" <<'PY'
import json, os, sys
path, bridge, jwks, api_port, defs_bucket = sys.argv[1:]
ls, moto = os.environ["LOCALSTACK_PORT"], os.environ["MOTO_PORT"]
env = {
    "HOIST_LOCAL_ENDPOINT_S3": f"http://{bridge}:{ls}",
    "HOIST_LOCAL_ENDPOINT_SQS": f"http://{bridge}:{ls}",
    "HOIST_LOCAL_ENDPOINT_DYNAMODB": f"http://{bridge}:{moto}",
    "HOIST_BUCKET": os.environ["HOIST_BUCKET"],
    "HOIST_TABLE": os.environ["HOIST_TABLE"],
    "HOIST_QUEUE_URL": os.environ["HOIST_QUEUE_URL"].replace("127.0.0.1", bridge),
    "HOIST_LINK_KEYS": os.environ["HOIST_LINK_KEYS"],
    # The dev identity provider (hoist-dev jwks): the authorizer's AWS path, a JWKS.
    "HOIST_AUTH_JWKS": jwks,
    "HOIST_AUTH_ISSUER": "hoist-dev-idp",
    "HOIST_AUTH_AUDIENCE": "hoist",
    # The layer's clamd, inside the function's container (not the host's), with the
    # definitions its extension downloads from S3, as in AWS (here: the test signatures).
    "HOIST_CLAMD_ADDR": "127.0.0.1:3310",
    "HOIST_CLAMAV_DEFINITIONS": f"s3://{defs_bucket}/clamav/",
    # The definitions update's freshclam asks this machine, not ClamAV's mirrors.
    "HOIST_CLAMAV_MIRROR": "127.0.0.1",
    "HOIST_SCAN_LIMIT_BYTES": os.environ["HOIST_SCAN_LIMIT_BYTES"],
    # start-api tells functions the API's domain is "localhost" (no port): links name the
    # API's URL as a deployment with a custom domain does (the PublicBaseUrl parameter).
    "HOIST_PUBLIC_BASE_URL": f"http://127.0.0.1:{api_port}",
    "RUST_LOG": "info",
}
json.dump({"Parameters": env}, open(path, "w"))
PY
SAM_COMMON=(-t "$BUILD/template.yaml" --env-vars "$ENV_FILE" --skip-pull-image
            --parameter-overrides "${PARAMS[@]}")

SAM_ARGS="$(printf '%q ' "${SAM_COMMON[@]}")"
export SAM_ARGS

if want invoke; then
step "sam local invoke: every function with its events/ file"
HOIST_SMOKE_VIA=sam bash scripts/smoke.sh
fi

if want update; then
  step "sam local invoke ClamavUpdateFunction: runs the layer's freshclam from what S3 holds"
  # No mirror can be reached here (HOIST_CLAMAV_MIRROR names this machine): the function
  # must have read S3 and run freshclam, and report freshclam's failure in its own words.
  out=$(eval "sam local invoke ClamavUpdateFunction $SAM_ARGS -e events/clamav_update.json" 2>"$HOIST_RUN/sam-update.log" || true)
  # It read the bucket (the test signatures put there above), ran the layer's freshclam,
  # and freshclam itself failed to reach the (local, closed) mirror.
  n_defs=$(ls "$HOIST_ROOT"/scripts/clamav/*.ndb | wc -l)
  if grep -q "freshclam failed" <<<"$out" && grep -q "having started from $n_defs files" <<<"$out" \
     && grep -qi "ClamAV update process started" <<<"$out"; then
    echo "sam-local: clamav_update -> $(head -c 300 <<<"$out")"
  else
    echo "sam-local: clamav_update: unexpected answer: $out" >&2; tail -n 30 "$HOIST_RUN/sam-update.log" >&2; exit 1
  fi
fi

if want api; then
step "sam local start-api: the template's routes and authorizer on 127.0.0.1:$SAM_API_PORT"
setsid sam local start-api "${SAM_COMMON[@]}" --host 127.0.0.1 --port "$SAM_API_PORT" \
  --warm-containers LAZY >>"$HOIST_RUN/sam-api.log" 2>&1 </dev/null &
API_PID=$!
for _ in $(seq 1 120); do
  curl -s -o /dev/null -m 1 "http://127.0.0.1:$SAM_API_PORT/files" && break
  kill -0 "$API_PID" 2>/dev/null || { tail -n 30 "$HOIST_RUN/sam-api.log"; exit 1; }
  sleep 0.5
done

step "the API flow through sam local start-api, and the same flow through the dev server"
DEV_PORT="${HOIST_SAM_DEV_PORT:-8797}"
token() { "$CARGO_TARGET_DIR/debug/hoist-dev" token "$@"; }
"$VENV_LOCALSTACK/bin/python" scripts/api_flow.py \
  --sam "http://127.0.0.1:$SAM_API_PORT" --sam-token "$(token sam-flow --idp)" \
  --sam-other-token "$(token sam-other --idp)" \
  --process "sam local invoke ProcessFunction $(printf '%q ' "${SAM_COMMON[@]}")" \
  --dev "http://127.0.0.1:$DEV_PORT" --dev-token "$(token sam-flow)" --dev-other-token "$(token sam-other)" \
  --dev-command "$CARGO_TARGET_DIR/debug/hoist-dev serve --port $DEV_PORT" --dev-log "$HOIST_RUN/sam-flow-dev.log"
fi

if want other-arch; then
  OTHER=$([ "$ARCH" = x86_64 ] && echo arm64 || echo x86_64)
  step "sam build for $OTHER too (arm64 is what deploys by default): every binary checked for its architecture"
  bash scripts/sam_build.sh "$OTHER"
fi

echo
echo "sam-local: all checks passed"
