//! The janitor (every 15 minutes): expires abandoned uploads, finishes completions whose
//! caller died holding the lease, completes single POSTs whose S3 event was lost, sends
//! the job of a file whose processing stalled again (or sets it aside), and purges
//! deleted files whose retention is over.

use serde::Serialize;

use crate::{
    domain::{
        ProcessJob, Upload, UploadError, UploadStatus, CLOSED_RETENTION_SECS, MAX_SCANNER_WAITS, SCANNER_RETRY_SECS,
    },
    ports::Redrive,
    processing, telemetry, App,
};

use super::{
    arrival::{object_arrived, Arrival},
    complete::drive_completion,
    discard_s3,
};

#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct SweepReport {
    pub expired: u32,
    pub completed: u32,
    /// Stuck completions that turned out refusable (missing parts...): back to `uploading`.
    pub released: u32,
    pub purged: u32,
    /// Stalled processing (or a wait for the scanner) whose job was sent again.
    pub redriven: u32,
    /// Stalled too many times: set aside as `failed`.
    pub set_aside: u32,
    pub errors: u32,
}

/// What the janitor did for a `processing` file due for a look.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stall {
    /// Still moving: looked at again later.
    Moving,
    Redriven,
    SetAside,
    /// Something else moved first (a window, a verdict, a delete): nothing done.
    Raced,
}

/// One janitor run.
// The lease is taken inside the arm, not in a guard: a guard that awaits and writes hides a side effect.
#[allow(clippy::collapsible_match)]
pub async fn sweep(app: &App, now: i64) -> Result<SweepReport, UploadError> {
    let mut report = SweepReport::default();
    // Bounded: a run does at most 20 pages of 100; the next run continues.
    for _ in 0..20 {
        let due = app.repo.due(now, 100).await?;
        if due.is_empty() {
            break;
        }
        let mut progressed = false;
        for upload in due {
            match upload.status {
                UploadStatus::Uploading if upload.expires_at <= now => {
                    // A single POST whose S3 event never came: its object is the upload,
                    // handled as the event would have been.
                    let arrived = if upload.single_post { app.objects.head(&upload.s3_key, None).await? } else { None };
                    if let Some(object) = arrived {
                        match object_arrived(app, &upload.s3_key, object.version.as_deref(), now).await {
                            Ok(Arrival::Completed) => {
                                progressed = true;
                                report.completed += 1;
                            }
                            Ok(Arrival::Discarded) => progressed = true,
                            Ok(Arrival::Ignored | Arrival::Refused) => {}
                            Err(e) => {
                                report.errors += 1;
                                tracing::error!(error = %e, upload_id = %upload.id, "janitor could not complete a single POST");
                            }
                        }
                        continue;
                    }
                    let reason = "Expired before it was completed; its parts were discarded.";
                    if app
                        .repo
                        .close_open(&upload, UploadStatus::Expired, reason, now + CLOSED_RETENTION_SECS, now)
                        .await?
                    {
                        progressed = true;
                        report.expired += 1;
                        // DynamoDB first (no new signatures, no completion), then S3; if S3
                        // fails, the bucket's lifecycle rule aborts the parts later.
                        if let Err(e) = discard_s3(app, &upload).await {
                            report.errors += 1;
                            tracing::error!(error = %e, upload_id = %upload.id, "janitor could not abort multipart upload");
                        }
                        tracing::info!(upload_id = %upload.id, owner = %upload.owner, "upload expired");
                    }
                }
                UploadStatus::Completing if upload.lease_until.is_some_and(|l| l < now) => {
                    if app.repo.begin_completion(&upload.id, now, app.config.complete_lease).await? {
                        progressed = true;
                        match drive_completion(app, upload.clone(), None, now).await {
                            Ok(_) => report.completed += 1,
                            Err(e) if e.is_completion_refused() => report.released += 1,
                            Err(e) => {
                                report.errors += 1;
                                tracing::error!(error = %e, upload_id = %upload.id, "janitor could not finish completion");
                            }
                        }
                    }
                }
                UploadStatus::Processing if upload.stall_check_at.is_some_and(|t| t <= now) => {
                    match look_after_processing(app, &upload, now).await {
                        Ok(Stall::Raced) => {}
                        Ok(done) => {
                            progressed = true;
                            match done {
                                Stall::Redriven => report.redriven += 1,
                                Stall::SetAside => report.set_aside += 1,
                                _ => {}
                            }
                        }
                        Err(e) => {
                            report.errors += 1;
                            tracing::error!(error = %e, upload_id = %upload.id, "janitor could not look after a processing file");
                        }
                    }
                }
                // Decided, but the verdict's removal from the watch was lost: done now.
                status if status.is_final_verdict() && upload.processed_at.is_some() => {
                    match app.repo.unwatch(&upload.id).await {
                        Ok(done) => progressed |= done,
                        Err(e) => {
                            report.errors += 1;
                            tracing::error!(error = %e, upload_id = %upload.id, "janitor could not unwatch a decided file");
                        }
                    }
                }
                _ => {}
            }
        }
        if !progressed {
            break;
        }
    }
    report.purged = purge_due(app, now).await?;
    telemetry::metric("janitor", "FilesPurged", f64::from(report.purged), "Count");
    telemetry::metric("janitor", "UploadsExpired", f64::from(report.expired), "Count");
    Ok(report)
}

/// A re-drive the queue has not delivered after this many stall times is taken for
/// lost (the process function failing to start until the message went to the DLQ, say)
/// and sent again, uncounted.
const BEHIND_LIMIT_STALLS: i64 = 4;

/// A `processing` file the janitor was due to look at. Nothing moved for the stall
/// time (a job lost, or crashed out of all its deliveries; or a wait for the scanner):
/// its job is sent again, marked as a re-drive, and resumes what is left undone. After
/// `max_redrives` stalls in a row counted against it the file is set aside as `failed`,
/// never served. Not counted: waits for the scanner (up to [`MAX_SCANNER_WAITS`]), and a
/// queue that has not yet delivered the last re-drive (a backlog, or the process
/// function down: nothing the file did).
async fn look_after_processing(app: &App, upload: &Upload, now: i64) -> Result<Stall, UploadError> {
    let stall = app.config.processing_stall.as_secs() as i64;
    let waits = upload.scanner_waits.unwrap_or(0);
    let waiting = upload.waiting_for_scanner && waits < MAX_SCANNER_WAITS;
    // Windows being recorded, or (waiting for the scanner) other windows' jobs still
    // running: look again once it has been quiet that long.
    let quiet = if waiting { SCANNER_RETRY_SECS } else { stall };
    if upload.updated_at + quiet > now {
        let watched = app.repo.watch_processing(&upload.id, upload.updated_at + quiet).await?;
        return Ok(if watched { Stall::Moving } else { Stall::Raced });
    }
    let (sent, seen) = (upload.redrives_sent.unwrap_or(0), upload.redrive_seen.unwrap_or(0));
    let behind = sent > seen && !upload.waiting_for_scanner;
    if behind && upload.redriven_at.is_some_and(|at| now - at < BEHIND_LIMIT_STALLS * stall) {
        // The job sent last time is still on the queue: more would only add to it.
        tracing::warn!(upload_id = %upload.id, sent, seen, "the processing queue has not delivered the last re-drive yet");
        telemetry::metric("janitor", "ProcessingQueueBehind", 1.0, "Count");
        let watched = app.repo.watch_processing(&upload.id, now + stall).await?;
        return Ok(if watched { Stall::Moving } else { Stall::Raced });
    }
    let counted = !waiting && !behind;
    // Windows scanned or hash links done since the last re-drive start the count
    // afresh (waits for the scanner, which also write, are not progress).
    let progress = upload.window_progress();
    let progressed = upload.redrive_progress.is_some_and(|then| progress > then);
    let in_a_row = if progressed { 0 } else { upload.redrives.unwrap_or(0) };
    let write = Redrive {
        redrives: in_a_row + u32::from(counted),
        // Past any number a worker saw (a job whose record lost its race is numbered).
        sent: sent.max(seen).saturating_add(1),
        scanner_waits: waits + u32::from(waiting),
        progress,
        check_at: now + stall,
    };
    if counted && in_a_row >= app.config.max_redrives {
        // The same conditional write claims the file first: a window or a verdict that
        // lands meanwhile wins, and nothing is set aside. It counts and sends nothing:
        // if the set-aside fails, the next look tries it again, saying the same.
        let claim = Redrive { redrives: in_a_row, sent, ..write };
        if !app.repo.redrive(upload, &claim, now).await? {
            return Ok(Stall::Raced);
        }
        tracing::error!(upload_id = %upload.id, owner = %upload.owner, in_a_row, "processing stalled for good; set aside");
        let reason = format!(
            "Processing stopped making progress {} times and was set aside for an operator; the file is not served.",
            in_a_row + 1
        );
        if !processing::set_aside(app, upload, reason).await {
            return Ok(Stall::Raced);
        }
        telemetry::metric("janitor", "ProcessingSetAside", 1.0, "Count");
        return Ok(Stall::SetAside);
    }
    // The job first: one sent twice is harmless; a write without its job would wait a
    // whole stall time for nothing, and count.
    let mut job = ProcessJob::for_upload(upload, app.objects.bucket(), upload.etag.as_deref().unwrap_or_default());
    job.redrive = write.sent;
    app.jobs.send(&job).await?;
    if !app.repo.redrive(upload, &write, now).await? {
        // Something moved meanwhile; the job sent resumes whatever is left, harmlessly.
        return Ok(Stall::Raced);
    }
    tracing::warn!(upload_id = %upload.id, owner = %upload.owner, redrive = job.redrive, counted, waiting_for_scanner = waiting, "processing stalled; its job sent again");
    telemetry::metric("janitor", "ProcessingRedriven", 1.0, "Count");
    Ok(Stall::Redriven)
}

/// Permanently removes files whose retention after deletion is over: object,
/// thumbnail, and every record of the upload.
async fn purge_due(app: &App, now: i64) -> Result<u32, UploadError> {
    let mut purged = 0;
    for upload in app.repo.due_purges(now, 100).await? {
        if upload.deleted_at.is_none() || upload.purge_at.is_none_or(|p| p > now) {
            continue;
        }
        app.objects.delete(&upload.s3_key).await?;
        if let Some(t) = &upload.thumbnail_key {
            app.objects.delete(t).await?;
        }
        app.repo.delete_upload(&upload.id).await?;
        tracing::info!(upload_id = %upload.id, owner = %upload.owner, "file purged");
        purged += 1;
    }
    Ok(purged)
}
