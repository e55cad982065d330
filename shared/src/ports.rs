//! The ports: what the use cases need from the outside world, shaped as they need it.
//! `aws/` implements them with DynamoDB, S3 and SQS, `clamd` with ClamAV, and `testing`
//! in memory (with fault injection). A function's IAM policy in template.yaml is the
//! set of AWS actions behind the port methods its handler calls (see
//! [`aws::iam_actions`](crate::aws::iam_actions), checked by a test).

use std::{collections::BTreeMap, pin::Pin, time::Duration};

use async_trait::async_trait;
use bytes::Bytes;
use futures::Stream;

use crate::domain::{
    CatalogPosition, ETag, FilePage, HashProgress, Owner, PartNumber, PartRecord, ProcessJob, ProcessingOutcome, Quota,
    QuotaLimits, Sha256Digest, Upload, UploadId, UploadStatus, WindowFinding, WindowJob,
};
use crate::processing::ScanReply;

// ---------------------------------------------------------------- errors

/// A failure of the upload repository. Conditional writes that lose are not errors
/// (those methods answer `false`).
#[derive(Debug, thiserror::Error)]
pub enum RepoError {
    #[error("dynamodb {op}: {code}: {message}")]
    Service { op: &'static str, code: String, message: String, throttled: bool },
    #[error("dynamodb {op}: {detail}")]
    Other { op: &'static str, detail: String },
    #[error("stored item is unreadable: {0}")]
    Corrupt(String),
    /// Injected by a test double.
    #[error("injected fault: {0}")]
    Injected(String),
}

impl RepoError {
    pub fn is_throttling(&self) -> bool {
        matches!(self, RepoError::Service { throttled: true, .. })
    }
}

/// Why a new upload was not stored.
#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    #[error("owner quota exceeded")]
    QuotaExceeded,
    #[error(transparent)]
    Repo(#[from] RepoError),
}

#[derive(Debug, thiserror::Error)]
pub enum ObjectStoreError {
    #[error("s3 {op}: {code}: {message}")]
    Service { op: &'static str, code: String, message: String, throttled: bool },
    #[error("s3 {op}: {detail}")]
    Other { op: &'static str, detail: String },
    #[error("injected fault: {0}")]
    Injected(String),
}

impl ObjectStoreError {
    pub fn is_throttling(&self) -> bool {
        matches!(self, ObjectStoreError::Service { throttled: true, .. })
    }
    pub fn code(&self) -> Option<&str> {
        match self {
            ObjectStoreError::Service { code, .. } => Some(code),
            _ => None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("sqs SendMessage: {0}")]
pub struct QueueError(pub String);

#[derive(Debug, thiserror::Error)]
#[error("scanner at {addr}: {detail}")]
pub struct ScannerError {
    pub addr: String,
    pub detail: String,
}

// ---------------------------------------------------------------- the repository

/// Uploads, their recorded parts and their owners' quotas. Every status change is one
/// [`Transition`](crate::domain::Transition), applied conditionally: the `bool` methods
/// answer `false` when the condition did not hold (someone else moved first).
#[async_trait]
pub trait UploadRepo: Send + Sync {
    async fn quota(&self, owner: &Owner) -> Result<Quota, RepoError>;
    /// Stores a new upload and reserves its quota, atomically.
    async fn create(&self, upload: &Upload, limits: QuotaLimits) -> Result<(), CreateError>;
    async fn get(&self, id: &UploadId) -> Result<Option<Upload>, RepoError>;
    /// Records parts (idempotent; a re-sent part replaces the earlier record). They are
    /// forgotten at `forget_at`.
    async fn put_parts(&self, id: &UploadId, parts: &[PartRecord], forget_at: i64, now: i64) -> Result<(), RepoError>;
    /// All recorded parts, in part order.
    async fn parts(&self, id: &UploadId) -> Result<Vec<PartRecord>, RepoError>;
    /// `BeginCompletion`: takes the completion lease until `now + lease`.
    async fn begin_completion(&self, id: &UploadId, now: i64, lease: Duration) -> Result<bool, RepoError>;
    /// `ReleaseCompletion`: gives the lease back.
    async fn release_completion(&self, upload: &Upload, now: i64) -> Result<bool, RepoError>;
    /// `FinishCompletion`: records the object (its ETag and version, the upload's
    /// `size`, a whole-file SHA-256 declared at completion) and releases the owner's
    /// quota, atomically.
    async fn finish_completion(&self, upload: &Upload, object: &ObjectInfo, now: i64) -> Result<bool, RepoError>;
    /// Counts `n` writes to a completed upload's key that were thrown away (they would
    /// have replaced the bytes that were scanned).
    async fn refused_write(&self, id: &UploadId, n: u32, now: i64) -> Result<(), RepoError>;
    /// `Close(to)`: aborted or expired, quota released atomically; forgotten at `forget_at`.
    async fn close_open(
        &self,
        upload: &Upload,
        to: UploadStatus,
        reason: &str,
        forget_at: i64,
        now: i64,
    ) -> Result<bool, RepoError>;
    /// `FinishProcessing(outcome.status)`.
    async fn finish_processing(&self, id: &UploadId, outcome: &ProcessingOutcome, now: i64) -> Result<bool, RepoError>;
    /// One page of an owner's files (completed uploads), newest first.
    async fn list_files(
        &self,
        owner: &Owner,
        limit: u32,
        start: Option<CatalogPosition>,
        status: Option<UploadStatus>,
        include_deleted: bool,
    ) -> Result<FilePage, RepoError>;
    /// Marks a file deleted, to be purged at `purge_at`, and gives its bytes back to the
    /// owner's storage quota, atomically. False when already deleted.
    async fn soft_delete(&self, upload: &Upload, now: i64, purge_at: i64) -> Result<bool, RepoError>;
    /// Undoes a delete while `purge_at` is in the future, taking its bytes again only
    /// if they fit in `limits.max_stored`, atomically. False otherwise.
    async fn restore(&self, upload: &Upload, now: i64, limits: QuotaLimits) -> Result<bool, RepoError>;
    /// Counts `n` more part URLs signed for a session; answers the new total.
    async fn count_signings(&self, id: &UploadId, n: u64) -> Result<u64, RepoError>;
    /// Counts one request of `owner` in the minute starting at `window`; false (and not
    /// counted) when `limit` were counted already.
    async fn count_request(&self, owner: &Owner, window: i64, limit: u32) -> Result<bool, RepoError>;
    /// The owner's open uploads (uploading or completing), newest first.
    async fn list_open(&self, owner: &Owner, limit: u32) -> Result<Vec<Upload>, RepoError>;
    /// Uploads the janitor should look at now: open ones past their expiry, completions
    /// past their lease.
    async fn due(&self, now: i64, limit: u32) -> Result<Vec<Upload>, RepoError>;
    /// Deleted files whose retention is over.
    async fn due_purges(&self, now: i64, limit: u32) -> Result<Vec<Upload>, RepoError>;
    /// Forgets an upload entirely (its record and its parts).
    async fn delete_upload(&self, id: &UploadId) -> Result<(), RepoError>;
    /// A `processing` upload is scanned in `total` windows of `window_bytes`: starts the
    /// tally and the hash chain. False when already started (a repeated job).
    async fn start_windows(&self, id: &UploadId, total: u32, window_bytes: u64, now: i64) -> Result<bool, RepoError>;
    /// Whether window `index`'s scan is recorded already (a repeated job skips the work).
    async fn window_recorded(&self, id: &UploadId, index: u32) -> Result<bool, RepoError>;
    /// Records window `index`'s scan, once: false when it was already recorded.
    async fn window_scanned(
        &self,
        id: &UploadId,
        index: u32,
        finding: &WindowFinding,
        now: i64,
    ) -> Result<bool, RepoError>;
    /// Advances the hash chain past window `index`, only if it is the next one.
    async fn hash_advanced(
        &self,
        id: &UploadId,
        index: u32,
        progress: &HashProgress,
        now: i64,
    ) -> Result<bool, RepoError>;
    /// Every window (and member step) recorded as scanned.
    async fn recorded_windows(&self, id: &UploadId) -> Result<std::collections::BTreeSet<u32>, RepoError>;
    /// The janitor looks at a `processing` upload again at `at` (it is still moving).
    /// False when it is no longer watched: decided, or deleted (then the purge owns it).
    async fn watch_processing(&self, id: &UploadId, at: i64) -> Result<bool, RepoError>;
    /// `Redrive`: the janitor sent a stalled upload's job again (or claims it to set it
    /// aside): records `r`, clears any wait for the scanner, bumps `updated_at`. Only if
    /// nothing moved since the janitor read `upload` (`updated_at`): false when something
    /// did, or it is decided or deleted.
    async fn redrive(&self, upload: &Upload, r: &Redrive, now: i64) -> Result<bool, RepoError>;
    /// A worker picked up re-drive job number `n`.
    async fn redrive_picked_up(&self, id: &UploadId, n: u32) -> Result<bool, RepoError>;
    /// A job gave up because the scanner was not there: says so in `reason` (the owner
    /// reads it) and has the janitor look at `check_at` (uncounted re-drive).
    async fn await_scanner(&self, id: &UploadId, reason: &str, check_at: i64, now: i64) -> Result<bool, RepoError>;
    /// Takes a decided upload out of the janitor's watch (after its verdict). False when
    /// there was nothing to take (still processing, deleted, or already done).
    async fn unwatch(&self, id: &UploadId) -> Result<bool, RepoError>;
}

// ---------------------------------------------------------------- the object store

/// A part as S3 holds it (ListParts).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredPart {
    pub number: u32,
    pub etag: String,
    pub size: u64,
    pub checksum_sha256: Option<String>,
}

/// What a client needs to PUT one part: the URL, the method and the headers to send verbatim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresignedPart {
    pub url: String,
    pub method: String,
    /// Signed headers the PUT must carry exactly (Content-Length excepted: clients send the
    /// body of `content_length` bytes and their HTTP stack sets it; it is signed all the same).
    pub headers: BTreeMap<String, String>,
}

/// An S3 POST-policy upload (a browser form): POST `fields` and then the file, as
/// `multipart/form-data`, to `url`. Every field is pinned by the signed policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresignedPost {
    pub url: String,
    pub fields: BTreeMap<String, String>,
}

/// One part to presign: its number, exact length (0: not pinned) and optional SHA-256.
pub type PartToSign = (PartNumber, u64, Option<Sha256Digest>);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CompleteOutcome {
    Completed {
        etag: String,
        /// S3's version id of the new object (None in an unversioned bucket).
        version: Option<String>,
    },
    /// `If-None-Match: *` refused: an object already sits at the key.
    AlreadyExists,
    /// S3 no longer knows the multipart upload (completed or aborted earlier).
    NoSuchUpload,
    /// S3 refused the part list (e.g. InvalidPart, InvalidPartOrder, EntityTooSmall).
    Refused { code: String, message: String },
}

/// What the janitor records when it sends a stalled upload's job again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Redrive {
    /// Stalls in a row counted against the file.
    pub redrives: u32,
    /// Jobs sent again so far, this one included (its number).
    pub sent: u32,
    /// Waits for the scanner so far.
    pub scanner_waits: u32,
    /// The file's [`Upload::window_progress`] now.
    pub progress: u32,
    /// When the janitor looks again.
    pub check_at: i64,
}

/// Size, ETag and version of a stored object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    pub size: u64,
    pub etag: String,
    /// S3's version id (None in an unversioned bucket). In the versioned bucket the
    /// template makes, a later write to the same key is a new version and never changes
    /// these bytes: the upload pins this id through processing, tagging and downloads.
    pub version: Option<String>,
}

/// An object's bytes, as they stream in.
pub type ByteStream = Pin<Box<dyn Stream<Item = Result<Bytes, ObjectStoreError>> + Send>>;

/// The bucket: multipart lifecycle, presigning, and the few object operations the
/// service does itself.
#[async_trait]
pub trait ObjectStore: Send + Sync {
    fn bucket(&self) -> &str;
    /// Starts a multipart upload; answers S3's upload id.
    async fn create_multipart(
        &self,
        key: &str,
        content_type: &str,
        sha256_parts: bool,
        metadata: &[(&str, String)],
    ) -> Result<String, ObjectStoreError>;
    /// Part URLs (length and checksum signed when given). Never outlive the signing
    /// credentials.
    async fn presign_parts(
        &self,
        key: &str,
        upload_id: &str,
        parts: Vec<PartToSign>,
        expires_in: Duration,
    ) -> Result<Vec<(PartNumber, PresignedPart)>, ObjectStoreError>;
    /// A browser-form upload of exactly `key`, `content_type`, at most `max_len` bytes.
    async fn presign_post(
        &self,
        key: &str,
        content_type: &str,
        max_len: u64,
        metadata: &[(&str, String)],
        expires_in: Duration,
    ) -> Result<PresignedPost, ObjectStoreError>;
    /// A short-lived GET of exactly `version` (when given), answering with our
    /// Content-Type and Content-Disposition.
    async fn presign_get(
        &self,
        key: &str,
        version: Option<&str>,
        content_type: &str,
        disposition: &str,
        expires_in: Duration,
    ) -> Result<String, ObjectStoreError>;
    /// Every part S3 holds (all pages); `None` when S3 no longer knows the upload.
    async fn list_parts(&self, key: &str, upload_id: &str) -> Result<Option<Vec<StoredPart>>, ObjectStoreError>;
    /// CompleteMultipartUpload that never overwrites and checks the assembled size.
    async fn complete(
        &self,
        key: &str,
        upload_id: &str,
        parts: &[(PartNumber, ETag, Option<String>)],
        size: u64,
    ) -> Result<CompleteOutcome, ObjectStoreError>;
    /// Aborts a multipart upload; one S3 no longer knows counts as done.
    async fn abort(&self, key: &str, upload_id: &str) -> Result<(), ObjectStoreError>;
    /// The object's `version` (when given), else its current version; None when absent.
    async fn head(&self, key: &str, version: Option<&str>) -> Result<Option<ObjectInfo>, ObjectStoreError>;
    /// Deletes an object with every version of it; an absent one counts as deleted.
    async fn delete(&self, key: &str) -> Result<(), ObjectStoreError>;
    /// Deletes one version of an object (a write that must not replace what was scanned).
    async fn delete_version(&self, key: &str, version: &str) -> Result<(), ObjectStoreError>;
    /// Deletes every version of the key but `keep`; answers how many went.
    async fn delete_other_versions(&self, key: &str, keep: &str) -> Result<u32, ObjectStoreError>;
    /// Streams the object's `version` (when given), only if its ETag is `etag`.
    async fn read(&self, key: &str, etag: &str, version: Option<&str>) -> Result<ByteStream, ObjectStoreError>;
    /// Streams bytes `start..end` of the object's `version`, only if its ETag is `etag`.
    async fn read_range(
        &self,
        key: &str,
        etag: &str,
        version: Option<&str>,
        start: u64,
        end: u64,
    ) -> Result<ByteStream, ObjectStoreError>;
    /// Stores a small object the service made (a thumbnail), tagged with `status`.
    async fn put(&self, key: &str, content_type: &str, body: Vec<u8>, status: &str) -> Result<(), ObjectStoreError>;
    /// Sets the status tag of the object's `version` (the bucket policy reads it).
    async fn tag_status(&self, key: &str, version: Option<&str>, status: &str) -> Result<(), ObjectStoreError>;
}

// ---------------------------------------------------------------- the job queue

#[async_trait]
pub trait JobQueue: Send + Sync {
    /// Queues a processing job (delivered at least once).
    async fn send(&self, job: &ProcessJob) -> Result<(), QueueError>;
    /// Queues window jobs (in batches; delivered at least once, in any order).
    async fn send_windows(&self, jobs: &[WindowJob]) -> Result<(), QueueError>;
    /// Brings a received message back after `after` instead of the visibility timeout.
    /// Best effort: if it fails, the timeout still brings the message back.
    async fn retry_in(&self, receipt_handle: &str, after: Duration);
}

// ---------------------------------------------------------------- the scanner

/// A malware scanner fed one stream at a time.
#[async_trait]
pub trait Scanner: Send + Sync {
    async fn start(&self) -> Result<Box<dyn ScanSession>, ScannerError>;
}

/// One stream being scanned.
#[async_trait]
pub trait ScanSession: Send {
    async fn send(&mut self, chunk: &[u8]) -> Result<(), ScannerError>;
    async fn finish(self: Box<Self>) -> Result<ScanReply, ScannerError>;
}
