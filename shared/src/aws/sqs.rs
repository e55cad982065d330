//! The job queue on SQS: processing jobs, and early messages handed back.

use async_trait::async_trait;
use aws_sdk_sqs::{error::ProvideErrorMetadata, Client};

use crate::domain::{ProcessJob, WindowJob};
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

    async fn send_windows(&self, jobs: &[WindowJob]) -> Result<(), QueueError> {
        use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
        for batch in jobs.chunks(10) {
            let mut entries = Vec::with_capacity(batch.len());
            for (i, job) in batch.iter().enumerate() {
                let body = serde_json::to_string(job).map_err(|e| QueueError(e.to_string()))?;
                let entry = SendMessageBatchRequestEntry::builder().id(i.to_string()).message_body(body).build();
                entries.push(entry.map_err(|e| QueueError(e.to_string()))?);
            }
            let out = self
                .client
                .send_message_batch()
                .queue_url(&self.url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(|e| QueueError(aws_smithy_types::error::display::DisplayErrorContext(&e).to_string()))?;
            // A partly failed batch fails the whole call: the caller's retry re-sends it,
            // and repeated window jobs are harmless.
            if let Some(f) = out.failed().first() {
                return Err(QueueError(format!(
                    "{} of {} window jobs not queued: {}",
                    out.failed().len(),
                    batch.len(),
                    f.code()
                )));
            }
        }
        Ok(())
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
