//! The upload entity and what the service records about it. No storage keys here:
//! how an upload is filed (partition keys, indexes, TTL) is the repository adapter's business.

use serde::{Deserialize, Serialize};

use super::{ContentType, FileName, Owner, Sha256Digest, UploadId, UploadStatus};

/// How long records of closed uploads and their parts stay before the repository forgets them.
pub const CLOSED_RETENTION_SECS: i64 = 7 * 24 * 3600;

/// One upload, from its creation to its verdict (and, as a file, to its purge).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Upload {
    pub id: UploadId,
    pub owner: Owner,
    pub status: UploadStatus,
    pub filename: FileName,
    pub content_type: ContentType,
    pub size: u64,
    pub part_size: u64,
    pub part_count: u32,
    /// Parts carry SHA-256 checksums (fixed at CreateMultipartUpload).
    pub part_checksums: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<Sha256Digest>,
    pub s3_key: String,
    pub s3_upload_id: String,
    pub created_at: i64,
    pub updated_at: i64,
    pub expires_at: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_until: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    /// S3's version id of the completed object: processing reads, tags and downloads
    /// serve exactly this version (a later write to the key is another version).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version_id: Option<String>,
    /// Writes to the key after completion that were thrown away (a reused POST form).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refused_writes: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// What processing read from the bytes (MIME type), if recognised.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detected_type: Option<String>,
    /// SHA-256 of the stored object as processing computed it (hex).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_sha256: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thumbnail_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub width: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub height: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub processed_at: Option<i64>,
    /// Soft delete: when, and when the janitor purges it for good.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deleted_at: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purge_at: Option<i64>,
    /// Bumped by every delete: links carry the generation they were made in, so none
    /// made before a delete serves the file after a restore.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link_generation: Option<u32>,
    /// The size was not declared (Uppy's Companion protocol): `size` is 0 and no bytes are
    /// reserved in the quota until completion learns it.
    #[serde(default)]
    pub deferred_size: bool,
    /// Sent as one presigned POST (Uppy's `/s3/params`), not multipart: `s3_upload_id` is
    /// empty, and S3's ObjectCreated event (not a client call) completes the session.
    #[serde(default)]
    pub single_post: bool,
    /// What a session of undeclared size reserves in the quota: its ceiling, the most
    /// it may become (fixed at creation, so the release matches whatever the
    /// configuration says later).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reservation: Option<u64>,
    /// Part URLs signed so far for a session of undeclared size (its parked bytes are
    /// summed every so many).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signings: Option<u64>,
    /// Processing in windows (files larger than one scan window): how many windows, of
    /// what size (fixed when they start, so a configuration change cannot break them)...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub windows_total: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_bytes: Option<u64>,
    /// ...how many are scanned...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub windows_done: Option<u32>,
    /// ...which window the whole-file hash reads next, and its chaining state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash_next: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash_state: Option<String>,
    /// The first malware signature a window found.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scan_found: Option<String>,
    /// The first reason a window could not be fully scanned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scan_gap: Option<String>,
    /// Why the file's first bytes are not its declared type (from window 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub type_rejection: Option<String>,
    /// While `processing`: when the janitor looks at it. If nothing moved for the
    /// configured stall time by then (a job lost or crashed out of its retries), the
    /// janitor sends its job again (see `usecases::janitor`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stall_check_at: Option<i64>,
    /// Stalls in a row the janitor counted against the file (progress since the last
    /// re-drive starts afresh): past the limit the file is set aside as `failed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redrives: Option<u32>,
    /// Jobs the janitor sent again, counted or not (they are numbered by it)...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redrives_sent: Option<u32>,
    /// ...the highest of those numbers a worker picked up (fewer: the queue is behind)...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redrive_seen: Option<u32>,
    /// ...when the last one was sent, and how far the file's windows and hash chain
    /// were then (`windows_done + hash_next`): more since is progress.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redriven_at: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redrive_progress: Option<u32>,
    /// A job gave up because the scanner was not there (not the file's fault): the
    /// janitor sends it again without counting it against the file...
    #[serde(default)]
    pub waiting_for_scanner: bool,
    /// ...up to [`MAX_SCANNER_WAITS`] times.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scanner_waits: Option<u32>,
}

/// A file waiting for the scanner is sent again once quiet this long (the janitor's
/// period: its next run).
pub const SCANNER_RETRY_SECS: i64 = 900;

/// Waits for the scanner not counted against a file. Each takes about an hour at the
/// least (the queue's redeliveries: 4 x 960 s in the template), so this is about a day:
/// a file that keeps clamd from answering that long (one that crashes it, say) stalls
/// like any other and ends `failed`.
pub const MAX_SCANNER_WAITS: u32 = 24;

impl Upload {
    /// How far processing in windows has come: windows scanned plus hash links done.
    /// (A file processed in one pass shows none until its verdict.)
    pub fn window_progress(&self) -> u32 {
        self.windows_done.unwrap_or(0) + self.hash_next.unwrap_or(0)
    }

    /// Bytes this session holds in its owner's in-flight quota: its declared size, or
    /// for an undeclared size its ceiling.
    pub fn reserved_bytes(&self) -> u64 {
        if self.deferred_size {
            self.reservation.unwrap_or(0)
        } else {
            self.size
        }
    }
}

/// A part the client reported as sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartRecord {
    pub number: u32,
    pub etag: String,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
}

/// What processing found, written in one conditional update.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessingOutcome {
    pub status: UploadStatus,
    pub reason: String,
    pub detected_type: Option<String>,
    pub content_sha256: Option<String>,
    pub thumbnail_key: Option<String>,
    pub width: Option<u32>,
    pub height: Option<u32>,
}

/// An owner's open uploads and the bytes they reserve, and the bytes their files take
/// (completed, not deleted: a delete gives its bytes back, a restore takes them again).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Quota {
    pub open_uploads: u64,
    pub bytes_in_flight: u64,
    pub bytes_stored: u64,
}

/// The ceilings a new upload must stay within.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuotaLimits {
    pub max_open: u64,
    pub max_bytes: u64,
    /// Stored plus in flight: what the owner's files may take once every open upload
    /// completes.
    pub max_stored: u64,
}

impl QuotaLimits {
    /// Whether one more upload reserving `bytes` fits next to `current`.
    pub fn admits(&self, current: Quota, bytes: u64) -> bool {
        current.open_uploads < self.max_open
            && current.bytes_in_flight.saturating_add(bytes) <= self.max_bytes
            && self.has_room(current, bytes)
    }

    /// Whether `bytes` more fit in the owner's storage (stored and in flight).
    pub fn has_room(&self, current: Quota, bytes: u64) -> bool {
        current.bytes_stored.saturating_add(current.bytes_in_flight).saturating_add(bytes) <= self.max_stored
    }
}

/// Where a catalog page ends: the listing's sort key (completion time in ms + id) and the
/// id. Only ever a position; the owner always comes from the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogPosition {
    pub sort_key: String,
    pub id: UploadId,
}

/// Sort key of a file in its owner's catalog: completion time in milliseconds, then id.
pub fn catalog_sort_key(completed_at_ms: i64, id: &UploadId) -> String {
    format!("{completed_at_ms:015}#{id}")
}

/// A page of the catalog and where the next one starts.
#[derive(Debug, Clone)]
pub struct FilePage {
    pub items: Vec<Upload>,
    pub next: Option<CatalogPosition>,
}
