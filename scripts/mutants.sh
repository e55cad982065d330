#!/usr/bin/env bash
# Breaks the completion protocol on purpose, one way at a time, and checks that the
# crash-window unit tests (shared/src/usecases/protocol_tests.rs) catch every break.
# A mutation the tests survive fails this script. Files are restored on any exit.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$HOIST_ROOT"

files=(shared/src/usecases/complete.rs shared/src/domain/status.rs shared/src/usecases/janitor.rs shared/src/processing/mod.rs)
backup=$(mktemp -d)
tar -cf "$backup/files.tar" "${files[@]}"
put_back() { tar -xf "$backup/files.tar"; }
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

survived=0
check() { # name
  local out
  if out=$(cargo test -q -p shared --lib protocol_tests 2>&1); then
    echo "SURVIVED: $1 (the protocol tests did not notice)"; survived=1
  else
    echo "caught:   $1 -> $(grep -oE '^    usecases::protocol_tests::[a-z_]+' <<<"$out" | sed 's/.*:://' | paste -sd, -)"
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
'    if rec.status != UploadStatus::Processing || rec.owner != job.owner {' \
'    if rec.owner != job.owner {'
check "a duplicate job is processed again"

mutate shared/src/processing/mod.rs \
'    if rec.status == UploadStatus::Completing && rec.owner == job.owner {' \
'    if false {'
check "a job that comes before its status write is dropped"

exit $survived
