//! SQS: the processing job sent when an upload's object exists, and the other messages
//! the processing queue carries.

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

/// What arrives on the processing queue: our own jobs, and S3's ObjectCreated
/// notifications for `uploads/` (single-POST uploads finish in S3, not in our API).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueueMessage {
    Job(ProcessJob),
    /// `(bucket, key)` of each object created.
    ObjectsCreated(Vec<(String, String)>),
    /// S3's `s3:TestEvent`, sent when the notification is configured: nothing to do.
    S3Test,
}

#[derive(Deserialize)]
struct S3Notification {
    #[serde(rename = "Records")]
    records: Vec<S3Record>,
}

#[derive(Deserialize)]
struct S3Record {
    #[serde(rename = "eventName")]
    event_name: String,
    s3: S3Entity,
}

#[derive(Deserialize)]
struct S3Entity {
    bucket: S3Bucket,
    object: S3Object,
}

#[derive(Deserialize)]
struct S3Bucket {
    name: String,
}

#[derive(Deserialize)]
struct S3Object {
    key: String,
}

#[derive(Deserialize)]
struct S3TestEvent {
    #[serde(rename = "Event")]
    event: String,
}

impl QueueMessage {
    pub fn parse(body: &str) -> Result<Self, serde_json::Error> {
        if let Ok(job) = serde_json::from_str::<ProcessJob>(body) {
            return Ok(Self::Job(job));
        }
        if let Ok(test) = serde_json::from_str::<S3TestEvent>(body) {
            if test.event == "s3:TestEvent" {
                return Ok(Self::S3Test);
            }
        }
        let n: S3Notification = serde_json::from_str(body)?;
        Ok(Self::ObjectsCreated(
            n.records
                .into_iter()
                .filter(|r| r.event_name.starts_with("ObjectCreated:"))
                .map(|r| (r.s3.bucket.name, decode_key(&r.s3.object.key)))
                .collect(),
        ))
    }
}

/// S3 event keys are form-encoded: `+` for a space, `%XX` for the rest.
fn decode_key(raw: &str) -> String {
    percent_encoding::percent_decode_str(&raw.replace('+', " ")).decode_utf8_lossy().into_owned()
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

    /// Brings a received message back after `after` instead of the queue's visibility
    /// timeout (16 minutes in AWS): for a message that only came too early. Best effort:
    /// if it fails, the timeout still brings the message back.
    pub async fn retry_in(&self, receipt_handle: &str, after: std::time::Duration) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_jobs_s3_events_and_test_events() {
        let job = ProcessJob {
            version: 1,
            upload_id: UploadId::generate(),
            owner: Owner::parse("alice").unwrap(),
            bucket: "b".into(),
            key: "uploads/x".into(),
            size: 3,
            etag: "e".into(),
            content_type: ContentType::parse("image/png").unwrap(),
            sha256: None,
        };
        assert_eq!(QueueMessage::parse(&serde_json::to_string(&job).unwrap()).unwrap(), QueueMessage::Job(job));
        // As S3 sends it (trimmed): form-encoded key, several records, a removal ignored.
        let event = r#"{"Records":[
            {"eventVersion":"2.1","eventSource":"aws:s3","eventName":"ObjectCreated:Post",
             "s3":{"bucket":{"name":"bkt","arn":"arn:aws:s3:::bkt"},"object":{"key":"uploads/a+b%2Bc","size":5,"eTag":"x"}}},
            {"eventName":"ObjectRemoved:Delete","s3":{"bucket":{"name":"bkt"},"object":{"key":"uploads/z"}}},
            {"eventName":"ObjectCreated:Put","s3":{"bucket":{"name":"bkt"},"object":{"key":"uploads/y"}}}]}"#;
        assert_eq!(
            QueueMessage::parse(event).unwrap(),
            QueueMessage::ObjectsCreated(vec![
                ("bkt".into(), "uploads/a b+c".into()),
                ("bkt".into(), "uploads/y".into())
            ])
        );
        let test = r#"{"Service":"Amazon S3","Event":"s3:TestEvent","Time":"2026-11-21T12:00:00.000Z","Bucket":"bkt"}"#;
        assert_eq!(QueueMessage::parse(test).unwrap(), QueueMessage::S3Test);
        assert!(QueueMessage::parse("{}").is_err());
        assert!(QueueMessage::parse("not json").is_err());
    }
}
