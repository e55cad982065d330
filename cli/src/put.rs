//! `hoist put`: parts sent straight to S3 in parallel from the first moment, each
//! hashed just before it is signed so its SHA-256 is pinned in its URL, and streamed from
//! disk through a small buffer. With `--sha256` the whole-file SHA-256 is also computed
//! beside the sending and declared at completion (a second SHA-256 pass over the file,
//! which costs throughput wherever the CPU is shared: bench/put_throughput.md). URLs
//! signed just in time, completions recorded on a timer; resumable from a small state
//! file after any interruption.

use std::{
    collections::HashMap,
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
    /// Unix: the file's inode-change time (ctime) when the upload began or was last
    /// checked (absent in state files from before it was kept, and elsewhere).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ctime_ns: Option<i128>,
}

/// The inode-change time (ctime), on filesystems that keep one (ext4, xfs, btrfs, APFS,
/// NFS...). Any write to the file moves it, and unlike the modification time nothing can
/// set it back (`touch -r`, `cp -p` and `rsync -t` restore modification times). It also
/// moves for changes that leave the bytes alone (chmod, a hard link, an xattr), so a
/// moved ctime alone is settled by the bytes themselves ([`held_parts_match`]).
#[cfg(unix)]
fn ctime_ns(meta: &std::fs::Metadata) -> Option<i128> {
    use std::os::unix::fs::MetadataExt;
    Some(i128::from(meta.ctime()) * 1_000_000_000 + i128::from(meta.ctime_nsec()))
}

#[cfg(not(unix))]
fn ctime_ns(_: &std::fs::Metadata) -> Option<i128> {
    None
}

/// How the file compares with the one whose upload began. Without the whole-file hash
/// (`--sha256`), this is what tells that every part was read from one version of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sameness {
    Same,
    /// Size and modification time as before, the inode-change time not: metadata only,
    /// or an edit whose modification time was put back. Only the bytes can tell.
    ChangeTimeOnly,
    Changed,
}

impl State {
    fn compare(&self, meta: &std::fs::Metadata) -> Sameness {
        if self.size != meta.len() || self.mtime_ns != mtime_ns(meta) {
            return Sameness::Changed;
        }
        match (self.ctime_ns, ctime_ns(meta)) {
            (Some(then), Some(now)) if then != now => Sameness::ChangeTimeOnly,
            _ => Sameness::Same, // a state file from before ctime was kept, or none here
        }
    }
}

fn changed_since(path: &Path, upload_id: &str) -> CliError {
    CliError::Source(format!(
        "{} changed since its interrupted upload {upload_id} (its size, modification time or bytes differ); not mixing old and new parts. Run again with --restart to upload it anew.",
        path.display()
    ))
}

/// The state file's format. Version 1 also stored every part's hash and the whole
/// file's (from a hashing pass before sending); such files still resume.
const STATE_VERSION: u32 = 2;

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
    /// Also hash the whole file beside the sending and declare its SHA-256 at
    /// completion, for processing to verify the stored file against. Without it every
    /// byte is still checked by S3 against its part's pinned SHA-256, and processing
    /// records the stored file's SHA-256.
    pub whole_sha256: bool,
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
    /// Where the time went (`--json` shows it; the benchmark reads it).
    pub timings: Timings,
}

/// Time spent per kind of work during one `put`, in milliseconds. Work in parallel
/// adds up: the sums can exceed the wall-clock `seconds`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Timings {
    /// From the start until the first part's first bytes left.
    pub first_byte_ms: f64,
    /// Reading and hashing parts before signing them (summed over parts).
    pub part_hashing_ms: f64,
    /// The whole-file SHA-256, read in order beside the sending.
    pub whole_hash_ms: f64,
    /// Waiting for the whole-file hash after the last part was sent.
    pub whole_hash_wait_ms: f64,
    pub create_ms: f64,
    pub sign_calls: u32,
    pub sign_ms: f64,
    /// PUTs to S3, request start to response (summed over parts).
    pub put_ms: f64,
    pub record_calls: u32,
    pub record_ms: f64,
    pub complete_ms: f64,
}

/// Adds elapsed milliseconds to one of the [`Timings`] from several tasks.
#[derive(Default)]
struct Clock(std::sync::atomic::AtomicU64);

impl Clock {
    fn add(&self, since: Instant) {
        self.0.fetch_add(since.elapsed().as_micros() as u64, Ordering::Relaxed);
    }
    fn ms(&self) -> f64 {
        self.0.load(Ordering::Relaxed) as f64 / 1000.0
    }
}

/// SHA-256 (base64, as S3 shows it) of `len` bytes of the file at `offset`: one part's
/// checksum, computed just before the part is signed. The part is read again to send it
/// (from the page cache): holding it in memory would cost concurrency x part size.
fn hash_part(path: &Path, offset: u64, len: u64) -> std::io::Result<String> {
    use std::io::{Read, Seek};
    let mut f = std::fs::File::open(path)?;
    f.seek(std::io::SeekFrom::Start(offset))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; READ_BUF];
    let mut left = len;
    while left > 0 {
        let n = f.read(&mut buf[..left.min(READ_BUF as u64) as usize])?;
        if n == 0 {
            return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "the file is shorter than it was"));
        }
        h.update(&buf[..n]);
        left -= n as u64;
    }
    Ok(base64::engine::general_purpose::STANDARD.encode(h.finalize()))
}

/// The whole file's SHA-256 (hex), read in order while the parts are sent. Gives up
/// when `cancel` is set (the put failed or was interrupted).
fn hash_whole(path: &Path, size: u64, cancel: &AtomicBool) -> Result<String, CliError> {
    use std::io::Read;
    let mut f = std::fs::File::open(path)?;
    let mut whole = Sha256::new();
    let mut buf = vec![0u8; 1024 * 1024];
    let mut total = 0u64;
    loop {
        if cancel.load(Ordering::Relaxed) {
            return Err(CliError::Interrupted);
        }
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        whole.update(&buf[..n]);
        total += n as u64;
    }
    if total != size {
        return Err(CliError::Source(format!("{} changed while it was being read", path.display())));
    }
    Ok(hex::encode(whole.finalize()))
}

/// Sets its flag when dropped: stops the whole-file hasher whichever way `put` ends.
struct CancelOnDrop(Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// What every part's sending shares.
struct Sender {
    http: reqwest::Client,
    path: PathBuf,
    bar: ProgressBar,
    limiter: Option<Arc<RateLimit>>,
    started: Instant,
    /// Milliseconds from the start to the first bytes that left.
    first_byte_ms: Arc<std::sync::OnceLock<f64>>,
    put: Clock,
}

/// Streams one part from disk to its presigned URL. Returns the ETag.
async fn send_part(ctx: &Sender, signed: &SignedPart, offset: u64) -> Result<String, PartError> {
    let put_started = Instant::now();
    let result = send_part_timed(ctx, signed, offset).await;
    ctx.put.add(put_started);
    result
}

async fn send_part_timed(ctx: &Sender, signed: &SignedPart, offset: u64) -> Result<String, PartError> {
    let (path, bar) = (&ctx.path, &ctx.bar);
    let mut f = tokio::fs::File::open(path).await.map_err(|e| PartError::Fatal(CliError::Io(e)))?;
    f.seek(std::io::SeekFrom::Start(offset)).await.map_err(|e| PartError::Fatal(CliError::Io(e)))?;
    let len = signed.content_length;
    let sent = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counter = sent.clone();
    let progress = bar.clone();
    let limiter = ctx.limiter.clone();
    let (started, first_byte) = (ctx.started, ctx.first_byte_ms.clone());
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
            first_byte.get_or_init(|| started.elapsed().as_secs_f64() * 1000.0);
            counter.fetch_add(chunk.len() as u64, Ordering::Relaxed);
            progress.inc(chunk.len() as u64);
        });
    let mut req =
        ctx.http.put(&signed.url).header(reqwest::header::CONTENT_LENGTH, len).timeout(Duration::from_secs(900));
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
            state = Some(s);
        }
    }
    let mut upload = None;
    // Only the inode-change time moved since the interrupted run: the parts S3 holds are
    // read and compared once the plan is known.
    let mut recheck_held = false;
    if let Some(s) = &state {
        match api.upload(&s.upload_id).await {
            Ok(u) if u.status == "uploading" => {
                match s.compare(&meta) {
                    Sameness::Changed => return Err(changed_since(path, &s.upload_id)),
                    Sameness::ChangeTimeOnly => recheck_held = true,
                    Sameness::Same => {}
                }
                resumed = true;
                upload = Some(u);
            }
            Ok(u) if u.status == "completing" => {
                // Interrupted while completing: every part is in S3 (the run that asked to
                // complete checked the file first), and completing again is idempotent,
                // so nothing is sent again, whatever happened to the file since.
                bar.set_message(format!("completing {name}"));
                let sha256 = if opts.whole_sha256 {
                    let hashed = hash_whole_or_stop(&abs, size, &stop).await?;
                    // Declared only if the file is still the one that was sent.
                    let now = std::fs::metadata(&abs)?;
                    (s.compare(&now) == Sameness::Same).then_some(hashed)
                } else {
                    None
                };
                let done = complete_again(api, &u.id, sha256.as_deref(), &stop).await?;
                let _ = std::fs::remove_file(&state_path);
                warn_if_not_declared(&bar, path, &done, opts.whole_sha256);
                bar.finish_with_message(format!("{name} ✓"));
                return Ok(PutResult::sent_before(path, done.id, done.status, size, started.elapsed().as_secs_f64()));
            }
            Ok(u) if !matches!(u.status.as_str(), "aborted" | "expired") => {
                // Finished before the interruption took effect.
                let _ = std::fs::remove_file(&state_path);
                warn_if_not_declared(&bar, path, &u, opts.whole_sha256);
                return Ok(PutResult::sent_before(path, u.id, u.status, size, 0.0));
            }
            _ => state = None, // aborted, expired or gone: start over
        }
    }
    let timings = Arc::new(PutClocks::default());
    let mut state = match state {
        Some(s) => s,
        None => {
            let part_size = part_size_for(size, opts.part_size)?;
            let content_type = opts.content_type.clone().unwrap_or_else(|| guess_content_type(&abs).to_owned());
            let t = Instant::now();
            let u = api.create(&name, size, &content_type, part_size).await?;
            timings.create.add(t);
            let s = State {
                version: STATE_VERSION,
                path: abs.clone(),
                upload_id: u.id.clone(),
                size,
                mtime_ns: mtime_ns(&meta),
                part_size,
                ctime_ns: ctime_ns(&meta),
            };
            save_state(&state_path, &s)?;
            upload = Some(u);
            s
        }
    };
    let upload = upload.ok_or_else(|| CliError::Other("no upload".into()))?;
    let id = state.upload_id.clone();
    // `--sha256`: the whole-file SHA-256, beside the sending (declared at completion).
    let cancel_hashing = Arc::new(AtomicBool::new(false));
    let _cancel_on_drop = CancelOnDrop(cancel_hashing.clone());
    let whole_hash = opts.whole_sha256.then(|| {
        let (abs, cancel, clocks) = (abs.clone(), cancel_hashing.clone(), timings.clone());
        tokio::task::spawn_blocking(move || {
            let t = Instant::now();
            let r = hash_whole(&abs, size, &cancel);
            clocks.whole_hash.add(t);
            r
        })
    });
    let mut missing: Vec<u32> = expand(&upload.missing_parts).collect();
    // The plan the server accepted for this upload: where each part starts in the file.
    let plan = ByteSize::new(state.size)
        .and_then(|size| PartPlan::new(size, Some(state.part_size), state.part_size))
        .map_err(|e| CliError::Source(e.to_string()))?;
    let range_of = move |n: u32| {
        PartNumber::new(n).ok().and_then(|p| plan.part_range(p)).ok_or_else(|| {
            CliError::Other(format!("part {n} is outside this file's plan (the server sent an unknown part)"))
        })
    };
    let hash_of = {
        let (abs, timings) = (abs.clone(), timings.clone());
        move |n: u32| {
            let abs = abs.clone();
            let clocks = timings.clone();
            async move {
                let (offset, len) = range_of(n)?;
                let file = abs.clone();
                let hashed = tokio::task::spawn_blocking(move || {
                    let t = Instant::now();
                    let r = hash_part(&file, offset, len);
                    clocks.part_hashing.add(t);
                    r
                });
                let sha = hashed.await.map_err(|e| CliError::Other(format!("hashing part {n}: {e}")))?.map_err(|e| {
                    CliError::Source(format!(
                        "{}: part {n} could not be read ({e}); if the file changed, run again with --restart to upload it anew.",
                        abs.display()
                    ))
                })?;
                Ok::<_, CliError>((n, sha))
            }
        }
    };
    // Hashes of the parts S3 holds, when the recheck has just read them all.
    let mut rehashed = HashMap::new();
    if recheck_held {
        bar.set_message(format!("checking {name}"));
        rehashed = held_parts_match(api, &id, &hash_of, &stop).await?.ok_or_else(|| changed_since(path, &id))?;
        // Its bytes are the ones S3 holds: go on, with the file as it is now.
        state.ctime_ns = ctime_ns(&meta);
        save_state(&state_path, &state)?;
    }
    let mut reconciled = 0u64;
    if resumed && !missing.is_empty() {
        // Parts S3 finished whose answer never reached us (the crash came first): S3
        // checked them against the SHA-256 pinned in their URLs; if the file's part still
        // has that hash, recording it is enough.
        let held = api.held_parts(&id).await?;
        let mut found: Vec<RecordPartItem> = Vec::new();
        for p in held.parts {
            let planned = range_of(p.number).ok().map(|(_, len)| len);
            if !missing.contains(&p.number) || planned != Some(p.size) || p.sha256.is_none() {
                continue;
            }
            if stop.load(Ordering::Relaxed) {
                return Err(CliError::Interrupted);
            }
            let ours = match rehashed.remove(&p.number) {
                Some(ours) => ours,
                None => hash_of(p.number).await?.1,
            };
            if p.sha256.as_ref() == Some(&ours) {
                found.push(RecordPartItem {
                    number: i64::from(p.number),
                    etag: p.etag,
                    size: p.size.into(),
                    sha256: Some(ours),
                });
            }
        }
        for batch in found.chunks(1000) {
            api.record(&id, batch.to_vec()).await?;
        }
        missing.retain(|n| !found.iter().any(|p| p.number == i64::from(*n)));
        reconciled = found.iter().map(|p| p.size.as_u64().unwrap_or(0)).sum();
    }
    bar.set_length(size);
    bar.set_position(upload.bytes_done + reconciled);
    bar.set_message(name.clone());

    // Parts are hashed and signed ahead of the sending by their own task (up to
    // `concurrency` parts), in batches of whatever is hashed: the first URL is asked for
    // as soon as the first part is hashed, and no PUT waits for a signing round trip.
    let concurrency = opts.concurrency.max(1);
    let window = (concurrency * 2).max(16);
    let (signed_tx, signed_rx) = tokio::sync::mpsc::channel(concurrency);
    let producer = tokio::spawn({
        let (api, id, clocks, hash_of) = (api.clone(), id.clone(), timings.clone(), hash_of.clone());
        async move {
            let mut batches = stream::iter(missing).map(hash_of).buffered(concurrency).ready_chunks(window);
            while let Some(batch) = batches.next().await {
                let signed = sign_batch(&api, &id, batch, &clocks).await;
                let failed = signed.is_err();
                for part in signed.map_or_else(|e| vec![Err(e)], |parts| parts.into_iter().map(Ok).collect()) {
                    // The sending side is gone (it failed or was interrupted): stop.
                    if signed_tx.send(part).await.is_err() {
                        return;
                    }
                }
                if failed {
                    return;
                }
            }
        }
    });
    let signed_parts = stream::unfold(signed_rx, |mut rx| async move { rx.recv().await.map(|part| (part, rx)) });
    let sender = Arc::new(Sender {
        http: api.http.clone(),
        path: abs.clone(),
        bar: bar.clone(),
        limiter: opts.limit_rate.clone(),
        started,
        first_byte_ms: Arc::new(std::sync::OnceLock::new()),
        put: Clock::default(),
    });
    let uploads = signed_parts
        .map_ok(|(signed, sha)| {
            let api = api.clone();
            let id = id.clone();
            let stop = stop.clone();
            let sender = sender.clone();
            let clocks = timings.clone();
            async move {
                let mut signed = signed;
                let (offset, _) = range_of(signed.number)?;
                for attempt in 0..MAX_ATTEMPTS {
                    if stop.load(Ordering::Relaxed) {
                        return Err(CliError::Interrupted);
                    }
                    match send_part(&sender, &signed, offset).await {
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
                            let t = Instant::now();
                            signed = api
                                .sign(&id, &[(signed.number, sha.clone())])
                                .await?
                                .into_iter()
                                .next()
                                .ok_or_else(|| CliError::Other("empty sign answer".into()))?;
                            clocks.sign.add(t);
                            clocks.sign_calls.fetch_add(1, Ordering::Relaxed);
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
        .try_buffer_unordered(concurrency);
    tokio::pin!(uploads);
    // Completed parts go to a recorder task on a timer, so recording never holds up the
    // sending (the uploads are only driven while this loop polls them) and never waits
    // for a later part to finish: a crash loses at most about a second of parts.
    let (done_tx, done_rx) = tokio::sync::mpsc::unbounded_channel();
    let recorder = tokio::spawn(record_on_a_timer(api.clone(), id.clone(), done_rx, timings.clone()));
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
    // The sending ended because the signing task closed its channel: make sure it ended
    // by running out of parts, not by a panic (the completion would then only say which
    // parts are missing).
    producer.await.map_err(|e| CliError::Other(format!("signing parts: {e}")))?;
    let t = Instant::now();
    let (sha256, whole_hash_wait) = match whole_hash {
        Some(hashing) => {
            bar.set_message(format!("hashing {name}"));
            // A Ctrl-C while the whole-file hash catches up stops here, before completing.
            (Some(whole_hash_or_stop(hashing, &stop).await?), t.elapsed())
        }
        None => (None, Duration::ZERO),
    };
    // The parts S3 holds were each checked against what was read, part by part, at
    // different moments (and the whole-file hash, if any, read it separately): the file
    // must not have changed since the upload began, or its parts may mix two versions.
    let unchanged = match state.compare(&std::fs::metadata(&abs)?) {
        Sameness::Same => true,
        Sameness::ChangeTimeOnly => {
            bar.set_message(format!("checking {name}"));
            held_parts_match(api, &id, &hash_of, &stop).await?.is_some()
        }
        Sameness::Changed => false,
    };
    if !unchanged {
        return Err(CliError::Source(format!(
            "{} changed while it was being sent; not completing upload {id}. Run again with --restart to upload it anew.",
            path.display()
        )));
    }
    if stop.load(Ordering::Relaxed) {
        return Err(CliError::Interrupted);
    }
    bar.set_message(format!("completing {name}"));
    let t = Instant::now();
    let done = api.complete(&id, sha256.as_deref()).await?;
    let complete_ms = t.elapsed().as_secs_f64() * 1000.0;
    if let Some(sha256) = sha256.filter(|declared| done.sha256.as_ref() != Some(declared)) {
        // A server from before hashes were declared at completion ignores the body.
        bar.suspend(|| {
            eprintln!(
                "hoist: warning: {}: the server did not record the whole-file SHA-256 {sha256}; each part was still verified by S3, but the whole file will not be.",
                path.display()
            )
        });
    }
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
        timings: Timings {
            first_byte_ms: sender.first_byte_ms.get().copied().unwrap_or(0.0),
            part_hashing_ms: timings.part_hashing.ms(),
            whole_hash_ms: timings.whole_hash.ms(),
            whole_hash_wait_ms: whole_hash_wait.as_secs_f64() * 1000.0,
            create_ms: timings.create.ms(),
            sign_calls: timings.sign_calls.load(Ordering::Relaxed),
            sign_ms: timings.sign.ms(),
            put_ms: sender.put.ms(),
            record_calls: timings.record_calls.load(Ordering::Relaxed),
            record_ms: timings.record.ms(),
            complete_ms,
        },
    })
}

/// Whether every part S3 holds for the upload still has the file's bytes: each read and
/// hashed again, and compared with the SHA-256 S3 checked it against. Asked when only the
/// file's inode-change time moved, which metadata alone can do. The hashes by part
/// number if all match, so they need not be read again.
async fn held_parts_match<F, Fut>(
    api: &Api,
    id: &str,
    hash_of: &F,
    stop: &AtomicBool,
) -> Result<Option<HashMap<u32, String>>, CliError>
where
    F: Fn(u32) -> Fut,
    Fut: std::future::Future<Output = Result<(u32, String), CliError>>,
{
    let mut hashes = HashMap::new();
    for p in api.held_parts(id).await?.parts {
        if stop.load(Ordering::Relaxed) {
            return Err(CliError::Interrupted);
        }
        let (_, ours) = hash_of(p.number).await?;
        if p.sha256.as_deref() != Some(ours.as_str()) {
            return Ok(None);
        }
        hashes.insert(p.number, ours);
    }
    Ok(Some(hashes))
}

/// The whole file's SHA-256, read now; Ctrl-C stops it.
async fn hash_whole_or_stop(abs: &Path, size: u64, stop: &Arc<AtomicBool>) -> Result<String, CliError> {
    let (abs, cancel) = (abs.to_owned(), Arc::new(AtomicBool::new(false)));
    let _cancel_on_drop = CancelOnDrop(cancel.clone());
    whole_hash_or_stop(tokio::task::spawn_blocking(move || hash_whole(&abs, size, &cancel)), stop).await
}

/// Waits for a whole-file hash being read, or for Ctrl-C.
async fn whole_hash_or_stop(
    hashing: tokio::task::JoinHandle<Result<String, CliError>>,
    stop: &Arc<AtomicBool>,
) -> Result<String, CliError> {
    tokio::select! {
        hashed = hashing => hashed.map_err(|e| CliError::Other(format!("hashing: {e}")))?,
        _ = wait_for(stop.clone()) => Err(CliError::Interrupted),
    }
}

/// Completes an upload an earlier run left `completing`. A completion still running
/// elsewhere holds the server's lease (up to two minutes) and makes this answer 409:
/// wait until it has finished, or its lease has lapsed and this one can take over.
async fn complete_again(
    api: &Api,
    id: &str,
    sha256: Option<&str>,
    stop: &Arc<AtomicBool>,
) -> Result<api_types::uploads::UploadView, CliError> {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        match api.complete(id, sha256).await {
            Err(CliError::Api { status: 409, .. }) if Instant::now() < deadline => {
                let u = api.upload(id).await?;
                match u.status.as_str() {
                    "completing" => {}
                    // The other completion failed and gave the upload back: a rerun resumes it.
                    "uploading" => {
                        return Err(CliError::Other(format!(
                            "upload {id} could not be completed by the interrupted run; run the same command again to resume it."
                        )))
                    }
                    _ => return Ok(u), // finished meanwhile (by the other completion)
                }
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(3)) => {}
                    _ = wait_for(stop.clone()) => return Err(CliError::Interrupted),
                }
            }
            other => return other,
        }
    }
}

/// `--sha256` asked for a whole-file hash that the finished upload does not have.
fn warn_if_not_declared(bar: &ProgressBar, path: &Path, u: &api_types::uploads::UploadView, asked: bool) {
    if asked && u.sha256.is_none() {
        bar.suspend(|| {
            eprintln!(
                "hoist: warning: {}: upload {} was completed without a whole-file SHA-256 (by an earlier run, or the file changed since), so --sha256 declared none; each part was still verified by S3, and processing records the stored file's SHA-256.",
                path.display(),
                u.id
            )
        });
    }
}

impl PutResult {
    /// A resumed upload whose parts had all been sent by an earlier run.
    fn sent_before(path: &Path, id: String, status: String, size: u64, seconds: f64) -> Self {
        Self {
            file: path.display().to_string(),
            id,
            status,
            size,
            parts_sent: 0,
            resumed: true,
            seconds,
            timings: Timings::default(),
        }
    }
}

/// Signs a batch of hashed parts; each signed URL with the SHA-256 pinned in it.
async fn sign_batch(
    api: &Api,
    id: &str,
    batch: Vec<Result<(u32, String), CliError>>,
    clocks: &PutClocks,
) -> Result<Vec<(SignedPart, String)>, CliError> {
    let numbers = batch.into_iter().collect::<Result<Vec<(u32, String)>, CliError>>()?;
    let t = Instant::now();
    let signed = api.sign(id, &numbers).await?;
    clocks.sign.add(t);
    clocks.sign_calls.fetch_add(1, Ordering::Relaxed);
    signed
        .into_iter()
        .map(|part| match numbers.iter().find(|(n, _)| *n == part.number) {
            Some((_, sha)) => Ok((part, sha.clone())),
            None => Err(CliError::Other(format!("the server signed part {}, which was not asked for", part.number))),
        })
        .collect()
}

/// The clocks several tasks of one `put` add to.
#[derive(Default)]
struct PutClocks {
    create: Clock,
    part_hashing: Clock,
    whole_hash: Clock,
    sign: Clock,
    sign_calls: std::sync::atomic::AtomicU32,
    record: Clock,
    record_calls: std::sync::atomic::AtomicU32,
}

/// Records completed parts at least once every [`RECORD_INTERVAL`] while any are waiting
/// (and at once when [`RECORD_EVERY`] are), then whatever is left when the sender is
/// done. A failed record keeps its parts for the next tick; only the last one's failure
/// is an error.
async fn record_on_a_timer(
    api: Api,
    id: String,
    mut done: tokio::sync::mpsc::UnboundedReceiver<RecordPartItem>,
    clocks: Arc<PutClocks>,
) -> Result<(), CliError> {
    let record = |parts: Vec<RecordPartItem>| {
        let (api, id, clocks) = (&api, &id, &clocks);
        async move {
            let t = Instant::now();
            let r = api.record(id, parts).await;
            clocks.record.add(t);
            clocks.record_calls.fetch_add(1, Ordering::Relaxed);
            r
        }
    };
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
        if flush && record(pending.clone()).await.is_ok() {
            pending.clear();
        }
    }
    if !pending.is_empty() {
        record(pending).await?;
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

    /// An edit that keeps the size and puts the modification time back (`touch -r`,
    /// `cp -p`) is still seen, by the inode-change time; a state file from before the
    /// stamp was kept still resumes an unchanged file.
    #[cfg(unix)]
    #[test]
    fn an_edit_with_its_modification_time_put_back_is_still_a_change() {
        let path = std::env::temp_dir().join(format!("hoist-same-file-{}", std::process::id()));
        std::fs::write(&path, b"version one").unwrap();
        let meta = std::fs::metadata(&path).unwrap();
        let state = State {
            version: STATE_VERSION,
            path: path.clone(),
            upload_id: "u".into(),
            size: meta.len(),
            mtime_ns: mtime_ns(&meta),
            part_size: 5 * 1024 * 1024,
            ctime_ns: ctime_ns(&meta),
        };
        assert_eq!(state.compare(&std::fs::metadata(&path).unwrap()), Sameness::Same);
        let old_format = State { ctime_ns: None, ..state.clone() };
        std::thread::sleep(Duration::from_millis(20)); // a ctime tick on coarse clocks
        let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        std::io::Write::write_all(&mut &f, b"version two").unwrap();
        f.set_modified(meta.modified().unwrap()).unwrap();
        drop(f);
        let now = std::fs::metadata(&path).unwrap();
        assert_eq!((now.len(), mtime_ns(&now)), (state.size, state.mtime_ns), "size and mtime as before");
        assert_eq!(state.compare(&now), Sameness::ChangeTimeOnly, "the inode-change time gives the edit away");
        assert_eq!(old_format.compare(&now), Sameness::Same, "without it only size and mtime can be compared");
        std::fs::write(&path, b"version three, longer").unwrap();
        assert_eq!(state.compare(&std::fs::metadata(&path).unwrap()), Sameness::Changed);
        std::fs::remove_file(&path).ok();
    }

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

    #[test]
    fn parts_and_the_whole_file_hash_exactly_what_s3_and_the_server_will_check() {
        let dir = std::env::temp_dir().join(format!("hoist-hash-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("f");
        let data: Vec<u8> = (0..(5 * MIB as usize + 3)).map(|i| (i % 251) as u8).collect();
        std::fs::write(&p, &data).unwrap();
        let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(Sha256::digest(b));
        let never = AtomicBool::new(false);
        assert_eq!(hash_whole(&p, data.len() as u64, &never).unwrap(), hex::encode(Sha256::digest(&data)));
        assert_eq!(hash_part(&p, 0, 5 * MIB).unwrap(), b64(&data[..5 * MIB as usize]));
        assert_eq!(hash_part(&p, 5 * MIB, 3).unwrap(), b64(&data[5 * MIB as usize..]));
        assert_eq!(hash_part(&p, 7, 0).unwrap(), b64(b""), "an empty file is one empty part");
        // A file shorter than planned is an error, never a hash of fewer bytes.
        assert!(hash_part(&p, 5 * MIB, 4).is_err());
        assert!(matches!(hash_whole(&p, data.len() as u64 + 1, &never), Err(CliError::Source(_))));
        assert!(matches!(hash_whole(&p, data.len() as u64, &AtomicBool::new(true)), Err(CliError::Interrupted)));
        std::fs::remove_dir_all(dir).unwrap();
    }
}
