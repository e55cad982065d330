//! Large files in windows. A file larger than one scan window is never read by one
//! invocation: its processing job only queues one *scan* job per window (any order, in
//! parallel, as many workers as run) and the first *hash* job; hash job k carries the
//! whole-file SHA-256 through window k and queues job k+1. Every window records its
//! result once (a marker per window, counted in the same transaction); whichever job
//! sees the last window scanned and the hash finished writes the verdict, conditionally,
//! so duplicate or out-of-order deliveries change nothing.

use futures::StreamExt;

use super::{
    chained_sha256::{ChainState, ChainedSha256},
    check_type, decide, detect, members, record, JobOutcome, PipelineError, Processor, ScanReply, Verdict, SNIFF_BYTES,
};
use crate::domain::{
    HashProgress, HeadFinding, ProcessingOutcome, Upload, UploadStatus, WindowFinding, WindowJob, WindowPlan,
};

/// The plan the windows started with (stored), whatever the configuration says now.
pub(super) fn plan_of(rec: &Upload) -> Result<WindowPlan, PipelineError> {
    rec.window_bytes
        .and_then(|w| WindowPlan::new(rec.size, w))
        .ok_or_else(|| PipelineError::Other(format!("{} is not processed in windows", rec.id)))
}

/// Where a step reads the object: the record's key, version and ETag.
fn source(p: &Processor, rec: &Upload) -> Result<members::Source, PipelineError> {
    Ok(members::Source {
        store: p.app.objects.clone(),
        key: rec.s3_key.clone(),
        etag: rec.etag.clone().ok_or_else(|| PipelineError::Other("the upload has no object ETag".into()))?,
        version: rec.version_id.clone(),
        size: rec.size,
        runtime: tokio::runtime::Handle::current(),
    })
}

/// The archive unpacker for the file's first bytes, if its members are unpacked.
async fn unpacker_of(src: &members::Source) -> Result<Option<members::Unpacker>, PipelineError> {
    let head = members::sniff(src).await?;
    Ok(detect(&head).as_deref().and_then(members::Unpacker::for_type))
}

/// Starts the windows of a large file and queues their jobs: one scan job per raw
/// window, and for an archive one member step per window of its members
/// (`processing/members.rs`), and the hash chain's first link. A `repeat`ed job (SQS
/// delivering it again after a crash, or the janitor sending it again after a stall)
/// finds them started and queues only what is left undone.
pub(super) async fn fan_out(
    p: &Processor,
    rec: &Upload,
    plan: WindowPlan,
    repeat: bool,
) -> Result<JobOutcome, PipelineError> {
    if let Some(total) = rec.windows_total {
        if !repeat {
            tracing::info!(upload_id = %rec.id, "windows already started; repeated job ignored");
            return Ok(JobOutcome::Skipped);
        }
        return resume(p, rec, plan, total).await;
    }
    let src = source(p, rec)?;
    let steps = match unpacker_of(&src).await? {
        Some(unpacker) => members::steps_for(&src, unpacker, plan.window()).await?,
        None => 0,
    };
    let total = plan.count() + steps;
    if !p.app.repo.start_windows(&rec.id, total, plan.window(), crate::now()).await? {
        // Another delivery of this job started them a moment ago: it queues the jobs
        // (and if it dies first, its own redelivery resumes them).
        tracing::info!(upload_id = %rec.id, "windows started by another delivery; this one ignored");
        return Ok(JobOutcome::Skipped);
    }
    let (upload_id, owner) = (rec.id.clone(), rec.owner.clone());
    // The hash chain first: it is the sequential part, so it should never wait behind scans.
    let mut jobs = vec![WindowJob::Hash { upload_id: upload_id.clone(), owner: owner.clone(), index: 0 }];
    jobs.extend((0..total).map(|index| WindowJob::Scan { upload_id: upload_id.clone(), owner: owner.clone(), index }));
    p.app.jobs.send_windows(&jobs).await?;
    tracing::info!(upload_id = %rec.id, windows = plan.count(), member_steps = steps, size = rec.size, "processing in windows");
    Ok(JobOutcome::FannedOut { windows: total })
}

/// Queues again what a started file has left undone: the windows not recorded as
/// scanned and the hash chain's next link. When nothing is left, only the verdict was.
async fn resume(p: &Processor, rec: &Upload, plan: WindowPlan, total: u32) -> Result<JobOutcome, PipelineError> {
    let recorded = p.app.repo.recorded_windows(&rec.id).await?;
    let (upload_id, owner) = (rec.id.clone(), rec.owner.clone());
    let mut jobs = Vec::new();
    let hash_next = rec.hash_next.unwrap_or(0);
    if hash_next < plan.count() {
        jobs.push(WindowJob::Hash { upload_id: upload_id.clone(), owner: owner.clone(), index: hash_next });
    }
    let missing: Vec<u32> = (0..total).filter(|i| !recorded.contains(i)).collect();
    jobs.extend(missing.iter().map(|&index| WindowJob::Scan {
        upload_id: upload_id.clone(),
        owner: owner.clone(),
        index,
    }));
    if jobs.is_empty() {
        return settle(p, rec).await;
    }
    p.app.jobs.send_windows(&jobs).await?;
    tracing::info!(upload_id = %rec.id, windows_left = missing.len(), hash_next, "windows resumed");
    Ok(JobOutcome::FannedOut { windows: missing.len() as u32 })
}

pub(super) async fn run_job(p: &Processor, rec: &Upload, job: &WindowJob) -> Result<JobOutcome, PipelineError> {
    if rec.windows_total.is_none() {
        // Its fan-out has not been recorded yet: retry soon.
        return Err(PipelineError::NotYet);
    }
    let plan = plan_of(rec)?;
    let total = rec.windows_total.unwrap_or(0);
    match *job {
        WindowJob::Scan { index, .. } if index < plan.count() => scan(p, rec, plan, index).await,
        WindowJob::Scan { index, .. } if index < total => member_step(p, rec, plan, index).await,
        WindowJob::Hash { index, .. } if index < plan.count() => hash(p, rec, plan, index).await,
        _ => {
            // Not one we sent (the plan has no such window): dropped, never held against
            // the upload (failing it would let a stray message decide its fate).
            tracing::warn!(upload_id = %rec.id, ?job, "window job outside the plan; dropped");
            Ok(JobOutcome::Skipped)
        }
    }
}

/// Scans window `k` (with the overlap before it); window 0 also reads the file's type.
async fn scan(p: &Processor, rec: &Upload, plan: WindowPlan, k: u32) -> Result<JobOutcome, PipelineError> {
    if p.app.repo.window_recorded(&rec.id, k).await? {
        // A repeated job: the window is scanned; only the verdict may be left to write.
        return settle(p, rec).await;
    }
    let etag = rec.etag.as_deref().ok_or_else(|| PipelineError::Other("the upload has no object ETag".into()))?;
    let (start, end) = plan.scan_range(k);
    // The scanner first (it may still be loading at a cold start; see `stream_pass`).
    let mut scanner = super::start_scan(&*p.scanner).await?;
    let mut body = p.app.objects.read_range(&rec.s3_key, etag, rec.version_id.as_deref(), start, end).await?;
    let mut head = Vec::new();
    let mut read = 0u64;
    while let Some(chunk) = body.next().await {
        let chunk = chunk?;
        read += chunk.len() as u64;
        if k == 0 && head.len() < SNIFF_BYTES {
            head.extend_from_slice(&chunk[..(SNIFF_BYTES - head.len()).min(chunk.len())]);
        }
        scanner.send(&chunk).await?;
    }
    if read != end - start {
        return Err(PipelineError::Read(format!("window {k}: read {read} bytes of {}", end - start)));
    }
    let mut finding = match scanner.finish().await? {
        ScanReply::Clean => WindowFinding::default(),
        ScanReply::Found(sig) => WindowFinding { found: Some(sig), ..WindowFinding::default() },
        ScanReply::NotFullyScanned(why) => WindowFinding { gap: Some(why), ..WindowFinding::default() },
        ScanReply::Error(e) => return Err(PipelineError::Other(format!("scanner error: {e}"))),
    };
    if k == 0 {
        // The type is read once per file, from its first bytes. Windowed files are far
        // above the thumbnail size limit, so none is made.
        let checked = check_type(&rec.content_type, &head);
        let detected = checked.as_ref().ok().cloned().flatten().or_else(|| detect(&head));
        let unpacked = rec.windows_total.is_some_and(|t| t > plan.count());
        if let Some(kind) = detected.as_deref().and_then(compressed_container).filter(|_| !unpacked) {
            // Raw windows of compressed data show the scanner nothing of the members,
            // and this one's members are not unpacked: never call that clean.
            finding.gap.get_or_insert(format!(
                "it is a {kind} larger than one scan window ({} bytes), and its compressed members cannot be scanned window by window",
                plan.window()
            ));
        }
        finding.head = Some(HeadFinding { detected_type: detected, type_rejection: checked.err() });
    }
    if !p.app.repo.window_scanned(&rec.id, k, &finding, crate::now()).await? {
        tracing::info!(upload_id = %rec.id, window = k, "window already recorded; repeated job");
    }
    settle(p, rec).await
}

/// Member step `index` (counted after the raw windows) of an archive.
async fn member_step(p: &Processor, rec: &Upload, plan: WindowPlan, index: u32) -> Result<JobOutcome, PipelineError> {
    if p.app.repo.window_recorded(&rec.id, index).await? {
        return settle(p, rec).await;
    }
    let src = source(p, rec)?;
    let Some(unpacker) = unpacker_of(&src).await? else {
        return Err(PipelineError::Other(format!("{}: member step of a file that is not an archive", rec.id)));
    };
    let step = index - plan.count();
    let finding = members::scan_step(src, p.scanner.clone(), unpacker, plan.window(), step).await?;
    if !p.app.repo.window_scanned(&rec.id, index, &finding, crate::now()).await? {
        tracing::info!(upload_id = %rec.id, window = index, "member step already recorded; repeated job");
    }
    settle(p, rec).await
}

/// Containers whose members are compressed: a raw byte window of one shows the scanner
/// no member's content. Named in words for the reason.
pub(super) fn compressed_container(mime: &str) -> Option<&'static str> {
    Some(match mime {
        "application/zip" | "application/epub+zip" => "zip archive",
        "application/gzip" => "gzip file",
        "application/x-7z-compressed" => "7z archive",
        "application/zstd" => "zstd file",
        "application/x-xz" => "xz file",
        "application/x-bzip2" => "bzip2 file",
        "application/vnd.rar" | "application/x-rar-compressed" => "rar archive",
        m if m.starts_with("application/vnd.openxmlformats") || m.starts_with("application/vnd.oasis.opendocument") => {
            "office document (a zip archive)"
        }
        _ => return None,
    })
}

/// Carries the whole-file SHA-256 through window `k`, then queues window k+1's hash.
async fn hash(p: &Processor, rec: &Upload, plan: WindowPlan, k: u32) -> Result<JobOutcome, PipelineError> {
    let next = |index| WindowJob::Hash { upload_id: rec.id.clone(), owner: rec.owner.clone(), index };
    match rec.hash_next {
        Some(n) if n == k => {}
        Some(n) if n == k + 1 && n < plan.count() => {
            // This job already advanced the chain but may have died before queueing the
            // next link: queue it (again; a repeated link is skipped by its condition).
            p.app.jobs.send_windows(&[next(n)]).await?;
            return Ok(JobOutcome::Skipped);
        }
        // The last link is done; if writing the verdict failed after it, do it now.
        Some(n) if n == plan.count() => return settle(p, rec).await,
        _ => return Ok(JobOutcome::Skipped),
    }
    let state = rec
        .hash_state
        .as_deref()
        .and_then(ChainState::decode)
        .ok_or_else(|| PipelineError::Other(format!("{}: no hash state to continue from", rec.id)))?;
    let etag = rec.etag.as_deref().ok_or_else(|| PipelineError::Other("the upload has no object ETag".into()))?;
    let (start, end) = plan.hash_range(k);
    if state.bytes_hashed() != start {
        return Err(PipelineError::Other(format!(
            "{}: hash state at {} bytes, window {k} starts at {start}",
            rec.id,
            state.bytes_hashed()
        )));
    }
    let mut hasher = ChainedSha256::resume(state);
    let (store, key, version) = (p.app.objects.clone(), rec.s3_key.clone(), rec.version_id.clone());
    let mut pieces = futures::stream::iter(hash_pieces(start, end))
        .map(|(a, b)| read_piece(store.clone(), key.clone(), etag.to_owned(), version.clone(), a, b))
        .buffered(HASH_READS_IN_FLIGHT);
    while let Some(piece) = pieces.next().await {
        hasher.update(&piece?);
    }
    let last = k + 1 == plan.count();
    let progress = if last {
        HashProgress::Digest(hex::encode(hasher.finalize()))
    } else {
        HashProgress::State(
            hasher.state().ok_or_else(|| PipelineError::Other("window does not end on a hash block".into()))?.encode(),
        )
    };
    if p.app.repo.hash_advanced(&rec.id, k, &progress, crate::now()).await? && !last {
        p.app.jobs.send_windows(&[next(k + 1)]).await?;
    }
    settle(p, rec).await
}

/// The hash chain is the one sequential part of a large file (its time to verdict is
/// at least the file's size over one link's read speed), and a single S3 stream is far
/// slower than SHA-256: so a link reads its window as pieces, this many at once, and
/// hashes them in order. Memory: at most this many pieces held.
pub(super) const HASH_READS_IN_FLIGHT: usize = 4;
const HASH_PIECE_MAX: u64 = 4 * 1024 * 1024;

/// `start..end` cut in pieces: a quarter of it, between 64 KiB and 4 MiB.
pub(super) fn hash_pieces(start: u64, end: u64) -> Vec<(u64, u64)> {
    let piece = (end - start).div_ceil(HASH_READS_IN_FLIGHT as u64).clamp(64 * 1024, HASH_PIECE_MAX);
    (start..end).step_by(piece as usize).map(|a| (a, (a + piece).min(end))).collect()
}

/// Bytes `a..b` of the pinned object, read whole.
async fn read_piece(
    store: std::sync::Arc<dyn crate::ports::ObjectStore>,
    key: String,
    etag: String,
    version: Option<String>,
    a: u64,
    b: u64,
) -> Result<bytes::Bytes, PipelineError> {
    let mut body = store.read_range(&key, &etag, version.as_deref(), a, b).await?;
    let mut buf = bytes::BytesMut::with_capacity((b - a) as usize);
    while let Some(chunk) = body.next().await {
        buf.extend_from_slice(&chunk?);
    }
    if buf.len() as u64 != b - a {
        return Err(PipelineError::Read(format!("bytes {a}..{b}: read {} bytes", buf.len())));
    }
    Ok(buf.freeze())
}

/// Writes the verdict once every window is scanned and the hash is finished; until then
/// there is nothing to do. Safe to call from any number of jobs at once.
async fn settle(p: &Processor, rec: &Upload) -> Result<JobOutcome, PipelineError> {
    let started = std::time::Instant::now();
    let Some(now) = p.app.repo.get(&rec.id).await? else { return Ok(JobOutcome::Skipped) };
    let total = now.windows_total.unwrap_or(u32::MAX);
    // Every window and member step scanned, and the hash chain through every raw window.
    let raw = plan_of(&now).map(|plan| plan.count()).unwrap_or(u32::MAX);
    if now.status != UploadStatus::Processing || now.windows_done != Some(total) || now.hash_next != Some(raw) {
        return Ok(JobOutcome::WindowDone);
    }
    let scan = match (&now.scan_found, &now.scan_gap) {
        (Some(sig), _) => ScanReply::Found(sig.clone()),
        (None, Some(why)) => ScanReply::NotFullyScanned(why.clone()),
        (None, None) => ScanReply::Clean,
    };
    let type_check = match &now.type_rejection {
        Some(reason) => Err(reason.clone()),
        None => Ok(now.detected_type.clone()),
    };
    let digest =
        now.content_sha256.as_deref().and_then(|h| hex::decode(h).ok()).and_then(|b| <[u8; 32]>::try_from(b).ok());
    let digest = digest.ok_or_else(|| PipelineError::Other(format!("{}: the chained hash is missing", rec.id)))?;
    let declared = now.sha256.map(|d| *d.as_bytes());
    let verdict =
        decide(Some(&scan), &type_check, declared, digest, p.config.unscanned_policy).map_err(PipelineError::Other)?;
    let outcome = ProcessingOutcome {
        status: super::status_of(&verdict),
        reason: match &verdict {
            Verdict::Ready => match raw {
                raw if raw < total => format!(
                    "{} Scanned in {raw} windows, and member by member in {} steps.",
                    verdict.reason(),
                    total - raw
                ),
                _ => format!("{} Scanned in {total} windows.", verdict.reason()),
            },
            v => v.reason(),
        },
        detected_type: now.detected_type.clone(),
        content_sha256: Some(hex::encode(digest)),
        thumbnail_key: None,
        width: None,
        height: None,
    };
    Ok(JobOutcome::Finished(record(p, &now, &outcome, started).await?))
}
