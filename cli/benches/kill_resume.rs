//! Kill and resume: `hoist put` of a 1 GiB file is SIGKILLed 10 times at random moments
//! and rerun each time (then once more to finish). For every kill it reports what S3
//! had accepted at the kill, what the server had recorded, and what the next run sent
//! again: S3 parts the server did not know about. The bound is concurrency x part size
//! per kill; parts S3 finished more than a second before the kill should never be sent
//! again (the CLI records on a one-second timer).
//!
//! Run: `make bench` (needs the local stack). 16 MiB parts, 8 in flight, sending
//! limited to 24 MiB/s so that 10 kills land across the upload.

use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use api_types::uploads::UploadView;
use hoist_e2e::{rand_like, unique, Harness};

const MIB: u64 = 1024 * 1024;
const PART: u64 = 16 * MIB;
const CONCURRENCY: u64 = 8;
const KILLS: usize = 10;
/// ListParts' LastModified has whole seconds: a part may have finished up to this much
/// later than it says.
const LAST_MODIFIED_RESOLUTION: f64 = 1.0;

fn now_secs() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

/// Parts a run sent again of what S3 held at the kill before it.
#[derive(Default)]
struct Resent {
    total: u64,
    worst: u64,
    /// Of those, parts S3 had finished more than a second before the kill.
    old: u64,
}

impl Resent {
    /// Counts what the run just logged as signed of `parts` (S3's, at the kill at `at`),
    /// and prints the row.
    fn count(&mut self, h: &Harness, id: &str, (at, parts): (f64, Vec<(u32, f64)>), label: &str) {
        let signed = h.signed_part_numbers(id);
        let again: Vec<&(u32, f64)> = parts.iter().filter(|(n, _)| signed.contains(n)).collect();
        let old = again.iter().filter(|(_, done)| *done < at - 1.0 - LAST_MODIFIED_RESOLUTION).count() as u64;
        self.total += again.len() as u64;
        self.old += old;
        self.worst = self.worst.max(again.len() as u64);
        println!("|   | ↳ {label} | | | {} parts ({} MiB) | {old} |", again.len(), again.len() as u64 * PART / MIB);
    }
}

#[tokio::main]
async fn main() {
    let h = Harness::start().await;
    let owner = unique("killbench");
    let dir = std::env::temp_dir().join(unique("hoist-kill-bench"));
    std::fs::create_dir_all(&dir).unwrap();
    let src = dir.join("one-gib.bin");
    {
        use std::io::Write;
        let mut f = std::io::BufWriter::new(std::fs::File::create(&src).unwrap());
        for _ in 0..1024 {
            f.write_all(&rand_like::bytes(MIB as usize)).unwrap();
        }
    }
    let state = dir.join("state");
    let hoist = env!("CARGO_BIN_EXE_hoist");
    let run = |limit: bool| {
        let mut c = Command::new(hoist);
        c.env("HOIST_URL", &h.base).env("HOIST_TOKEN", h.token(&owner)).env("HOIST_STATE_DIR", &state);
        c.args(["put", "-j", &CONCURRENCY.to_string(), "--part-size", &PART.to_string()]);
        if limit {
            c.args(["--limit-rate", "24M"]);
        }
        c.arg(&src).stdout(Stdio::null()).stderr(Stdio::null());
        c
    };
    // Kill delays after each start, spread over 2.5-6.5 s (a fixed pseudo-random sequence):
    // long enough for each run to get parts through at 24 MiB/s (16 MiB parts, 8 in
    // flight), short enough that 10 kills land across the upload.
    let delays: Vec<f64> = (0..KILLS).map(|i| 2.5 + ((i * 7 + 3) % 9) as f64 * 0.5).collect();

    println!("## Kill and resume: 1 GiB, {} MiB parts, {CONCURRENCY} in flight, 24 MiB/s, 10 SIGKILLs", PART / MIB);
    println!();
    println!("| kill | after s | parts in S3 at the kill | recorded on the server | sent again by the next run | of those, finished > 1 s before the kill |");
    println!("|---|---|---|---|---|---|");
    let mut id = String::new();
    let mut resent = Resent::default();
    let mut snapshot: Option<(f64, Vec<(u32, f64)>)> = None;
    for (k, delay) in delays.iter().enumerate() {
        h.clear_request_log();
        let mut child = run(true).spawn().unwrap();
        tokio::time::sleep(Duration::from_secs_f64(*delay)).await;
        if child.try_wait().unwrap().is_some() {
            println!("| {} | {delay:.1} | (the upload finished before this kill) | | | |", k + 1);
            break;
        }
        child.kill().unwrap(); // SIGKILL
        let killed_at = now_secs();
        child.wait().unwrap();
        // What this run sent again of what S3 had at the previous kill.
        if let Some(at_kill) = snapshot.take() {
            resent.count(&h, &id, at_kill, "sent again");
        }
        if id.is_empty() {
            let entry = std::fs::read_dir(&state).ok().and_then(|mut d| d.next()).and_then(|e| e.ok());
            let st: serde_json::Value = entry
                .and_then(|e| std::fs::read(e.path()).ok())
                .and_then(|b| serde_json::from_slice(&b).ok())
                .unwrap_or_default();
            id = st["upload_id"].as_str().unwrap_or_default().to_owned();
            if id.is_empty() {
                println!("| {} | {delay:.1} | (killed before the upload was created) | | | |", k + 1);
                continue;
            }
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        let parts: Vec<(u32, f64)> = h
            .s3_parts(&id)
            .await
            .iter()
            .filter_map(|p| {
                let done = p.last_modified().map(|t| t.as_secs_f64())?;
                Some((p.part_number()? as u32, done))
            })
            .collect();
        let v: UploadView = h.call_as(Some(&owner), "GET", &format!("/uploads/{id}"), None, 200).await;
        println!("| {} | {delay:.1} | {} | {} | | |", k + 1, parts.len(), v.parts_done);
        snapshot = Some((killed_at, parts));
    }
    // The last run finishes the upload; what it sent again of the last kill's S3 parts.
    h.clear_request_log();
    let out = run(false).output().unwrap();
    assert!(out.status.success(), "the final run failed");
    if let Some(at_kill) = snapshot.take() {
        resent.count(&h, &id, at_kill, "sent again (final run)");
    }
    let v: UploadView = h.call_as(Some(&owner), "GET", &format!("/uploads/{id}"), None, 200).await;
    println!();
    println!(
        "sent again in all: {} parts ({} MiB); worst kill: {} parts ({} MiB), bound {CONCURRENCY} x {} MiB = {} MiB; parts finished > 1 s before a kill and sent again: {}; final status: {}",
        resent.total,
        resent.total * PART / MIB,
        resent.worst,
        resent.worst * PART / MIB,
        PART / MIB,
        CONCURRENCY * PART / MIB,
        resent.old,
        v.status
    );
    std::fs::remove_dir_all(&dir).ok();
}
