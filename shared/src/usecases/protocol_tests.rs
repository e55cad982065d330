//! The completion protocol's crash windows, races and books, on in-memory ports: each
//! test runs in milliseconds and names one behaviour. `Fault::Crash` kills the calling
//! task at a port call (as a Lambda timeout or crash would), leaving whatever was
//! written before it.

use sha2::{Digest, Sha256};

use api_types::uploads::{RecordPartItem, RecordPartsRequest};

use crate::domain::{
    ByteSize, ContentType, FileName, Owner, Quota, Sha256Digest, UploadError, UploadId, UploadStatus, MIB,
};
use crate::ports::UploadRepo;
use crate::processing::{self, JobOutcome, PipelineError};
use crate::testing::{Fakes, Fault, EICAR_MARKER};

use super::{
    abort::abort,
    complete::{complete, complete_declared},
    create::{create, NewUpload},
    janitor::sweep,
    parts::record_parts,
};

const T0: i64 = 1_800_000_000;
/// Past the completion lease (120 s in the test configuration).
const AFTER_LEASE: i64 = T0 + 121;

fn owner(name: &str) -> Owner {
    Owner::parse(name).unwrap()
}

/// Bytes of `len`, deterministic, with `marker` at `at` if given.
fn data(len: usize, marker: Option<usize>) -> Vec<u8> {
    let mut v: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
    if let Some(at) = marker {
        v[at..at + EICAR_MARKER.len()].copy_from_slice(EICAR_MARKER);
    }
    v
}

/// Creates an upload of `bytes` in 5 MiB parts, sends `send` of its parts to the object
/// store, and records them, as a client would.
async fn upload(f: &Fakes, who: &Owner, bytes: &[u8], send: &[u32]) -> UploadId {
    upload_declaring(f, who, bytes, send, Some(digest(bytes))).await
}

fn digest(bytes: &[u8]) -> Sha256Digest {
    Sha256Digest::from_bytes(Sha256::digest(bytes).into())
}

/// [`upload`], declaring `sha256` at creation (or not).
async fn upload_declaring(
    f: &Fakes,
    who: &Owner,
    bytes: &[u8],
    send: &[u32],
    sha256: Option<Sha256Digest>,
) -> UploadId {
    let new = NewUpload {
        filename: FileName::parse("data.bin").unwrap(),
        size: ByteSize::new(bytes.len() as u64).unwrap(),
        content_type: ContentType::parse("application/octet-stream").unwrap(),
        sha256,
        part_checksums: true,
        part_size: Some(5 * MIB),
    };
    let view = create(&f.app, who, new, T0).await.unwrap();
    let id = UploadId::parse(&view.id).unwrap();
    let s3_upload_id = f.repo.upload(&id).unwrap().s3_upload_id;
    let mut recorded = Vec::new();
    for &n in send {
        let start = (n as usize - 1) * 5 * MIB as usize;
        let part = &bytes[start..(start + 5 * MIB as usize).min(bytes.len())];
        let etag = f.objects.upload_part(&s3_upload_id, n, part).unwrap();
        recorded.push(RecordPartItem { number: n.into(), etag, size: (part.len() as u64).into(), sha256: None });
    }
    if !recorded.is_empty() {
        record_parts(&f.app, who, &id, RecordPartsRequest { parts: recorded }, T0).await.unwrap();
    }
    id
}

/// An upload of three parts (11 MiB), all sent.
async fn ready_to_complete(f: &Fakes, who: &Owner) -> (UploadId, Vec<u8>) {
    let bytes = data(11 * MIB as usize, None);
    (upload(f, who, &bytes, &[1, 2, 3]).await, bytes)
}

/// Runs `complete` in its own task, as one Lambda invocation: a crash kills only it.
async fn complete_in_task(f: &Fakes, who: &Owner, id: &UploadId, now: i64) -> Result<String, String> {
    let (app, who, id) = (f.app.clone(), who.clone(), id.clone());
    match tokio::spawn(async move { complete(&app, &who, &id, now).await }).await {
        Ok(Ok(v)) => Ok(v.status),
        Ok(Err(e)) => Err(e.to_string()),
        Err(join) => Err(format!("crashed: {}", join.is_panic())),
    }
}

fn status(f: &Fakes, id: &UploadId) -> UploadStatus {
    f.repo.upload(id).unwrap().status
}

fn no_quota_held(f: &Fakes, who: &Owner) {
    let q = f.repo.quota_of(who);
    assert_eq!((q.open_uploads, q.bytes_in_flight), (0, 0), "every reservation released exactly once");
}

/// Open uploads and bytes in flight, and bytes stored.
fn quota(open_uploads: u64, bytes_in_flight: u64, bytes_stored: u64) -> Quota {
    Quota { open_uploads, bytes_in_flight, bytes_stored }
}

#[tokio::test]
async fn a_clean_completion_assembles_once_queues_one_job_and_frees_the_quota() {
    let f = Fakes::new();
    let who = owner("ann");
    let (id, bytes) = ready_to_complete(&f, &who).await;
    assert_eq!(f.repo.quota_of(&who), quota(1, bytes.len() as u64, 0));
    assert_eq!(complete_in_task(&f, &who, &id, T0).await.unwrap(), "processing");
    assert_eq!(f.objects.object(&format!("uploads/{id}")).unwrap(), bytes);
    assert_eq!(f.jobs.sent().len(), 1);
    no_quota_held(&f, &who);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_crash_while_holding_the_lease_is_taken_over_once_the_lease_runs_out() {
    // A caller that finds a live lease answers at once instead of waiting for it.
    let mut cfg = crate::testing::config();
    cfg.complete_wait = std::time::Duration::ZERO;
    let f = Fakes::with_config(cfg);
    let who = owner("bob");
    let (id, _) = ready_to_complete(&f, &who).await;
    f.faults.on("s3.list_parts", 1, Fault::Crash);
    assert_eq!(complete_in_task(&f, &who, &id, T0).await, Err("crashed: true".into()));
    assert_eq!(status(&f, &id), UploadStatus::Completing, "the dead caller's lease stays");

    // While the lease is live, another caller does not steal it.
    let err = complete(&f.app, &who, &id, T0 + 1).await;
    assert!(matches!(err, Err(UploadError::LeaseHeld)), "{err:?}");
    assert_eq!(status(&f, &id), UploadStatus::Completing);

    // Two callers that both read the stale lease: the first takes it over, the second
    // finds it live again (the condition is checked where the write happens).
    let lease = std::time::Duration::from_secs(120);
    assert!(f.repo.begin_completion(&id, AFTER_LEASE, lease).await.unwrap());
    assert!(!f.repo.begin_completion(&id, AFTER_LEASE, lease).await.unwrap(), "a live lease is not taken over");
    let mut stale = f.repo.upload(&id).unwrap();
    stale.lease_until = Some(T0 + 120);
    f.repo.put_upload(stale);

    // Once it runs out, many callers see the stale lease at once: exactly one takes it over.
    let takeovers = (0..8).map(|_| complete_in_task(&f, &who, &id, AFTER_LEASE));
    let answers = futures::future::join_all(takeovers).await;
    assert!(answers.iter().any(|a| a.as_deref() == Ok("processing")), "{answers:?}");
    assert_eq!(f.faults.count("s3.complete"), 1, "one CompleteMultipartUpload");
    assert_eq!(f.jobs.sent().len(), 1, "one job");
    assert_eq!(status(&f, &id), UploadStatus::Processing);
    no_quota_held(&f, &who);
}

#[tokio::test]
async fn a_crash_between_job_send_and_status_write_is_finished_by_the_next_caller() {
    let f = Fakes::new();
    let who = owner("cy");
    let (id, bytes) = ready_to_complete(&f, &who).await;
    f.faults.on("repo.finish_completion", 1, Fault::Crash);
    assert!(complete_in_task(&f, &who, &id, T0).await.unwrap_err().starts_with("crashed"));
    // The object exists and its job is queued, but the status still says completing.
    assert_eq!(status(&f, &id), UploadStatus::Completing);
    assert_eq!(f.jobs.sent().len(), 1);
    assert_eq!(f.objects.open_multipart_uploads(), 0);

    // The job arrives first: it is handed back, not dropped and not failed.
    let p = f.processor();
    let early = processing::process(&p, &f.jobs.sent()[0], 1).await;
    assert!(matches!(early, Err(PipelineError::NotYet)), "{early:?}");

    // The next complete finds S3 done ("no such upload"), checks the object and finishes.
    assert_eq!(complete_in_task(&f, &who, &id, AFTER_LEASE).await.unwrap(), "processing");
    let jobs = f.jobs.sent();
    assert_eq!(jobs.len(), 2, "the job is sent again: at least once, never zero times");
    assert_eq!(jobs[0], jobs[1], "and it is the same job");
    no_quota_held(&f, &who);

    // Both deliveries are processed: one verdict, the duplicate changes nothing.
    assert_eq!(processing::process(&p, &jobs[0], 1).await.unwrap(), JobOutcome::Finished(UploadStatus::Ready));
    let after_first = f.repo.upload(&id).unwrap();
    assert_eq!(processing::process(&p, &jobs[1], 1).await.unwrap(), JobOutcome::Skipped);
    assert_eq!(f.repo.upload(&id).unwrap(), after_first);
    assert_eq!(f.faults.count("repo.finish_processing"), 1);
    assert_eq!(after_first.content_sha256.as_deref(), Some(hex::encode(Sha256::digest(&bytes)).as_str()));
}

#[tokio::test]
async fn a_failed_job_send_gives_the_lease_back_and_a_retry_completes() {
    let f = Fakes::new();
    let who = owner("dee");
    let (id, _) = ready_to_complete(&f, &who).await;
    f.faults.on("queue.send", 1, Fault::Fail);
    assert!(complete_in_task(&f, &who, &id, T0).await.is_err());
    assert_eq!(status(&f, &id), UploadStatus::Uploading, "released at once, no need to wait for the lease");
    assert_eq!(complete_in_task(&f, &who, &id, T0 + 1).await.unwrap(), "processing");
    assert_eq!(f.jobs.sent().len(), 1);
    no_quota_held(&f, &who);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_completes_assemble_once_and_all_answer_the_same() {
    let f = Fakes::new();
    let who = owner("eve");
    let (id, _) = ready_to_complete(&f, &who).await;
    let calls = (0..8).map(|_| complete_in_task(&f, &who, &id, T0));
    let answers = futures::future::join_all(calls).await;
    assert!(answers.iter().all(|a| a.as_deref() == Ok("processing")), "{answers:?}");
    assert_eq!(f.faults.count("s3.complete"), 1, "one CompleteMultipartUpload");
    assert_eq!(f.faults.count("repo.finish_completion"), 1);
    assert_eq!(f.jobs.sent().len(), 1, "one job");
    no_quota_held(&f, &who);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn complete_racing_abort_ends_in_exactly_one_of_them() {
    for abort_first in [true, false] {
        let f = Fakes::new();
        let who = owner("fay");
        let (id, _) = ready_to_complete(&f, &who).await;
        let (a, c) = if abort_first {
            let a = abort(&f.app, &who, &id, T0).await.map(|v| v.status);
            (a, complete(&f.app, &who, &id, T0).await.map(|v| v.status))
        } else {
            let c = complete(&f.app, &who, &id, T0).await.map(|v| v.status);
            (abort(&f.app, &who, &id, T0).await.map(|v| v.status), c)
        };
        if abort_first {
            assert_eq!(a.unwrap(), "aborted");
            assert!(matches!(c, Err(UploadError::NotOpen { status: UploadStatus::Aborted, .. })), "{c:?}");
            assert!(f.jobs.sent().is_empty());
            assert_eq!(f.objects.open_multipart_uploads(), 0, "parts discarded");
        } else {
            assert_eq!(c.unwrap(), "processing");
            assert!(matches!(a, Err(UploadError::NotOpen { status: UploadStatus::Processing, .. })), "{a:?}");
            assert_eq!(f.jobs.sent().len(), 1);
        }
        no_quota_held(&f, &who);
    }
    // Abort while a completion holds the lease: refused, and the completion still wins.
    let f = Fakes::new();
    let who = owner("gus");
    let (id, _) = ready_to_complete(&f, &who).await;
    f.faults.on("s3.list_parts", 1, Fault::Crash);
    let _ = complete_in_task(&f, &who, &id, T0).await;
    let refused = abort(&f.app, &who, &id, T0 + 1).await;
    assert!(matches!(refused, Err(UploadError::NotOpen { status: UploadStatus::Completing, .. })), "{refused:?}");
    assert_eq!(complete_in_task(&f, &who, &id, AFTER_LEASE).await.unwrap(), "processing");
    no_quota_held(&f, &who);
}

#[tokio::test]
async fn the_janitor_finishes_a_completion_whose_caller_died_after_s3_completed() {
    let f = Fakes::new();
    let who = owner("hal");
    let (id, _) = ready_to_complete(&f, &who).await;
    f.faults.on("queue.send", 1, Fault::Crash);
    assert!(complete_in_task(&f, &who, &id, T0).await.unwrap_err().starts_with("crashed"));
    assert!(f.jobs.sent().is_empty(), "an object without a job: the window the janitor closes");

    let early = sweep(&f.app, T0 + 60).await.unwrap();
    assert_eq!(early.completed, 0, "a live lease is left alone");
    let report = sweep(&f.app, AFTER_LEASE).await.unwrap();
    assert_eq!((report.completed, report.errors), (1, 0), "{report:?}");
    assert_eq!(status(&f, &id), UploadStatus::Processing);
    assert_eq!(f.jobs.sent().len(), 1);
    no_quota_held(&f, &who);
}

#[tokio::test]
async fn the_janitor_releases_a_stuck_completion_that_turns_out_incomplete() {
    let f = Fakes::new();
    let who = owner("ida");
    let bytes = data(11 * MIB as usize, None);
    let id = upload(&f, &who, &bytes, &[1, 3]).await;
    f.faults.on("s3.list_parts", 1, Fault::Crash);
    let _ = complete_in_task(&f, &who, &id, T0).await;
    let report = sweep(&f.app, AFTER_LEASE).await.unwrap();
    assert_eq!((report.released, report.completed), (1, 0), "{report:?}");
    assert_eq!(status(&f, &id), UploadStatus::Uploading, "still resumable");
    assert_eq!(f.repo.quota_of(&who), quota(1, bytes.len() as u64, 0));
    match complete(&f.app, &who, &id, AFTER_LEASE + 1).await {
        Err(UploadError::Incomplete { missing_parts, .. }) => assert_eq!(missing_parts, vec![[2, 2]]),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn early_and_duplicate_jobs_change_nothing() {
    let f = Fakes::new();
    let who = owner("jo");
    let bytes = data(6 * MIB as usize, Some(5 * MIB as usize - 3));
    let id = upload(&f, &who, &bytes, &[1, 2]).await;
    complete(&f.app, &who, &id, T0).await.unwrap();
    let job = f.jobs.sent()[0].clone();
    let p = f.processor();
    // The marker straddles the part boundary and the reader's chunks: still found.
    assert_eq!(processing::process(&p, &job, 1).await.unwrap(), JobOutcome::Finished(UploadStatus::Quarantined));
    assert_eq!(f.objects.status_tag(&format!("uploads/{id}")).as_deref(), Some("quarantined"));
    let verdict = f.repo.upload(&id).unwrap();
    for receive in 1..=3 {
        assert_eq!(processing::process(&p, &job, receive).await.unwrap(), JobOutcome::Skipped);
    }
    assert_eq!(f.repo.upload(&id).unwrap(), verdict, "a verdict is written once");

    // A job that names another owner, or an unknown upload, is dropped.
    let mut forged = job.clone();
    forged.owner = owner("mallory");
    assert_eq!(processing::process(&p, &forged, 1).await.unwrap(), JobOutcome::Skipped);
    let mut unknown = job;
    unknown.upload_id = UploadId::generate();
    assert_eq!(processing::process(&p, &unknown, 1).await.unwrap(), JobOutcome::Skipped);
}

#[tokio::test]
async fn quota_counters_stay_exact_through_every_ending() {
    let f = Fakes::new();
    let who = owner("kim");
    let size = |n: usize| (n * 5 * MIB as usize) as u64;
    let a = upload(&f, &who, &data(size(1) as usize, None), &[1]).await; // completes
    let b = upload(&f, &who, &data(size(2) as usize, None), &[1]).await; // aborted
    let c = upload(&f, &who, &data(size(3) as usize, None), &[]).await; // expires
    let d = upload(&f, &who, &data(size(1) as usize, None), &[]).await; // refused, then aborted
    assert_eq!(f.repo.quota_of(&who), quota(4, size(7), 0));

    complete(&f.app, &who, &a, T0).await.unwrap();
    complete(&f.app, &who, &a, T0).await.unwrap(); // repeated: no second release
    assert_eq!(f.repo.quota_of(&who), quota(3, size(6), size(1)));

    abort(&f.app, &who, &b, T0).await.unwrap();
    abort(&f.app, &who, &b, T0).await.unwrap(); // repeated
    assert_eq!(f.repo.quota_of(&who), quota(2, size(4), size(1)));

    assert!(matches!(complete(&f.app, &who, &d, T0).await, Err(UploadError::Incomplete { .. })));
    assert_eq!(f.repo.quota_of(&who), quota(2, size(4), size(1)), "a refusal holds on");

    let expiry = f.repo.upload(&c).unwrap().expires_at;
    let report = sweep(&f.app, expiry).await.unwrap();
    assert_eq!(report.expired, 2, "{report:?}");
    assert_eq!(status(&f, &c), UploadStatus::Expired);
    sweep(&f.app, expiry + 1).await.unwrap(); // a second sweep finds nothing to release
    no_quota_held(&f, &who);
    assert_eq!(f.objects.open_multipart_uploads(), 0, "no parts left behind");
}

#[tokio::test]
async fn the_quota_refuses_past_the_limit_and_leaves_nothing_behind() {
    let mut cfg = crate::testing::config();
    cfg.max_open_uploads = 2;
    let f = Fakes::with_config(cfg);
    let who = owner("lee");
    upload(&f, &who, &data(10, None), &[]).await;
    upload(&f, &who, &data(10, None), &[]).await;
    let new = NewUpload {
        filename: FileName::parse("x").unwrap(),
        size: ByteSize::new(10).unwrap(),
        content_type: ContentType::parse("text/plain").unwrap(),
        sha256: None,
        part_checksums: false,
        part_size: None,
    };
    assert!(matches!(create(&f.app, &who, new, T0).await, Err(UploadError::QuotaExceeded { .. })));
    assert_eq!(f.repo.quota_of(&who).open_uploads, 2);
    assert_eq!(f.objects.open_multipart_uploads(), 2, "the refused one opened nothing in S3");
}

#[tokio::test]
async fn a_hash_declared_at_completion_is_recorded_and_verified_by_processing() {
    let f = Fakes::new();
    let who = owner("ann");
    let bytes = data(11 * MIB as usize, None);
    let id = upload_declaring(&f, &who, &bytes, &[1, 2, 3], None).await;
    let done = complete_declared(&f.app, &who, &id, Some(digest(&bytes)), T0).await.unwrap();
    assert_eq!(done.sha256.as_deref(), Some(digest(&bytes).to_hex().as_str()));
    let jobs = f.jobs.sent();
    assert_eq!(jobs[0].sha256, Some(digest(&bytes)), "the job carries the hash to verify");
    let p = f.processor();
    assert_eq!(processing::process(&p, &jobs[0], 1).await.unwrap(), JobOutcome::Finished(UploadStatus::Ready));

    // A wrong hash declared at completion is caught by processing, as one declared at creation.
    let id = upload_declaring(&f, &who, &bytes, &[1, 2, 3], None).await;
    complete_declared(&f.app, &who, &id, Some(digest(b"other bytes")), T0).await.unwrap();
    let job = f.jobs.sent().last().cloned().unwrap();
    assert_eq!(processing::process(&p, &job, 1).await.unwrap(), JobOutcome::Finished(UploadStatus::Corrupt));
}

#[tokio::test]
async fn a_completion_hash_other_than_the_declared_one_is_refused_and_changes_nothing() {
    let f = Fakes::new();
    let who = owner("ann");
    let (id, bytes) = ready_to_complete(&f, &who).await;
    let e = complete_declared(&f.app, &who, &id, Some(digest(b"other bytes")), T0).await.unwrap_err();
    assert!(matches!(e, UploadError::HashConflict { .. }), "{e:?}");
    assert_eq!(status(&f, &id), UploadStatus::Uploading, "nothing taken: the client can complete again");
    assert!(f.jobs.sent().is_empty());
    // The same hash again is fine, and so is none.
    complete_declared(&f.app, &who, &id, Some(digest(&bytes)), T0).await.unwrap();
    assert_eq!(f.repo.upload(&id).unwrap().sha256, Some(digest(&bytes)));
    // After completion, a different hash is still refused (not silently ignored).
    let e = complete_declared(&f.app, &who, &id, Some(digest(b"x")), T0).await.unwrap_err();
    assert!(matches!(e, UploadError::HashConflict { .. }), "{e:?}");
    assert_eq!(f.jobs.sent().len(), 1);
}

#[tokio::test]
async fn racing_completions_declaring_different_hashes_record_exactly_one() {
    let f = Fakes::new();
    let who = owner("ann");
    let bytes = data(11 * MIB as usize, None);
    let id = upload_declaring(&f, &who, &bytes, &[1, 2, 3], None).await;
    let (a, b) = tokio::join!(
        complete_declared(&f.app, &who, &id, Some(digest(&bytes)), T0),
        complete_declared(&f.app, &who, &id, Some(digest(b"x")), T0)
    );
    assert!(a.is_ok() != b.is_ok(), "exactly one wins: {a:?} / {b:?}");
    let loser = if a.is_ok() { b } else { a };
    assert!(matches!(loser, Err(UploadError::HashConflict { .. })), "{loser:?}");
    let recorded = f.repo.upload(&id).unwrap().sha256.unwrap();
    assert_eq!(f.jobs.sent().len(), 1);
    assert_eq!(f.jobs.sent()[0].sha256, Some(recorded), "the job verifies the hash that was recorded");
}

#[tokio::test]
async fn a_failed_completion_leaves_no_hash_and_a_late_hash_is_refused() {
    let f = Fakes::new();
    let who = owner("ann");
    let bytes = data(11 * MIB as usize, None);
    // Part 3 never sent: the completion is refused, and the hash it declared is not kept.
    let id = upload_declaring(&f, &who, &bytes, &[1, 2], None).await;
    let e = complete_declared(&f.app, &who, &id, Some(digest(b"a wrong guess")), T0).await.unwrap_err();
    assert!(matches!(e, UploadError::Incomplete { .. }), "{e:?}");
    assert_eq!(f.repo.upload(&id).unwrap().sha256, None, "nothing declared by a refused completion");
    // Completed without a hash: a hash sent afterwards cannot be verified, so it is refused.
    let id = upload_declaring(&f, &who, &bytes, &[1, 2, 3], None).await;
    complete(&f.app, &who, &id, T0).await.unwrap();
    let e = complete_declared(&f.app, &who, &id, Some(digest(&bytes)), T0).await.unwrap_err();
    assert!(matches!(e, UploadError::HashTooLate), "{e:?}");
    complete_declared(&f.app, &who, &id, None, T0).await.unwrap();
}
