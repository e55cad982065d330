//! The processing job: sent when an upload's object exists, delivered at least once.

use serde::{Deserialize, Serialize};

use super::{ContentType, Owner, Sha256Digest, Upload, UploadId};

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
    /// Sent again by the janitor (how many times): the job resumes whatever was left
    /// undone instead of taking itself for a duplicate.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub redrive: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl ProcessJob {
    /// The job for a completed upload's object (`bucket`, its ETag `etag`).
    pub fn for_upload(upload: &Upload, bucket: &str, etag: &str) -> Self {
        ProcessJob {
            version: 1,
            upload_id: upload.id.clone(),
            owner: upload.owner.clone(),
            bucket: bucket.to_owned(),
            key: upload.s3_key.clone(),
            size: upload.size,
            etag: etag.to_owned(),
            content_type: upload.content_type.clone(),
            sha256: upload.sha256,
            redrive: 0,
        }
    }
}
