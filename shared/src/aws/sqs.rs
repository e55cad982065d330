//! The job queue on SQS: processing jobs, and early messages handed back.

use async_trait::async_trait;
use aws_sdk_sqs::{error::ProvideErrorMetadata, Client};

use crate::domain::ProcessJob;
use crate::ports::{JobQueue, QueueError};

/// [`JobQueue`] on one SQS queue.
#[derive(Clone)]
pub struct SqsQueue {
    client: Client,
    url: String,
    /// Delivery delay of each job, so the status write that follows the send lands
    /// first (the consumer also retries a job that arrives too early).
    delay_secs: i32,
}

impl SqsQueue {
    pub fn new(client: Client, url: String, delay_secs: i32) -> Self {
        Self { client, url, delay_secs: delay_secs.clamp(0, 900) }
    }

    pub fn url(&self) -> &str {
        &self.url
    }
}

#[async_trait]
impl JobQueue for SqsQueue {
    async fn retry_in(&self, receipt_handle: &str, after: std::time::Duration) {
        let secs = i32::try_from(after.as_secs()).unwrap_or(i32::MAX).clamp(0, 43_200);
        if let Err(e) = self
            .client
            .change_message_visibility()
            .queue_url(&self.url)
            .receipt_handle(receipt_handle)
            .visibility_timeout(secs)
            .send()
            .await
        {
            tracing::warn!(error = %aws_smithy_types::error::display::DisplayErrorContext(&e), "could not shorten a message's visibility");
        }
    }

    async fn send(&self, job: &ProcessJob) -> Result<(), QueueError> {
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
