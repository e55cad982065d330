# Sourced by every script: where caches live and how the local stack is addressed.
# Caches live OUTSIDE the clone so CI's fresh clone reuses them; every script
# installs what is missing, so nothing depends on a hand-prepared machine.
HOIST_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
HOIST_CACHE="${HOIST_CACHE:-$HOME/.cache/hoist}"
HOIST_RUN="${HOIST_RUN:-$HOIST_CACHE/run}"          # pid files, logs, clamd db
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOIST_CACHE/target}"
VENV_LOCALSTACK="$HOIST_CACHE/venv-localstack-4.13.1"
VENV_MOTO="$HOIST_CACHE/venv-moto-5.2.5"
VENV_TOOLS="$HOIST_CACHE/venv-tools"                 # cargo-lambda, ziglang, cfn-lint, sam

LOCALSTACK_PORT="${LOCALSTACK_PORT:-4566}"
MOTO_PORT="${MOTO_PORT:-4567}"
HOIST_API_PORT="${HOIST_API_PORT:-8787}"
CLAMD_PORT="${CLAMD_PORT:-3310}"
export HOIST_CLAMD_ADDR="127.0.0.1:$CLAMD_PORT"
# clamd's StreamMaxLength, from the one limits file (scanner/limits.conf): no stream sent
# to clamd is longer (files above one window are scanned in windows).
_stream_max=$(awk '$1=="StreamMaxLength"{v=$2; m=1; if (v ~ /M$/) m=1048576; if (v ~ /G$/) m=1073741824; sub(/[MG]$/,"",v); print v*m}' "$HOIST_ROOT/scanner/limits.conf")
export HOIST_SCAN_LIMIT_BYTES="${HOIST_SCAN_LIMIT_BYTES:-$_stream_max}"

# Dev-only placeholder credentials: LocalStack checks presigned URLs against secret "test".
export AWS_ACCESS_KEY_ID="${AWS_ACCESS_KEY_ID:-test}"
export AWS_SECRET_ACCESS_KEY="${AWS_SECRET_ACCESS_KEY:-test}"
export AWS_REGION="${AWS_REGION:-us-east-1}"
export AWS_DEFAULT_REGION="$AWS_REGION"
export AWS_EC2_METADATA_DISABLED=true
export AWS_ENDPOINT_URL_S3="http://127.0.0.1:$LOCALSTACK_PORT"
export AWS_ENDPOINT_URL_SQS="http://127.0.0.1:$LOCALSTACK_PORT"
export AWS_ENDPOINT_URL_DYNAMODB="http://127.0.0.1:$MOTO_PORT"
export HOIST_S3_FORCE_PATH_STYLE=true
export HOIST_BUCKET="${HOIST_BUCKET:-hoist-local-uploads}"
export HOIST_TABLE="${HOIST_TABLE:-hoist-local}"
export HOIST_QUEUE_NAME="${HOIST_QUEUE_NAME:-hoist-local-process}"
export HOIST_QUEUE_URL="${HOIST_QUEUE_URL:-http://127.0.0.1:$LOCALSTACK_PORT/queue/$AWS_REGION/000000000000/$HOIST_QUEUE_NAME}"
# DEV-ONLY secret for local bearer tokens. Never used in AWS (API Gateway's JWT authorizer is).
# DEV-ONLY download-link signing key ring (kid:base64secret, first signs). In AWS it comes
# from a Secrets Manager secret (template.yaml). Never use this value anywhere else.
export HOIST_LINK_KEYS="${HOIST_LINK_KEYS:-dev1:ZGV2LW9ubHktbGluay1rZXktZG8tbm90LWRlcGxveS0wMDAwMDA=}"
export HOIST_DEV_JWT_SECRET="${HOIST_DEV_JWT_SECRET:-dev-only-insecure-jwt-secret-do-not-deploy}"
export SAM_CLI_TELEMETRY=0
mkdir -p "$HOIST_CACHE" "$HOIST_RUN"
# botocore (LocalStack's venv has it): the tests check our POST-policy signatures with it,
# since LocalStack does not verify presigned POSTs.
export HOIST_BOTO_PYTHON="${HOIST_BOTO_PYTHON:-$VENV_LOCALSTACK/bin/python}"

# Processes the scripts start are recorded by PID in $HOIST_RUN/NAME.pid (in their own
# process group, via setsid) and stopped by that PID only.
alive() { [ -f "$HOIST_RUN/$1.pid" ] && kill -0 "$(cat "$HOIST_RUN/$1.pid")" 2>/dev/null; }
stop_one() { # name [tenths of a second to wait before SIGKILL, default 50]
  local name=$1 wait=${2:-50} pid
  [ -f "$HOIST_RUN/$name.pid" ] || return 0
  pid=$(cat "$HOIST_RUN/$name.pid")
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 "$wait"); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL -- "-$pid" 2>/dev/null || true
  fi
  rm -f "$HOIST_RUN/$name.pid"
}
