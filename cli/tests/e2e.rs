//! The `hoist` binary end to end, against an in-process dev server and the real
//! local stack. Needs `scripts/stack.sh start`.

use std::{path::Path, process::Command, time::Duration};

use api_types::{ranges, uploads::UploadView};
use hoist_e2e::{rand_like, sha256_hex, typed, unique, Harness};
use serde_json::Value;

const MIB: usize = 1024 * 1024;

fn hoist(h: &Harness, owner: &str, state_dir: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_hoist"));
    c.env("HOIST_URL", &h.base).env("HOIST_TOKEN", h.token(owner)).env("HOIST_STATE_DIR", state_dir);
    c
}

fn temp_dir(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(unique(name));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn json_lines(out: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(out).lines().filter_map(|l| serde_json::from_str(l).ok()).collect()
}

/// Runs a command off the async runtime (the dev server lives on it).
async fn run(mut c: Command) -> std::process::Output {
    tokio::task::spawn_blocking(move || c.output().unwrap()).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_get_ls_rm_restore_round_trip() {
    let h = Harness::start().await;
    let owner = unique("cli");
    let dir = temp_dir("hoist-cli");
    let data = rand_like::bytes(12 * MIB + 5);
    let src = dir.join("data.bin");
    std::fs::write(&src, &data).unwrap();
    let small = dir.join("notes.txt");
    std::fs::write(&small, b"small file").unwrap();

    let mut c = hoist(&h, &owner, &dir.join("state"));
    c.args(["--json", "put", "-j", "4", "--part-size", "5242880"]).arg(&src).arg(&small);
    let out = run(c).await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let lines = json_lines(&out.stdout);
    assert_eq!(lines.len(), 2, "one line per file: {lines:?}");
    let id = lines[0]["id"].as_str().unwrap().to_owned();
    assert_eq!(lines[0]["parts_sent"], 3);
    assert_eq!(lines[0]["status"], "processing");
    assert!(std::fs::read_dir(dir.join("state")).unwrap().next().is_none(), "state files are cleaned up");
    h.process_all().await;

    let dest = dir.join("back.bin");
    let mut c = hoist(&h, &owner, &dir.join("state"));
    c.args(["get", &id, "-o"]).arg(&dest);
    let out = run(c).await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(std::fs::read(&dest).unwrap(), data, "downloaded bytes equal the source");

    let mut c = hoist(&h, &owner, &dir.join("state"));
    c.args(["--json", "ls"]);
    let listed = json_lines(&run(c).await.stdout);
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[1]["id"], id.as_str(), "newest first");

    let mut c = hoist(&h, &owner, &dir.join("state"));
    c.args(["rm", &id]);
    assert!(run(c).await.status.success());
    let mut c = hoist(&h, &owner, &dir.join("state"));
    c.args(["get", &id, "-o"]).arg(dir.join("x"));
    let out = run(c).await;
    assert!(!out.status.success(), "a deleted file cannot be fetched");
    let mut c = hoist(&h, &owner, &dir.join("state"));
    c.args(["restore", &id]);
    assert!(run(c).await.status.success());
    let mut c = hoist(&h, &owner, &dir.join("state"));
    c.args(["link", &id]);
    let out = run(c).await;
    assert!(String::from_utf8_lossy(&out.stdout).contains("/d/"), "link prints a URL");
    std::fs::remove_dir_all(dir).ok();
}

/// By default `put` pins each part's SHA-256 and reads the file no further; `--sha256`
/// also hashes the whole file beside the sending and declares it, for processing to
/// verify. Either way processing records the stored file's SHA-256, which must be the
/// source's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_declares_the_whole_file_sha256_only_when_asked() {
    let h = Harness::start().await;
    let owner = unique("whole");
    let dir = temp_dir("hoist-whole");
    let data = rand_like::bytes(11 * MIB + 3);
    let src = dir.join("data.bin");
    std::fs::write(&src, &data).unwrap();
    let mut ids = Vec::new();
    for flag in [None, Some("--sha256")] {
        let mut c = hoist(&h, &owner, &dir.join("state"));
        c.args(["--json", "put", "-j", "3", "--part-size", "5242880"]).args(flag).arg(&src);
        let out = run(c).await;
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let line = json_lines(&out.stdout).pop().unwrap();
        let id = line["id"].as_str().unwrap().to_owned();
        assert_eq!(line["timings"]["whole_hash_ms"].as_f64().unwrap() > 0.0, flag.is_some(), "{line}");
        let v: UploadView = h.call_as(Some(&owner), "GET", &format!("/uploads/{id}"), None, 200).await;
        let declared = flag.map(|_| sha256_hex(&data));
        assert_eq!(v.sha256, declared, "declared with {flag:?}");
        ids.push(id);
    }
    h.process_all().await;
    for id in ids {
        let f: api_types::files::FileView = h.call_as(Some(&owner), "GET", &format!("/files/{id}"), None, 200).await;
        assert_eq!((f.status.as_str(), f.sha256), ("ready", Some(sha256_hex(&data))), "{id}");
    }
    std::fs::remove_dir_all(dir).ok();
}

/// Polls the CLI's state file and the server until `n` parts are recorded; returns the upload id.
async fn wait_for_parts(h: &Harness, owner: &str, state: &Path, n: u32, child: &mut std::process::Child) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        assert!(std::time::Instant::now() < deadline, "no progress");
        assert!(child.try_wait().unwrap().is_none(), "the upload finished before it could be killed");
        tokio::time::sleep(Duration::from_millis(100)).await;
        let Some(entry) = std::fs::read_dir(state).ok().and_then(|mut d| d.next()) else { continue };
        let Ok(bytes) = std::fs::read(entry.unwrap().path()) else { continue };
        let Ok(st) = serde_json::from_slice::<Value>(&bytes) else { continue };
        let id = st["upload_id"].as_str().unwrap().to_owned();
        let (s, u, _) = h.call(Some(owner), "GET", &format!("/uploads/{id}"), None).await;
        if s == 200 && typed::<UploadView>(&u).parts_done >= n {
            return id;
        }
    }
}

/// A run that died while completing (every part in S3, the server's completion lease
/// left behind) is finished by the next run, which completes the same upload and sends
/// nothing again (it used to start a new upload and send the whole file).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_that_died_while_completing_is_completed_not_sent_again() {
    let h = Harness::start().await;
    let owner = unique("comp");
    let dir = temp_dir("hoist-comp");
    let data = rand_like::bytes(3 * 5 * MIB + 7);
    let src = dir.join("f.bin");
    std::fs::write(&src, &data).unwrap();
    let state = dir.join("state");
    let mut c = hoist(&h, &owner, &state);
    c.args(["put", "-j", "1", "--part-size", "5242880", "--limit-rate", "4M"]).arg(&src);
    c.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null());
    let mut child = c.spawn().unwrap();
    let id = wait_for_parts(&h, &owner, &state, 1, &mut child).await;
    child.kill().unwrap();
    child.wait().unwrap();
    // The rest of the parts reach S3, then a completion dies holding its lease.
    h.upload_parts(&owner, &id, &data, 5 * MIB, &[2, 3, 4], true).await;
    let upload_id = shared::domain::UploadId::parse(&id).unwrap();
    let lease = Duration::from_secs(1);
    assert!(h.app.repo.begin_completion(&upload_id, shared::now(), lease).await.unwrap());
    let v: UploadView = h.call_as(Some(&owner), "GET", &format!("/uploads/{id}"), None, 200).await;
    assert_eq!(v.status, "completing");

    let mut c = hoist(&h, &owner, &state);
    c.args(["--json", "put", "-j", "2", "--part-size", "5242880"]).arg(&src);
    let out = run(c).await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let line = json_lines(&out.stdout).pop().unwrap();
    assert_eq!((line["id"].as_str(), line["parts_sent"].as_u64()), (Some(id.as_str()), Some(0)), "{line}");
    assert_eq!(line["status"], "processing");
    assert_eq!(h.object_bytes(&id).await, data);
    assert!(std::fs::read_dir(&state).unwrap().next().is_none(), "state file removed");
    std::fs::remove_dir_all(dir).ok();
}

/// Between an interrupted run and its rerun: a chmod moves the file's inode-change time
/// but not its bytes, so the rerun checks the parts S3 holds against the file and
/// resumes; an edit whose modification time was put back (as `touch -r` or `cp -p` do)
/// is refused, although size and modification time are as before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rerun_tells_a_chmod_from_an_edit_with_its_modification_time_put_back() {
    use std::os::unix::fs::PermissionsExt;
    let h = Harness::start().await;
    let owner = unique("ctime");
    let dir = temp_dir("hoist-ctime");
    for edit in [false, true] {
        let data = rand_like::bytes(4 * 5 * MIB);
        let src = dir.join(format!("f-{edit}.bin"));
        std::fs::write(&src, &data).unwrap();
        let state = dir.join(format!("state-{edit}"));
        let mut c = hoist(&h, &owner, &state);
        c.args(["put", "-j", "1", "--part-size", "5242880", "--limit-rate", "5M"]).arg(&src);
        c.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null());
        let mut child = c.spawn().unwrap();
        let id = wait_for_parts(&h, &owner, &state, 1, &mut child).await;
        child.kill().unwrap();
        child.wait().unwrap();
        std::thread::sleep(Duration::from_millis(20)); // a new ctime on coarse clocks
        if edit {
            let mtime = std::fs::metadata(&src).unwrap().modified().unwrap();
            let f = std::fs::OpenOptions::new().write(true).open(&src).unwrap();
            std::io::Write::write_all(&mut &f, b"edited, then its mtime put back").unwrap();
            f.set_modified(mtime).unwrap();
        } else {
            std::fs::set_permissions(&src, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        let mut c = hoist(&h, &owner, &state);
        c.args(["--json", "put", "-j", "2"]).arg(&src);
        let out = run(c).await;
        let err = String::from_utf8_lossy(&out.stderr);
        if edit {
            assert!(!out.status.success() && err.contains("changed since its interrupted upload"), "{err}");
            let v: UploadView = h.call_as(Some(&owner), "GET", &format!("/uploads/{id}"), None, 200).await;
            assert_eq!(v.status, "uploading", "not completed");
        } else {
            assert!(out.status.success(), "{err}");
            let line = json_lines(&out.stdout).pop().unwrap();
            assert_eq!((line["id"].as_str(), &line["resumed"]), (Some(id.as_str()), &Value::Bool(true)), "{line}");
            assert!(line["parts_sent"].as_u64().unwrap() < 4, "{line}");
            assert_eq!(h.object_bytes(&id).await, data);
        }
    }
    std::fs::remove_dir_all(dir).ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_upload_then_rerun_sends_only_missing_parts() {
    let h = Harness::start().await;
    let owner = unique("kill");
    let dir = temp_dir("hoist-kill");
    let data = rand_like::bytes(8 * 5 * MIB);
    let src = dir.join("big.bin");
    std::fs::write(&src, &data).unwrap();
    let state = dir.join("state");

    // Slowed to ~6 MiB/s so the kill lands mid-way.
    let mut c = hoist(&h, &owner, &state);
    c.args(["put", "-j", "2", "--part-size", "5242880", "--limit-rate", "6M"]).arg(&src);
    c.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null());
    let mut child = c.spawn().unwrap();
    // Wait until the server has recorded at least two parts, then kill -9.
    let id = wait_for_parts(&h, &owner, &state, 2, &mut child).await;
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let before: UploadView = h.call_as(Some(&owner), "GET", &format!("/uploads/{id}"), None, 200).await;
    assert_eq!(before.status, "uploading");
    let missing: Vec<u32> = ranges::expand(&before.missing_parts).collect();
    assert!(!missing.is_empty() && missing.len() < 8, "killed mid-way: {before:?}");
    // Parts S3 finished whose answer the killed process never saw: the rerun records
    // them (S3 checked their pinned SHA-256) rather than sending them again.
    let held: api_types::uploads::HeldParts =
        h.call_as(Some(&owner), "GET", &format!("/uploads/{id}/parts"), None, 200).await;
    let to_send: Vec<u32> = missing.iter().copied().filter(|n| !held.parts.iter().any(|p| p.number == *n)).collect();

    h.clear_request_log();
    let mut c = hoist(&h, &owner, &state);
    c.args(["--json", "put", "-j", "4"]).arg(&src);
    let out = run(c).await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let r = &json_lines(&out.stdout)[0];
    assert_eq!(r["id"], id.as_str(), "the same upload was resumed");
    assert_eq!(r["resumed"], true);
    assert_eq!(r["parts_sent"].as_u64().unwrap() as usize, to_send.len());
    let mut signed = h.signed_part_numbers(&id);
    signed.sort_unstable();
    assert_eq!(signed, to_send, "the server was asked to sign exactly the parts S3 lacks");
    assert_eq!(h.object_bytes(&id).await, data);
    std::fs::remove_dir_all(dir).ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_modified_source_is_refused_for_resume() {
    let h = Harness::start().await;
    let owner = unique("mod");
    let dir = temp_dir("hoist-mod");
    let src = dir.join("f.bin");
    std::fs::write(&src, rand_like::bytes(6 * 5 * MIB)).unwrap();
    let state = dir.join("state");
    let mut c = hoist(&h, &owner, &state);
    c.args(["put", "-j", "1", "--part-size", "5242880", "--limit-rate", "5M"]).arg(&src);
    c.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null());
    let mut child = c.spawn().unwrap();
    wait_for_parts(&h, &owner, &state, 1, &mut child).await;
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(std::fs::read_dir(&state).unwrap().next().is_some(), "interrupted: state kept");
    // Change the file (same size, new content and mtime).
    std::thread::sleep(Duration::from_millis(20));
    std::fs::write(&src, rand_like::bytes(6 * 5 * MIB)).unwrap();
    let mut c = hoist(&h, &owner, &state);
    c.args(["put"]).arg(&src);
    let out = run(c).await;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("changed since its interrupted upload") && err.contains("--restart"), "{err}");
    let mut c = hoist(&h, &owner, &state);
    c.args(["--json", "put", "--restart"]).arg(&src);
    let out = run(c).await;
    assert!(out.status.success(), "--restart uploads it anew: {}", String::from_utf8_lossy(&out.stderr));
    std::fs::remove_dir_all(dir).ok();
}

/// Parts are read one by one while others are sent: a file edited in between must never
/// be completed as if it were one file (the edited part is caught by S3's pinned-hash
/// check or by the size, modification and inode-change times checked before completing).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_edited_while_it_is_sent_is_never_completed() {
    let h = Harness::start().await;
    let owner = unique("edit");
    let dir = temp_dir("hoist-edit");
    let src = dir.join("f.bin");
    let data = rand_like::bytes(4 * 5 * MIB);
    std::fs::write(&src, &data).unwrap();
    let state = dir.join("state");
    let mut c = hoist(&h, &owner, &state);
    c.args(["put", "-j", "1", "--part-size", "5242880", "--limit-rate", "5M"]).arg(&src);
    c.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::piped());
    let mut child = c.spawn().unwrap();
    let id = wait_for_parts(&h, &owner, &state, 1, &mut child).await;
    // Edit the last part in place: same size, new bytes and modification time.
    {
        use std::io::{Seek, Write};
        let mut f = std::fs::OpenOptions::new().write(true).open(&src).unwrap();
        f.seek(std::io::SeekFrom::Start(3 * 5 * MIB as u64 + 10)).unwrap();
        f.write_all(b"edited while it was being sent").unwrap();
    }
    let out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap()).await.unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("changed") && err.contains("--restart"), "{err}");
    let v: UploadView = h.call_as(Some(&owner), "GET", &format!("/uploads/{id}"), None, 200).await;
    assert_eq!(v.status, "uploading", "not completed: {v:?}");
    std::fs::remove_dir_all(dir).ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_resumes_an_interrupted_download_and_verifies_it() {
    let h = Harness::start().await;
    let owner = unique("getr");
    let dir = temp_dir("hoist-get");
    let data = rand_like::bytes(3 * MIB + 11);
    let id = h.upload_file(&owner, "g.bin", "application/octet-stream", &data, None).await;
    h.process_all().await;
    let dest = dir.join("g.bin");
    let partial = dir.join("g.bin.hoist-part");
    // An interrupted download left the first 1 MiB behind.
    std::fs::write(&partial, &data[..MIB]).unwrap();
    let mut c = hoist(&h, &owner, &dir);
    c.args(["get", &id, "-o"]).arg(&dest);
    let out = run(c).await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(std::fs::read(&dest).unwrap(), data);
    assert!(!partial.exists());
    // A partial download that does not match is caught by the SHA-256 check.
    std::fs::remove_file(&dest).unwrap();
    std::fs::write(&partial, vec![0u8; MIB]).unwrap();
    let mut c = hoist(&h, &owner, &dir);
    c.args(["get", &id, "-o"]).arg(&dest);
    let out = run(c).await;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("hash"), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!dest.exists() && !partial.exists());
    std::fs::remove_dir_all(dir).ok();
}

/// Issue 13.5: a part S3 has is recorded on a timer (about a second), not only when a
/// later part completes. Two parts in flight share 4 MiB/s, so parts 1 and 2 finish
/// together (~2.5 s), and parts 3 and 4 ~2.5 s later: both 1 and 2 must be on the
/// server while 3 and 4 are still being sent (recording "at the next completion, once
/// a second" recorded the second of a pair only with the next pair).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parts_are_recorded_on_a_timer_not_when_the_next_part_completes() {
    let h = Harness::start().await;
    let owner = unique("timer");
    let dir = temp_dir("hoist-timer");
    let data = rand_like::bytes(4 * 5 * MIB);
    let src = dir.join("four-parts.bin");
    std::fs::write(&src, &data).unwrap();
    let state = dir.join("state");
    let mut c = hoist(&h, &owner, &state);
    c.args(["put", "-j", "2", "--part-size", "5242880", "--limit-rate", "4M"]).arg(&src);
    c.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null());
    let mut child = c.spawn().unwrap();
    let id = wait_for_parts(&h, &owner, &state, 2, &mut child).await;
    // The moment parts 1 and 2 are recorded, S3 does not have 3 or 4 yet.
    let mut in_s3: Vec<i32> = h.s3_parts(&id).await.iter().filter_map(|p| p.part_number()).collect();
    in_s3.sort_unstable();
    assert_eq!(in_s3, vec![1, 2], "both were recorded before the next pair finished");
    let out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap()).await.unwrap();
    assert!(out.status.success());
    assert_eq!(h.object_bytes(&id).await, data);
    std::fs::remove_dir_all(dir).ok();
}

/// Issue 13.5: parts S3 finished but nobody recorded (the process died before it saw
/// S3's answer) are recorded on resume, not sent again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_records_parts_s3_holds_instead_of_sending_them_again() {
    let h = Harness::start().await;
    let owner = unique("held");
    let dir = temp_dir("hoist-held");
    let data = rand_like::bytes(4 * 5 * MIB);
    let src = dir.join("four.bin");
    std::fs::write(&src, &data).unwrap();
    let state = dir.join("state");
    // Start an upload and kill it at once, before any part: the state file is written.
    let mut c = hoist(&h, &owner, &state);
    c.args(["put", "-j", "1", "--part-size", "5242880", "--limit-rate", "1M"]).arg(&src);
    c.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null());
    let mut child = c.spawn().unwrap();
    let id = loop {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let Some(entry) = std::fs::read_dir(&state).ok().and_then(|mut d| d.next()) else { continue };
        let Ok(st) = serde_json::from_slice::<Value>(&std::fs::read(entry.unwrap().path()).unwrap_or_default()) else {
            continue;
        };
        break st["upload_id"].as_str().unwrap().to_owned();
    };
    child.kill().unwrap();
    child.wait().unwrap();
    // As if the dead process had sent parts 2 and 3 (S3 has them, nothing recorded):
    // sign and PUT them by hand, with their SHA-256 pinned as the CLI pins it. Part 3
    // holds other bytes than the file has now (as if the file was edited back and
    // forth): the CLI hashes its own part 3 and must send it again.
    let other = rand_like::bytes(5 * MIB);
    let body_of = |n: u32| if n == 3 { other.clone() } else { hoist_e2e::chunk(&data, 5 * MIB, n).to_vec() };
    let signed: api_types::uploads::SignPartsResponse = {
        let sha = |n: u32| sha256_hex(&body_of(n));
        let body = serde_json::json!({"parts": [{"number": 2, "sha256": sha(2)}, {"number": 3, "sha256": sha(3)}]});
        h.call_as(Some(&owner), "POST", &format!("/uploads/{id}/parts/sign"), Some(body), 200).await
    };
    for p in &signed.parts {
        let (s, _, body) = h.put_part(p, body_of(p.number)).await;
        assert_eq!(s, 200, "{body}");
    }
    h.clear_request_log();
    let mut c = hoist(&h, &owner, &state);
    c.args(["--json", "put", "-j", "2"]).arg(&src);
    let out = run(c).await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let r = &json_lines(&out.stdout)[0];
    assert_eq!(r["resumed"], true);
    let mut sent = h.signed_part_numbers(&id);
    sent.sort_unstable();
    assert_eq!(sent, vec![1, 3, 4], "part 2 was recorded from S3, not sent again; the stale part 3 was");
    assert_eq!(h.object_bytes(&id).await, data);
    std::fs::remove_dir_all(dir).ok();
}
