#!/usr/bin/env bash
# Smoke-invokes every function with its events/ file the way Lambda would, and checks
# each answer. Two ways to run the functions (HOIST_SMOKE_VIA):
#   sam    (make sam-local, make test): the deployable artifact from `sam build`, in SAM's
#          Lambda emulator (scripts/sam_local.sh sets SAM_ARGS, the invoke options);
#   cargo  (default when run alone): `cargo lambda watch` runs the debug binaries behind
#          the Lambda runtime API, `cargo lambda invoke` sends the events.
# Expects the local stack to be up.
set -euo pipefail
source "$(dirname "$0")/env.sh"
export PATH="$VENV_TOOLS/bin:$PATH"
cd "$HOIST_ROOT"
VIA="${HOIST_SMOKE_VIA:-cargo}"
LOG="$HOIST_RUN/smoke-$VIA.log"
: >"$LOG"

if [ "$VIA" = sam ]; then
  : "${SAM_ARGS:?scripts/sam_local.sh sets it: sam local invoke options}"
  # The template's logical id of a binary: create_upload -> CreateUploadFunction.
  logical_id() { python3 -c 'import sys; print("".join(w.title() for w in sys.argv[1].split("_")) + "Function")' "$1"; }
  invoke() { # binary, event file -> prints the response JSON
    eval "sam local invoke \"\$(logical_id \"\$1\")\" $SAM_ARGS -e \"\$2\"" 2>>"$LOG"
  }
  TOKEN_ARGS=(--idp)
else
  PORT="${HOIST_SMOKE_PORT:-9137}"
  setsid cargo lambda watch -A 127.0.0.1 -P "$PORT" --ignore-changes >>"$LOG" 2>&1 </dev/null &
  WATCH=$!
  trap 'kill -TERM -- -$WATCH 2>/dev/null || true; wait $WATCH 2>/dev/null || true' EXIT
  for _ in $(seq 1 100); do
    curl -s -o /dev/null -m 1 "http://127.0.0.1:$PORT/" && break
    sleep 0.3
  done
  invoke() { # binary, event file -> prints the response JSON
    cargo lambda invoke "$1" -A 127.0.0.1 -P "$PORT" --data-file "$2" 2>>"$LOG"
  }
  TOKEN_ARGS=()
fi

status_of() { python3 -c 'import json,sys; print(json.load(sys.stdin).get("statusCode"))'; }

check_json() { # name, binary, event file, python assertion on r (the decoded answer)
  local out
  out=$(invoke "$2" "$3") || out='{}'
  if printf '%s' "$out" | python3 -c "import json,sys; r=json.load(sys.stdin); assert $4" 2>/dev/null; then
    echo "smoke: $1 -> $out ok"
  else
    echo "smoke: $1 -> unexpected $out"; fail=1
  fi
}

fail=0
check() { # binary, event, expected status
  local out got
  out=$(invoke "$1" "$2") || { echo "smoke: $1 invoke failed"; fail=1; LAST="{}"; return; }
  got=$(printf '%s' "$out" | status_of)
  if [ "$got" = "$3" ]; then echo "smoke: $1 -> $got ok"; else echo "smoke: $1 -> $got, expected $3: $out"; fail=1; fi
  LAST="$out"
}

check create_upload events/create_upload.json 201
created_id=$(printf '%s' "$LAST" | python3 -c 'import json,sys; print(json.loads(json.load(sys.stdin)["body"])["id"])')
# The sample events name an upload that does not exist: each handler must answer 404 problem+json.
for f in get_upload sign_parts record_parts complete_upload abort_upload; do
  check "$f" "events/$f.json" 404
done
check catalog events/catalog.json 200
check companion events/companion.json 200
companion_id=$(printf '%s' "$LAST" | python3 -c 'import json,sys; print(json.loads(json.load(sys.stdin)["body"])["uploadId"])')
# A link with a made-up signature: refused before anything is looked up.
check download events/download.json 403
# Abort the upload the sample created (keeps the sample owner under its quota).
tmp=$(mktemp)
python3 - "$created_id" >"$tmp" <<'PY'
import json, sys
e = json.load(open("events/abort_upload.json"))
i = sys.argv[1]
e["pathParameters"]["id"] = i
e["rawPath"] = e["requestContext"]["http"]["path"] = f"/uploads/{i}"
print(json.dumps(e))
PY
check abort_upload "$tmp" 200
# And the one the Companion sample created.
python3 - "$companion_id" >"$tmp" <<'PY'
import json, sys
e = json.load(open("events/abort_upload.json"))
e["pathParameters"]["id"] = sys.argv[1]
print(json.dumps(e))
PY
check abort_upload "$tmp" 200
rm -f "$tmp"
check_json janitor janitor events/janitor.json '"expired" in r and "errors" in r' 
# The authorizer refuses the sample's invalid session cookie.
check_json authorizer authorizer events/authorizer.json 'r["isAuthorized"] is False' 
# ...and accepts a valid one, naming its owner.
tmp_auth=$(mktemp)
python3 - "$("$CARGO_TARGET_DIR/debug/hoist-dev" token smoke-owner "${TOKEN_ARGS[@]}")" >"$tmp_auth" <<'PY'
import json, sys
e = json.load(open("events/authorizer.json"))
e["cookies"] = ["theme=dark", "__Host-hoist_session=" + sys.argv[1]]
print(json.dumps(e))
PY
check_json "authorizer (valid cookie)" authorizer "$tmp_auth" 'r["isAuthorized"] is True and r["context"]["owner"] == "smoke-owner"'
# ...but not from another site's page (CSRF).
python3 - "$tmp_auth" >"$tmp_auth.x" <<'PY'
import json, sys
e = json.load(open(sys.argv[1]))
e["headers"].update({"origin": "https://evil.example", "sec-fetch-site": "cross-site"})
print(json.dumps(e))
PY
check_json "authorizer (cross-site cookie)" authorizer "$tmp_auth.x" 'r["isAuthorized"] is False'
rm -f "$tmp_auth" "$tmp_auth.x"
# The sample job names an upload that does not exist: processed as "nothing to do", no batch failures.
check_json process process events/process.json 'r["batchItemFailures"] == []' 
# S3's ObjectCreated event (single-POST uploads) for an unknown upload, and S3's test event: both acknowledged.
check_json "process (S3 events)" process events/process-s3-event.json 'r["batchItemFailures"] == []'
if [ $fail -ne 0 ]; then tail -n 40 "$LOG"; fi
exit $fail
