//! SQS: the processing job sent when an upload's object exists.

use aws_sdk_sqs::{error::ProvideErrorMetadata, Client};
use serde::{Deserialize, Serialize};

use crate::domain::{ContentType, Owner, Sha256Digest, UploadId};

/// The message the processing function receives. Delivered at least once:
/// consumers make every effect conditional, so a duplicate is harmless.
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

#[derive(Debug, thiserror::Error)]
#[error("sqs SendMessage: {0}")]
pub struct QueueError(String);

#[derive(Clone)]
pub struct Queue {
    client: Client,
    url: String,
    /// Delivery delay of each job, so the status write that follows the send lands
    /// first (the consumer also retries a job that arrives too early).
    delay_secs: i32,
}

impl Queue {
    pub fn new(client: Client, url: String, delay_secs: i32) -> Self {
        Self { client, url, delay_secs: delay_secs.clamp(0, 900) }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub async fn send(&self, job: &ProcessJob) -> Result<(), QueueError> {
        let body = serde_json::to_string(job).map_err(|e| QueueError(e.to_string()))?;
        self.client
            .send_message()
            .queue_url(&self.url)
            .message_body(body)
            .delay_seconds(self.delay_secs)
            .send()
            .await
            .map_err(|e| {
                QueueError(format!(
                    "{}: {}",
                    e.code().unwrap_or("error"),
                    aws_smithy_types::error::display::DisplayErrorContext(&e)
                ))
            })?;
        Ok(())
    }
}
