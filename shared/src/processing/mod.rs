//! The processing pass: read the object once, as a stream, feeding the type sniffer,
//! SHA-256 and clamd's INSTREAM at the same time; then decide, mark the object, make
//! a thumbnail for images, and write the final status conditionally (duplicates of
//! a job are harmless).

use futures::StreamExt;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

pub mod chained_sha256;
pub mod decide;
pub mod members;
pub mod message;
#[cfg(test)]
mod stall_tests;
pub mod thumbnail;
#[cfg(test)]
mod window_tests;
pub mod windows;

pub use decide::{check_type, decide, detect, ScanReply, UnscannedPolicy, Verdict, SNIFF_BYTES};
pub use message::{CreatedObject, QueueMessage};

use crate::{
    config::ProcessConfig,
    domain::{Owner, ProcessJob, ProcessingOutcome, Upload, UploadId, UploadStatus, WindowJob, WindowPlan},
    ports::{ObjectStoreError, QueueError, RepoError, ScanSession, Scanner, ScannerError},
    telemetry, App,
};

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error(transparent)]
    Storage(#[from] ObjectStoreError),
    #[error("reading the object: {0}")]
    Read(String),
    #[error(transparent)]
    Scanner(#[from] ScannerError),
    #[error(transparent)]
    Repo(#[from] RepoError),
    #[error(transparent)]
    Queue(#[from] QueueError),
    #[error("{0}")]
    Other(String),
    #[error("the upload is still completing; the job will be retried")]
    NotYet,
    /// The scanner could not be reached (not started, or its signatures not loaded):
    /// nothing to do with the file, so never held against it.
    #[error("the scanner is not ready: {0}")]
    ScannerUnavailable(ScannerError),
}

/// Starts a scan; a scanner that cannot be reached is [`PipelineError::ScannerUnavailable`].
pub(crate) async fn start_scan(scanner: &dyn Scanner) -> Result<Box<dyn ScanSession>, PipelineError> {
    scanner.start().await.map_err(PipelineError::ScannerUnavailable)
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobOutcome {
    Finished(UploadStatus),
    /// A large file: its window jobs were queued.
    FannedOut {
        windows: u32,
    },
    /// One window's work is recorded; other windows are still to come.
    WindowDone,
    /// Already processed (a duplicate delivery) or no longer exists.
    Skipped,
    /// The scanner was not there on the last delivery: the janitor sends the job again
    /// (the message is done with; the file is not failed).
    WaitingForScanner,
}

/// The key of an upload's thumbnail: `thumbnails/<upload id>.jpg`, beside `uploads/<id>`.
pub fn thumbnail_key(upload: &Upload) -> String {
    format!("thumbnails/{}.jpg", upload.id)
}

/// What processing needs besides the app: the scanner and its settings.
pub struct Processor {
    pub app: std::sync::Arc<App>,
    pub scanner: std::sync::Arc<dyn Scanner>,
    pub config: ProcessConfig,
}

/// The upload a job is about, if the job should run now: `Ok(None)` when it is done
/// already (a repeated delivery) or unknown; `NotYet` when its status write is still
/// landing.
async fn upload_to_process(p: &Processor, id: &UploadId, owner: &Owner) -> Result<Option<Upload>, PipelineError> {
    let Some(rec) = p.app.repo.get(id).await? else {
        tracing::warn!(upload_id = %id, "job for an unknown upload; dropping");
        return Ok(None);
    };
    if rec.status == UploadStatus::Completing && &rec.owner == owner {
        // The job is sent just before the status moves to `processing`: this delivery
        // raced that write. Not done, not failed: let SQS bring it back.
        return Err(PipelineError::NotYet);
    }
    if rec.status != UploadStatus::Processing || &rec.owner != owner {
        tracing::info!(upload_id = %id, status = rec.status.as_str(), "already processed; repeated delivery ignored");
        return Ok(None);
    }
    Ok(Some(rec))
}

/// What a failed delivery leaves. Before the last allowed delivery nothing: SQS
/// delivers it again. On the last one, a scanner that was not there is waited for (the
/// janitor sends the job again later; `Some` outcome: the message is done with), and
/// any other failure sets the file aside as `failed` (the message moves to the DLQ).
async fn after_failure(p: &Processor, rec: &Upload, receive_count: u32, e: &PipelineError) -> Option<JobOutcome> {
    // "Not yet" is not a failure: it comes right by itself and never counts.
    if receive_count < p.config.max_receives || matches!(e, PipelineError::NotYet) {
        return None;
    }
    if let PipelineError::ScannerUnavailable(why) = e {
        tracing::error!(upload_id = %rec.id, receive_count, error = %why, "scanner not ready; the janitor will send the job again");
        telemetry::metric("process", "ScannerUnavailable", 1.0, "Count");
        let reason = "Waiting for the virus scanner, which is not ready; processing resumes by itself.";
        let now = crate::now();
        match p.app.repo.await_scanner(&rec.id, reason, now + crate::domain::SCANNER_RETRY_SECS, now).await {
            Ok(_) => return Some(JobOutcome::WaitingForScanner),
            // Not recorded: let the message go to the DLQ rather than lose the job.
            Err(se) => tracing::error!(error = %se, "could not record the wait for the scanner"),
        }
        return None;
    }
    // The owner reads `reason`: it says what happened in words; the error itself (S3,
    // DynamoDB, clamd addresses) goes to the logs only.
    tracing::error!(upload_id = %rec.id, receive_count, error = %e, "processing failed for good; set aside");
    let reason =
        format!("Processing failed {receive_count} times and was set aside for an operator; the file is not served.");
    set_aside(&p.app, rec, reason).await;
    None
}

/// Records a file that cannot be processed as `failed` (never served), tags its object
/// so, and takes it out of the janitor's watch. Answers whether it was recorded: not
/// when a verdict landed first (then the object keeps that verdict's tag) or the write
/// failed (logged; the janitor comes back to it).
pub async fn set_aside(app: &App, rec: &Upload, reason: String) -> bool {
    let outcome = ProcessingOutcome {
        status: UploadStatus::Failed,
        reason,
        detected_type: None,
        content_sha256: None,
        thumbnail_key: None,
        width: None,
        height: None,
    };
    match app.repo.finish_processing(&rec.id, &outcome, crate::now()).await {
        Ok(true) => {}
        Ok(false) => return false,
        Err(se) => {
            tracing::error!(upload_id = %rec.id, error = %se, "could not record failure");
            return false;
        }
    }
    if let Err(e) = app.objects.tag_status(&rec.s3_key, rec.version_id.as_deref(), "failed").await {
        // The bucket policy serves only objects tagged `ready`: untagged is not served either.
        tracing::error!(upload_id = %rec.id, error = %e, "could not tag a failed file");
    }
    unwatch(app, &rec.id).await;
    true
}

/// Takes a decided upload out of the janitor's watch; if this fails, the janitor does
/// it when it finds the upload decided.
async fn unwatch(app: &App, id: &UploadId) {
    if let Err(e) = app.repo.unwatch(id).await {
        tracing::warn!(upload_id = %id, error = %e, "could not take the upload out of the janitor's watch");
    }
}

/// Processes one job. `receive_count` is SQS's ApproximateReceiveCount. A file larger
/// than one scan window is not read here: its windows are queued as jobs of their own.
pub async fn process(p: &Processor, job: &ProcessJob, receive_count: u32) -> Result<JobOutcome, PipelineError> {
    let Some(rec) = upload_to_process(p, &job.upload_id, &job.owner).await? else {
        return Ok(JobOutcome::Skipped);
    };
    // A repeated delivery, or the janitor's: whatever is left undone is done now.
    let repeat = receive_count > 1 || job.redrive > 0;
    // Windows once started keep their plan, whatever the configuration says now.
    let plan = match rec.windows_total {
        Some(_) => Some(windows::plan_of(&rec)?),
        None => WindowPlan::new(rec.size, p.config.scan_window),
    };
    let result = match plan {
        Some(plan) => windows::fan_out(p, &rec, plan, repeat).await,
        None => {
            if job.redrive > 0 {
                // The janitor counts a stall against the file only once its last
                // re-drive was picked up (else the queue is behind: not the file's
                // doing). A windowed file's re-drive counts when its windows' jobs are.
                p.app.repo.redrive_picked_up(&rec.id, job.redrive).await?;
            }
            run(p, &rec).await.map(JobOutcome::Finished)
        }
    };
    match result {
        Err(e) => after_failure(p, &rec, receive_count, &e).await.ok_or(e),
        ok => ok,
    }
}

/// Processes one window job (see [`windows`]).
pub async fn process_window(p: &Processor, job: &WindowJob, receive_count: u32) -> Result<JobOutcome, PipelineError> {
    let (id, owner) = match job {
        WindowJob::Scan { upload_id, owner, .. } | WindowJob::Hash { upload_id, owner, .. } => (upload_id, owner),
    };
    let Some(rec) = upload_to_process(p, id, owner).await? else {
        return Ok(JobOutcome::Skipped);
    };
    let sent = rec.redrives_sent.unwrap_or(0);
    if sent > rec.redrive_seen.unwrap_or(0) {
        // The queue is delivering this file's window jobs again (see `process`).
        p.app.repo.redrive_picked_up(&rec.id, sent).await?;
    }
    match windows::run_job(p, &rec, job).await {
        Err(e) => after_failure(p, &rec, receive_count, &e).await.ok_or(e),
        ok => ok,
    }
}

/// What one pass over the bytes found.
struct PassResult {
    head: Vec<u8>,
    sha256: [u8; 32],
    scan: Option<ScanReply>,
    image: Option<Vec<u8>>,
}

/// Reads the stored object (the record's key, version and ETag, never the job's word
/// for them).
async fn stream_pass(p: &Processor, rec: &Upload) -> Result<PassResult, PipelineError> {
    let (app, cfg) = (&*p.app, &p.config);
    let etag = rec.etag.clone().ok_or_else(|| PipelineError::Other("the upload has no object ETag".into()))?;
    // The scanner first: at a cold start clamd may still be loading (the scan waits for
    // it), and an S3 response left unread that long would stall.
    let mut scanner = if rec.size <= cfg.scan_limit { Some(start_scan(&*p.scanner).await?) } else { None };
    let mut body = app.objects.read(&rec.s3_key, &etag, rec.version_id.as_deref()).await?;
    // Reading from S3 runs ahead in its own task while we feed clamd: a small bounded
    // channel overlaps the two without ever holding more than a few chunks.
    let (tx, mut rx) = mpsc::channel::<Result<bytes::Bytes, String>>(8);
    let reader = tokio::spawn(async move {
        while let Some(chunk) = body.next().await {
            let failed = chunk.is_err();
            if tx.send(chunk.map_err(|e| e.to_string())).await.is_err() || failed {
                break;
            }
        }
    });
    let mut image = (rec.content_type.top_level() == "image" && rec.size <= cfg.thumbnail_max_bytes)
        .then(|| Vec::with_capacity(rec.size as usize));
    let mut head = Vec::with_capacity(SNIFF_BYTES);
    let mut hasher = Sha256::new();
    let mut total: u64 = 0;
    while let Some(chunk) = rx.recv().await {
        let chunk = chunk.map_err(PipelineError::Read)?;
        total += chunk.len() as u64;
        if head.len() < SNIFF_BYTES {
            let take = (SNIFF_BYTES - head.len()).min(chunk.len());
            head.extend_from_slice(&chunk[..take]);
        }
        hasher.update(&chunk);
        if let Some(s) = scanner.as_mut() {
            s.send(&chunk).await?;
        }
        if let Some(buf) = image.as_mut() {
            buf.extend_from_slice(&chunk);
        }
    }
    let _ = reader.await;
    if total != rec.size {
        return Err(PipelineError::Read(format!("read {total} bytes of {} (stream cut short)", rec.size)));
    }
    let scan = match scanner {
        Some(s) => Some(s.finish().await?),
        None => None,
    };
    Ok(PassResult { head, sha256: hasher.finalize().into(), scan, image })
}

async fn run(p: &Processor, rec: &Upload) -> Result<UploadStatus, PipelineError> {
    let (app, cfg) = (&*p.app, &p.config);
    let started = std::time::Instant::now();
    let pass = stream_pass(p, rec).await?;
    let type_check = check_type(&rec.content_type, &pass.head);
    let declared = rec.sha256.map(|d| *d.as_bytes());
    let verdict = decide(pass.scan.as_ref(), &type_check, declared, pass.sha256, cfg.unscanned_policy)
        .map_err(PipelineError::Other)?;
    let mut outcome = ProcessingOutcome {
        status: status_of(&verdict),
        reason: verdict.reason(),
        detected_type: type_check.as_ref().ok().cloned().flatten().or_else(|| detect(&pass.head)),
        content_sha256: Some(hex::encode(pass.sha256)),
        thumbnail_key: None,
        width: None,
        height: None,
    };
    if matches!(verdict, Verdict::Ready | Verdict::ReadyUnscanned { .. }) {
        if let Some(bytes) = pass.image {
            let side = cfg.thumbnail_side;
            match tokio::task::spawn_blocking(move || thumbnail::make(&bytes, side)).await {
                Ok(Ok(t)) => {
                    let key = thumbnail_key(rec);
                    app.objects.put(&key, "image/jpeg", t.jpeg, UploadStatus::Ready.as_str()).await?;
                    outcome.thumbnail_key = Some(key);
                    outcome.width = Some(t.source_width);
                    outcome.height = Some(t.source_height);
                }
                Ok(Err(thumbnail::ThumbnailError::TooLarge { width, height })) => {
                    outcome.width = Some(width);
                    outcome.height = Some(height);
                    outcome.reason = format!(
                        "{} No thumbnail: the image is {width}x{height} pixels, above the {max}x{max} decoding limit.",
                        outcome.reason,
                        max = thumbnail::MAX_SIDE
                    );
                }
                Ok(Err(e)) => outcome.reason = format!("{} No thumbnail: {e}.", outcome.reason),
                Err(e) => return Err(PipelineError::Other(format!("thumbnail task: {e}"))),
            }
        }
    }
    record(p, rec, &outcome, started).await
}

/// Writes a verdict: the object's status tag first (the bucket policy reads it), then
/// the status, conditionally (a repeated job finds it written and changes nothing).
async fn record(
    p: &Processor,
    rec: &Upload,
    outcome: &ProcessingOutcome,
    started: std::time::Instant,
) -> Result<UploadStatus, PipelineError> {
    if let Some(version) = rec.version_id.as_deref() {
        // Any other version at the key is a write that came after completion and whose
        // event was lost or is still to come: it never becomes the file.
        let refused = p.app.objects.delete_other_versions(&rec.s3_key, version).await?;
        if refused > 0 {
            p.app.repo.refused_write(&rec.id, refused, crate::now()).await?;
            tracing::warn!(upload_id = %rec.id, refused, "later writes to the key deleted at the verdict");
        }
    }
    p.app.objects.tag_status(&rec.s3_key, rec.version_id.as_deref(), outcome.status.as_str()).await?;
    let written = p.app.repo.finish_processing(&rec.id, outcome, crate::now()).await?;
    unwatch(&p.app, &rec.id).await;
    tracing::info!(
        upload_id = %rec.id, owner = %rec.owner, status = outcome.status.as_str(), written,
        millis = started.elapsed().as_millis() as u64, size = rec.size, "processed"
    );
    telemetry::metric("process", &format!("Files{}", capitalized(outcome.status.as_str())), 1.0, "Count");
    telemetry::metric("process", "ProcessSeconds", started.elapsed().as_secs_f64(), "Seconds");
    Ok(outcome.status)
}

fn capitalized(s: &str) -> String {
    let mut c = s.chars();
    c.next().map(|f| f.to_ascii_uppercase().to_string() + c.as_str()).unwrap_or_default()
}

fn status_of(v: &Verdict) -> UploadStatus {
    match v {
        Verdict::Quarantined { .. } => UploadStatus::Quarantined,
        Verdict::Rejected { .. } => UploadStatus::Rejected,
        Verdict::Corrupt { .. } => UploadStatus::Corrupt,
        Verdict::Unscanned { .. } => UploadStatus::Unscanned,
        Verdict::Ready | Verdict::ReadyUnscanned { .. } => UploadStatus::Ready,
    }
}
