//! DynamoDB access. One table:
//!
//! | item              | pk                | sk           | notes                                   |
//! |-------------------|-------------------|--------------|-----------------------------------------|
//! | upload session    | `UPLOAD#<id>`     | `META`       | status machine, plan, S3 ids            |
//! | recorded part     | `UPLOAD#<id>`     | `PART#00042` | etag, size, sha256; TTL'd               |
//! | owner quota       | `OWNER#<owner>`   | `QUOTA`      | open_uploads, bytes_in_flight counters  |
//!
//! GSI `gsi1` (gsi1pk, gsi1sk) holds only sessions that still need attention
//! (`OPEN`, keyed by the time the janitor should look), so the janitor's query is
//! sparse. Every status change is a conditional write; the quota counters move in
//! the same transaction as the status, so they cannot drift.

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_dynamodb::{
    error::{ProvideErrorMetadata, SdkError},
    types::{AttributeValue, Put, PutRequest, TransactWriteItem, Update, WriteRequest},
    Client,
};
use futures::{stream, StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};

use crate::domain::{ContentType, FileName, Owner, Sha256Digest, UploadId};

pub const GSI_OPEN: &str = "gsi1";
pub const GSI_FILES: &str = "gsi2";
const OPEN: &str = "OPEN";
const PURGE: &str = "PURGE";

/// Sort key of a file in its owner's catalog: completion time in milliseconds, then id.
pub fn catalog_sort_key(completed_at_ms: i64, id: &UploadId) -> String {
    format!("{completed_at_ms:015}#{id}")
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("dynamodb {op}: {code}: {message}")]
    Service { op: &'static str, code: String, message: String, throttled: bool },
    #[error("dynamodb {op}: {detail}")]
    Other { op: &'static str, detail: String },
    #[error("stored item is unreadable: {0}")]
    Corrupt(String),
}

impl StoreError {
    pub fn is_throttling(&self) -> bool {
        matches!(self, StoreError::Service { throttled: true, .. })
    }
}

fn map_err<E, R>(op: &'static str, e: SdkError<E, R>) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug,
{
    match e.as_service_error() {
        Some(se) => {
            let code = se.code().unwrap_or("Unknown").to_owned();
            let throttled = matches!(
                code.as_str(),
                "ProvisionedThroughputExceededException" | "ThrottlingException" | "RequestLimitExceeded"
            );
            StoreError::Service { op, code, message: se.message().unwrap_or("").to_owned(), throttled }
        }
        None => StoreError::Other { op, detail: aws_smithy_types::error::display::DisplayErrorContext(&e).to_string() },
    }
}

fn is_conditional_failure(e: &StoreError) -> bool {
    matches!(e, StoreError::Service { code, .. } if code == "ConditionalCheckFailedException")
}

/// A conditional write's outcome: true when written, false when its condition failed.
fn conditional(res: Result<(), StoreError>) -> Result<bool, StoreError> {
    match res {
        Ok(()) => Ok(true),
        Err(e) if is_conditional_failure(&e) => Ok(false),
        Err(e) => Err(e),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UploadStatus {
    /// Parts are being sent.
    Uploading,
    /// One `complete` call holds the lease and is finishing the object.
    Completing,
    /// The object exists; a processing job was sent.
    Processing,
    Ready,
    Quarantined,
    Rejected,
    Corrupt,
    Failed,
    Aborted,
    Expired,
    /// Too large for the scanner; not served under the default policy.
    Unscanned,
}

impl UploadStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            UploadStatus::Uploading => "uploading",
            UploadStatus::Completing => "completing",
            UploadStatus::Processing => "processing",
            UploadStatus::Ready => "ready",
            UploadStatus::Quarantined => "quarantined",
            UploadStatus::Rejected => "rejected",
            UploadStatus::Corrupt => "corrupt",
            UploadStatus::Failed => "failed",
            UploadStatus::Aborted => "aborted",
            UploadStatus::Expired => "expired",
            UploadStatus::Unscanned => "unscanned",
        }
    }

    /// The object was assembled (processing or any outcome of processing).
    pub fn is_completed(self) -> bool {
        matches!(
            self,
            UploadStatus::Processing
                | UploadStatus::Ready
                | UploadStatus::Quarantined
                | UploadStatus::Rejected
                | UploadStatus::Corrupt
                | UploadStatus::Failed
                | UploadStatus::Unscanned
        )
    }
}

fn sv(s: impl Into<String>) -> AttributeValue {
    AttributeValue::S(s.into())
}
fn nv(n: impl ToString) -> AttributeValue {
    AttributeValue::N(n.to_string())
}

pub fn upload_pk(id: &UploadId) -> String {
    format!("UPLOAD#{id}")
}
fn part_sk(n: u32) -> String {
    format!("PART#{n:05}")
}
fn quota_pk(owner: &Owner) -> String {
    format!("OWNER#{owner}")
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UploadRecord {
    pub pk: String,
    pub sk: String,
    pub id: UploadId,
    pub owner: Owner,
    pub status: UploadStatus,
    pub filename: FileName,
    pub content_type: ContentType,
    pub size: u64,
    pub part_size: u64,
    pub part_count: u32,
    /// Parts carry SHA-256 checksums (fixed at CreateMultipartUpload).
    pub part_checksums: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<Sha256Digest>,
    pub s3_key: String,
    pub s3_upload_id: String,
    pub created_at: i64,
    pub updated_at: i64,
    pub expires_at: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_until: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// What processing read from the bytes (MIME type), if recognised.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detected_type: Option<String>,
    /// SHA-256 of the stored object as processing computed it (hex).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_sha256: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thumbnail_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub width: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub height: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub processed_at: Option<i64>,
    /// Soft delete: when, and when the janitor purges it for good.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deleted_at: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purge_at: Option<i64>,
    /// The size was not declared (Uppy's Companion protocol): `size` is 0 and no bytes are
    /// reserved in the quota until completion learns it.
    #[serde(default)]
    pub deferred_size: bool,
    /// Sent as one presigned POST (Uppy's `/s3/params`), not multipart: `s3_upload_id` is
    /// empty, and S3's ObjectCreated event (not a client call) completes the session.
    #[serde(default)]
    pub single_post: bool,
    /// Catalog index (set when the object exists): the owner's files, newest first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gsi2pk: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gsi2sk: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gsi1pk: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gsi1sk: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<i64>,
}

impl UploadRecord {
    /// Bytes this session holds in its owner's in-flight quota.
    pub fn reserved_bytes(&self) -> u64 {
        if self.deferred_size {
            0
        } else {
            self.size
        }
    }

    /// Keys for a new session that the janitor will look at when it expires.
    pub fn open_keys(id: &UploadId, expires_at: i64) -> (String, String, Option<String>, Option<i64>) {
        (upload_pk(id), "META".into(), Some(OPEN.into()), Some(expires_at))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartRecord {
    pub number: u32,
    pub etag: String,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
}

/// What processing found, written in one conditional update.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessingOutcome {
    pub status: UploadStatus,
    pub reason: String,
    pub detected_type: Option<String>,
    pub content_sha256: Option<String>,
    pub thumbnail_key: Option<String>,
    pub width: Option<u32>,
    pub height: Option<u32>,
}

/// A page of the catalog and where the next one starts.
#[derive(Debug, Clone)]
pub struct FilePage {
    pub items: Vec<UploadRecord>,
    pub last_key: Option<(String, UploadId)>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Quota {
    pub open_uploads: u64,
    pub bytes_in_flight: u64,
}

/// Why a new session was not stored.
#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    #[error("owner quota exceeded")]
    QuotaExceeded,
    #[error(transparent)]
    Store(#[from] StoreError),
}

#[derive(Clone)]
pub struct Store {
    client: Client,
    table: String,
}

impl Store {
    pub fn new(client: Client, table: String) -> Self {
        Self { client, table }
    }

    fn quota_update(&self, owner: &Owner, open_delta: i64, bytes_delta: i128) -> Result<Update, StoreError> {
        Update::builder()
            .table_name(&self.table)
            .key("pk", sv(quota_pk(owner)))
            .key("sk", sv("QUOTA"))
            .update_expression("ADD open_uploads :d, bytes_in_flight :b")
            .expression_attribute_values(":d", nv(open_delta))
            .expression_attribute_values(":b", nv(bytes_delta))
            .build()
            .map_err(|e| StoreError::Corrupt(e.to_string()))
    }

    pub async fn quota(&self, owner: &Owner) -> Result<Quota, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", sv(quota_pk(owner)))
            .key("sk", sv("QUOTA"))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| map_err("GetItem", e))?;
        let num = |k: &str| -> u64 {
            out.item()
                .and_then(|i| i.get(k))
                .and_then(|v| v.as_n().ok())
                .and_then(|n| n.parse::<i64>().ok())
                .unwrap_or(0)
                .max(0) as u64
        };
        Ok(Quota { open_uploads: num("open_uploads"), bytes_in_flight: num("bytes_in_flight") })
    }

    /// Stores a new session and reserves its quota in one transaction.
    pub async fn create_session(&self, rec: &UploadRecord, max_open: u64, max_bytes: u64) -> Result<(), CreateError> {
        let item = serde_dynamo::to_item(rec).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk)")
            .build()
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let room = max_bytes.saturating_sub(rec.reserved_bytes());
        let quota = Update::builder()
            .table_name(&self.table)
            .key("pk", sv(quota_pk(&rec.owner)))
            .key("sk", sv("QUOTA"))
            .update_expression("ADD open_uploads :one, bytes_in_flight :size")
            .condition_expression(
                "attribute_not_exists(open_uploads) OR (open_uploads < :max_open AND bytes_in_flight <= :room)",
            )
            .expression_attribute_values(":one", nv(1))
            .expression_attribute_values(":size", nv(rec.reserved_bytes()))
            .expression_attribute_values(":max_open", nv(max_open))
            .expression_attribute_values(":room", nv(room))
            .build()
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let res = self
            .client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().put(put).build())
            .transact_items(TransactWriteItem::builder().update(quota).build())
            .send()
            .await;
        match res {
            Ok(_) => Ok(()),
            Err(e) => {
                let err = map_err("TransactWriteItems", e);
                // The session key is fresh and random, so a cancelled condition is the quota's.
                if matches!(&err, StoreError::Service { code, message, .. }
                    if code == "TransactionCanceledException" && message.contains("ConditionalCheckFailed"))
                {
                    return Err(CreateError::QuotaExceeded);
                }
                Err(err.into())
            }
        }
    }

    pub async fn get(&self, id: &UploadId) -> Result<Option<UploadRecord>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", sv(upload_pk(id)))
            .key("sk", sv("META"))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| map_err("GetItem", e))?;
        match out.item {
            None => Ok(None),
            Some(item) => serde_dynamo::from_item(item).map(Some).map_err(|e| StoreError::Corrupt(e.to_string())),
        }
    }

    /// Records parts (idempotent puts; a re-sent part replaces the earlier record).
    pub async fn put_parts(&self, id: &UploadId, parts: &[PartRecord], ttl: i64, now: i64) -> Result<(), StoreError> {
        let pk = upload_pk(id);
        let requests: Vec<WriteRequest> = parts
            .iter()
            .map(|p| {
                let mut item: HashMap<String, AttributeValue> = HashMap::new();
                item.insert("pk".into(), sv(pk.clone()));
                item.insert("sk".into(), sv(part_sk(p.number)));
                item.insert("number".into(), nv(p.number));
                item.insert("etag".into(), sv(p.etag.clone()));
                item.insert("size".into(), nv(p.size));
                if let Some(s) = &p.sha256 {
                    item.insert("sha256".into(), sv(s.clone()));
                }
                item.insert("recorded_at".into(), nv(now));
                item.insert("ttl".into(), nv(ttl));
                PutRequest::builder()
                    .set_item(Some(item))
                    .build()
                    .map(|p| WriteRequest::builder().put_request(p).build())
                    .map_err(|e| StoreError::Corrupt(e.to_string()))
            })
            .collect::<Result<_, _>>()?;
        let chunks: Vec<Vec<WriteRequest>> = requests.chunks(25).map(<[WriteRequest]>::to_vec).collect();
        stream::iter(chunks)
            .map(|chunk| self.batch_write_all(chunk))
            .buffer_unordered(4)
            .try_collect::<Vec<()>>()
            .await
            .map(|_| ())
    }

    async fn batch_write_all(&self, mut pending: Vec<WriteRequest>) -> Result<(), StoreError> {
        let mut attempt = 0u32;
        while !pending.is_empty() {
            let out = self
                .client
                .batch_write_item()
                .request_items(&self.table, pending)
                .send()
                .await
                .map_err(|e| map_err("BatchWriteItem", e))?;
            pending = out.unprocessed_items.and_then(|mut m| m.remove(&self.table)).unwrap_or_default();
            if !pending.is_empty() {
                attempt += 1;
                if attempt > 8 {
                    return Err(StoreError::Service {
                        op: "BatchWriteItem",
                        code: "Unprocessed".into(),
                        message: format!("{} items left unprocessed", pending.len()),
                        throttled: true,
                    });
                }
                tokio::time::sleep(Duration::from_millis(25 << attempt.min(6))).await;
            }
        }
        Ok(())
    }

    /// All recorded parts of an upload, in part order.
    pub async fn parts(&self, id: &UploadId) -> Result<Vec<PartRecord>, StoreError> {
        let items: Vec<HashMap<String, AttributeValue>> = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk AND begins_with(sk, :p)")
            .expression_attribute_values(":pk", sv(upload_pk(id)))
            .expression_attribute_values(":p", sv("PART#"))
            .projection_expression("#n, etag, #sz, sha256")
            .expression_attribute_names("#n", "number")
            .expression_attribute_names("#sz", "size")
            .consistent_read(true)
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await
            .map_err(|e| map_err("Query", e))?;
        items.into_iter().map(|i| serde_dynamo::from_item(i).map_err(|e| StoreError::Corrupt(e.to_string()))).collect()
    }

    /// Takes the completion lease: uploading → completing, or a stale completing lease.
    /// Returns false when someone else holds a live lease or the status moved on.
    pub async fn begin_completion(&self, id: &UploadId, now: i64, lease: Duration) -> Result<bool, StoreError> {
        let until = now + lease.as_secs() as i64;
        let res = self
            .update_session(id)
            .update_expression("SET #s = :completing, lease_until = :until, gsi1sk = :until, updated_at = :now")
            .condition_expression("#s = :uploading OR (#s = :completing AND lease_until < :now)")
            .expression_attribute_names("#s", "status")
            .expression_attribute_values(":completing", sv("completing"))
            .expression_attribute_values(":uploading", sv("uploading"))
            .expression_attribute_values(":until", nv(until))
            .expression_attribute_values(":now", nv(now))
            .send()
            .await;
        conditional(res.map(|_| ()).map_err(|e| map_err("UpdateItem", e)))
    }

    /// Gives the lease back (completion refused: the client can fix and retry).
    pub async fn release_completion(&self, rec: &UploadRecord, now: i64) -> Result<(), StoreError> {
        let res = self
            .update_session(&rec.id)
            .update_expression("SET #s = :uploading, gsi1sk = :exp, updated_at = :now REMOVE lease_until")
            .condition_expression("#s = :completing")
            .expression_attribute_names("#s", "status")
            .expression_attribute_values(":uploading", sv("uploading"))
            .expression_attribute_values(":completing", sv("completing"))
            .expression_attribute_values(":exp", nv(rec.expires_at))
            .expression_attribute_values(":now", nv(now))
            .send()
            .await;
        // Already released (or finished) by someone else: nothing to give back.
        conditional(res.map(|_| ()).map_err(|e| map_err("UpdateItem", e))).map(|_| ())
    }

    /// completing → processing, releasing the owner's quota in the same transaction.
    /// Returns false when the status had already moved on (another caller finished).
    pub async fn finish_completion(&self, rec: &UploadRecord, etag: &str, now: i64) -> Result<bool, StoreError> {
        let session = Update::builder()
            .table_name(&self.table)
            .key("pk", sv(rec.pk.clone()))
            .key("sk", sv("META"))
            .update_expression(
                "SET #s = :processing, etag = :etag, #sz = :size, completed_at = :now, updated_at = :now, gsi2pk = :g2pk, gsi2sk = :g2sk \
                 REMOVE gsi1pk, gsi1sk, lease_until, #ttl",
            )
            .expression_attribute_names("#sz", "size")
            .expression_attribute_values(":size", nv(rec.size))
            .expression_attribute_values(":g2pk", sv(quota_pk(&rec.owner)))
            .expression_attribute_values(":g2sk", sv(catalog_sort_key(crate::now_millis().max(now * 1000), &rec.id)))
            .condition_expression("#s = :completing")
            .expression_attribute_names("#s", "status")
            .expression_attribute_names("#ttl", "ttl")
            .expression_attribute_values(":processing", sv("processing"))
            .expression_attribute_values(":completing", sv("completing"))
            .expression_attribute_values(":etag", sv(etag))
            .expression_attribute_values(":now", nv(now))
            .build()
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        self.transition_with_quota(session, rec).await
    }

    /// uploading → aborted/expired, releasing quota. False when the status was not `uploading`.
    pub async fn close_open(
        &self,
        rec: &UploadRecord,
        to: UploadStatus,
        reason: &str,
        ttl: i64,
        now: i64,
    ) -> Result<bool, StoreError> {
        let session = Update::builder()
            .table_name(&self.table)
            .key("pk", sv(rec.pk.clone()))
            .key("sk", sv("META"))
            .update_expression(
                "SET #s = :to, reason = :reason, updated_at = :now, #ttl = :ttl REMOVE gsi1pk, gsi1sk, lease_until",
            )
            .condition_expression("#s = :uploading")
            .expression_attribute_names("#s", "status")
            .expression_attribute_names("#ttl", "ttl")
            .expression_attribute_values(":to", sv(to.as_str()))
            .expression_attribute_values(":uploading", sv("uploading"))
            .expression_attribute_values(":reason", sv(reason))
            .expression_attribute_values(":now", nv(now))
            .expression_attribute_values(":ttl", nv(ttl))
            .build()
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        self.transition_with_quota(session, rec).await
    }

    async fn transition_with_quota(&self, session: Update, rec: &UploadRecord) -> Result<bool, StoreError> {
        let res = self
            .client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().update(session).build())
            .transact_items(
                TransactWriteItem::builder()
                    .update(self.quota_update(&rec.owner, -1, -(rec.reserved_bytes() as i128))?)
                    .build(),
            )
            .send()
            .await;
        match res {
            Ok(_) => Ok(true),
            Err(e) => {
                let err = map_err("TransactWriteItems", e);
                if matches!(&err, StoreError::Service { code, message, .. }
                    if code == "TransactionCanceledException" && message.contains("ConditionalCheckFailed"))
                {
                    Ok(false)
                } else {
                    Err(err)
                }
            }
        }
    }

    /// processing → a final status with its findings. False when the status was no
    /// longer `processing` (a duplicate delivery already finished it).
    pub async fn finish_processing(
        &self,
        id: &UploadId,
        outcome: &ProcessingOutcome,
        now: i64,
    ) -> Result<bool, StoreError> {
        let mut set = vec!["#s = :to", "reason = :reason", "updated_at = :now", "processed_at = :now"];
        let mut req = self
            .update_session(id)
            .condition_expression("#s = :processing")
            .expression_attribute_names("#s", "status")
            .expression_attribute_values(":processing", sv("processing"))
            .expression_attribute_values(":to", sv(outcome.status.as_str()))
            .expression_attribute_values(":reason", sv(outcome.reason.clone()))
            .expression_attribute_values(":now", nv(now));
        let optional: [(&str, &str, Option<AttributeValue>); 5] = [
            ("detected_type = :dt", ":dt", outcome.detected_type.clone().map(sv)),
            ("content_sha256 = :cs", ":cs", outcome.content_sha256.clone().map(sv)),
            ("thumbnail_key = :tk", ":tk", outcome.thumbnail_key.clone().map(sv)),
            ("width = :w", ":w", outcome.width.map(nv)),
            ("height = :h", ":h", outcome.height.map(nv)),
        ];
        for (clause, name, value) in optional {
            if let Some(v) = value {
                set.push(clause);
                req = req.expression_attribute_values(name, v);
            }
        }
        let res = req.update_expression(format!("SET {}", set.join(", "))).send().await;
        conditional(res.map(|_| ()).map_err(|e| map_err("UpdateItem", e)))
    }

    /// One page of an owner's files, newest first.
    pub async fn list_files(
        &self,
        owner: &Owner,
        limit: u32,
        start: Option<(String, UploadId)>,
        status: Option<UploadStatus>,
        include_deleted: bool,
    ) -> Result<FilePage, StoreError> {
        let owner_pk = quota_pk(owner);
        let mut filters = Vec::new();
        let mut req = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(GSI_FILES)
            .key_condition_expression("gsi2pk = :o")
            .expression_attribute_values(":o", sv(owner_pk.clone()))
            .scan_index_forward(false)
            .limit(limit as i32);
        if let Some(s) = status {
            filters.push("#s = :status");
            req = req.expression_attribute_names("#s", "status").expression_attribute_values(":status", sv(s.as_str()));
        }
        if !include_deleted {
            filters.push("attribute_not_exists(deleted_at)");
        }
        if !filters.is_empty() {
            req = req.filter_expression(filters.join(" AND "));
        }
        if let Some((sort_key, id)) = start {
            // Rebuilt from the caller's owner: a cursor only ever names a position.
            req = req
                .exclusive_start_key("pk", sv(upload_pk(&id)))
                .exclusive_start_key("sk", sv("META"))
                .exclusive_start_key("gsi2pk", sv(owner_pk))
                .exclusive_start_key("gsi2sk", sv(sort_key));
        }
        let out = req.send().await.map_err(|e| map_err("Query", e))?;
        let items = out
            .items
            .unwrap_or_default()
            .into_iter()
            .map(|i| serde_dynamo::from_item(i).map_err(|e| StoreError::Corrupt(e.to_string())))
            .collect::<Result<Vec<UploadRecord>, _>>()?;
        let last_key = out.last_evaluated_key.and_then(|k| {
            let sort_key = k.get("gsi2sk")?.as_s().ok()?.clone();
            let id = UploadId::parse(k.get("pk")?.as_s().ok()?.strip_prefix("UPLOAD#")?).ok()?;
            Some((sort_key, id))
        });
        Ok(FilePage { items, last_key })
    }

    /// Marks a file deleted (idempotent) and due for purging at `purge_at`.
    pub async fn soft_delete(&self, id: &UploadId, now: i64, purge_at: i64) -> Result<bool, StoreError> {
        let res = self
            .update_session(id)
            .update_expression("SET deleted_at = :now, purge_at = :p, updated_at = :now, gsi1pk = :purge, gsi1sk = :p")
            .condition_expression("attribute_exists(pk) AND attribute_not_exists(deleted_at)")
            .expression_attribute_values(":now", nv(now))
            .expression_attribute_values(":p", nv(purge_at))
            .expression_attribute_values(":purge", sv(PURGE))
            .send()
            .await;
        conditional(res.map(|_| ()).map_err(|e| map_err("UpdateItem", e)))
    }

    /// Undoes a soft delete while its retention lasts. False when it is over.
    pub async fn restore(&self, id: &UploadId, now: i64) -> Result<bool, StoreError> {
        let res = self
            .update_session(id)
            .update_expression("SET updated_at = :now REMOVE deleted_at, purge_at, gsi1pk, gsi1sk")
            .condition_expression("attribute_exists(deleted_at) AND purge_at > :now")
            .expression_attribute_values(":now", nv(now))
            .send()
            .await;
        conditional(res.map(|_| ()).map_err(|e| map_err("UpdateItem", e)))
    }

    /// An UpdateItem on an upload's session item.
    fn update_session(
        &self,
        id: &UploadId,
    ) -> aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder {
        self.client.update_item().table_name(&self.table).key("pk", sv(upload_pk(id))).key("sk", sv("META"))
    }

    /// Deleted files whose retention is over.
    pub async fn due_purges(&self, now: i64, limit: i32) -> Result<Vec<UploadRecord>, StoreError> {
        self.due_in(PURGE, now, limit).await
    }

    /// Removes every item of an upload (session and parts).
    pub async fn delete_upload_items(&self, id: &UploadId) -> Result<(), StoreError> {
        let keys: Vec<HashMap<String, AttributeValue>> = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk")
            .expression_attribute_values(":pk", sv(upload_pk(id)))
            .projection_expression("pk, sk")
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await
            .map_err(|e| map_err("Query", e))?;
        for chunk in keys.chunks(25) {
            let requests = chunk
                .iter()
                .map(|k| {
                    aws_sdk_dynamodb::types::DeleteRequest::builder()
                        .set_key(Some(k.clone()))
                        .build()
                        .map(|d| WriteRequest::builder().delete_request(d).build())
                        .map_err(|e| StoreError::Corrupt(e.to_string()))
                })
                .collect::<Result<Vec<_>, _>>()?;
            self.batch_write_all(requests).await?;
        }
        Ok(())
    }

    /// Sessions the janitor should look at now (expired uploads, stale completions).
    pub async fn due(&self, now: i64, limit: i32) -> Result<Vec<UploadRecord>, StoreError> {
        self.due_in(OPEN, now, limit).await
    }

    async fn due_in(&self, partition: &str, now: i64, limit: i32) -> Result<Vec<UploadRecord>, StoreError> {
        let out = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(GSI_OPEN)
            .key_condition_expression("gsi1pk = :open AND gsi1sk <= :now")
            .expression_attribute_values(":open", sv(partition))
            .expression_attribute_values(":now", nv(now))
            .limit(limit)
            .send()
            .await
            .map_err(|e| map_err("Query", e))?;
        let mut recs = Vec::new();
        for item in out.items.unwrap_or_default() {
            // The index projects keys only when configured so: read the full record.
            let id = item
                .get("pk")
                .and_then(|v| v.as_s().ok())
                .and_then(|pk| pk.strip_prefix("UPLOAD#"))
                .and_then(|s| UploadId::parse(s).ok());
            if let Some(id) = id {
                if let Some(r) = self.get(&id).await? {
                    recs.push(r);
                }
            }
        }
        Ok(recs)
    }
}
