//! The processing job: sent when an upload's object exists, delivered at least once.

use serde::{Deserialize, Serialize};

use super::{ContentType, Owner, Sha256Digest, UploadId};

/// The message the processing function receives. Consumers make every effect
/// conditional, so a duplicate is harmless; the stored upload, not the job, says which
/// object to read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessJob {
    pub version: u8,
    pub upload_id: UploadId,
    pub owner: Owner,
    pub bucket: String,
    pub key: String,
    pub size: u64,
    pub etag: String,
    pub content_type: ContentType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<Sha256Digest>,
}
