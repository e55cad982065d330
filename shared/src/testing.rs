//! In-memory ports for millisecond unit tests (feature `testing`), with fault injection:
//! any port method can be made to fail, or to crash the calling task, on its Nth call.
//!
//! The fakes keep the adapters' contracts: the repository applies the same
//! [`Transition`]s (decided by [`Transition::allowed`], the state machine's one copy),
//! moves quota in the same step as the status, and answers `false` when a condition
//! fails; the object store refuses to overwrite on completion, checks part ETags and the
//! assembled size, and reads only when the ETag still matches. Every call is logged by
//! name (`repo.get`, `s3.complete`, `queue.send`...), which is how a test learns which
//! AWS actions a handler needs.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use sha2::{Digest, Sha256};

use crate::config::{Config, ContentTypePolicy, ProcessConfig, DEFAULT_ALLOWED_TYPES};
use crate::domain::{
    catalog_sort_key, CatalogPosition, ETag, FilePage, HashProgress, Owner, PartNumber, PartRecord, ProcessJob,
    ProcessingOutcome, Quota, QuotaLimits, Transition, Upload, UploadId, UploadStatus, WindowFinding, WindowJob, GIB,
    MIB, TIB,
};
use crate::ports::{
    ByteStream, CompleteOutcome, CreateError, JobQueue, ObjectInfo, ObjectStore, ObjectStoreError, PartToSign,
    PresignedPart, PresignedPost, QueueError, Redrive, RepoError, ScanSession, Scanner, ScannerError, StoredPart,
    UploadRepo,
};
use crate::processing::{Processor, ScanReply, UnscannedPolicy};
use crate::App;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

// ---------------------------------------------------------------- faults

/// What happens on a planned call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The call fails (the caller sees an error and may clean up).
    Fail,
    /// The calling task dies right there, before the call has any effect (a Lambda
    /// timing out or crashing): nothing after it runs, no cleanup.
    Crash,
}

/// A shared plan of faults and a log of every port call, by name.
/// A planned fault: the method, the call number it strikes at, and what it does.
type Planned = (&'static str, u32, Fault);

#[derive(Clone, Default)]
pub struct Faults {
    planned: Arc<Mutex<Vec<Planned>>>,
    /// Calls per method since the start (never cleared: faults are planned against it).
    counts: Arc<Mutex<HashMap<&'static str, u32>>>,
    /// Calls in order, since the last `clear_log`.
    calls: Arc<Mutex<Vec<&'static str>>>,
}

impl Faults {
    /// The `nth` call (1-based, counted from now) of `method` fails or crashes.
    pub fn on(&self, method: &'static str, nth: u32, fault: Fault) {
        let already = self.count(method);
        lock(&self.planned).push((method, already + nth, fault));
    }

    /// How many times `method` was called so far.
    pub fn count(&self, method: &str) -> u32 {
        lock(&self.counts).get(method).copied().unwrap_or(0)
    }

    /// Every call since the last `clear_log`, in order.
    pub fn log(&self) -> Vec<&'static str> {
        lock(&self.calls).clone()
    }

    /// Forgets the log (not the plan).
    pub fn clear_log(&self) {
        lock(&self.calls).clear();
    }

    /// A port call: yields first (so concurrent callers interleave at every call, as
    /// they do over a network), then [`Self::enter`].
    async fn step(&self, method: &'static str) -> Result<(), String> {
        tokio::task::yield_now().await;
        self.enter(method)
    }

    /// Records a call; answers the error to return, or panics for a crash.
    fn enter(&self, method: &'static str) -> Result<(), String> {
        lock(&self.calls).push(method);
        let n = {
            let mut counts = lock(&self.counts);
            let n = counts.entry(method).or_insert(0);
            *n += 1;
            *n
        };
        let fault = lock(&self.planned).iter().find(|(m, at, _)| *m == method && *at == n).map(|(_, _, f)| *f);
        match fault {
            None => Ok(()),
            Some(Fault::Fail) => Err(format!("{method} call {n}")),
            Some(Fault::Crash) => panic!("injected crash in {method} (call {n})"),
        }
    }
}

// ---------------------------------------------------------------- the repository

#[derive(Default)]
struct RepoState {
    uploads: HashMap<UploadId, Upload>,
    parts: HashMap<UploadId, BTreeMap<u32, PartRecord>>,
    quotas: HashMap<Owner, Quota>,
    /// Requests counted per owner and minute.
    requests: HashMap<(Owner, i64), u32>,
    /// The catalog's sort key, set when the object exists.
    catalog: HashMap<UploadId, String>,
    /// Windows recorded as scanned, per upload.
    windows: HashMap<UploadId, std::collections::BTreeSet<u32>>,
}

/// [`UploadRepo`] in memory.
#[derive(Default)]
pub struct MemoryRepo {
    state: Mutex<RepoState>,
    faults: Faults,
}

impl MemoryRepo {
    pub fn new(faults: Faults) -> Self {
        Self { state: Mutex::default(), faults }
    }

    async fn enter(&self, method: &'static str) -> Result<(), RepoError> {
        self.faults.step(method).await.map_err(RepoError::Injected)
    }

    /// Applies `t` to the stored upload when the state machine allows it; `effect` writes
    /// the rest. Answers whether it was applied.
    fn apply(&self, id: &UploadId, t: Transition, now: i64, effect: impl FnOnce(&mut RepoState, &mut Upload)) -> bool {
        let mut s = lock(&self.state);
        let Some(mut u) = s.uploads.get(id).cloned() else { return false };
        if !t.allowed(u.status, u.lease_until, now) {
            return false;
        }
        u.status = t.to();
        u.updated_at = now;
        effect(&mut s, &mut u);
        s.uploads.insert(id.clone(), u);
        true
    }

    /// The owner's quota, as a test sees it.
    pub fn quota_of(&self, owner: &Owner) -> Quota {
        lock(&self.state).quotas.get(owner).copied().unwrap_or_default()
    }

    /// Overwrites a stored upload (to stage a scenario, e.g. a lease that ran out).
    pub fn put_upload(&self, u: Upload) {
        lock(&self.state).uploads.insert(u.id.clone(), u);
    }

    pub fn upload(&self, id: &UploadId) -> Option<Upload> {
        lock(&self.state).uploads.get(id).cloned()
    }

    fn release_quota(s: &mut RepoState, u: &Upload) {
        let q = s.quotas.entry(u.owner.clone()).or_default();
        q.open_uploads = q.open_uploads.saturating_sub(1);
        q.bytes_in_flight = q.bytes_in_flight.saturating_sub(u.reserved_bytes());
    }

    fn store_bytes(s: &mut RepoState, owner: &Owner, bytes: u64) {
        let q = s.quotas.entry(owner.clone()).or_default();
        q.bytes_stored += bytes;
    }

    /// Up to `limit` uploads in the janitor's index (purges or not) due at `now`.
    fn due_in(&self, purges: bool, now: i64, limit: u32) -> Vec<Upload> {
        let s = lock(&self.state);
        let due =
            s.uploads.values().filter(|u| matches!(Self::janitor_due(u), Some((p, at)) if p == purges && at <= now));
        due.take(limit as usize).cloned().collect()
    }

    /// Where the janitor's index files an upload (and when it is due), as the adapter does.
    fn janitor_due(u: &Upload) -> Option<(bool, i64)> {
        if let (Some(_), Some(p)) = (u.deleted_at, u.purge_at) {
            return Some((true, p));
        }
        match u.status {
            UploadStatus::Uploading => Some((false, u.expires_at)),
            UploadStatus::Completing => u.lease_until.map(|l| (false, l)),
            // Processing, or decided but not yet taken out of the watch.
            _ => u.stall_check_at.map(|at| (false, at)),
        }
    }
}

#[async_trait]
impl UploadRepo for MemoryRepo {
    async fn quota(&self, owner: &Owner) -> Result<Quota, RepoError> {
        self.enter("repo.quota").await?;
        Ok(self.quota_of(owner))
    }

    async fn create(&self, upload: &Upload, limits: QuotaLimits) -> Result<(), CreateError> {
        self.enter("repo.create").await?;
        let mut s = lock(&self.state);
        if s.uploads.contains_key(&upload.id) {
            return Err(CreateError::Repo(RepoError::Corrupt("duplicate upload id".into())));
        }
        let known = s.quotas.contains_key(&upload.owner);
        let q = s.quotas.entry(upload.owner.clone()).or_default();
        // As the adapter's condition: an owner's first upload is always admitted.
        if known && !limits.admits(*q, upload.reserved_bytes()) {
            return Err(CreateError::QuotaExceeded);
        }
        q.open_uploads += 1;
        q.bytes_in_flight += upload.reserved_bytes();
        s.uploads.insert(upload.id.clone(), upload.clone());
        Ok(())
    }

    async fn get(&self, id: &UploadId) -> Result<Option<Upload>, RepoError> {
        self.enter("repo.get").await?;
        Ok(self.upload(id))
    }

    async fn put_parts(
        &self,
        id: &UploadId,
        parts: &[PartRecord],
        _forget_at: i64,
        _now: i64,
    ) -> Result<(), RepoError> {
        self.enter("repo.put_parts").await?;
        let mut s = lock(&self.state);
        let stored = s.parts.entry(id.clone()).or_default();
        for p in parts {
            stored.insert(p.number, p.clone());
        }
        Ok(())
    }

    async fn parts(&self, id: &UploadId) -> Result<Vec<PartRecord>, RepoError> {
        self.enter("repo.parts").await?;
        Ok(lock(&self.state).parts.get(id).map(|m| m.values().cloned().collect()).unwrap_or_default())
    }

    async fn begin_completion(&self, id: &UploadId, now: i64, lease: Duration) -> Result<bool, RepoError> {
        self.enter("repo.begin_completion").await?;
        Ok(self.apply(id, Transition::BeginCompletion, now, |_, u| u.lease_until = Some(now + lease.as_secs() as i64)))
    }

    async fn release_completion(&self, upload: &Upload, now: i64) -> Result<bool, RepoError> {
        self.enter("repo.release_completion").await?;
        Ok(self.apply(&upload.id, Transition::ReleaseCompletion, now, |_, u| u.lease_until = None))
    }

    async fn finish_completion(&self, upload: &Upload, object: &ObjectInfo, now: i64) -> Result<bool, RepoError> {
        self.enter("repo.finish_completion").await?;
        Ok(self.apply(&upload.id, Transition::FinishCompletion, now, |s, u| {
            // Quota is released against what the caller reserved, in the same step, and
            // the file's bytes are now stored.
            Self::release_quota(s, upload);
            Self::store_bytes(s, &upload.owner, upload.size);
            u.etag = Some(object.etag.clone());
            u.version_id = object.version.clone();
            u.sha256 = upload.sha256;
            u.size = upload.size;
            u.completed_at = Some(now);
            u.lease_until = None;
            u.stall_check_at = upload.stall_check_at;
            s.catalog.insert(u.id.clone(), catalog_sort_key(now * 1000, &u.id));
        }))
    }

    async fn close_open(
        &self,
        upload: &Upload,
        to: UploadStatus,
        reason: &str,
        _forget_at: i64,
        now: i64,
    ) -> Result<bool, RepoError> {
        self.enter("repo.close_open").await?;
        Ok(self.apply(&upload.id, Transition::Close(to), now, |s, u| {
            Self::release_quota(s, upload);
            u.reason = Some(reason.to_owned());
            u.lease_until = None;
        }))
    }

    async fn finish_processing(&self, id: &UploadId, o: &ProcessingOutcome, now: i64) -> Result<bool, RepoError> {
        self.enter("repo.finish_processing").await?;
        Ok(self.apply(id, Transition::FinishProcessing(o.status), now, |_, u| {
            u.reason = Some(o.reason.clone());
            u.processed_at = Some(now);
            u.detected_type = o.detected_type.clone().or(u.detected_type.take());
            u.content_sha256 = o.content_sha256.clone().or(u.content_sha256.take());
            u.thumbnail_key = o.thumbnail_key.clone().or(u.thumbnail_key.take());
            u.width = o.width.or(u.width);
            u.height = o.height.or(u.height);
        }))
    }

    async fn list_files(
        &self,
        owner: &Owner,
        limit: u32,
        start: Option<CatalogPosition>,
        status: Option<UploadStatus>,
        include_deleted: bool,
    ) -> Result<FilePage, RepoError> {
        self.enter("repo.list_files").await?;
        let s = lock(&self.state);
        let mut files: Vec<(String, Upload)> = s
            .uploads
            .values()
            .filter(|u| &u.owner == owner)
            .filter_map(|u| s.catalog.get(&u.id).map(|k| (k.clone(), u.clone())))
            .filter(|(k, _)| start.as_ref().is_none_or(|p| *k < p.sort_key))
            .collect();
        files.sort_by(|a, b| b.0.cmp(&a.0));
        // As DynamoDB: the limit counts items read, the filter applies after it.
        let more = files.len() > limit as usize;
        files.truncate(limit as usize);
        let next = more.then(|| files.last().map(|(k, u)| CatalogPosition { sort_key: k.clone(), id: u.id.clone() }));
        let items = files
            .into_iter()
            .map(|(_, u)| u)
            .filter(|u| status.is_none_or(|st| u.status == st) && (include_deleted || u.deleted_at.is_none()))
            .collect();
        Ok(FilePage { items, next: next.flatten() })
    }

    async fn soft_delete(&self, upload: &Upload, now: i64, purge_at: i64) -> Result<bool, RepoError> {
        self.enter("repo.soft_delete").await?;
        let mut s = lock(&self.state);
        match s.uploads.get_mut(&upload.id) {
            Some(u) if u.deleted_at.is_none() => {
                u.deleted_at = Some(now);
                u.purge_at = Some(purge_at);
                u.link_generation = Some(u.link_generation.unwrap_or(0) + 1);
                u.updated_at = now;
            }
            _ => return Ok(false),
        }
        let q = s.quotas.entry(upload.owner.clone()).or_default();
        q.bytes_stored = q.bytes_stored.saturating_sub(upload.size);
        Ok(true)
    }

    async fn count_signings(&self, id: &UploadId, n: u64) -> Result<u64, RepoError> {
        self.enter("repo.count_signings").await?;
        let mut s = lock(&self.state);
        let u = s.uploads.get_mut(id).ok_or_else(|| RepoError::Corrupt(format!("no upload {id}")))?;
        let total = u.signings.unwrap_or(0) + n;
        u.signings = Some(total);
        Ok(total)
    }

    async fn count_request(&self, owner: &Owner, window: i64, limit: u32) -> Result<bool, RepoError> {
        self.enter("repo.count_request").await?;
        let mut s = lock(&self.state);
        let n = s.requests.entry((owner.clone(), window)).or_default();
        if *n >= limit {
            return Ok(false);
        }
        *n += 1;
        Ok(true)
    }

    async fn list_open(&self, owner: &Owner, limit: u32) -> Result<Vec<Upload>, RepoError> {
        self.enter("repo.list_open").await?;
        let s = lock(&self.state);
        let mut open: Vec<Upload> = s
            .uploads
            .values()
            .filter(|u| &u.owner == owner && matches!(u.status, UploadStatus::Uploading | UploadStatus::Completing))
            .cloned()
            .collect();
        open.sort_by(|a, b| (b.created_at, b.id.as_str()).cmp(&(a.created_at, a.id.as_str())));
        open.truncate(limit as usize);
        Ok(open)
    }

    async fn restore(&self, upload: &Upload, now: i64, limits: QuotaLimits) -> Result<bool, RepoError> {
        self.enter("repo.restore").await?;
        let mut s = lock(&self.state);
        let quota = s.quotas.get(&upload.owner).copied().unwrap_or_default();
        if !limits.has_room(quota, upload.size) {
            return Ok(false);
        }
        match s.uploads.get_mut(&upload.id) {
            Some(u) if u.deleted_at.is_some() && u.purge_at.is_some_and(|p| p > now) => {
                u.deleted_at = None;
                u.purge_at = None;
                u.updated_at = now;
                // As DynamoDB: the index entry (the purge's) goes with the delete.
                u.stall_check_at = None;
            }
            _ => return Ok(false),
        }
        Self::store_bytes(&mut s, &upload.owner, upload.size);
        Ok(true)
    }

    async fn due(&self, now: i64, limit: u32) -> Result<Vec<Upload>, RepoError> {
        self.enter("repo.due").await?;
        Ok(self.due_in(false, now, limit))
    }

    async fn due_purges(&self, now: i64, limit: u32) -> Result<Vec<Upload>, RepoError> {
        self.enter("repo.due_purges").await?;
        Ok(self.due_in(true, now, limit))
    }

    async fn delete_upload(&self, id: &UploadId) -> Result<(), RepoError> {
        self.enter("repo.delete_upload").await?;
        let mut s = lock(&self.state);
        s.uploads.remove(id);
        s.parts.remove(id);
        s.catalog.remove(id);
        s.windows.remove(id);
        Ok(())
    }

    async fn start_windows(&self, id: &UploadId, total: u32, window_bytes: u64, now: i64) -> Result<bool, RepoError> {
        self.enter("repo.start_windows").await?;
        let mut s = lock(&self.state);
        match s.uploads.get_mut(id) {
            Some(u) if u.status == UploadStatus::Processing && u.windows_total.is_none() => {
                u.windows_total = Some(total);
                u.window_bytes = Some(window_bytes);
                u.windows_done = Some(0);
                u.hash_next = Some(0);
                u.hash_state = Some(crate::processing::chained_sha256::ChainState::default().encode());
                u.updated_at = now;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn refused_write(&self, id: &UploadId, n: u32, now: i64) -> Result<(), RepoError> {
        self.enter("repo.refused_write").await?;
        if let Some(u) = lock(&self.state).uploads.get_mut(id) {
            u.refused_writes = Some(u.refused_writes.unwrap_or(0) + n);
            u.updated_at = now;
        }
        Ok(())
    }

    async fn window_recorded(&self, id: &UploadId, index: u32) -> Result<bool, RepoError> {
        self.enter("repo.window_recorded").await?;
        Ok(lock(&self.state).windows.get(id).is_some_and(|w| w.contains(&index)))
    }

    async fn window_scanned(&self, id: &UploadId, index: u32, f: &WindowFinding, now: i64) -> Result<bool, RepoError> {
        self.enter("repo.window_scanned").await?;
        let mut s = lock(&self.state);
        let processing = s.uploads.get(id).is_some_and(|u| u.status == UploadStatus::Processing);
        if !processing || !s.windows.entry(id.clone()).or_default().insert(index) {
            return Ok(false);
        }
        let Some(u) = s.uploads.get_mut(id) else { return Ok(false) };
        u.windows_done = Some(u.windows_done.unwrap_or(0) + 1);
        u.updated_at = now;
        u.scan_found = u.scan_found.take().or(f.found.clone());
        u.scan_gap = u.scan_gap.take().or(f.gap.clone());
        if let Some(h) = &f.head {
            u.detected_type = h.detected_type.clone().or(u.detected_type.take());
            u.type_rejection = h.type_rejection.clone().or(u.type_rejection.take());
        }
        Ok(true)
    }

    async fn hash_advanced(&self, id: &UploadId, index: u32, p: &HashProgress, now: i64) -> Result<bool, RepoError> {
        self.enter("repo.hash_advanced").await?;
        let mut s = lock(&self.state);
        match s.uploads.get_mut(id) {
            Some(u) if u.status == UploadStatus::Processing && u.hash_next == Some(index) => {
                u.hash_next = Some(index + 1);
                u.updated_at = now;
                match p {
                    HashProgress::State(st) => u.hash_state = Some(st.clone()),
                    HashProgress::Digest(d) => {
                        u.hash_state = None;
                        u.content_sha256 = Some(d.clone());
                    }
                }
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn recorded_windows(&self, id: &UploadId) -> Result<std::collections::BTreeSet<u32>, RepoError> {
        self.enter("repo.recorded_windows").await?;
        Ok(lock(&self.state).windows.get(id).cloned().unwrap_or_default())
    }

    async fn watch_processing(&self, id: &UploadId, at: i64) -> Result<bool, RepoError> {
        self.enter("repo.watch_processing").await?;
        Ok(self
            .watched(id, |u| {
                u.stall_check_at = Some(at);
                Some(())
            })
            .is_some())
    }

    async fn redrive(&self, upload: &Upload, r: &Redrive, now: i64) -> Result<bool, RepoError> {
        self.enter("repo.redrive").await?;
        let moved = self.watched(&upload.id, |u| {
            (u.updated_at == upload.updated_at).then(|| {
                u.stall_check_at = Some(r.check_at);
                (u.updated_at, u.redriven_at) = (now, Some(now));
                u.redrives = Some(r.redrives);
                u.redrives_sent = Some(r.sent);
                u.scanner_waits = Some(r.scanner_waits);
                u.redrive_progress = Some(r.progress);
                u.waiting_for_scanner = false;
            })
        });
        Ok(moved.is_some())
    }

    async fn redrive_picked_up(&self, id: &UploadId, n: u32) -> Result<bool, RepoError> {
        self.enter("repo.redrive_picked_up").await?;
        let mut s = lock(&self.state);
        match s.uploads.get_mut(id) {
            Some(u) if u.status == UploadStatus::Processing && u.redrive_seen.is_none_or(|seen| seen < n) => {
                u.redrive_seen = Some(n);
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn await_scanner(&self, id: &UploadId, reason: &str, check_at: i64, now: i64) -> Result<bool, RepoError> {
        self.enter("repo.await_scanner").await?;
        let waiting = self.watched(id, |u| {
            u.stall_check_at = Some(check_at);
            u.waiting_for_scanner = true;
            u.reason = Some(reason.to_owned());
            u.updated_at = now;
            Some(())
        });
        Ok(waiting.is_some())
    }

    async fn unwatch(&self, id: &UploadId) -> Result<bool, RepoError> {
        self.enter("repo.unwatch").await?;
        let mut s = lock(&self.state);
        match s.uploads.get_mut(id) {
            Some(u)
                if u.status != UploadStatus::Processing
                    && u.processed_at.is_some()
                    && u.deleted_at.is_none()
                    && u.stall_check_at.is_some() =>
            {
                u.stall_check_at = None;
                u.waiting_for_scanner = false;
                Ok(true)
            }
            _ => Ok(false),
        }
    }
}

impl MemoryRepo {
    /// The stored upload if it is `processing` and not deleted (the janitor watches it).
    fn watched<T>(&self, id: &UploadId, f: impl FnOnce(&mut Upload) -> Option<T>) -> Option<T> {
        let mut s = lock(&self.state);
        s.uploads.get_mut(id).filter(|u| u.status == UploadStatus::Processing && u.deleted_at.is_none()).and_then(f)
    }
}

// ---------------------------------------------------------------- the object store

/// One version of an object, as a versioned bucket keeps it.
#[derive(Debug, Clone)]
struct StoredObject {
    version: String,
    bytes: Bytes,
    etag: String,
    status_tag: Option<String>,
}

#[derive(Debug, Clone, Default)]
struct Multipart {
    key: String,
    sha256_parts: bool,
    /// Part number → bytes, ETag, base64 SHA-256.
    parts: BTreeMap<u32, (Bytes, String, String)>,
}

#[derive(Default)]
struct StoreState {
    /// Key → its versions, oldest first (the last is the current one).
    objects: HashMap<String, Vec<StoredObject>>,
    multipart: HashMap<String, Multipart>,
    next_id: u64,
}

impl StoreState {
    /// Stores a new current version of `key`.
    fn add_version(&mut self, key: &str, bytes: Bytes, status_tag: Option<String>) -> ObjectInfo {
        self.next_id += 1;
        let version = format!("v{}", self.next_id);
        let etag = etag_of(&bytes);
        let info = ObjectInfo { size: bytes.len() as u64, etag: etag.clone(), version: Some(version.clone()) };
        self.objects.entry(key.to_owned()).or_default().push(StoredObject { version, bytes, etag, status_tag });
        info
    }

    /// `version` of `key`, or its current version.
    fn version_of(&self, key: &str, version: Option<&str>) -> Option<&StoredObject> {
        let versions = self.objects.get(key)?;
        match version {
            Some(v) => versions.iter().find(|o| o.version == v),
            None => versions.last(),
        }
    }
}

/// [`ObjectStore`] in memory, one versioned bucket.
pub struct MemoryObjectStore {
    bucket: String,
    state: Mutex<StoreState>,
    faults: Faults,
    /// The longest byte range any one read asked for (whole reads count the object).
    longest_read: Mutex<u64>,
    /// Reads open now, and the most ever open at once.
    open_reads: Arc<std::sync::atomic::AtomicUsize>,
    most_open_reads: Arc<std::sync::atomic::AtomicUsize>,
}

/// Counts a read as open until its stream is dropped.
struct OpenRead(Arc<std::sync::atomic::AtomicUsize>);

impl Drop for OpenRead {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

fn etag_of(bytes: &[u8]) -> String {
    hex::encode(&Sha256::digest(bytes)[..16])
}

fn sha256_b64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(Sha256::digest(bytes))
}

fn no_such(op: &'static str, code: &str, key: &str) -> ObjectStoreError {
    ObjectStoreError::Service { op, code: code.into(), message: key.to_owned(), throttled: false }
}

impl MemoryObjectStore {
    pub fn new(bucket: &str, faults: Faults) -> Self {
        Self {
            bucket: bucket.to_owned(),
            state: Mutex::default(),
            faults,
            longest_read: Mutex::new(0),
            open_reads: Arc::default(),
            most_open_reads: Arc::default(),
        }
    }

    async fn enter(&self, method: &'static str) -> Result<(), ObjectStoreError> {
        self.faults.step(method).await.map_err(ObjectStoreError::Injected)
    }

    /// What a client's PUT to a part URL does: stores the part, answers its ETag.
    pub fn upload_part(&self, upload_id: &str, number: u32, bytes: &[u8]) -> Option<String> {
        let mut s = lock(&self.state);
        let mpu = s.multipart.get_mut(upload_id)?;
        let etag = etag_of(bytes);
        mpu.parts.insert(number, (Bytes::copy_from_slice(bytes), etag.clone(), sha256_b64(bytes)));
        Some(etag)
    }

    /// What a browser's form POST (or anyone's PUT) does: stores a new version at `key`.
    pub fn put_object(&self, key: &str, bytes: &[u8]) -> ObjectInfo {
        lock(&self.state).add_version(key, Bytes::copy_from_slice(bytes), None)
    }

    /// The longest stretch of bytes a single read (one invocation's stream) asked for.
    pub fn longest_read(&self) -> u64 {
        *lock(&self.longest_read)
    }

    /// The most reads (streams) ever open at once.
    pub fn most_open_reads(&self) -> usize {
        self.most_open_reads.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// One read of `bytes`, noted, in uneven chunks as a network stream arrives (each
    /// a moment later, so reads running at once do overlap).
    fn stream_of(&self, bytes: Bytes) -> ByteStream {
        use futures::StreamExt;
        use std::sync::atomic::Ordering::SeqCst;
        {
            let mut l = lock(&self.longest_read);
            *l = (*l).max(bytes.len() as u64);
        }
        let open = self.open_reads.fetch_add(1, SeqCst) + 1;
        self.most_open_reads.fetch_max(open, SeqCst);
        let guard = OpenRead(self.open_reads.clone());
        let chunks: Vec<Result<Bytes, ObjectStoreError>> =
            (0..bytes.len()).step_by(7919).map(|i| Ok(bytes.slice(i..(i + 7919).min(bytes.len())))).collect();
        Box::pin(futures::stream::iter(chunks).then(move |chunk| {
            let _open = &guard;
            async move {
                tokio::task::yield_now().await;
                chunk
            }
        }))
    }

    /// The current version's bytes.
    pub fn object(&self, key: &str) -> Option<Bytes> {
        lock(&self.state).version_of(key, None).map(|o| o.bytes.clone())
    }

    /// How many versions of `key` the bucket holds.
    pub fn versions(&self, key: &str) -> usize {
        lock(&self.state).objects.get(key).map_or(0, Vec::len)
    }

    /// The status tag of `version` (or of the current version).
    pub fn status_tag_of(&self, key: &str, version: Option<&str>) -> Option<String> {
        lock(&self.state).version_of(key, version).and_then(|o| o.status_tag.clone())
    }

    pub fn status_tag(&self, key: &str) -> Option<String> {
        self.status_tag_of(key, None)
    }

    /// Multipart uploads S3 still holds (not completed or aborted).
    pub fn open_multipart_uploads(&self) -> usize {
        lock(&self.state).multipart.len()
    }

    /// A read of `version` (or the current one) of `key`, pinned to `etag`.
    fn pinned(&self, key: &str, etag: &str, version: Option<&str>) -> Result<Bytes, ObjectStoreError> {
        match lock(&self.state).version_of(key, version) {
            Some(o) if o.etag == etag => Ok(o.bytes.clone()),
            Some(_) => Err(no_such("GetObject", "PreconditionFailed", key)),
            None if version.is_some() => Err(no_such("GetObject", "NoSuchVersion", key)),
            None => Err(no_such("GetObject", "NoSuchKey", key)),
        }
    }
}

#[async_trait]
impl ObjectStore for MemoryObjectStore {
    fn bucket(&self) -> &str {
        &self.bucket
    }

    async fn create_multipart(
        &self,
        key: &str,
        _content_type: &str,
        sha256_parts: bool,
        _metadata: &[(&str, String)],
    ) -> Result<String, ObjectStoreError> {
        self.enter("s3.create_multipart").await?;
        let mut s = lock(&self.state);
        s.next_id += 1;
        let id = format!("mpu-{}", s.next_id);
        s.multipart.insert(id.clone(), Multipart { key: key.to_owned(), sha256_parts, parts: BTreeMap::new() });
        Ok(id)
    }

    async fn presign_parts(
        &self,
        key: &str,
        upload_id: &str,
        parts: Vec<PartToSign>,
        _expires_in: Duration,
    ) -> Result<Vec<(PartNumber, PresignedPart)>, ObjectStoreError> {
        self.enter("s3.presign_parts").await?;
        Ok(parts
            .into_iter()
            .map(|(n, _, sha)| {
                let url = format!("memory://{}/{key}?partNumber={n}&uploadId={upload_id}", self.bucket);
                let headers = sha.map(|d| ("x-amz-checksum-sha256".to_owned(), d.to_base64())).into_iter().collect();
                (n, PresignedPart { url, method: "PUT".into(), headers })
            })
            .collect())
    }

    async fn presign_post(
        &self,
        key: &str,
        content_type: &str,
        _max_len: u64,
        _metadata: &[(&str, String)],
        _expires_in: Duration,
    ) -> Result<PresignedPost, ObjectStoreError> {
        self.enter("s3.presign_post").await?;
        let fields = [("key", key), ("Content-Type", content_type)].map(|(k, v)| (k.to_owned(), v.to_owned()));
        Ok(PresignedPost { url: format!("memory://{}/", self.bucket), fields: fields.into_iter().collect() })
    }

    async fn presign_get(
        &self,
        key: &str,
        version: Option<&str>,
        _content_type: &str,
        _disposition: &str,
        _expires_in: Duration,
    ) -> Result<String, ObjectStoreError> {
        self.enter("s3.presign_get").await?;
        Ok(match version {
            Some(v) => format!("memory://{}/{key}?versionId={v}", self.bucket),
            None => format!("memory://{}/{key}", self.bucket),
        })
    }

    async fn list_parts(&self, _key: &str, upload_id: &str) -> Result<Option<Vec<StoredPart>>, ObjectStoreError> {
        self.enter("s3.list_parts").await?;
        let s = lock(&self.state);
        Ok(s.multipart.get(upload_id).map(|m| {
            m.parts
                .iter()
                .map(|(n, (bytes, etag, sha))| StoredPart {
                    number: *n,
                    etag: etag.clone(),
                    size: bytes.len() as u64,
                    checksum_sha256: m.sha256_parts.then(|| sha.clone()),
                })
                .collect()
        }))
    }

    async fn complete(
        &self,
        key: &str,
        upload_id: &str,
        parts: &[(PartNumber, ETag, Option<String>)],
        size: u64,
    ) -> Result<CompleteOutcome, ObjectStoreError> {
        self.enter("s3.complete").await?;
        let mut s = lock(&self.state);
        let Some(mpu) = s.multipart.get(upload_id).cloned() else { return Ok(CompleteOutcome::NoSuchUpload) };
        if mpu.key != key {
            return Ok(CompleteOutcome::NoSuchUpload);
        }
        // If-None-Match: * never overwrites.
        if s.version_of(key, None).is_some() {
            return Ok(CompleteOutcome::AlreadyExists);
        }
        let mut assembled = Vec::new();
        for (n, etag, _) in parts {
            match mpu.parts.get(&n.get()) {
                Some((bytes, stored, _)) if stored == etag.as_str() => assembled.extend_from_slice(bytes),
                _ => {
                    return Ok(CompleteOutcome::Refused {
                        code: "InvalidPart".into(),
                        message: format!("part {n} is not as listed"),
                    })
                }
            }
        }
        if assembled.len() as u64 != size {
            return Ok(CompleteOutcome::Refused {
                code: "InvalidRequest".into(),
                message: format!("object size {} is not the declared {size}", assembled.len()),
            });
        }
        let info = s.add_version(key, Bytes::from(assembled), None);
        s.multipart.remove(upload_id);
        Ok(CompleteOutcome::Completed { etag: info.etag, version: info.version })
    }

    async fn abort(&self, _key: &str, upload_id: &str) -> Result<(), ObjectStoreError> {
        self.enter("s3.abort").await?;
        lock(&self.state).multipart.remove(upload_id);
        Ok(())
    }

    async fn head(&self, key: &str, version: Option<&str>) -> Result<Option<ObjectInfo>, ObjectStoreError> {
        self.enter("s3.head").await?;
        Ok(lock(&self.state).version_of(key, version).map(|o| ObjectInfo {
            size: o.bytes.len() as u64,
            etag: o.etag.clone(),
            version: Some(o.version.clone()),
        }))
    }

    async fn delete(&self, key: &str) -> Result<(), ObjectStoreError> {
        self.enter("s3.delete").await?;
        lock(&self.state).objects.remove(key);
        Ok(())
    }

    async fn delete_version(&self, key: &str, version: &str) -> Result<(), ObjectStoreError> {
        self.enter("s3.delete_version").await?;
        let mut s = lock(&self.state);
        if let Some(versions) = s.objects.get_mut(key) {
            versions.retain(|o| o.version != version);
            if versions.is_empty() {
                s.objects.remove(key);
            }
        }
        Ok(())
    }

    async fn delete_other_versions(&self, key: &str, keep: &str) -> Result<u32, ObjectStoreError> {
        self.enter("s3.delete_other_versions").await?;
        let mut s = lock(&self.state);
        let Some(versions) = s.objects.get_mut(key) else { return Ok(0) };
        let before = versions.len();
        versions.retain(|o| o.version == keep);
        Ok((before - versions.len()) as u32)
    }

    async fn read(&self, key: &str, etag: &str, version: Option<&str>) -> Result<ByteStream, ObjectStoreError> {
        self.enter("s3.read").await?;
        Ok(self.stream_of(self.pinned(key, etag, version)?))
    }

    async fn read_range(
        &self,
        key: &str,
        etag: &str,
        version: Option<&str>,
        start: u64,
        end: u64,
    ) -> Result<ByteStream, ObjectStoreError> {
        self.enter("s3.read_range").await?;
        let bytes = self.pinned(key, etag, version)?;
        let (start, end) = (start.min(bytes.len() as u64) as usize, end.min(bytes.len() as u64) as usize);
        Ok(self.stream_of(bytes.slice(start..end.max(start))))
    }

    async fn put(&self, key: &str, _content_type: &str, body: Vec<u8>, status: &str) -> Result<(), ObjectStoreError> {
        self.enter("s3.put").await?;
        lock(&self.state).add_version(key, Bytes::from(body), Some(status.to_owned()));
        Ok(())
    }

    async fn tag_status(&self, key: &str, version: Option<&str>, status: &str) -> Result<(), ObjectStoreError> {
        self.enter("s3.tag_status").await?;
        let mut s = lock(&self.state);
        let found = s.objects.get_mut(key).and_then(|versions| match version {
            Some(v) => versions.iter_mut().find(|o| o.version == v),
            None => versions.last_mut(),
        });
        match found {
            Some(o) => {
                o.status_tag = Some(status.to_owned());
                Ok(())
            }
            None => Err(no_such("PutObjectTagging", "NoSuchKey", key)),
        }
    }
}

// ---------------------------------------------------------------- the job queue

/// [`JobQueue`] in memory: what was sent, in order.
#[derive(Default)]
pub struct MemoryQueue {
    sent: Mutex<Vec<ProcessJob>>,
    windows: Mutex<Vec<WindowJob>>,
    faults: Faults,
}

impl MemoryQueue {
    pub fn new(faults: Faults) -> Self {
        Self { sent: Mutex::default(), windows: Mutex::default(), faults }
    }

    pub fn sent(&self) -> Vec<ProcessJob> {
        lock(&self.sent).clone()
    }

    /// Window jobs queued and not yet taken.
    pub fn take_windows(&self) -> Vec<WindowJob> {
        std::mem::take(&mut *lock(&self.windows))
    }
}

#[async_trait]
impl JobQueue for MemoryQueue {
    async fn send(&self, job: &ProcessJob) -> Result<(), QueueError> {
        self.faults.step("queue.send").await.map_err(QueueError)?;
        lock(&self.sent).push(job.clone());
        Ok(())
    }

    async fn send_windows(&self, jobs: &[WindowJob]) -> Result<(), QueueError> {
        self.faults.step("queue.send_windows").await.map_err(QueueError)?;
        lock(&self.windows).extend_from_slice(jobs);
        Ok(())
    }

    async fn retry_in(&self, _receipt_handle: &str, _after: Duration) {
        let _ = self.faults.step("queue.retry_in").await;
    }
}

// ---------------------------------------------------------------- the scanner

/// [`Scanner`] that finds the marker bytes `X5O!P%@AP` (EICAR's first bytes) anywhere
/// in the stream, across chunk boundaries.
#[derive(Default)]
pub struct MemoryScanner {
    faults: Faults,
}

impl MemoryScanner {
    pub fn new(faults: Faults) -> Self {
        Self { faults }
    }
}

pub const EICAR_MARKER: &[u8] = b"X5O!P%@AP";

/// Streams up to this long are kept whole, so a small zip among them is unpacked as
/// clamd would (one level): enough to tell a member stream from raw bytes.
const UNPACKED_UP_TO: usize = 1024 * 1024;

struct MemoryScan {
    tail: Vec<u8>,
    found: bool,
    whole: Vec<u8>,
    length: usize,
}

/// Whether a small zip holds the marker in one of its members (inflated).
fn zip_holds_marker(bytes: &[u8]) -> bool {
    use std::io::Read;
    let Ok(mut z) = zip::ZipArchive::new(std::io::Cursor::new(bytes)) else { return false };
    (0..z.len()).any(|i| {
        let mut content = Vec::new();
        z.by_index(i).is_ok_and(|mut f| f.read_to_end(&mut content).is_ok())
            && content.windows(EICAR_MARKER.len()).any(|w| w == EICAR_MARKER)
    })
}

#[async_trait]
impl Scanner for MemoryScanner {
    async fn start(&self) -> Result<Box<dyn ScanSession>, ScannerError> {
        self.faults.step("scanner.start").await.map_err(|detail| ScannerError { addr: "memory".into(), detail })?;
        Ok(Box::new(MemoryScan { tail: Vec::new(), found: false, whole: Vec::new(), length: 0 }))
    }
}

#[async_trait]
impl ScanSession for MemoryScan {
    async fn send(&mut self, chunk: &[u8]) -> Result<(), ScannerError> {
        self.length += chunk.len();
        if self.length <= UNPACKED_UP_TO {
            self.whole.extend_from_slice(chunk);
        }
        self.tail.extend_from_slice(chunk);
        if self.tail.windows(EICAR_MARKER.len()).any(|w| w == EICAR_MARKER) {
            self.found = true;
        }
        let keep = self.tail.len().saturating_sub(EICAR_MARKER.len() - 1);
        self.tail.drain(..keep);
        Ok(())
    }

    async fn finish(self: Box<Self>) -> Result<ScanReply, ScannerError> {
        let unpacked =
            self.length <= UNPACKED_UP_TO && self.whole.starts_with(b"PK\x03\x04") && zip_holds_marker(&self.whole);
        Ok(if self.found || unpacked { ScanReply::Found("Eicar-Test-Signature".into()) } else { ScanReply::Clean })
    }
}

// ---------------------------------------------------------------- an app on fakes

/// A configuration for tests: the service's defaults, no environment.
pub fn config() -> Config {
    Config {
        bucket: "memory-bucket".into(),
        table: "memory-table".into(),
        queue_url: "memory://queue".into(),
        s3_force_path_style: true,
        max_upload_size: 5 * TIB,
        default_part_size: 16 * MIB,
        content_types: ContentTypePolicy::parse(DEFAULT_ALLOWED_TYPES).unwrap_or_else(|_| unreachable!()),
        part_url_ttl: Duration::from_secs(900),
        upload_ttl: Duration::from_secs(3 * 24 * 3600),
        max_open_uploads: 100,
        max_bytes_in_flight: 10 * TIB,
        max_stored_bytes: 100 * TIB,
        owner_requests_per_minute: 0,
        deferred_ceiling: 64 * GIB,
        complete_wait: Duration::from_secs(2),
        complete_lease: Duration::from_secs(120),
        link_keys: crate::domain::links::LinkKeys::parse("test1:dGVzdC1vbmx5LWxpbmsta2V5LTAwMDAwMDAwMDAwMDAw").ok(),
        link_default_ttl: Duration::from_secs(3600),
        link_max_ttl: Duration::from_secs(7 * 24 * 3600),
        delete_retention: Duration::from_secs(30 * 24 * 3600),
        public_base_url: Some("https://hoist.test".into()),
        job_delay_secs: 0,
        processing_stall: Duration::from_secs(7200),
        max_redrives: 2,
    }
}

/// Processing settings for tests.
pub fn process_config() -> ProcessConfig {
    ProcessConfig {
        clamd_addr: "memory".into(),
        clamd_start_wait: std::time::Duration::ZERO,
        scan_limit: 1100 * MIB,
        unscanned_policy: UnscannedPolicy::Block,
        thumbnail_max_bytes: 64 * MIB,
        thumbnail_side: 256,
        max_receives: 5,
        scan_window: GIB,
    }
}

/// An app on in-memory ports, and handles to look inside them.
pub struct Fakes {
    pub app: Arc<App>,
    pub repo: Arc<MemoryRepo>,
    pub objects: Arc<MemoryObjectStore>,
    pub jobs: Arc<MemoryQueue>,
    pub scanner: Arc<MemoryScanner>,
    pub faults: Faults,
}

impl Fakes {
    pub fn new() -> Self {
        Self::with_config(config())
    }

    pub fn with_config(config: Config) -> Self {
        let faults = Faults::default();
        let repo = Arc::new(MemoryRepo::new(faults.clone()));
        let objects = Arc::new(MemoryObjectStore::new(&config.bucket, faults.clone()));
        let jobs = Arc::new(MemoryQueue::new(faults.clone()));
        let scanner = Arc::new(MemoryScanner::new(faults.clone()));
        let app = Arc::new(App::new(config, repo.clone(), objects.clone(), jobs.clone()));
        Self { app, repo, objects, jobs, scanner, faults }
    }

    /// The processing use case over these fakes.
    pub fn processor(&self) -> Processor {
        Processor { app: self.app.clone(), scanner: self.scanner.clone(), config: process_config() }
    }
}

impl Default for Fakes {
    fn default() -> Self {
        Self::new()
    }
}
