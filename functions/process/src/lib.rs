//! SQS-triggered processing: one streaming pass per file to sniff its real type,
//! verify its SHA-256 and scan it with clamd; thumbnails for images. Reports
//! partial batch failures, so one bad message never fails its neighbours.
use std::sync::Arc;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use lambda_runtime::{Error, LambdaEvent};
use shared::{pipeline, queue::ProcessJob, App};

pub const FUNCTION: &str = "process";

pub struct Processor {
    pub app: Arc<App>,
    pub config: pipeline::ProcessConfig,
}

pub async fn handle(p: Arc<Processor>, event: LambdaEvent<SqsEvent>) -> Result<SqsBatchResponse, Error> {
    let mut response = SqsBatchResponse::default();
    for message in event.payload.records {
        let message_id = message.message_id.clone().unwrap_or_default();
        let receive_count = message.attributes.get("ApproximateReceiveCount").and_then(|v| v.parse().ok()).unwrap_or(1);
        let job: ProcessJob = match serde_json::from_str(message.body.as_deref().unwrap_or("")) {
            Ok(job) => job,
            Err(e) => {
                // Not ours to fix: after maxReceiveCount deliveries it lands on the DLQ.
                tracing::error!(message_id, error = %e, "unreadable processing job");
                response.add_failure(message_id);
                continue;
            }
        };
        match pipeline::process(&p.app, &p.config, &job, receive_count).await {
            Ok(outcome) => tracing::debug!(message_id, ?outcome, "job done"),
            Err(e) => {
                tracing::warn!(message_id, upload_id = %job.upload_id, receive_count, error = %e, "job failed; SQS will redeliver");
                response.add_failure(message_id);
            }
        }
    }
    Ok(response)
}
