//! What can go wrong in a use case, by meaning. Workers match on these (the janitor
//! counts [`UploadError::Incomplete`], the queue consumer retries [`UploadError::LeaseHeld`]
//! soon); the HTTP status is chosen only at the edge (`http::problem`). Infrastructure
//! failures keep their source.

use super::{Invalid, UploadStatus};
use crate::ports::{ObjectStoreError, QueueError, RepoError};
use crate::rfc3339;

#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    /// A value the client sent is not acceptable (names its field).
    #[error(transparent)]
    Invalid(#[from] Invalid),
    /// No such upload, or not the caller's (indistinguishable on purpose).
    #[error("No upload with this id exists.")]
    NotFound,
    /// No such file (an upload whose object exists), or not the caller's.
    #[error("No file with this id exists.")]
    FileNotFound,
    #[error("This file has no thumbnail.")]
    NoThumbnail,
    /// The upload is past the point where `action` makes sense.
    #[error("{}", not_open_sentence(.action, *.status, *.expires_at))]
    NotOpen { action: &'static str, status: UploadStatus, expires_at: i64 },
    /// Another caller holds a live completion lease; it will be done in moments.
    #[error("Another request is still completing this upload; ask again in a few seconds.")]
    LeaseHeld,
    /// The upload belongs to the other protocol (`/uploads` vs Companion's `/s3`).
    #[error("{0}")]
    WrongProtocol(&'static str),
    /// Parts are missing or differ from what was recorded: the client can fix and retry.
    #[error("{detail}")]
    Incomplete { detail: String, missing_parts: Vec<[u32; 2]>, mismatched_parts: Option<Vec<u32>> },
    /// The whole-file SHA-256 sent at completion is not the one declared before.
    #[error("This upload's SHA-256 was declared as {declared}; the one sent to complete it ({sent}) differs. Hash the file again: it may have changed.")]
    HashConflict { declared: String, sent: String },
    /// A whole-file SHA-256 sent to an upload that was completed without one.
    #[error("This upload was already completed without a whole-file SHA-256; the one sent now cannot be recorded or verified.")]
    HashTooLate,
    #[error("No parts have been uploaded yet.")]
    NoPartsYet,
    #[error("S3 no longer holds this upload's parts (aborted or expired). Start a new upload.")]
    PartsGone,
    #[error("S3 refused to complete this upload and holds no object for it. Start a new upload.")]
    NoObject,
    #[error("S3 has not received this upload's file yet.")]
    NotArrived,
    #[error("S3 refused to assemble the parts ({code}): {message}")]
    AssemblyRefused { code: String, message: String },
    /// A size learnt at completion is above the limit: what S3 held was discarded.
    #[error("The upload is {size} bytes, above this service's limit of {limit} bytes; it was discarded.")]
    TooLarge { size: u64, limit: u64 },
    #[error("You have reached your limit of {max_open} open uploads or {max_bytes} bytes in flight. Complete or abort an upload, then retry.")]
    QuotaExceeded { max_open: u64, max_bytes: u64 },
    #[error("This needs {needed} bytes, but your storage quota of {limit} bytes has {available} left (files and open uploads count). Delete files or abort uploads, then retry.")]
    StorageFull { needed: u64, available: u64, limit: u64 },
    #[error("Too many requests: at most {limit} a minute per account. Retry in {retry_after_secs} s.")]
    RateLimited { limit: u32, retry_after_secs: u64 },
    /// An upload of undeclared size went past the ceiling it reserved.
    #[error("The upload went past the {limit} bytes a session without a declared size may hold; it was discarded. Declare the size (POST /uploads) for larger files.")]
    OverCeiling { limit: u64 },
    #[error("The file is still being checked; try again in a few seconds.")]
    StillProcessing,
    /// The file exists but is never served (quarantined, rejected, ...).
    #[error("{}", not_servable_sentence(*.status, .reason))]
    NotServable { status: UploadStatus, reason: String },
    /// The file was deleted (or purged); the sentence says which.
    #[error("{0}")]
    Gone(&'static str),
    #[error("This download link is not valid (it was altered or truncated).")]
    LinkInvalid,
    #[error("This download link has expired; ask for a new one.")]
    LinkExpired,
    #[error(transparent)]
    Repo(#[from] RepoError),
    #[error(transparent)]
    Storage(#[from] ObjectStoreError),
    #[error(transparent)]
    Queue(#[from] QueueError),
    /// A broken invariant or missing configuration: a bug or an operator's to fix.
    #[error("{0}")]
    Internal(String),
}

impl UploadError {
    /// Infrastructure that said "slow down": worth a retry in a moment.
    pub fn is_throttling(&self) -> bool {
        match self {
            UploadError::Repo(e) => e.is_throttling(),
            UploadError::Storage(e) => e.is_throttling(),
            _ => false,
        }
    }

    /// The completion was refused for a reason the client can fix (parts missing or
    /// mismatched, nothing sent yet, S3 refusing the part list): the lease was given back.
    pub fn is_completion_refused(&self) -> bool {
        matches!(
            self,
            UploadError::Incomplete { .. }
                | UploadError::NoPartsYet
                | UploadError::PartsGone
                | UploadError::NoObject
                | UploadError::NotArrived
                | UploadError::AssemblyRefused { .. }
        )
    }

    /// Comes right by itself in moments (a lease about to be released, a status write
    /// about to land): callers that can wait should retry soon rather than fail.
    pub fn is_transient_conflict(&self) -> bool {
        matches!(self, UploadError::LeaseHeld)
    }
}

fn not_open_sentence(action: &str, status: UploadStatus, expires_at: i64) -> String {
    match status {
        UploadStatus::Completing => format!("Cannot {action}: the upload is being completed."),
        UploadStatus::Expired => {
            format!("Cannot {action}: the upload expired at {}. Start a new upload.", rfc3339(expires_at))
        }
        UploadStatus::Aborted => format!("Cannot {action}: the upload was aborted."),
        s => format!("Cannot {action}: the upload is already complete (status {}).", s.as_str()),
    }
}

fn not_servable_sentence(status: UploadStatus, why: &str) -> String {
    match status {
        UploadStatus::Quarantined => format!("The file is quarantined and is never served. {why}"),
        UploadStatus::Rejected => format!("The file was rejected and is never served. {why}"),
        UploadStatus::Corrupt => format!("The file is corrupt and is never served. {why}"),
        UploadStatus::Unscanned => format!("The file could not be scanned and is not served. {why}"),
        _ => format!("The file could not be processed and is not served. {why}"),
    }
}
