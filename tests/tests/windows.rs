//! Large files in windows, end to end: a real LocalStack queue carries the window jobs,
//! a real clamd scans each window, DynamoDB (moto) counts them. Sizes are small and
//! configurable (HOIST_TEST_WINDOW_MIB, HOIST_TEST_FILE_MIB): the properties do not
//! depend on scale, and the same code runs 1 GiB windows in AWS.

use api_types::uploads::UploadView;
use hoist_e2e::{rand_like, sha256_hex, unique, Harness};

const MIB: u64 = 1024 * 1024;

fn eicar() -> Vec<u8> {
    ["X5O!P%@AP[4\\PZX54(P^)7CC)7}$", "EICAR-STANDARD-ANTIVIRUS", "-TEST-FILE!$H+H*"].concat().into_bytes()
}

fn env_mib(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default) * MIB
}

fn window() -> u64 {
    env_mib("HOIST_TEST_WINDOW_MIB", 4)
}

fn file_size() -> u64 {
    env_mib("HOIST_TEST_FILE_MIB", 17)
}

async fn status(h: &Harness, owner: &str, id: &str) -> UploadView {
    h.call_as(Some(owner), "GET", &format!("/uploads/{id}"), None, 200).await
}

/// Random bytes with EICAR planted at each offset.
fn planted(size: u64, offsets: &[u64]) -> Vec<u8> {
    let mut data = rand_like::bytes(size as usize);
    for &at in offsets {
        data[at as usize..at as usize + eicar().len()].copy_from_slice(&eicar());
    }
    data
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_files_are_scanned_in_windows_with_a_true_verdict() {
    let h = Harness::start().await;
    let owner = unique("win");
    let (size, w) = (file_size(), window());
    let clean = planted(size, &[]);
    let clean_id = h.upload_file(&owner, "clean.bin", "application/octet-stream", &clean, None).await;
    // Three quarters in (as at 3 GiB of a 4 GiB file), and straddling a window boundary.
    let deep =
        h.upload_file(&owner, "deep.bin", "application/octet-stream", &planted(size, &[size / 4 * 3]), None).await;
    let straddle =
        h.upload_file(&owner, "edge.bin", "application/octet-stream", &planted(size, &[2 * w - 30]), None).await;
    // The declared whole-file SHA-256 of a windowed file is verified.
    let wrong = h
        .upload_file(&owner, "wrong.bin", "application/octet-stream", &clean, Some(sha256_hex(b"something else")))
        .await;
    let windows = size.div_ceil(w);
    let handled = h.process_all_in_windows(w).await;
    // Per file: its job, a scan per window, a hash link per window.
    assert!(handled >= 4 * (1 + 2 * windows as usize), "{handled} messages for 4 files of {windows} windows");

    let v = status(&h, &owner, &clean_id).await;
    assert_eq!(v.status, "ready", "{v:?}");
    assert!(v.reason.as_deref().unwrap().contains(&format!("Scanned in {windows} windows")), "{v:?}");
    let f: api_types::files::FileView = h.call_as(Some(&owner), "GET", &format!("/files/{clean_id}"), None, 200).await;
    assert_eq!(f.sha256.as_deref(), Some(sha256_hex(&clean).as_str()), "the chained hash is the whole file's");
    assert!(v.progress.is_none(), "no progress once decided");
    for id in [&deep, &straddle] {
        let v = status(&h, &owner, id).await;
        assert_eq!(v.status, "quarantined", "{v:?}");
        assert!(v.reason.as_deref().unwrap().contains("Malware found"), "{v:?}");
    }
    let v = status(&h, &owner, &wrong).await;
    assert_eq!(v.status, "corrupt", "{v:?}");
    assert_eq!(h.status_tag(&format!("uploads/{deep}")).await.as_deref(), Some("quarantined"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_window_deliveries_change_nothing_and_progress_shows() {
    let h = Harness::start().await;
    let owner = unique("dup");
    let (size, w) = (file_size(), window());
    let data = planted(size, &[]);
    let id = h.upload_file(&owner, "twice.bin", "application/octet-stream", &data, None).await;
    // Fan out only: take the window jobs off the queue by hand.
    let jobs = h.drain_jobs().await;
    assert_eq!(jobs.len(), 1);
    let p = h.processor_with(|c| c.scan_window = w);
    let job: shared::domain::ProcessJob = serde_json::from_value(jobs[0].clone()).unwrap();
    shared::processing::process(&p, &job, 1).await.unwrap();
    let windows: Vec<shared::domain::WindowJob> =
        h.drain_jobs().await.into_iter().map(|j| serde_json::from_value(j).unwrap()).collect();
    let scans: Vec<shared::domain::WindowJob> =
        windows.iter().filter(|j| matches!(j, shared::domain::WindowJob::Scan { .. })).cloned().collect();
    assert_eq!(scans.len() as u64, size.div_ceil(w));
    // Every scan twice, first in reverse order; progress shows while the hash is pending.
    for job in scans.iter().rev().chain(scans.iter()) {
        shared::processing::process_window(&p, job, 1).await.unwrap();
    }
    let v = status(&h, &owner, &id).await;
    assert_eq!(v.status, "processing");
    let progress = v.progress.expect("progress");
    assert_eq!(progress.windows_scanned, progress.windows_total, "{progress:?}");
    assert_eq!(progress.bytes_hashed, 0);
    // The hash chain (each link delivered twice), then late repeats of everything.
    let mut hash: Vec<shared::domain::WindowJob> =
        windows.into_iter().filter(|j| matches!(j, shared::domain::WindowJob::Hash { .. })).collect();
    while let Some(job) = hash.pop() {
        shared::processing::process_window(&p, &job, 1).await.unwrap();
        shared::processing::process_window(&p, &job, 1).await.unwrap();
        hash.extend(h.drain_jobs().await.into_iter().map(|j| serde_json::from_value(j).unwrap()));
    }
    let done = status(&h, &owner, &id).await;
    assert_eq!(done.status, "ready", "{done:?}");
    for job in &scans {
        shared::processing::process_window(&p, job, 1).await.unwrap();
    }
    assert_eq!(status(&h, &owner, &id).await, done, "late repeats change nothing");
}

/// A file whose processing stalled midway (its remaining jobs lost, as when they crash
/// out of every delivery) is resumed by the janitor once nothing has moved for the stall
/// time: only what was left is sent again, and the verdict is the true one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_windowed_file_is_resumed_by_the_janitor() {
    use shared::domain::WindowJob;
    // Its own table: the sweeps below run hours ahead, which in the shared table would
    // act on every other test's uploads.
    let h = Harness::with_own_table(|_| {}).await;
    let owner = unique("stall");
    let (size, w) = (file_size(), window());
    let data = planted(size, &[size - 100]);
    let id = h.upload_file(&owner, "stalled.bin", "application/octet-stream", &data, None).await;
    let p = h.processor_with(|c| c.scan_window = w);
    let job: shared::domain::ProcessJob = serde_json::from_value(h.drain_jobs().await.remove(0)).unwrap();
    shared::processing::process(&p, &job, 1).await.unwrap();
    // Window 0 is scanned and the chain passes it; every other job is lost.
    let windows: Vec<WindowJob> =
        h.drain_jobs().await.into_iter().map(|j| serde_json::from_value(j).unwrap()).collect();
    for job in
        windows.iter().filter(|j| matches!(j, WindowJob::Scan { index: 0, .. } | WindowJob::Hash { index: 0, .. }))
    {
        shared::processing::process_window(&p, job, 1).await.unwrap();
    }
    assert_eq!(h.drain_jobs().await.len(), 1, "link 1, lost");
    let stall = h.app.config.processing_stall.as_secs() as i64;
    let early = shared::usecases::janitor::sweep(&h.app, shared::now() + stall / 2).await.unwrap();
    assert_eq!(early.redriven, 0, "not stalled yet: {early:?}");
    let report = shared::usecases::janitor::sweep(&h.app, shared::now() + stall + 1).await.unwrap();
    assert_eq!(report.redriven, 1, "{report:?}");
    let redriven: Vec<shared::domain::ProcessJob> =
        h.drain_jobs().await.into_iter().map(|j| serde_json::from_value(j).unwrap()).collect();
    assert_eq!(redriven.len(), 1);
    assert_eq!(redriven[0].upload_id.as_str(), id);
    assert_eq!(redriven[0].redrive, 1);
    shared::processing::process(&p, &redriven[0], 1).await.unwrap();
    let resent: Vec<WindowJob> = h.drain_jobs().await.into_iter().map(|j| serde_json::from_value(j).unwrap()).collect();
    let windows_total = size.div_ceil(w) as usize;
    assert_eq!(resent.len(), windows_total, "link 1 and every window but 0: {resent:?}");
    assert!(resent.iter().all(|j| !matches!(j, WindowJob::Scan { index: 0, .. } | WindowJob::Hash { index: 0, .. })));
    let mut pending = resent;
    while let Some(job) = pending.pop() {
        shared::processing::process_window(&p, &job, 1).await.unwrap();
        pending.extend(h.drain_jobs().await.into_iter().map(|j| serde_json::from_value(j).unwrap()));
    }
    let v = status(&h, &owner, &id).await;
    assert_eq!(v.status, "quarantined", "the planted signature in the last window is found: {v:?}");
    let rec = h.app.repo.get(&shared::domain::UploadId::parse(&id).unwrap()).await.unwrap().unwrap();
    assert_eq!((rec.stall_check_at, rec.redrive_seen), (None, Some(1)), "the verdict left the janitor's watch");
}

/// A scanner that cannot be reached is waited for, never a verdict and never `failed`:
/// on the last delivery the file says so, and the janitor sends it again once quiet
/// for its period.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scanner_that_is_not_there_is_waited_for_then_the_file_is_scanned() {
    let h = Harness::with_own_table(|_| {}).await;
    let owner = unique("noscan");
    let data = planted(MIB, &[]);
    let id = h.upload_file(&owner, "waits.bin", "application/octet-stream", &data, None).await;
    // Nothing listens on port 9 of this machine: connection refused, as when clamd has
    // not started (or its signatures did not load).
    let absent = h.processor_with(|c| {
        c.clamd_addr = "127.0.0.1:9".into();
        c.max_receives = 1;
    });
    let jobs = h.drain_jobs().await;
    let job: shared::domain::ProcessJob = serde_json::from_value(jobs[0].clone()).unwrap();
    let outcome = shared::processing::process(&absent, &job, 1).await.unwrap();
    assert_eq!(outcome, shared::processing::JobOutcome::WaitingForScanner);
    let v = status(&h, &owner, &id).await;
    assert_eq!(v.status, "processing", "{v:?}");
    assert!(v.reason.as_deref().unwrap_or_default().contains("Waiting for the virus scanner"), "{v:?}");
    let later = shared::now() + shared::domain::SCANNER_RETRY_SECS + 1;
    let report = shared::usecases::janitor::sweep(&h.app, later).await.unwrap();
    assert_eq!(report.redriven, 1, "{report:?}");
    h.process_all().await;
    let v = status(&h, &owner, &id).await;
    assert_eq!(v.status, "ready", "{v:?}");
}
