//! What arrives on the processing queue: our own jobs, and S3's ObjectCreated
//! notifications for `uploads/` (single-POST uploads finish in S3, not in our API).

use serde::Deserialize;

use crate::domain::{ProcessJob, WindowJob};

/// One message of the processing queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueueMessage {
    Job(ProcessJob),
    /// One window of a large file (scan or hash).
    Window(WindowJob),
    /// Each object created.
    ObjectsCreated(Vec<CreatedObject>),
    /// S3's `s3:TestEvent`, sent when the notification is configured: nothing to do.
    S3Test,
}

/// An object S3 announced: where, and which version (absent in an unversioned bucket).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreatedObject {
    pub bucket: String,
    pub key: String,
    pub version: Option<String>,
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
    #[serde(rename = "versionId", default)]
    version_id: Option<String>,
}

#[derive(Deserialize)]
struct S3TestEvent {
    #[serde(rename = "Event")]
    event: String,
}

impl QueueMessage {
    pub fn parse(body: &str) -> Result<Self, serde_json::Error> {
        if let Ok(job) = serde_json::from_str::<WindowJob>(body) {
            return Ok(Self::Window(job));
        }
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
                .map(|r| CreatedObject {
                    bucket: r.s3.bucket.name,
                    key: decode_key(&r.s3.object.key),
                    // An unversioned bucket's objects are version "null".
                    version: r.s3.object.version_id.filter(|v| !v.is_empty() && v != "null"),
                })
                .collect(),
        ))
    }
}

/// S3 event keys are form-encoded: `+` for a space, `%XX` for the rest.
fn decode_key(raw: &str) -> String {
    percent_encoding::percent_decode_str(&raw.replace('+', " ")).decode_utf8_lossy().into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{ContentType, Owner, UploadId};

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
            redrive: 0,
        };
        assert_eq!(QueueMessage::parse(&serde_json::to_string(&job).unwrap()).unwrap(), QueueMessage::Job(job.clone()));
        let window = WindowJob::Scan { upload_id: job.upload_id, owner: job.owner, index: 7 };
        assert_eq!(
            QueueMessage::parse(&serde_json::to_string(&window).unwrap()).unwrap(),
            QueueMessage::Window(window)
        );
        // As S3 sends it (trimmed): form-encoded key, several records, a removal ignored.
        let event = r#"{"Records":[
            {"eventVersion":"2.1","eventSource":"aws:s3","eventName":"ObjectCreated:Post",
             "s3":{"bucket":{"name":"bkt","arn":"arn:aws:s3:::bkt"},"object":{"key":"uploads/a+b%2Bc","size":5,"eTag":"x","versionId":"3HL4kqtJlcpXroDTDmJ"}}},
            {"eventName":"ObjectRemoved:Delete","s3":{"bucket":{"name":"bkt"},"object":{"key":"uploads/z"}}},
            {"eventName":"ObjectCreated:Put","s3":{"bucket":{"name":"bkt"},"object":{"key":"uploads/y"}}}]}"#;
        assert_eq!(
            QueueMessage::parse(event).unwrap(),
            QueueMessage::ObjectsCreated(vec![
                CreatedObject {
                    bucket: "bkt".into(),
                    key: "uploads/a b+c".into(),
                    version: Some("3HL4kqtJlcpXroDTDmJ".into())
                },
                CreatedObject { bucket: "bkt".into(), key: "uploads/y".into(), version: None }
            ])
        );
        let test = r#"{"Service":"Amazon S3","Event":"s3:TestEvent","Time":"2026-11-21T12:00:00.000Z","Bucket":"bkt"}"#;
        assert_eq!(QueueMessage::parse(test).unwrap(), QueueMessage::S3Test);
        assert!(QueueMessage::parse("{}").is_err());
        assert!(QueueMessage::parse("not json").is_err());
    }
}
