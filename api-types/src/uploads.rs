//! Bodies of the upload routes (`/uploads...`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// `POST /uploads`. Numbers stay `serde_json::Number` so the server can name the field
/// of a negative or fractional value in its error instead of a generic parse error.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateUploadRequest {
    pub filename: String,
    pub size: serde_json::Number,
    pub content_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// `"SHA256"`: pin every part's SHA-256 (S3 refuses a part with other bytes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub part_checksums: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub part_size: Option<serde_json::Number>,
}

/// An upload as `POST /uploads`, `GET /uploads/{id}`, `complete` and `DELETE` answer it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct UploadView {
    pub id: String,
    pub status: String,
    pub filename: String,
    pub content_type: String,
    pub size: u64,
    pub part_size: u64,
    pub part_count: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub part_checksums: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    pub parts_done: u32,
    pub bytes_done: u64,
    /// Inclusive ranges `[first, last]` of part numbers not yet recorded.
    pub missing_parts: Vec<[u32; 2]>,
    pub created_at: String,
    pub updated_at: String,
    pub expires_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The type processing read from the bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detected_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub width: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub height: Option<u32>,
    #[serde(default)]
    pub has_thumbnail: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub processed_at: Option<String>,
    /// While a large file is checked in windows: how far along the checks are.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<ProcessingProgress>,
    /// Writes to the file's key after it was completed (a POST form sent again) that
    /// were thrown away: the file is always the bytes that were scanned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refused_writes: Option<u32>,
}

/// How far processing has come for a file checked in windows (larger than one scan
/// window): windows scanned in any order, the whole-file hash in order.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct ProcessingProgress {
    pub windows_total: u32,
    pub windows_scanned: u32,
    pub bytes_total: u64,
    /// Bytes in scanned windows (approximate: windows are of equal size but the last).
    pub bytes_scanned: u64,
    /// Bytes the whole-file SHA-256 has covered.
    pub bytes_hashed: u64,
}

impl ProcessingProgress {
    /// The share of the work done, 0.0 to 1.0 (scanning and hashing weigh the same).
    pub fn fraction(&self) -> f64 {
        if self.bytes_total == 0 {
            return 1.0;
        }
        (self.bytes_scanned + self.bytes_hashed) as f64 / (2 * self.bytes_total) as f64
    }
}

/// `POST /uploads/{id}/parts/sign`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignPartsRequest {
    pub parts: Vec<SignPartItem>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignPartItem {
    pub number: i64,
    /// Base64 or hex SHA-256 of the part (required when the upload pins checksums).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SignedPart {
    pub number: u32,
    pub url: String,
    pub method: String,
    /// Send these headers verbatim with the PUT.
    pub headers: BTreeMap<String, String>,
    /// The exact body length S3 will accept for this part (signed).
    pub content_length: u64,
    pub expires_at: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SignPartsResponse {
    pub parts: Vec<SignedPart>,
}

/// `POST /uploads/{id}/complete`: the body is optional. A client that hashes the file
/// while sending it declares the whole-file SHA-256 here instead of at creation.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompleteUploadRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
}

/// `PUT /uploads/{id}/parts`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordPartsRequest {
    pub parts: Vec<RecordPartItem>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordPartItem {
    pub number: i64,
    pub etag: String,
    pub size: serde_json::Number,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RecordPartsResponse {
    pub recorded: u32,
}

/// `GET /uploads`: the caller's open uploads (what holds their quota, to finish or
/// abort), and where their quotas stand.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct OpenUploads {
    pub uploads: Vec<UploadView>,
    pub quota: QuotaView,
}

/// An owner's quotas: what is used and the limit of each.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct QuotaView {
    pub open_uploads: u64,
    pub max_open_uploads: u64,
    /// Reserved by open uploads (their declared size, or the ceiling of one without).
    pub bytes_in_flight: u64,
    pub max_bytes_in_flight: u64,
    /// Taken by the owner's files (deleted ones give theirs back).
    pub bytes_stored: u64,
    /// Stored plus in flight may not exceed this.
    pub max_stored_bytes: u64,
}

/// `GET /uploads/{id}/parts`: the parts S3 holds for an open upload, as S3 lists them.
/// A client resuming after a crash records those it sent (its SHA-256 matches, which S3
/// enforced) instead of sending them again.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct HeldParts {
    pub parts: Vec<HeldPart>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct HeldPart {
    pub number: u32,
    pub etag: String,
    pub size: u64,
    /// Base64 SHA-256 S3 verified, when the upload pins part checksums.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
}
