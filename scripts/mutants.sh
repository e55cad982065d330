#!/usr/bin/env bash
# Breaks the completion protocol and the windowed processing on purpose, one way at a
# time, and checks that the unit tests on in-memory ports (usecases/protocol_tests.rs,
# processing/window_tests.rs) catch every break.
# A mutation the tests survive fails this script. Files are restored on any exit.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$HOIST_ROOT"

files=(shared/src/usecases/complete.rs shared/src/domain/status.rs shared/src/usecases/janitor.rs shared/src/processing/mod.rs shared/src/domain/windows.rs shared/src/processing/windows.rs)
backup=$(mktemp -d)
tar -cf "$backup/files.tar" "${files[@]}"
put_back() { tar -xmf "$backup/files.tar"; }  # -m: now as mtime, so cargo rebuilds
trap 'put_back; rm -rf "$backup"' EXIT

# mutate FILE PYTHON-OLD PYTHON-NEW: exact replacement, which must apply.
mutate() {
  python3 - "$1" "$2" "$3" <<'EOF'
import sys
path, old, new = sys.argv[1:]
s = open(path).read()
if old not in s:
    sys.exit(f"mutation does not apply to {path}: {old!r}")
open(path, "w").write(s.replace(old, new, 1))
EOF
}

run_tests() { cargo test -q -p shared --lib -- protocol_tests window_tests 2>&1; }

# The unbroken code must pass, or nothing below means anything.
if ! out=$(run_tests); then
  echo "the protocol tests fail before any mutation:"; tail -20 <<<"$out"; exit 1
fi

survived=0
check() { # name
  local out
  out=$(run_tests) || true
  if ! grep -q "test result: FAILED" <<<"$out"; then
    # Passing tests, or a mutation that does not even compile: neither proves anything.
    echo "SURVIVED: $1 (no test failed)"; survived=1
  else
    echo "caught:   $1 -> $(grep -oE '^    [a-z_:]+(protocol|window)_tests::[a-z_]+' <<<"$out" | sed 's/.*:://' | paste -sd, -)"
  fi
  put_back
}

mutate shared/src/usecases/complete.rs \
'    if let Err(e) = app.jobs.send(&job).await {
        let _ = app.repo.release_completion(&upload, now).await;
        return Err(e.into());
    }
    app.repo.finish_completion(&upload, &etag, now).await?;' \
'    app.repo.finish_completion(&upload, &etag, now).await?;
    if let Err(e) = app.jobs.send(&job).await {
        let _ = app.repo.release_completion(&upload, now).await;
        return Err(e.into());
    }'
check "status written before the job is sent"

mutate shared/src/domain/status.rs \
'(!self.needs_stale_lease(current) || lease_until.is_some_and(|l| l < now))' \
'(!self.needs_stale_lease(current) || lease_until.is_some())'
check "a live completion lease can be taken over"

mutate shared/src/usecases/complete.rs \
'        let _ = app.repo.release_completion(&upload, now).await;
        return Err(e.into());' \
'        return Err(e.into());'
check "the lease is kept when the job cannot be sent"

mutate shared/src/usecases/janitor.rs \
'UploadStatus::Completing if upload.lease_until.is_some_and(|l| l < now) => {' \
'UploadStatus::Completing if false => {'
check "the janitor ignores stuck completions"

mutate shared/src/processing/mod.rs \
'    if rec.status != UploadStatus::Processing || &rec.owner != owner {' \
'    if &rec.owner != owner {'
check "a duplicate job is processed again"

mutate shared/src/processing/mod.rs \
'    if rec.status == UploadStatus::Completing && &rec.owner == owner {' \
'    if false {'
check "a job that comes before its status write is dropped"

mutate shared/src/domain/windows.rs \
'        (start.saturating_sub(WINDOW_OVERLAP), end)' \
'        (start, end)'
check "scan windows do not overlap"

mutate shared/src/processing/windows.rs \
'    if now.status != UploadStatus::Processing || now.windows_done != Some(total) || now.hash_next != Some(total) {' \
'    if now.status != UploadStatus::Processing || now.hash_next != Some(total) {'
check "a verdict is written before every window is scanned"

mutate shared/src/processing/windows.rs \
'        Some(n) if n == k + 1 && n < plan.count() => {' \
'        Some(n) if n == k + 1 && n < plan.count() && false => {'
check "a hash link that died before queueing the next stalls the chain"

exit $survived
