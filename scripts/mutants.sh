#!/usr/bin/env bash
# Breaks the completion protocol, the windowed processing and the security rules on
# purpose, one way at a time, and checks that the unit tests on in-memory ports
# (usecases/protocol_tests.rs, overwrite_tests.rs, quota_tests.rs, rate.rs,
# processing/window_tests.rs, stall_tests.rs, http/authn.rs, domain/links.rs) catch every break.
# A mutation the tests survive fails this script. Files are restored on any exit.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$HOIST_ROOT"

files=(shared/src/usecases/complete.rs shared/src/domain/status.rs shared/src/usecases/janitor.rs shared/src/processing/mod.rs shared/src/domain/windows.rs shared/src/processing/windows.rs
  shared/src/usecases/arrival.rs shared/src/usecases/download.rs shared/src/http/authn.rs shared/src/domain/upload.rs
  shared/src/usecases/parts.rs shared/src/domain/links.rs shared/src/usecases/rate.rs shared/src/processing/members.rs)
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

run_tests() {
  cargo test -q -p shared --lib -- protocol_tests window_tests stall_tests overwrite_tests quota_tests http::authn \
    domain::links usecases::rate 2>&1
}

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
    echo "caught:   $1 -> $(grep -oE '^    [a-z_:]+::[a-z_]+$' <<<"$out" | sed 's/.*:://' | paste -sd, -)"
  fi
  put_back
}

mutate shared/src/usecases/complete.rs \
'    if let Err(e) = app.jobs.send(&job).await {
        let _ = app.repo.release_completion(&upload, now).await;
        return Err(e.into());
    }
    if object.version.is_none() {' \
'    app.repo.finish_completion(&upload, &object, now).await?;
    if let Err(e) = app.jobs.send(&job).await {
        let _ = app.repo.release_completion(&upload, now).await;
        return Err(e.into());
    }
    if object.version.is_none() {'
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

mutate shared/src/usecases/janitor.rs \
'                UploadStatus::Processing if upload.stall_check_at.is_some_and(|t| t <= now) => {' \
'                UploadStatus::Processing if false => {'
check "the janitor ignores stalled processing (10, backstop)"

mutate shared/src/usecases/janitor.rs \
'    let behind = sent > seen && !upload.waiting_for_scanner;' \
'    let behind = false;'
check "a queue that has not delivered the last re-drive counts against the file"

mutate shared/src/usecases/janitor.rs \
'    let waiting = upload.waiting_for_scanner && waits < MAX_SCANNER_WAITS;' \
'    let waiting = upload.waiting_for_scanner;'
check "a file that keeps the scanner away is waited for without end"

mutate shared/src/processing/mod.rs \
'    if let PipelineError::ScannerUnavailable(why) = e {' \
'    if let (true, PipelineError::ScannerUnavailable(why)) = (false, e) {'
check "a scanner that is not there fails the file"

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
'    if now.status != UploadStatus::Processing || now.windows_done != Some(total) || now.hash_next != Some(raw) {' \
'    if now.status != UploadStatus::Processing || now.hash_next != Some(raw) {'
check "a verdict is written before every window is scanned"

mutate shared/src/processing/windows.rs \
'        Some(n) if n == k + 1 && n < plan.count() => {' \
'        Some(n) if n == k + 1 && n < plan.count() && false => {'
check "a hash link that died before queueing the next stalls the chain"

mutate shared/src/processing/windows.rs \
'        Some(unpacker) => members::steps_for(&src, unpacker, plan.window()).await?,' \
'        Some(_) => 0,'
check "archives larger than a window are not unpacked member by member (10.2)"

mutate shared/src/processing/members.rs \
'        if !range.contains(&start) || is_dir {' \
'        if start != range.start || is_dir {'
check "zip members past the first window are skipped (10.2)"

mutate shared/src/usecases/arrival.rs \
'    if arrived == recorded {' \
'    if true {'
check "a later write to a completed upload is kept (11.1)"

mutate shared/src/usecases/download.rs \
'    if link.generation != u.link_generation.unwrap_or(0) {' \
'    if false {'
check "links made before a delete work after the restore (11.7)"

mutate shared/src/domain/links.rs \
'        if expires - now > max_lifetime_secs + MAX_CLOCK_SKEW_SECS {' \
'        if false {'
check "a link past the maximum lifetime is accepted (11.7)"

mutate shared/src/http/authn.rs \
'        v.set_required_spec_claims(&["iss", "aud", "sub", "exp"]);' \
'        v.set_required_spec_claims(&["exp"]);'
check "tokens without iss/aud are accepted (11.2)"

mutate shared/src/http/authn.rs \
'                if !self.trusted_origin(caller) {' \
'                if false {'
check "a cross-site cookie request is accepted (11.3)"

mutate shared/src/http/authn.rs \
'    if found.next().is_some() {' \
'    if false {'
check "a doubled session cookie is accepted (11.3)"

mutate shared/src/domain/upload.rs \
'            && self.has_room(current, bytes)' \
'            && true'
check "the storage quota does not bound new uploads (11.5)"

mutate shared/src/usecases/parts.rs \
'    if parked <= limit {' \
'    if true {'
check "a session without a size parks past its ceiling (11.5)"

mutate shared/src/usecases/rate.rs \
'    if app.repo.count_request(owner, window, limit).await? {' \
'    if app.repo.count_request(owner, window, limit).await? || true {'
check "the per-owner request rate is not limited (11.6)"

exit $survived
