//! `hoist put`: one hashing pass (whole-file and per-part SHA-256), then parts sent
//! straight to S3 in parallel, each streamed from disk through a small buffer with its
//! SHA-256 pinned in its URL; URLs signed just in time, completions recorded in
//! batches; resumable from a small state file after any interruption.

use std::{
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant, UNIX_EPOCH},
};

use api_types::{
    plan::PartPlan,
    ranges::expand,
    uploads::{RecordPartItem, SignedPart},
    ByteSize, PartNumber,
};
use base64::Engine as _;
use futures::{stream, StreamExt, TryStreamExt};
use indicatif::ProgressBar;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use crate::api::{backoff, Api, CliError, MAX_ATTEMPTS};

/// Read buffer per part in flight: memory is concurrency x this, whatever the file size.
const READ_BUF: usize = 256 * 1024;
/// Parts recorded per API call while uploading (the rest at the end)...
const RECORD_EVERY: usize = 32;
/// ...or at least this often.
const RECORD_INTERVAL: Duration = Duration::from_secs(1);

/// The part size the CLI sends: `--part-size` as given (the server validates it), else
/// the server's own default plan (api_types::plan). The CLI sends it explicitly so it can
/// hash parts before the upload exists.
pub fn part_size_for(size: u64, requested: Option<u64>) -> Result<u64, CliError> {
    match requested {
        Some(p) => Ok(p),
        None => {
            let size = ByteSize::new(size).map_err(|e| CliError::Source(e.to_string()))?;
            Ok(PartPlan::default_for(size).part_size())
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct State {
    pub version: u32,
    pub path: PathBuf,
    pub upload_id: String,
    pub size: u64,
    pub mtime_ns: u128,
    pub part_size: u64,
    /// SHA-256 of every part (base64), as pinned in its URL.
    pub part_sha256: Vec<String>,
    pub sha256: String,
}

pub fn state_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("HOIST_STATE_DIR") {
        return PathBuf::from(d);
    }
    if let Some(d) = std::env::var_os("XDG_STATE_HOME") {
        return PathBuf::from(d).join("hoist");
    }
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(std::env::temp_dir);
    home.join(".local/state/hoist")
}

fn state_file(abs: &Path) -> PathBuf {
    let key = hex::encode(Sha256::digest(abs.as_os_str().as_encoded_bytes()));
    state_dir().join(format!("upload-{}.json", &key[..32]))
}

fn save_state(path: &Path, state: &State) -> Result<(), CliError> {
    std::fs::create_dir_all(path.parent().unwrap_or(Path::new(".")))?;
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, serde_json::to_vec(state).map_err(|e| CliError::Other(e.to_string()))?)?;
    std::fs::rename(tmp, path)?;
    Ok(())
}

fn mtime_ns(meta: &std::fs::Metadata) -> u128 {
    meta.modified().ok().and_then(|t| t.duration_since(UNIX_EPOCH).ok()).map(|d| d.as_nanos()).unwrap_or(0)
}

/// Common media types by extension; everything else is application/octet-stream
/// (the server reads the real type from the bytes anyway).
pub fn guess_content_type(path: &Path) -> &'static str {
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
    match ext.as_str() {
        "jpg" | "jpeg" => "image/jpeg",
        "png" => "image/png",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "avif" => "image/avif",
        "heic" => "image/heic",
        "tif" | "tiff" => "image/tiff",
        "mp4" | "m4v" => "video/mp4",
        "mov" => "video/quicktime",
        "webm" => "video/webm",
        "mkv" => "video/x-matroska",
        "mp3" => "audio/mpeg",
        "wav" => "audio/wav",
        "flac" => "audio/flac",
        "ogg" => "audio/ogg",
        "pdf" => "application/pdf",
        "zip" => "application/zip",
        "gz" | "tgz" => "application/gzip",
        "tar" => "application/x-tar",
        "7z" => "application/x-7z-compressed",
        "zst" => "application/zstd",
        "txt" | "log" | "md" => "text/plain",
        "csv" => "text/csv",
        "json" => "application/json",
        _ => "application/octet-stream",
    }
}

/// A bandwidth cap shared by every part in flight (`--limit-rate`).
pub struct RateLimit {
    bytes_per_sec: u64,
    started: Instant,
    sent: std::sync::atomic::AtomicU64,
}

impl RateLimit {
    pub fn new(bytes_per_sec: u64) -> Self {
        Self {
            bytes_per_sec: bytes_per_sec.max(1),
            started: Instant::now(),
            sent: std::sync::atomic::AtomicU64::new(0),
        }
    }
    async fn take(&self, n: u64) {
        let total = self.sent.fetch_add(n, Ordering::Relaxed) + n;
        let due = Duration::from_secs_f64(total as f64 / self.bytes_per_sec as f64);
        let elapsed = self.started.elapsed();
        if due > elapsed {
            tokio::time::sleep(due - elapsed).await;
        }
    }
}

pub struct PutOptions {
    pub limit_rate: Option<Arc<RateLimit>>,
    pub concurrency: usize,
    pub part_size: Option<u64>,
    pub restart: bool,
    pub content_type: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PutResult {
    pub file: String,
    pub id: String,
    pub status: String,
    pub size: u64,
    pub parts_sent: usize,
    pub resumed: bool,
    pub seconds: f64,
}

/// Hashes the file once: whole-file SHA-256 and each part's, streaming.
async fn hash_file(
    path: &Path,
    size: u64,
    part_size: u64,
    bar: &ProgressBar,
) -> Result<(String, Vec<String>), CliError> {
    let mut f = tokio::fs::File::open(path).await?;
    let mut whole = Sha256::new();
    let mut parts = Vec::new();
    let mut part = Sha256::new();
    let mut in_part = 0u64;
    let mut buf = vec![0u8; 1024 * 1024];
    let mut total = 0u64;
    loop {
        let n = f.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        let mut chunk = &buf[..n];
        whole.update(chunk);
        while !chunk.is_empty() {
            let take = ((part_size - in_part) as usize).min(chunk.len());
            part.update(&chunk[..take]);
            in_part += take as u64;
            chunk = &chunk[take..];
            if in_part == part_size {
                parts.push(base64::engine::general_purpose::STANDARD.encode(std::mem::take(&mut part).finalize()));
                in_part = 0;
            }
        }
        total += n as u64;
        bar.set_position(total);
    }
    if total != size {
        return Err(CliError::Source(format!("{} changed while it was being read", path.display())));
    }
    if in_part > 0 || parts.is_empty() {
        parts.push(base64::engine::general_purpose::STANDARD.encode(part.finalize()));
    }
    Ok((hex::encode(whole.finalize()), parts))
}

/// Streams one part from disk to its presigned URL. Returns the ETag.
async fn send_part(
    http: &reqwest::Client,
    signed: &SignedPart,
    path: &Path,
    offset: u64,
    bar: &ProgressBar,
    limiter: &Option<Arc<RateLimit>>,
) -> Result<String, PartError> {
    let mut f = tokio::fs::File::open(path).await.map_err(|e| PartError::Fatal(CliError::Io(e)))?;
    f.seek(std::io::SeekFrom::Start(offset)).await.map_err(|e| PartError::Fatal(CliError::Io(e)))?;
    let len = signed.content_length;
    let sent = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counter = sent.clone();
    let progress = bar.clone();
    let limiter = limiter.clone();
    // Rate limit first, then count: the bar shows what actually left.
    let body = tokio_util::io::ReaderStream::with_capacity(f.take(len), READ_BUF)
        .and_then(move |chunk| {
            let limiter = limiter.clone();
            async move {
                if let Some(l) = limiter {
                    l.take(chunk.len() as u64).await;
                }
                Ok(chunk)
            }
        })
        .inspect_ok(move |chunk| {
            counter.fetch_add(chunk.len() as u64, Ordering::Relaxed);
            progress.inc(chunk.len() as u64);
        });
    let mut req = http.put(&signed.url).header(reqwest::header::CONTENT_LENGTH, len).timeout(Duration::from_secs(900));
    for (k, v) in &signed.headers {
        req = req.header(k, v);
    }
    let undo = |bar: &ProgressBar| bar.set_position(bar.position().saturating_sub(sent.load(Ordering::Relaxed)));
    let resp = match req.body(reqwest::Body::wrap_stream(body)).send().await {
        Ok(r) => r,
        Err(e) => {
            undo(bar);
            return Err(PartError::Retry(format!("part {}: {e}", signed.number)));
        }
    };
    let status = resp.status().as_u16();
    if status == 200 {
        let etag = resp.headers().get("etag").and_then(|v| v.to_str().ok()).map(|s| s.trim_matches('"').to_owned());
        return etag.ok_or_else(|| {
            PartError::Fatal(CliError::Other("S3 sent no ETag (is it exposed by the bucket's CORS?)".into()))
        });
    }
    undo(bar);
    let text = resp.text().await.unwrap_or_default();
    Err(match status {
        400 if text.contains("BadDigest") || text.contains("XAmzContentChecksumMismatch") => PartError::Fatal(CliError::Source(format!(
            "part {} of {} no longer matches what was hashed: the file changed. Run again with --restart to upload it anew.",
            signed.number,
            path.display()
        ))),
        // Expired or otherwise unusable signature: sign again.
        403 => PartError::Resign,
        s if s >= 500 || s == 429 => PartError::Retry(format!("part {}: S3 answered {s}", signed.number)),
        s => PartError::Fatal(CliError::Other(format!("part {}: S3 refused it ({s}): {}", signed.number, text.chars().take(300).collect::<String>()))),
    })
}

enum PartError {
    Retry(String),
    Resign,
    Fatal(CliError),
}

/// Uploads (or resumes) one file.
pub async fn put_file(
    api: &Api,
    path: &Path,
    opts: &PutOptions,
    bar: ProgressBar,
    stop: Arc<AtomicBool>,
) -> Result<PutResult, CliError> {
    let started = Instant::now();
    let abs = std::fs::canonicalize(path)?;
    let meta = std::fs::metadata(&abs)?;
    if !meta.is_file() {
        return Err(CliError::Source(format!("{} is not a regular file", path.display())));
    }
    let size = meta.len();
    let name = abs
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| CliError::Source(format!("{} has no usable file name", path.display())))?
        .to_owned();
    let state_path = state_file(&abs);
    let mut resumed = false;
    let mut state: Option<State> = None;
    if opts.restart {
        let _ = std::fs::remove_file(&state_path);
    } else if let Ok(bytes) = std::fs::read(&state_path) {
        if let Ok(s) = serde_json::from_slice::<State>(&bytes) {
            if s.size != size || s.mtime_ns != mtime_ns(&meta) {
                return Err(CliError::Source(format!(
                    "{} changed since its interrupted upload {} (size or modification time differ); not mixing old and new parts. Run again with --restart to upload it anew.",
                    path.display(),
                    s.upload_id
                )));
            }
            state = Some(s);
        }
    }
    let mut upload = None;
    if let Some(s) = &state {
        match api.upload(&s.upload_id).await {
            Ok(u) if u.status == "uploading" => {
                resumed = true;
                upload = Some(u);
            }
            Ok(u) if !matches!(u.status.as_str(), "aborted" | "expired" | "completing") => {
                // Finished before the interruption took effect.
                let _ = std::fs::remove_file(&state_path);
                return Ok(PutResult {
                    file: path.display().to_string(),
                    id: u.id,
                    status: u.status,
                    size,
                    parts_sent: 0,
                    resumed: true,
                    seconds: 0.0,
                });
            }
            _ => state = None, // aborted, expired or gone: start over
        }
    }
    let state = match state {
        Some(s) => s,
        None => {
            let part_size = part_size_for(size, opts.part_size)?;
            bar.set_message(format!("hashing {name}"));
            bar.set_length(size);
            let (sha256, part_sha256) = hash_file(&abs, size, part_size, &bar).await?;
            bar.set_position(0);
            let content_type = opts.content_type.clone().unwrap_or_else(|| guess_content_type(&abs).to_owned());
            let u = api.create(&name, size, &content_type, &sha256, part_size).await?;
            let s = State {
                version: 1,
                path: abs.clone(),
                upload_id: u.id.clone(),
                size,
                mtime_ns: mtime_ns(&meta),
                part_size,
                part_sha256,
                sha256,
            };
            save_state(&state_path, &s)?;
            upload = Some(u);
            s
        }
    };
    let upload = upload.ok_or_else(|| CliError::Other("no upload".into()))?;
    let id = state.upload_id.clone();
    let mut missing: Vec<u32> = expand(&upload.missing_parts).collect();
    // The plan the server accepted for this upload: where each part starts in the file.
    let plan = ByteSize::new(state.size)
        .and_then(|size| PartPlan::new(size, Some(state.part_size), state.part_size))
        .map_err(|e| CliError::Source(e.to_string()))?;
    let mut reconciled = 0u64;
    if resumed && !missing.is_empty() {
        // Parts S3 finished whose answer never reached us (the crash came first): S3
        // checked them against the SHA-256 we pinned, so recording them is enough.
        let held = api.held_parts(&id).await?;
        let planned_len = |n: u32| PartNumber::new(n).ok().and_then(|p| plan.part_len(p));
        let found: Vec<RecordPartItem> = held
            .parts
            .into_iter()
            .filter(|p| missing.contains(&p.number))
            .filter(|p| planned_len(p.number) == Some(p.size))
            .filter(|p| {
                let ours = state.part_sha256.get(p.number as usize - 1);
                p.sha256.is_some() && p.sha256.as_ref() == ours
            })
            .map(|p| RecordPartItem {
                number: i64::from(p.number),
                etag: p.etag,
                size: p.size.into(),
                sha256: p.sha256,
            })
            .collect();
        for batch in found.chunks(1000) {
            api.record(&id, batch.to_vec()).await?;
        }
        missing.retain(|n| !found.iter().any(|p| p.number == i64::from(*n)));
        reconciled = found.iter().map(|p| p.size.as_u64().unwrap_or(0)).sum();
    }
    bar.set_length(size);
    bar.set_position(upload.bytes_done + reconciled);
    bar.set_message(name.clone());

    let window = (opts.concurrency * 2).max(16);
    let sha_of = |n: u32| state.part_sha256.get(n as usize - 1).cloned().unwrap_or_default();
    let signed_parts = stream::iter(missing.chunks(window).map(<[u32]>::to_vec))
        .then(|batch| {
            let numbers: Vec<(u32, String)> = batch.iter().map(|&n| (n, sha_of(n))).collect();
            let api = api.clone();
            let id = id.clone();
            async move { api.sign(&id, &numbers).await }
        })
        .map_ok(|parts| stream::iter(parts.into_iter().map(Ok::<_, CliError>)))
        .try_flatten();
    let uploads = signed_parts
        .map_ok(|signed| {
            let api = api.clone();
            let bar = bar.clone();
            let id = id.clone();
            let abs = abs.clone();
            let sha = sha_of(signed.number);
            let stop = stop.clone();
            let limiter = opts.limit_rate.clone();
            async move {
                let mut signed = signed;
                let offset = PartNumber::new(signed.number)
                    .ok()
                    .and_then(|n| plan.part_range(n))
                    .map(|(offset, _)| offset)
                    .ok_or_else(|| {
                        CliError::Other(format!("the server signed part {}, outside this file", signed.number))
                    })?;
                for attempt in 0..MAX_ATTEMPTS {
                    if stop.load(Ordering::Relaxed) {
                        return Err(CliError::Interrupted);
                    }
                    match send_part(&api.http, &signed, &abs, offset, &bar, &limiter).await {
                        Ok(etag) => {
                            return Ok(RecordPartItem {
                                number: i64::from(signed.number),
                                etag,
                                size: signed.content_length.into(),
                                sha256: Some(sha),
                            })
                        }
                        Err(PartError::Fatal(e)) => return Err(e),
                        Err(PartError::Resign) => {
                            signed = api
                                .sign(&id, &[(signed.number, sha.clone())])
                                .await?
                                .into_iter()
                                .next()
                                .ok_or_else(|| CliError::Other("empty sign answer".into()))?;
                        }
                        Err(PartError::Retry(why)) => {
                            if attempt + 1 == MAX_ATTEMPTS {
                                return Err(CliError::Other(why));
                            }
                            tokio::time::sleep(backoff(attempt)).await;
                        }
                    }
                }
                Err(CliError::Other(format!("part {} kept failing", signed.number)))
            }
        })
        .try_buffer_unordered(opts.concurrency.max(1));
    tokio::pin!(uploads);
    // Completed parts go to a recorder task on a timer, so recording never holds up the
    // sending (the uploads are only driven while this loop polls them) and never waits
    // for a later part to finish: a crash loses at most about a second of parts.
    let (done_tx, done_rx) = tokio::sync::mpsc::unbounded_channel();
    let recorder = tokio::spawn(record_on_a_timer(api.clone(), id.clone(), done_rx));
    let mut parts_sent = 0usize;
    let mut failure: Option<CliError> = None;
    loop {
        let next = tokio::select! {
            n = uploads.next() => n,
            _ = wait_for(stop.clone()) => { failure = Some(CliError::Interrupted); None }
        };
        match next {
            Some(Ok(part)) => {
                parts_sent += 1;
                let _ = done_tx.send(part);
            }
            Some(Err(e)) => {
                failure = Some(e);
                break;
            }
            None => break,
        }
    }
    // Whatever happened, record what S3 accepted so a rerun does not send it again.
    drop(done_tx);
    recorder.await.map_err(|e| CliError::Other(format!("recorder: {e}")))??;
    if let Some(e) = failure {
        return Err(e);
    }
    bar.set_message(format!("completing {name}"));
    let done = api.complete(&id).await?;
    let _ = std::fs::remove_file(&state_path);
    bar.finish_with_message(format!("{name} ✓"));
    Ok(PutResult {
        file: path.display().to_string(),
        id: id.clone(),
        status: done.status,
        size,
        parts_sent,
        resumed,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Records completed parts at least once every [`RECORD_INTERVAL`] while any are waiting
/// (and at once when [`RECORD_EVERY`] are), then whatever is left when the sender is
/// done. A failed record keeps its parts for the next tick; only the last one's failure
/// is an error.
async fn record_on_a_timer(
    api: Api,
    id: String,
    mut done: tokio::sync::mpsc::UnboundedReceiver<RecordPartItem>,
) -> Result<(), CliError> {
    let mut pending: Vec<RecordPartItem> = Vec::new();
    let mut tick = tokio::time::interval(RECORD_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let flush = tokio::select! {
            part = done.recv() => match part {
                Some(part) => {
                    pending.push(part);
                    pending.len() >= RECORD_EVERY
                }
                None => break,
            },
            _ = tick.tick() => !pending.is_empty(),
        };
        // A failed record keeps its parts for the next tick.
        if flush && api.record(&id, pending.clone()).await.is_ok() {
            pending.clear();
        }
    }
    if !pending.is_empty() {
        api.record(&id, pending).await?;
    }
    Ok(())
}

async fn wait_for(stop: Arc<AtomicBool>) {
    while !stop.load(Ordering::Relaxed) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[cfg(test)]
mod tests {
    use api_types::limits::{MIB, S3_MAX_OBJECT_SIZE};

    use super::*;

    #[test]
    fn part_size_rule_matches_the_server() {
        let chosen = |size: u64| part_size_for(size, None).unwrap();
        let five_tib = 5 * 1024 * 1024 * MIB;
        // The rule, spelled out: 16 MiB, grown in whole MiB until the file fits in
        // S3's 10,000 parts...
        for (size, expected) in
            [(0, 16 * MIB), (10 * 1024 * MIB, 16 * MIB), (10_000 * 16 * MIB + 1, 17 * MIB), (five_tib, 525 * MIB)]
        {
            assert_eq!(chosen(size), expected, "size {size}");
            // ...which is the server's own plan, not a copy of it.
            assert_eq!(chosen(size), PartPlan::default_for(ByteSize::new(size).unwrap()).part_size(), "size {size}");
        }
        // --part-size is sent as given: the server says what is wrong with it.
        assert_eq!(part_size_for(five_tib, Some(5 * MIB)).unwrap(), 5 * MIB);
        // A file larger than S3's largest object is refused before hashing it.
        assert!(matches!(part_size_for(S3_MAX_OBJECT_SIZE + 1, None), Err(CliError::Source(_))));
    }

    #[tokio::test]
    async fn hashing_cuts_parts_exactly() {
        let dir = std::env::temp_dir().join(format!("hoist-hash-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("f");
        let data: Vec<u8> = (0..(5 * MIB as usize + 3)).map(|i| (i % 251) as u8).collect();
        std::fs::write(&p, &data).unwrap();
        let (whole, parts) = hash_file(&p, data.len() as u64, 5 * MIB, &ProgressBar::hidden()).await.unwrap();
        assert_eq!(whole, hex::encode(Sha256::digest(&data)));
        assert_eq!(parts.len(), 2);
        let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(Sha256::digest(b));
        assert_eq!(parts[0], b64(&data[..5 * MIB as usize]));
        assert_eq!(parts[1], b64(&data[5 * MIB as usize..]));
        std::fs::write(&p, b"").unwrap();
        let (_, parts) = hash_file(&p, 0, 5 * MIB, &ProgressBar::hidden()).await.unwrap();
        assert_eq!(parts, vec![b64(b"")], "an empty file is one empty part");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
