//! Lambda's SQS event source mapping, locally: long-poll the queue, hand batches to
//! the process handler as an `SqsEvent`, delete what succeeded and leave reported
//! failures to reappear after the visibility timeout (and reach the DLQ after the
//! queue's maxReceiveCount), exactly as the partial-batch-response contract says.

use std::sync::Arc;

use aws_sdk_sqs::types::{DeleteMessageBatchRequestEntry, MessageSystemAttributeName};
use serde_json::json;

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PollReport {
    pub received: usize,
    pub failed: usize,
}

pub async fn poll_once(
    processor: &Arc<process::Processor>,
    sqs: &aws_sdk_sqs::Client,
    queue_url: &str,
    wait_secs: i32,
) -> Result<PollReport, String> {
    poll(processor, sqs, queue_url, wait_secs, 10).await
}

/// Receives up to `batch` messages (1..=10) and hands them to the handler as one event.
pub async fn poll(
    processor: &Arc<process::Processor>,
    sqs: &aws_sdk_sqs::Client,
    queue_url: &str,
    wait_secs: i32,
    batch: i32,
) -> Result<PollReport, String> {
    let out = sqs
        .receive_message()
        .queue_url(queue_url)
        .max_number_of_messages(batch.clamp(1, 10))
        .wait_time_seconds(wait_secs)
        .message_system_attribute_names(MessageSystemAttributeName::All)
        .send()
        .await
        .map_err(|e| aws_smithy_types::error::display::DisplayErrorContext(&e).to_string())?;
    let messages = out.messages.unwrap_or_default();
    if messages.is_empty() {
        return Ok(PollReport::default());
    }
    let queue_name = queue_url.rsplit('/').next().unwrap_or("queue");
    let records: Vec<serde_json::Value> = messages
        .iter()
        .map(|m| {
            let attributes: serde_json::Map<String, serde_json::Value> =
                m.attributes().into_iter().flatten().map(|(k, v)| (k.as_str().to_owned(), json!(v))).collect();
            json!({
                "messageId": m.message_id(),
                "receiptHandle": m.receipt_handle(),
                "body": m.body(),
                "md5OfBody": m.md5_of_body(),
                "attributes": attributes,
                "messageAttributes": {},
                "eventSource": "aws:sqs",
                "eventSourceARN": format!("arn:aws:sqs:us-east-1:000000000000:{queue_name}"),
                "awsRegion": "us-east-1",
            })
        })
        .collect();
    let event: aws_lambda_events::event::sqs::SqsEvent =
        serde_json::from_value(json!({ "Records": records })).map_err(|e| e.to_string())?;
    let response =
        process::handle(processor.clone(), lambda_runtime::LambdaEvent::new(event, lambda_runtime::Context::default()))
            .await
            .map_err(|e| e.to_string())?;
    let failed: std::collections::HashSet<&str> =
        response.batch_item_failures.iter().map(|f| f.item_identifier.as_str()).collect();
    let done: Vec<DeleteMessageBatchRequestEntry> = messages
        .iter()
        .filter(|m| !failed.contains(m.message_id().unwrap_or("")))
        .enumerate()
        .filter_map(|(i, m)| {
            DeleteMessageBatchRequestEntry::builder().id(i.to_string()).receipt_handle(m.receipt_handle()?).build().ok()
        })
        .collect();
    if !done.is_empty() {
        sqs.delete_message_batch()
            .queue_url(queue_url)
            .set_entries(Some(done))
            .send()
            .await
            .map_err(|e| aws_smithy_types::error::display::DisplayErrorContext(&e).to_string())?;
    }
    Ok(PollReport { received: messages.len(), failed: failed.len() })
}

/// One of the dev server's pollers (Lambda instances, locally): one message per
/// invocation, as the template's `BatchSize: 1`; runs until the process exits.
pub fn spawn_poller(
    processor: Arc<process::Processor>,
    sqs: aws_sdk_sqs::Client,
    queue_url: String,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            match poll(&processor, &sqs, &queue_url, 5, 1).await {
                Ok(r) if r.received > 0 => {
                    tracing::info!(received = r.received, failed = r.failed, "processed a batch")
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "queue poll failed; retrying");
                    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
                }
            }
        }
    })
}
