//! SQS-triggered processing: one streaming pass per file to sniff its real type,
//! verify its SHA-256 and scan it with clamd; thumbnails for images. The same queue
//! carries S3's ObjectCreated events, which complete single-POST uploads (their job
//! follows). Reports partial batch failures, so one bad message never fails its neighbours.
use std::sync::Arc;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use lambda_runtime::{Error, LambdaEvent};
use shared::{
    processing::{self, CreatedObject, PipelineError, QueueMessage},
    usecases::arrival,
};

pub use shared::processing::Processor;

pub const FUNCTION: &str = "process";

/// When a message that came too early (its upload still `completing`) is tried again.
const RETRY_SOON: std::time::Duration = std::time::Duration::from_secs(5);

/// What became of one message; ordered from best to worst.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Handled {
    Done,
    /// Not yet possible (its upload is still being completed): retried in seconds.
    TooEarly,
    /// Retried after the visibility timeout; on the DLQ after maxReceiveCount.
    Failed,
}

pub async fn handle(p: Arc<Processor>, event: LambdaEvent<SqsEvent>) -> Result<SqsBatchResponse, Error> {
    let mut response = SqsBatchResponse::default();
    for message in event.payload.records {
        let message_id = message.message_id.clone().unwrap_or_default();
        let receive_count = message.attributes.get("ApproximateReceiveCount").and_then(|v| v.parse().ok()).unwrap_or(1);
        let parsed = match QueueMessage::parse(message.body.as_deref().unwrap_or("")) {
            Ok(m) => m,
            Err(e) => {
                // Not ours to fix: after maxReceiveCount deliveries it lands on the DLQ.
                tracing::error!(message_id, error = %e, "unreadable processing message");
                response.add_failure(message_id);
                continue;
            }
        };
        let handled = match parsed {
            QueueMessage::Job(job) => match processing::process(&p, &job, receive_count).await {
                Ok(outcome) => {
                    tracing::debug!(message_id, ?outcome, "job done");
                    Handled::Done
                }
                Err(PipelineError::NotYet) => {
                    tracing::info!(message_id, upload_id = %job.upload_id, "upload still completing; retrying soon");
                    Handled::TooEarly
                }
                Err(e) => {
                    tracing::warn!(message_id, upload_id = %job.upload_id, receive_count, error = %e, "job failed; SQS will redeliver");
                    Handled::Failed
                }
            },
            QueueMessage::Window(job) => match processing::process_window(&p, &job, receive_count).await {
                Ok(outcome) => {
                    tracing::debug!(message_id, ?outcome, "window job done");
                    Handled::Done
                }
                Err(PipelineError::NotYet) => Handled::TooEarly,
                Err(e) => {
                    tracing::warn!(message_id, upload_id = %job.upload_id(), receive_count, error = %e, "window job failed; SQS will redeliver");
                    Handled::Failed
                }
            },
            QueueMessage::ObjectsCreated(objects) => {
                let mut handled = Handled::Done;
                for CreatedObject { bucket, key, version } in objects {
                    if bucket != p.app.objects.bucket() {
                        tracing::warn!(message_id, bucket, key, "object event for another bucket ignored");
                        continue;
                    }
                    match arrival::object_arrived(&p.app, &key, version.as_deref(), shared::now()).await {
                        Ok(arrival) => tracing::info!(message_id, key, ?arrival, "object arrived"),
                        // Another worker holds the completion lease: done in moments.
                        Err(e) if e.is_transient_conflict() => {
                            tracing::info!(message_id, key, error = %e, "object event too early; retrying soon");
                            handled = handled.max(Handled::TooEarly);
                        }
                        Err(e) => {
                            tracing::warn!(message_id, key, error = %e, "object event failed; SQS will redeliver");
                            handled = Handled::Failed;
                        }
                    }
                }
                handled
            }
            QueueMessage::S3Test => Handled::Done,
        };
        if handled == Handled::TooEarly {
            // It came before a status write it depends on, which lands in moments: back in
            // seconds, not after the whole visibility timeout.
            if let Some(handle) = message.receipt_handle.as_deref() {
                p.app.jobs.retry_in(handle, RETRY_SOON).await;
            }
        }
        if handled != Handled::Done {
            response.add_failure(message_id);
        }
    }
    Ok(response)
}
