//! The processing pass: read the object once, as a stream, feeding the type sniffer,
//! SHA-256 and clamd's INSTREAM at the same time; then decide, mark the object, make
//! a thumbnail for images, and write the final status conditionally (duplicates of
//! a job are harmless).

use std::time::Duration;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{Tag, Tagging};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use crate::{
    processing::{check_type, decide, ScanReply, UnscannedPolicy, Verdict, SNIFF_BYTES},
    queue::ProcessJob,
    scanner::Instream,
    store::{ProcessingOutcome, UploadRecord, UploadStatus},
    telemetry, thumbnail, App,
};

/// Object tag every processed object carries; the bucket policy denies reads of
/// objects whose tag is not `ready`, so a quarantined file cannot be fetched even
/// with a direct S3 URL.
pub const STATUS_TAG: &str = "hoist-status";

/// Processing settings (environment, read once).
#[derive(Debug, Clone)]
pub struct ProcessConfig {
    pub clamd_addr: String,
    /// Files above this are not sent to clamd (its StreamMaxLength; ClamAV caps at 4 GB).
    pub scan_limit: u64,
    pub unscanned_policy: UnscannedPolicy,
    /// Images up to this size are buffered during the pass to make a thumbnail.
    pub thumbnail_max_bytes: u64,
    pub thumbnail_side: u32,
    /// The queue's maxReceiveCount: on the last delivery a failure is recorded as `failed`.
    pub max_receives: u32,
}

impl ProcessConfig {
    pub fn from_env() -> Result<Self, crate::config::ConfigError> {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
        let num = |k: &'static str, d: u64| -> Result<u64, crate::config::ConfigError> {
            var(k).map_or(Ok(d), |v| {
                v.trim()
                    .parse()
                    .map_err(|_| crate::config::ConfigError { name: k, detail: format!("'{v}' is not a whole number") })
            })
        };
        let policy = match var("HOIST_UNSCANNED_POLICY").as_deref() {
            None | Some("block") => UnscannedPolicy::Block,
            Some("allow") => UnscannedPolicy::Allow,
            Some(other) => {
                return Err(crate::config::ConfigError {
                    name: "HOIST_UNSCANNED_POLICY",
                    detail: format!("'{other}' is not block or allow"),
                })
            }
        };
        Ok(Self {
            clamd_addr: var("HOIST_CLAMD_ADDR").unwrap_or_else(|| "127.0.0.1:3310".into()),
            scan_limit: num("HOIST_SCAN_LIMIT_BYTES", 1024 * 1024 * 1024)?,
            unscanned_policy: policy,
            thumbnail_max_bytes: num("HOIST_THUMBNAIL_MAX_BYTES", 64 * 1024 * 1024)?,
            thumbnail_side: num("HOIST_THUMBNAIL_SIDE", 256)? as u32,
            max_receives: num("HOIST_MAX_RECEIVES", 5)? as u32,
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error("s3: {0}")]
    S3(String),
    #[error(transparent)]
    Scanner(#[from] crate::scanner::ScannerError),
    #[error("store: {0}")]
    Store(#[from] crate::store::StoreError),
    #[error("{0}")]
    Other(String),
    #[error("the upload is still completing; the job will be retried")]
    NotYet,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobOutcome {
    Finished(UploadStatus),
    /// Already processed (a duplicate delivery) or no longer exists.
    Skipped,
}

/// The key of an upload's thumbnail: `thumbnails/<upload id>.jpg`, beside `uploads/<id>`.
pub fn thumbnail_key(job: &ProcessJob) -> String {
    format!("thumbnails/{}.jpg", job.upload_id)
}

/// Processes one job. `receive_count` is SQS's ApproximateReceiveCount: on the last
/// allowed delivery a failure is recorded as `failed` before the message moves to the DLQ.
pub async fn process(
    app: &App,
    cfg: &ProcessConfig,
    job: &ProcessJob,
    receive_count: u32,
) -> Result<JobOutcome, PipelineError> {
    let Some(rec) = app.store.get(&job.upload_id).await? else {
        tracing::warn!(upload_id = %job.upload_id, "job for an unknown upload; dropping");
        return Ok(JobOutcome::Skipped);
    };
    if rec.status == UploadStatus::Completing && rec.owner == job.owner {
        // The job is sent just before the status moves to `processing`: this delivery
        // raced that write. Not done, not failed: let SQS bring it back.
        return Err(PipelineError::NotYet);
    }
    if rec.status != UploadStatus::Processing || rec.owner != job.owner {
        tracing::info!(upload_id = %job.upload_id, status = rec.status.as_str(), "already processed; duplicate delivery ignored");
        return Ok(JobOutcome::Skipped);
    }
    match run(app, cfg, job, &rec).await {
        Ok(status) => Ok(JobOutcome::Finished(status)),
        Err(e) => {
            if receive_count >= cfg.max_receives {
                let outcome = ProcessingOutcome {
                    status: UploadStatus::Failed,
                    reason: format!("Processing failed {receive_count} times; the job was set aside for an operator. Last error: {e}"),
                    detected_type: None,
                    content_sha256: None,
                    thumbnail_key: None,
                    width: None,
                    height: None,
                };
                if let Err(se) = app.store.finish_processing(&job.upload_id, &outcome, crate::now()).await {
                    tracing::error!(error = %se, "could not record failure");
                }
                let _ = tag_object(app, &job.key, "failed").await;
            }
            Err(e)
        }
    }
}

/// What one pass over the bytes found.
struct PassResult {
    head: Vec<u8>,
    sha256: [u8; 32],
    scan: Option<ScanReply>,
    image: Option<Vec<u8>>,
}

async fn stream_pass(
    app: &App,
    cfg: &ProcessConfig,
    job: &ProcessJob,
    rec: &UploadRecord,
) -> Result<PassResult, PipelineError> {
    let obj = app
        .storage
        .client()
        .get_object()
        .bucket(&job.bucket)
        .key(&job.key)
        .if_match(format!("\"{}\"", job.etag))
        .send()
        .await
        .map_err(|e| PipelineError::S3(aws_smithy_types::error::display::DisplayErrorContext(&e).to_string()))?;
    let body: ByteStream = obj.body;
    // Reading from S3 runs ahead in its own task while we feed clamd: a small bounded
    // channel overlaps the two without ever holding more than a few chunks.
    let (tx, mut rx) = mpsc::channel::<Result<bytes::Bytes, String>>(8);
    let reader = tokio::spawn(async move {
        let mut body = body;
        loop {
            match body.next().await {
                Some(Ok(chunk)) => {
                    if tx.send(Ok(chunk)).await.is_err() {
                        break;
                    }
                }
                Some(Err(e)) => {
                    let _ = tx.send(Err(e.to_string())).await;
                    break;
                }
                None => break,
            }
        }
    });
    let mut scanner = if rec.size <= cfg.scan_limit { Some(Instream::start(&cfg.clamd_addr).await?) } else { None };
    let mut image = (rec.content_type.top_level() == "image" && rec.size <= cfg.thumbnail_max_bytes)
        .then(|| Vec::with_capacity(rec.size as usize));
    let mut head = Vec::with_capacity(SNIFF_BYTES);
    let mut hasher = Sha256::new();
    let mut total: u64 = 0;
    while let Some(chunk) = rx.recv().await {
        let chunk = chunk.map_err(PipelineError::S3)?;
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
        return Err(PipelineError::S3(format!("read {total} bytes of {} (stream cut short)", rec.size)));
    }
    let scan = match scanner {
        Some(s) => Some(s.finish().await?),
        None => None,
    };
    Ok(PassResult { head, sha256: hasher.finalize().into(), scan, image })
}

async fn run(
    app: &App,
    cfg: &ProcessConfig,
    job: &ProcessJob,
    rec: &UploadRecord,
) -> Result<UploadStatus, PipelineError> {
    let started = std::time::Instant::now();
    let pass = stream_pass(app, cfg, job, rec).await?;
    let type_check = check_type(&rec.content_type, &pass.head);
    let declared = rec.sha256.map(|d| *d.as_bytes());
    let verdict = decide(pass.scan.as_ref(), &type_check, declared, pass.sha256, cfg.unscanned_policy)
        .map_err(PipelineError::Other)?;
    let mut outcome = ProcessingOutcome {
        status: status_of(&verdict),
        reason: verdict.reason(),
        detected_type: type_check.as_ref().ok().cloned().flatten().or_else(|| crate::processing::detect(&pass.head)),
        content_sha256: Some(hex::encode(pass.sha256)),
        thumbnail_key: None,
        width: None,
        height: None,
    };
    if verdict == Verdict::Ready && pass.scan.is_none() {
        outcome.reason =
            "Type and checksum verified; not scanned for malware (larger than the scanner accepts), served by policy."
                .into();
    }
    if verdict == Verdict::Ready {
        if let Some(bytes) = pass.image {
            let side = cfg.thumbnail_side;
            match tokio::task::spawn_blocking(move || thumbnail::make(&bytes, side)).await {
                Ok(Ok(t)) => {
                    let key = thumbnail_key(job);
                    app.storage
                        .client()
                        .put_object()
                        .bucket(&job.bucket)
                        .key(&key)
                        .content_type("image/jpeg")
                        .tagging(format!("{STATUS_TAG}=ready"))
                        .body(ByteStream::from(t.jpeg))
                        .send()
                        .await
                        .map_err(|e| {
                            PipelineError::S3(aws_smithy_types::error::display::DisplayErrorContext(&e).to_string())
                        })?;
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
    tag_object(app, &job.key, outcome.status.as_str()).await?;
    let written = app.store.finish_processing(&job.upload_id, &outcome, crate::now()).await?;
    tracing::info!(
        upload_id = %job.upload_id, owner = %job.owner, status = outcome.status.as_str(), written,
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
        Verdict::Ready => UploadStatus::Ready,
    }
}

async fn tag_object(app: &App, key: &str, status: &str) -> Result<(), PipelineError> {
    let tag = Tag::builder().key(STATUS_TAG).value(status).build().map_err(|e| PipelineError::Other(e.to_string()))?;
    let tagging = Tagging::builder().tag_set(tag).build().map_err(|e| PipelineError::Other(e.to_string()))?;
    let mut attempt = 0;
    loop {
        match app
            .storage
            .client()
            .put_object_tagging()
            .bucket(app.storage.bucket())
            .key(key)
            .tagging(tagging.clone())
            .send()
            .await
        {
            Ok(_) => return Ok(()),
            Err(e) if attempt < 2 => {
                attempt += 1;
                tracing::warn!(error = %aws_smithy_types::error::display::DisplayErrorContext(&e), "tagging failed; retrying");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => {
                return Err(PipelineError::S3(aws_smithy_types::error::display::DisplayErrorContext(&e).to_string()))
            }
        }
    }
}
