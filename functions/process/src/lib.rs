//! SQS-triggered processing: one streaming pass per file to sniff its real type,
//! verify its SHA-256 and scan it with clamd; thumbnails for images. The same queue
//! carries S3's ObjectCreated events, which complete single-POST uploads (their job
//! follows). Reports partial batch failures, so one bad message never fails its neighbours.
use std::sync::Arc;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use lambda_runtime::{Error, LambdaEvent};
use shared::{pipeline, queue::QueueMessage, uploads, App};

pub const FUNCTION: &str = "process";

/// When a message that came too early (its upload still `completing`) is tried again.
const RETRY_SOON: std::time::Duration = std::time::Duration::from_secs(5);

pub struct Processor {
    pub app: Arc<App>,
    pub config: pipeline::ProcessConfig,
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
        let ok = match parsed {
            QueueMessage::Job(job) => match pipeline::process(&p.app, &p.config, &job, receive_count).await {
                Ok(outcome) => {
                    tracing::debug!(message_id, ?outcome, "job done");
                    true
                }
                Err(pipeline::PipelineError::NotYet) => {
                    // Came before the status write it depends on, which lands in moments:
                    // back in seconds, not after the whole visibility timeout.
                    tracing::info!(message_id, upload_id = %job.upload_id, "upload still completing; retrying soon");
                    if let Some(handle) = message.receipt_handle.as_deref() {
                        p.app.queue.retry_in(handle, RETRY_SOON).await;
                    }
                    false
                }
                Err(e) => {
                    tracing::warn!(message_id, upload_id = %job.upload_id, receive_count, error = %e, "job failed; SQS will redeliver");
                    false
                }
            },
            QueueMessage::ObjectsCreated(objects) => {
                let mut all = true;
                for (bucket, key) in objects {
                    if bucket != p.app.storage.bucket() {
                        tracing::warn!(message_id, bucket, key, "object event for another bucket ignored");
                        continue;
                    }
                    match uploads::object_arrived(&p.app, &key, shared::now()).await {
                        Ok(arrival) => tracing::info!(message_id, key, ?arrival, "object arrived"),
                        Err(e) => {
                            tracing::warn!(message_id, key, error = %e, "object event failed; SQS will redeliver");
                            if matches!(e, shared::api::ApiError::Conflict { .. }) {
                                // Another worker holds the completion lease: done in moments.
                                if let Some(handle) = message.receipt_handle.as_deref() {
                                    p.app.queue.retry_in(handle, RETRY_SOON).await;
                                }
                            }
                            all = false;
                        }
                    }
                }
                all
            }
            QueueMessage::S3Test => true,
        };
        if !ok {
            response.add_failure(message_id);
        }
    }
    Ok(response)
}
