//! Processing that stalls, on in-memory ports: a job lost, or crashed out of all its
//! deliveries, or a scanner that is not there. The janitor sends the job again once
//! nothing has moved for the stall time (resuming only what is left undone), sets a
//! file aside after too many stalls, never holds the scanner's absence against a file,
//! and leaves a deleted file to its purge.

use sha2::{Digest, Sha256};

use super::window_tests::{bytes, completed_at, processor};
use crate::domain::{Owner, UploadId, UploadStatus, WindowJob, MAX_SCANNER_WAITS, MIB, SCANNER_RETRY_SECS};
use crate::processing::{self, JobOutcome, PipelineError, Processor};
use crate::testing::{Fakes, Fault};
use crate::usecases::janitor::sweep;

/// `testing::config()`'s processing stall time.
const STALL: i64 = 7200;

fn hash_of(data: &[u8]) -> Option<[u8; 32]> {
    Some(Sha256::digest(data).into())
}

/// Runs every window job queued, and those they queue, until none is left.
async fn drain_windows(f: &Fakes, p: &Processor) {
    loop {
        let batch = f.jobs.take_windows();
        if batch.is_empty() {
            return;
        }
        for job in &batch {
            processing::process_window(p, job, 1).await.unwrap();
        }
    }
}

/// The scanner cannot be reached for the next `starts` scans.
fn scanner_gone_for(f: &Fakes, starts: u32) {
    for n in 1..=starts {
        f.faults.on("scanner.start", n, Fault::Fail);
    }
}

/// When the janitor is next due to look at `id`.
fn check_at(f: &Fakes, id: &UploadId) -> i64 {
    f.repo.upload(id).unwrap().stall_check_at.expect("watched by the janitor")
}

#[tokio::test]
async fn a_lost_job_is_sent_again_once_stalled_and_the_file_decided() {
    let f = Fakes::new();
    let p = processor(&f);
    let t = crate::now();
    let data = bytes(MIB, &[]);
    let id = completed_at(&f, &data, hash_of(&data), "application/octet-stream", t).await;
    // Its job is lost: never delivered.
    assert_eq!(sweep(&f.app, t + STALL - 1).await.unwrap().redriven, 0, "not stalled yet");
    let report = sweep(&f.app, t + STALL + 1).await.unwrap();
    assert_eq!(report.redriven, 1, "{report:?}");
    let job = f.jobs.sent().last().cloned().unwrap();
    assert_eq!((&job.upload_id, job.redrive), (&id, 1));
    assert_eq!(processing::process(&p, &job, 1).await.unwrap(), JobOutcome::Finished(UploadStatus::Ready));
    let u = f.repo.upload(&id).unwrap();
    assert_eq!((u.redrives, u.redrives_sent, u.redrive_seen), (Some(1), Some(1), Some(1)));
    assert_eq!(u.stall_check_at, None, "out of the janitor's watch once decided");
    let later = sweep(&f.app, t + 10 * STALL).await.unwrap();
    assert_eq!((later.redriven, later.set_aside, f.jobs.sent().len()), (0, 0, 2), "{later:?}");
}

#[tokio::test]
async fn a_windowed_file_stalled_midway_resumes_only_what_is_left() {
    let f = Fakes::new();
    let p = processor(&f);
    let data = bytes(9 * MIB, &[]);
    let id = completed_at(&f, &data, hash_of(&data), "application/octet-stream", crate::now()).await;
    processing::process(&p, &f.jobs.sent()[0], 1).await.unwrap();
    // Windows 0 and 1 are scanned and the chain moves past window 0; every other job
    // (and link 1, which link 0 queued) crashes out of its deliveries.
    for job in f.jobs.take_windows() {
        if matches!(job, WindowJob::Scan { index: 0 | 1, .. } | WindowJob::Hash { index: 0, .. }) {
            processing::process_window(&p, &job, 1).await.unwrap();
        }
    }
    assert_eq!(f.jobs.take_windows().len(), 1, "link 1, lost");
    let report = sweep(&f.app, crate::now() + STALL + 1).await.unwrap();
    assert_eq!(report.redriven, 1, "{report:?}");
    let redriven = f.jobs.sent().last().cloned().unwrap();
    assert_eq!(processing::process(&p, &redriven, 1).await.unwrap(), JobOutcome::FannedOut { windows: 3 });
    let owner = Owner::parse("wes").unwrap();
    let resent = f.jobs.take_windows();
    let expected: Vec<WindowJob> =
        std::iter::once(WindowJob::Hash { upload_id: id.clone(), owner: owner.clone(), index: 1 })
            .chain((2..5).map(|index| WindowJob::Scan { upload_id: id.clone(), owner: owner.clone(), index }))
            .collect();
    assert_eq!(resent, expected, "the next link and the windows not scanned, nothing else");
    for job in &resent {
        processing::process_window(&p, job, 1).await.unwrap();
    }
    drain_windows(&f, &p).await;
    let u = f.repo.upload(&id).unwrap();
    assert_eq!(u.status, UploadStatus::Ready, "{u:?}");
    assert_eq!(u.windows_done, Some(5));
    assert_eq!(u.content_sha256.as_deref(), Some(hex::encode(Sha256::digest(&data)).as_str()));
    assert_eq!(u.stall_check_at, None);
}

#[tokio::test]
async fn a_file_whose_windows_still_move_is_looked_at_later_not_sent_again() {
    let f = Fakes::new();
    let p = processor(&f);
    let data = bytes(9 * MIB, &[]);
    let id = completed_at(&f, &data, None, "application/octet-stream", crate::now()).await;
    processing::process(&p, &f.jobs.sent()[0], 1).await.unwrap();
    let check = check_at(&f, &id);
    // A window was recorded a minute before the check fell due.
    let mut u = f.repo.upload(&id).unwrap();
    u.updated_at = check - 60;
    f.repo.put_upload(u);
    let report = sweep(&f.app, check + 1).await.unwrap();
    assert_eq!(report.redriven, 0, "{report:?}");
    assert_eq!(check_at(&f, &id), check - 60 + STALL, "looked at once quiet for the stall time");
    assert_eq!(f.jobs.sent().len(), 1);
    drain_windows(&f, &p).await;
    assert_eq!(f.repo.upload(&id).unwrap().status, UploadStatus::Ready);
}

/// A re-drive job that a worker picks up and that then dies (as a Lambda that times out).
async fn picked_up_and_crashed(f: &Fakes, p: &Processor) {
    let job = f.jobs.sent().last().cloned().unwrap();
    f.faults.on("s3.read", 1, Fault::Fail);
    assert!(processing::process(p, &job, 1).await.is_err());
}

#[tokio::test]
async fn a_file_that_stalls_past_the_limit_is_set_aside_as_failed() {
    let f = Fakes::new();
    let p = processor(&f);
    let data = bytes(MIB, &[]);
    let id = completed_at(&f, &data, None, "application/octet-stream", crate::now()).await;
    // The first job is lost, and each re-drive dies: two re-drives (the limit), then the
    // file is set aside.
    for round in 1..=2 {
        let report = sweep(&f.app, check_at(&f, &id) + 1).await.unwrap();
        assert_eq!(report.redriven, 1, "round {round}: {report:?}");
        picked_up_and_crashed(&f, &p).await;
    }
    let report = sweep(&f.app, check_at(&f, &id) + 1).await.unwrap();
    assert_eq!((report.redriven, report.set_aside), (0, 1), "{report:?}");
    let u = f.repo.upload(&id).unwrap();
    assert_eq!(u.status, UploadStatus::Failed);
    assert!(u.reason.as_deref().unwrap().contains("stopped making progress 3 times"), "{u:?}");
    assert_eq!(f.objects.status_tag(&u.s3_key).as_deref(), Some("failed"));
    assert_eq!(u.stall_check_at, None);
    // A late delivery of any of the three jobs changes nothing.
    for job in f.jobs.sent() {
        assert_eq!(processing::process(&p, &job, 1).await.unwrap(), JobOutcome::Skipped);
    }
    assert_eq!(f.repo.upload(&id).unwrap(), u);
}

#[tokio::test]
async fn a_scanner_that_is_not_there_is_waited_for_and_never_held_against_the_file() {
    let f = Fakes::new();
    let p = processor(&f);
    let data = bytes(MIB, &[]);
    let id = completed_at(&f, &data, None, "application/octet-stream", crate::now()).await;
    let mut job = f.jobs.sent()[0].clone();
    let max = p.config.max_receives;
    // More outages than the re-drive limit: none of them counts.
    for outage in 0..4 {
        scanner_gone_for(&f, max);
        for delivery in 1..max {
            let r = processing::process(&p, &job, delivery).await;
            assert!(matches!(r, Err(PipelineError::ScannerUnavailable(_))), "outage {outage}: {r:?}");
        }
        assert_eq!(processing::process(&p, &job, max).await.unwrap(), JobOutcome::WaitingForScanner);
        let u = f.repo.upload(&id).unwrap();
        assert_eq!(u.status, UploadStatus::Processing, "not failed: {u:?}");
        assert!(u.waiting_for_scanner && u.reason.as_deref().unwrap().contains("Waiting for the virus scanner"));
        // The janitor sends it again once quiet for its period.
        let report = sweep(&f.app, crate::now() + SCANNER_RETRY_SECS - 60).await.unwrap();
        assert_eq!(report.redriven, 0, "outage {outage}: too early: {report:?}");
        let report = sweep(&f.app, crate::now() + SCANNER_RETRY_SECS + 1).await.unwrap();
        assert_eq!(report.redriven, 1, "outage {outage}: {report:?}");
        job = f.jobs.sent().last().cloned().unwrap();
        let u = f.repo.upload(&id).unwrap();
        assert_eq!(
            (u.redrives, u.waiting_for_scanner, u.scanner_waits),
            (Some(0), false, Some(outage + 1)),
            "uncounted"
        );
    }
    assert_eq!(processing::process(&p, &job, 1).await.unwrap(), JobOutcome::Finished(UploadStatus::Ready));
}

#[tokio::test]
async fn a_file_deleted_while_processing_is_left_to_its_purge_and_watched_again_if_restored() {
    let f = Fakes::new();
    let p = processor(&f);
    let owner = Owner::parse("wes").unwrap();
    let t = crate::now();
    let data = bytes(MIB, &[]);
    let id = completed_at(&f, &data, None, "application/octet-stream", t).await;
    crate::usecases::catalog::delete(&f.app, &owner, &id, "https://hoist.test", t + 1).await.unwrap();
    let report = sweep(&f.app, t + STALL + 1).await.unwrap();
    assert_eq!(report.redriven, 0, "a deleted file is the purge's: {report:?}");
    // The restore's second write (back under the janitor's watch) fails: a retry makes it.
    f.faults.on("repo.watch_processing", 1, Fault::Fail);
    assert!(crate::usecases::catalog::restore(&f.app, &owner, &id, "https://hoist.test", t + STALL + 2).await.is_err());
    crate::usecases::catalog::restore(&f.app, &owner, &id, "https://hoist.test", t + STALL + 2).await.unwrap();
    let report = sweep(&f.app, t + 2 * STALL + 3).await.unwrap();
    assert_eq!(report.redriven, 1, "restored: watched again: {report:?}");
    let job = f.jobs.sent().last().cloned().unwrap();
    assert_eq!(processing::process(&p, &job, 1).await.unwrap(), JobOutcome::Finished(UploadStatus::Ready));
}

#[tokio::test]
async fn a_verdict_whose_unwatch_was_lost_is_taken_out_by_the_janitor() {
    let f = Fakes::new();
    let p = processor(&f);
    let data = bytes(MIB, &[]);
    let id = completed_at(&f, &data, None, "application/octet-stream", crate::now()).await;
    f.faults.on("repo.unwatch", 1, Fault::Fail);
    let done = processing::process(&p, &f.jobs.sent()[0], 1).await.unwrap();
    assert_eq!(done, JobOutcome::Finished(UploadStatus::Ready), "the verdict stands");
    let check = check_at(&f, &id);
    let report = sweep(&f.app, check + 1).await.unwrap();
    assert_eq!((report.redriven, report.set_aside, report.errors), (0, 0, 0), "{report:?}");
    let u = f.repo.upload(&id).unwrap();
    assert_eq!((u.status, u.stall_check_at), (UploadStatus::Ready, None));
}

#[tokio::test]
async fn a_queue_that_has_not_delivered_the_last_redrive_is_waited_for_not_held_against_the_file() {
    let f = Fakes::new();
    let p = processor(&f);
    let data = bytes(MIB, &[]);
    let id = completed_at(&f, &data, None, "application/octet-stream", crate::now()).await;
    assert_eq!(sweep(&f.app, check_at(&f, &id) + 1).await.unwrap().redriven, 1);
    // A backlog (or the process function down): nothing is picked up for three checks.
    for _ in 0..3 {
        let report = sweep(&f.app, check_at(&f, &id) + 1).await.unwrap();
        assert_eq!((report.redriven, report.set_aside), (0, 0), "{report:?}");
    }
    let u = f.repo.upload(&id).unwrap();
    assert_eq!((u.status, u.redrives, u.redrives_sent), (UploadStatus::Processing, Some(1), Some(1)));
    assert_eq!(f.jobs.sent().len(), 2, "no more jobs piled onto the queue");
    // Four stall times on, that job is taken for lost: sent again, not counted.
    assert_eq!(sweep(&f.app, check_at(&f, &id) + 1).await.unwrap().redriven, 1);
    let u = f.repo.upload(&id).unwrap();
    assert_eq!((u.redrives, u.redrives_sent), (Some(1), Some(2)), "uncounted");
    // The queue catches up.
    for job in f.jobs.sent() {
        processing::process(&p, &job, 1).await.unwrap();
    }
    assert_eq!(f.repo.upload(&id).unwrap().status, UploadStatus::Ready);
}

#[tokio::test]
async fn progress_after_a_redrive_starts_the_count_afresh() {
    let f = Fakes::new();
    let p = processor(&f);
    let data = bytes(9 * MIB, &[]);
    let id = completed_at(&f, &data, None, "application/octet-stream", crate::now()).await;
    processing::process(&p, &f.jobs.sent()[0], 1).await.unwrap();
    f.jobs.take_windows(); // every window job lost
    for round in 0..4u32 {
        assert_eq!(sweep(&f.app, check_at(&f, &id) + 1).await.unwrap().redriven, 1, "round {round}");
        let job = f.jobs.sent().last().cloned().unwrap();
        processing::process(&p, &job, 1).await.unwrap();
        // One more window is scanned, then the rest is lost again.
        let next = f.jobs.take_windows().into_iter().find(|j| matches!(j, WindowJob::Scan { .. })).unwrap();
        processing::process_window(&p, &next, 1).await.unwrap();
        assert_eq!(f.repo.upload(&id).unwrap().redrives, Some(1), "round {round}: each stall follows progress");
    }
    assert_eq!(f.repo.upload(&id).unwrap().status, UploadStatus::Processing, "never set aside while it moves");
}

#[tokio::test]
async fn a_redrive_resumes_with_the_plan_the_windows_started_with() {
    let f = Fakes::new();
    let p = processor(&f);
    let data = bytes(9 * MIB, &[]);
    let id = completed_at(&f, &data, None, "application/octet-stream", crate::now()).await;
    processing::process(&p, &f.jobs.sent()[0], 1).await.unwrap();
    f.jobs.take_windows();
    // The scan window is raised above the file's size meanwhile.
    let mut later = processor(&f);
    later.config.scan_window = 16 * MIB;
    assert_eq!(sweep(&f.app, check_at(&f, &id) + 1).await.unwrap().redriven, 1);
    let job = f.jobs.sent().last().cloned().unwrap();
    assert_eq!(processing::process(&later, &job, 1).await.unwrap(), JobOutcome::FannedOut { windows: 5 });
    drain_windows(&f, &later).await;
    let u = f.repo.upload(&id).unwrap();
    assert_eq!(u.status, UploadStatus::Ready, "{u:?}");
    assert!(u.reason.unwrap().contains("Scanned in 5 windows"));
}

#[tokio::test]
async fn a_redrive_whose_job_cannot_be_sent_writes_nothing_and_is_tried_at_the_next_run() {
    let f = Fakes::new();
    let data = bytes(MIB, &[]);
    let id = completed_at(&f, &data, None, "application/octet-stream", crate::now()).await;
    let check = check_at(&f, &id);
    f.faults.on("queue.send", 1, Fault::Fail);
    let report = sweep(&f.app, check + 1).await.unwrap();
    assert_eq!((report.redriven, report.errors), (0, 1), "{report:?}");
    let u = f.repo.upload(&id).unwrap();
    assert_eq!((u.redrives, u.redrives_sent, u.stall_check_at), (None, None, Some(check)), "nothing counted");
    assert_eq!(sweep(&f.app, check + 2).await.unwrap().redriven, 1);
}

#[tokio::test]
async fn a_file_that_keeps_the_scanner_away_too_long_is_counted_like_any_stall() {
    let f = Fakes::new();
    let p = processor(&f);
    let data = bytes(MIB, &[]);
    let id = completed_at(&f, &data, None, "application/octet-stream", crate::now()).await;
    let mut u = f.repo.upload(&id).unwrap();
    (u.waiting_for_scanner, u.scanner_waits) = (true, Some(MAX_SCANNER_WAITS));
    f.repo.put_upload(u);
    // Past the cap, every re-drive finds no scanner on all its deliveries again: each
    // counts, and the third stall sets the file aside.
    for round in 1..=2 {
        let quiet = f.repo.upload(&id).unwrap().updated_at.max(check_at(&f, &id)) + STALL + 1;
        assert_eq!(sweep(&f.app, quiet).await.unwrap().redriven, 1, "round {round}");
        assert_eq!(f.repo.upload(&id).unwrap().redrives, Some(round));
        let job = f.jobs.sent().last().cloned().unwrap();
        let max = p.config.max_receives;
        scanner_gone_for(&f, max);
        for delivery in 1..=max {
            let _ = processing::process(&p, &job, delivery).await;
        }
        assert!(f.repo.upload(&id).unwrap().waiting_for_scanner, "round {round}");
    }
    let quiet = f.repo.upload(&id).unwrap().updated_at.max(check_at(&f, &id)) + STALL + 1;
    assert_eq!(sweep(&f.app, quiet).await.unwrap().set_aside, 1);
    assert_eq!(f.repo.upload(&id).unwrap().status, UploadStatus::Failed);
}

#[tokio::test]
async fn a_redrive_whose_record_was_lost_still_numbers_the_next_one_past_it() {
    let f = Fakes::new();
    let p = processor(&f);
    let data = bytes(MIB, &[]);
    let id = completed_at(&f, &data, None, "application/octet-stream", crate::now()).await;
    // Re-drive 1 is sent, but its record fails; a worker picks it up and dies.
    f.faults.on("repo.redrive", 1, Fault::Fail);
    assert_eq!(sweep(&f.app, check_at(&f, &id) + 1).await.unwrap().errors, 1);
    picked_up_and_crashed(&f, &p).await;
    assert_eq!(f.repo.upload(&id).unwrap().redrive_seen, Some(1));
    // The next re-drive is number 2, and while it waits on the queue nothing is counted.
    assert_eq!(sweep(&f.app, check_at(&f, &id) + 1).await.unwrap().redriven, 1);
    assert_eq!(f.jobs.sent().last().unwrap().redrive, 2);
    let report = sweep(&f.app, check_at(&f, &id) + 1).await.unwrap();
    assert_eq!(report.redriven, 0, "the queue is behind: {report:?}");
    assert_eq!(f.repo.upload(&id).unwrap().redrives, Some(1));
}
