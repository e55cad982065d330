//! The upload repository on DynamoDB. One table:
//!
//! | item              | pk                | sk           | notes                                   |
//! |-------------------|-------------------|--------------|-----------------------------------------|
//! | upload            | `UPLOAD#<id>`     | `META`       | the `Upload` entity plus the keys below |
//! | recorded part     | `UPLOAD#<id>`     | `PART#00042` | etag, size, sha256; TTL'd               |
//! | request counter   | `OWNER#<owner>`   | `RATE#<minute>` | n (requests in that minute); TTL'd   |
//! | owner quota       | `OWNER#<owner>`   | `QUOTA`      | open_uploads, bytes_in_flight, bytes_stored, bytes_committed (= the two summed) |
//!
//! GSI `gsi1` (gsi1pk, gsi1sk) holds only uploads that still need the janitor (`OPEN`,
//! keyed by the time it should look; `PURGE` for deleted files, keyed by purge time), so
//! its query is sparse. GSI `gsi2` (owner, completion time + id) is the owner's catalog;
//! its `OPENBY#<owner>` partition (creation time + id) lists the owner's open uploads.
//! `ttl` lets DynamoDB forget closed uploads. These keys exist only here: the domain's
//! `Upload` carries none of them. Every status change is a [`Transition`] turned into a
//! condition expression; quota counters move in the same transaction as the status.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::{
    error::{ProvideErrorMetadata, SdkError},
    types::{AttributeValue, Put, PutRequest, TransactWriteItem, Update, WriteRequest},
    Client,
};
use futures::{stream, StreamExt, TryStreamExt};

use crate::domain::{
    catalog_sort_key, CatalogPosition, FilePage, HashProgress, Owner, PartRecord, ProcessingOutcome, Quota,
    QuotaLimits, Transition, Upload, UploadId, UploadStatus, WindowFinding, CLOSED_RETENTION_SECS,
};
use crate::ports::{CreateError, ObjectInfo, Redrive, RepoError, UploadRepo};

pub const GSI_OPEN: &str = "gsi1";
pub const GSI_FILES: &str = "gsi2";
const OPEN: &str = "OPEN";
const PURGE: &str = "PURGE";

fn map_err<E, R>(op: &'static str, e: SdkError<E, R>) -> RepoError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug,
{
    match super::service_error(e) {
        Ok((code, message)) => {
            let throttled = matches!(
                code.as_str(),
                "ProvisionedThroughputExceededException" | "ThrottlingException" | "RequestLimitExceeded"
            );
            RepoError::Service { op, code, message, throttled }
        }
        Err(detail) => RepoError::Other { op, detail },
    }
}

fn corrupt(e: impl std::fmt::Display) -> RepoError {
    RepoError::Corrupt(e.to_string())
}

fn is_conditional_failure(e: &RepoError) -> bool {
    matches!(e, RepoError::Service { code, .. } if code == "ConditionalCheckFailedException")
}

/// Another transaction held the item: worth trying again at once.
fn is_conflict(e: &RepoError) -> bool {
    matches!(e, RepoError::Service { code, message, .. }
        if code == "TransactionConflictException"
            || (code == "TransactionCanceledException" && message.contains("TransactionConflict")))
}

fn is_cancelled_by_condition(e: &RepoError) -> bool {
    matches!(e, RepoError::Service { code, message, .. }
        if code == "TransactionCanceledException" && message.contains("ConditionalCheckFailed"))
}

/// A conditional write's outcome: true when written, false when its condition failed.
fn conditional(res: Result<(), RepoError>) -> Result<bool, RepoError> {
    match res {
        Ok(()) => Ok(true),
        Err(e) if is_conditional_failure(&e) => Ok(false),
        Err(e) => Err(e),
    }
}

fn sv(s: impl Into<String>) -> AttributeValue {
    AttributeValue::S(s.into())
}
fn nv(n: impl ToString) -> AttributeValue {
    AttributeValue::N(n.to_string())
}

/// A change of an owner's quota counters.
#[derive(Debug, Clone, Copy)]
struct QuotaDelta {
    open: i64,
    in_flight: i128,
    stored: i128,
}

/// The owner's open uploads, in the files index (a partition of their own).
fn open_by_pk(owner: &Owner) -> String {
    format!("OPENBY#{owner}")
}

fn upload_pk(id: &UploadId) -> String {
    format!("UPLOAD#{id}")
}
fn part_sk(n: u32) -> String {
    format!("PART#{n:05}")
}
/// Marks a scanned window (so a repeated window job is counted once).
fn window_sk(k: u32) -> String {
    format!("WIN#{k:05}")
}
fn owner_pk(owner: &Owner) -> String {
    format!("OWNER#{owner}")
}

/// The condition under which `t` may be applied, over `#s` (status) and `:now`, as
/// [`Transition::allowed`] decides it: the values it names are added to `values`.
fn transition_condition(t: Transition, values: &mut Vec<(String, AttributeValue)>) -> String {
    let clauses: Vec<String> = t
        .from()
        .iter()
        .map(|from| {
            let name = format!(":from_{}", from.as_str());
            values.push((name.clone(), sv(from.as_str())));
            if t.needs_stale_lease(*from) {
                format!("(#s = {name} AND lease_until < :now)")
            } else {
                format!("#s = {name}")
            }
        })
        .collect();
    format!("({})", clauses.join(" OR "))
}

/// What a transition writes besides the status and `updated_at`.
#[derive(Default)]
struct Effects<'a> {
    set: &'a str,
    remove: &'a str,
    values: Vec<(&'a str, AttributeValue)>,
    names: Vec<(&'a str, &'a str)>,
}

/// A transition as DynamoDB expressions: update, condition, and the names and values they use.
struct TransitionWrite {
    update: String,
    condition: String,
    values: Vec<(String, AttributeValue)>,
    names: Vec<(String, String)>,
}

impl TransitionWrite {
    fn new(t: Transition, now: i64, e: Effects<'_>) -> Self {
        let mut values = vec![(":to".to_owned(), sv(t.to().as_str())), (":now".to_owned(), nv(now))];
        let condition = transition_condition(t, &mut values);
        let set = if e.set.is_empty() { String::new() } else { format!(", {}", e.set) };
        let remove = if e.remove.is_empty() { String::new() } else { format!(" REMOVE {}", e.remove) };
        values.extend(e.values.into_iter().map(|(k, v)| (k.to_owned(), v)));
        let mut names = vec![("#s".to_owned(), "status".to_owned())];
        names.extend(e.names.into_iter().map(|(k, v)| (k.to_owned(), v.to_owned())));
        Self { update: format!("SET #s = :to, updated_at = :now{set}{remove}"), condition, values, names }
    }
}

/// Adds `clause` (and its value) to an update for each field that has a value.
fn set_present<'a, const N: usize>(
    set: &mut Vec<&'a str>,
    values: &mut Vec<(&'a str, AttributeValue)>,
    fields: [(&'a str, &'a str, Option<AttributeValue>); N],
) {
    for (clause, name, value) in fields {
        if let Some(v) = value {
            set.push(clause);
            values.push((name, v));
        }
    }
}

/// A stored upload item: the entity, plus the keys that file it.
fn upload_item(upload: &Upload, forget_at: i64) -> Result<HashMap<String, AttributeValue>, RepoError> {
    let mut item: HashMap<String, AttributeValue> = serde_dynamo::to_item(upload).map_err(corrupt)?;
    item.insert("pk".into(), sv(upload_pk(&upload.id)));
    item.insert("sk".into(), sv("META"));
    // A new upload is open: the janitor looks at it when it expires...
    item.insert("gsi1pk".into(), sv(OPEN));
    item.insert("gsi1sk".into(), nv(upload.expires_at));
    // ...and its owner sees it among their open uploads (completion moves it to the
    // owner's files in the same index; closing removes it).
    item.insert("gsi2pk".into(), sv(open_by_pk(&upload.owner)));
    item.insert("gsi2sk".into(), sv(catalog_sort_key(upload.created_at * 1000, &upload.id)));
    // A backstop only: the janitor expires uploads long before DynamoDB forgets them.
    item.insert("ttl".into(), nv(forget_at));
    Ok(item)
}

fn from_item(item: HashMap<String, AttributeValue>) -> Result<Upload, RepoError> {
    serde_dynamo::from_item(item).map_err(corrupt)
}

/// [`UploadRepo`] on one DynamoDB table.
#[derive(Clone)]
pub struct DynamoRepo {
    client: Client,
    table: String,
}

type UpdateBuilder = aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder;

impl DynamoRepo {
    pub fn new(client: Client, table: String) -> Self {
        Self { client, table }
    }

    /// Opens the connection (TCP and, in AWS, TLS) to DynamoDB during init, so the first
    /// request does not pay for it: every API request starts with a DynamoDB call.
    /// A GetItem of a key never written: every function on the table may already make
    /// it (no extra IAM right, no AccessDenied noise in CloudTrail), and it costs half a
    /// read unit per cold start. Its answer does not matter, only the pooled connection.
    pub async fn warm_up(&self) {
        let get = self.client.get_item().table_name(&self.table).key("pk", sv("WARMUP")).key("sk", sv("WARMUP"));
        let _ = tokio::time::timeout(std::time::Duration::from_secs(2), get.send()).await;
    }

    /// Moves the owner's counters: `bytes_committed` is always `bytes_in_flight` plus
    /// `bytes_stored` (kept as one number so a condition can bound their sum).
    fn quota_update(&self, owner: &Owner, delta: QuotaDelta) -> Result<Update, RepoError> {
        Update::builder()
            .table_name(&self.table)
            .key("pk", sv(owner_pk(owner)))
            .key("sk", sv("QUOTA"))
            .update_expression("ADD open_uploads :d, bytes_in_flight :b, bytes_stored :st, bytes_committed :c")
            .expression_attribute_values(":d", nv(delta.open))
            .expression_attribute_values(":b", nv(delta.in_flight))
            .expression_attribute_values(":st", nv(delta.stored))
            .expression_attribute_values(":c", nv(delta.in_flight + delta.stored))
            .build()
            .map_err(corrupt)
    }

    /// A quota update that only succeeds while `bytes_committed + grow <= max_stored`.
    fn quota_update_within(&self, owner: &Owner, delta: QuotaDelta, max_stored: u64) -> Result<Update, RepoError> {
        let grow = (delta.in_flight + delta.stored).max(0) as u64;
        let mut u = self.quota_update(owner, delta)?;
        u.condition_expression = Some("attribute_not_exists(bytes_committed) OR bytes_committed <= :room".into());
        u.expression_attribute_values
            .get_or_insert_with(HashMap::new)
            .insert(":room".into(), nv(max_stored.saturating_sub(grow)));
        Ok(u)
    }

    /// Items written together, all or none; `false` when a condition did not hold.
    async fn transact(&self, items: Vec<TransactWriteItem>) -> Result<bool, RepoError> {
        match self.client.transact_write_items().set_transact_items(Some(items)).send().await {
            Ok(_) => Ok(true),
            Err(e) => {
                let err = map_err("TransactWriteItems", e);
                if is_cancelled_by_condition(&err) {
                    Ok(false)
                } else {
                    Err(err)
                }
            }
        }
    }

    /// One item, read consistently.
    async fn item(&self, pk: String, sk: &str) -> Result<Option<HashMap<String, AttributeValue>>, RepoError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", sv(pk))
            .key("sk", sv(sk))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| map_err("GetItem", e))?;
        Ok(out.item)
    }

    /// An UpdateItem on an upload's item.
    fn update_upload(&self, id: &UploadId) -> UpdateBuilder {
        self.client.update_item().table_name(&self.table).key("pk", sv(upload_pk(id))).key("sk", sv("META"))
    }

    /// An UpdateItem applying transition `t` at `now` with its `effects`.
    fn transition(&self, id: &UploadId, t: Transition, now: i64, effects: Effects<'_>) -> UpdateBuilder {
        let w = TransitionWrite::new(t, now, effects);
        let mut req = self.update_upload(id).update_expression(w.update).condition_expression(w.condition);
        for (k, v) in w.values {
            req = req.expression_attribute_values(k, v);
        }
        for (k, v) in w.names {
            req = req.expression_attribute_names(k, v);
        }
        req
    }

    /// The same, as one item of a transaction.
    fn transition_in_transaction(
        &self,
        upload: &Upload,
        t: Transition,
        now: i64,
        effects: Effects<'_>,
    ) -> Result<Update, RepoError> {
        let w = TransitionWrite::new(t, now, effects);
        let mut b = Update::builder()
            .table_name(&self.table)
            .key("pk", sv(upload_pk(&upload.id)))
            .key("sk", sv("META"))
            .update_expression(w.update)
            .condition_expression(w.condition);
        for (k, v) in w.values {
            b = b.expression_attribute_values(k, v);
        }
        for (k, v) in w.names {
            b = b.expression_attribute_names(k, v);
        }
        b.build().map_err(corrupt)
    }

    /// A status change and the owner's quota release, in one transaction; `stored`
    /// bytes move from in flight to the owner's stored files.
    async fn transition_with_quota(&self, session: Update, upload: &Upload, stored: u64) -> Result<bool, RepoError> {
        let delta = QuotaDelta { open: -1, in_flight: -(upload.reserved_bytes() as i128), stored: stored as i128 };
        self.transact(vec![
            TransactWriteItem::builder().update(session).build(),
            TransactWriteItem::builder().update(self.quota_update(&upload.owner, delta)?).build(),
        ])
        .await
    }

    async fn batch_write_all(&self, mut pending: Vec<WriteRequest>) -> Result<(), RepoError> {
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
                    return Err(RepoError::Service {
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

    async fn due_in(&self, partition: &str, now: i64, limit: u32) -> Result<Vec<Upload>, RepoError> {
        let out = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(GSI_OPEN)
            .key_condition_expression("gsi1pk = :open AND gsi1sk <= :now")
            .expression_attribute_values(":open", sv(partition))
            .expression_attribute_values(":now", nv(now))
            .limit(limit.min(i32::MAX as u32) as i32)
            .send()
            .await
            .map_err(|e| map_err("Query", e))?;
        let mut uploads = Vec::new();
        for item in out.items.unwrap_or_default() {
            // The index projects keys only when configured so: read the full item.
            let id = item
                .get("pk")
                .and_then(|v| v.as_s().ok())
                .and_then(|pk| pk.strip_prefix("UPLOAD#"))
                .and_then(|s| UploadId::parse(s).ok());
            if let Some(id) = id {
                if let Some(u) = self.get(&id).await? {
                    uploads.push(u);
                }
            }
        }
        Ok(uploads)
    }
}

#[async_trait]
impl UploadRepo for DynamoRepo {
    async fn quota(&self, owner: &Owner) -> Result<Quota, RepoError> {
        let item = self.item(owner_pk(owner), "QUOTA").await?;
        let num = |k: &str| -> u64 {
            item.as_ref()
                .and_then(|i| i.get(k))
                .and_then(|v| v.as_n().ok())
                .and_then(|n| n.parse::<i64>().ok())
                .unwrap_or(0)
                .max(0) as u64
        };
        Ok(Quota {
            open_uploads: num("open_uploads"),
            bytes_in_flight: num("bytes_in_flight"),
            bytes_stored: num("bytes_stored"),
        })
    }

    async fn create(&self, upload: &Upload, limits: QuotaLimits) -> Result<(), CreateError> {
        let forget_at = upload.expires_at + CLOSED_RETENTION_SECS;
        let put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(upload_item(upload, forget_at)?))
            .condition_expression("attribute_not_exists(pk)")
            .build()
            .map_err(corrupt)?;
        // QuotaLimits::admits, as a condition: one more open upload and its bytes fit,
        // in flight and in storage.
        let reserved = upload.reserved_bytes();
        if reserved > limits.max_bytes || reserved > limits.max_stored {
            return Err(CreateError::QuotaExceeded);
        }
        let room = limits.max_bytes.saturating_sub(reserved);
        let storage_room = limits.max_stored.saturating_sub(reserved);
        let quota = Update::builder()
            .table_name(&self.table)
            .key("pk", sv(owner_pk(&upload.owner)))
            .key("sk", sv("QUOTA"))
            .update_expression("ADD open_uploads :one, bytes_in_flight :size, bytes_committed :size")
            .condition_expression(
                "attribute_not_exists(open_uploads) OR (open_uploads < :max_open AND bytes_in_flight <= :room \
                 AND (attribute_not_exists(bytes_committed) OR bytes_committed <= :storage_room))",
            )
            .expression_attribute_values(":one", nv(1))
            .expression_attribute_values(":size", nv(reserved))
            .expression_attribute_values(":max_open", nv(limits.max_open))
            .expression_attribute_values(":room", nv(room))
            .expression_attribute_values(":storage_room", nv(storage_room))
            .build()
            .map_err(corrupt)?;
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
                // The upload's key is fresh and random, so a cancelled condition is the quota's.
                if is_cancelled_by_condition(&err) {
                    return Err(CreateError::QuotaExceeded);
                }
                Err(err.into())
            }
        }
    }

    async fn get(&self, id: &UploadId) -> Result<Option<Upload>, RepoError> {
        self.item(upload_pk(id), "META").await?.map(from_item).transpose()
    }

    async fn put_parts(&self, id: &UploadId, parts: &[PartRecord], forget_at: i64, now: i64) -> Result<(), RepoError> {
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
                item.insert("ttl".into(), nv(forget_at));
                PutRequest::builder()
                    .set_item(Some(item))
                    .build()
                    .map(|p| WriteRequest::builder().put_request(p).build())
                    .map_err(corrupt)
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

    async fn parts(&self, id: &UploadId) -> Result<Vec<PartRecord>, RepoError> {
        let items =
            self.items_under(id, "PART#", "#n, etag, #sz, sha256", &[("#n", "number"), ("#sz", "size")]).await?;
        items.into_iter().map(|i| serde_dynamo::from_item(i).map_err(corrupt)).collect()
    }

    async fn begin_completion(&self, id: &UploadId, now: i64, lease: Duration) -> Result<bool, RepoError> {
        let until = now + lease.as_secs() as i64;
        // The janitor looks again when the lease runs out.
        let res = self
            .transition(
                id,
                Transition::BeginCompletion,
                now,
                Effects {
                    set: "lease_until = :until, gsi1sk = :until",
                    values: vec![(":until", nv(until))],
                    ..Effects::default()
                },
            )
            .send()
            .await;
        conditional(res.map(|_| ()).map_err(|e| map_err("UpdateItem", e)))
    }

    async fn release_completion(&self, upload: &Upload, now: i64) -> Result<bool, RepoError> {
        let res = self
            .transition(
                &upload.id,
                Transition::ReleaseCompletion,
                now,
                Effects {
                    set: "gsi1sk = :exp",
                    remove: "lease_until",
                    values: vec![(":exp", nv(upload.expires_at))],
                    ..Effects::default()
                },
            )
            .send()
            .await;
        conditional(res.map(|_| ()).map_err(|e| map_err("UpdateItem", e)))
    }

    async fn finish_completion(&self, upload: &Upload, object: &ObjectInfo, now: i64) -> Result<bool, RepoError> {
        let sort_key = catalog_sort_key(crate::now_millis().max(now * 1000), &upload.id);
        // An unversioned bucket has no version to pin (`version_id` stays absent).
        let (set, version) = match &object.version {
            Some(v) => (
                "etag = :etag, version_id = :ver, #sz = :size, completed_at = :now, gsi2pk = :g2pk, gsi2sk = :g2sk",
                Some((":ver", sv(v.clone()))),
            ),
            None => ("etag = :etag, #sz = :size, completed_at = :now, gsi2pk = :g2pk, gsi2sk = :g2sk", None),
        };
        // A whole-file SHA-256 declared at completion is recorded with the object, in
        // the same write: a completion that fails before this leaves no hash behind.
        let (set, declared) = match &upload.sha256 {
            Some(h) => (format!("{set}, sha256 = :sha"), Some((":sha", sv(h.to_hex())))),
            None => (set.to_owned(), None),
        };
        // It stays in the janitor's index (`OPEN`, since creation), now keyed by when the
        // janitor should check that its processing is moving.
        let (set, remove, watch) = match upload.stall_check_at {
            Some(at) => (
                format!("{set}, gsi1pk = :open, gsi1sk = :watch, stall_check_at = :watch"),
                "lease_until, #ttl",
                Some((":watch", nv(at))),
            ),
            None => (set, "gsi1pk, gsi1sk, lease_until, #ttl", None),
        };
        let session = self.transition_in_transaction(
            upload,
            Transition::FinishCompletion,
            now,
            Effects {
                set: &set,
                remove,
                values: vec![
                    (":etag", sv(object.etag.clone())),
                    (":size", nv(upload.size)),
                    (":g2pk", sv(owner_pk(&upload.owner))),
                    (":g2sk", sv(sort_key)),
                ]
                .into_iter()
                .chain(version)
                .chain(declared)
                .chain(watch.into_iter().flat_map(|w| [w, (":open", sv(OPEN))]))
                .collect(),
                names: vec![("#sz", "size"), ("#ttl", "ttl")],
            },
        )?;
        self.transition_with_quota(session, upload, upload.size).await
    }

    async fn close_open(
        &self,
        upload: &Upload,
        to: UploadStatus,
        reason: &str,
        forget_at: i64,
        now: i64,
    ) -> Result<bool, RepoError> {
        let session = self.transition_in_transaction(
            upload,
            Transition::Close(to),
            now,
            Effects {
                set: "reason = :reason, #ttl = :ttl",
                remove: "gsi1pk, gsi1sk, gsi2pk, gsi2sk, lease_until",
                values: vec![(":reason", sv(reason)), (":ttl", nv(forget_at))],
                names: vec![("#ttl", "ttl")],
            },
        )?;
        self.transition_with_quota(session, upload, 0).await
    }

    async fn finish_processing(&self, id: &UploadId, outcome: &ProcessingOutcome, now: i64) -> Result<bool, RepoError> {
        let mut set = vec!["reason = :reason", "processed_at = :now"];
        let mut values = vec![(":reason", sv(outcome.reason.clone()))];
        set_present(
            &mut set,
            &mut values,
            [
                ("detected_type = :dt", ":dt", outcome.detected_type.clone().map(sv)),
                ("content_sha256 = :cs", ":cs", outcome.content_sha256.clone().map(sv)),
                ("thumbnail_key = :tk", ":tk", outcome.thumbnail_key.clone().map(sv)),
                ("width = :w", ":w", outcome.width.map(nv)),
                ("height = :h", ":h", outcome.height.map(nv)),
            ],
        );
        let set = set.join(", ");
        let effects = Effects { set: &set, values, ..Effects::default() };
        let req = self.transition(id, Transition::FinishProcessing(outcome.status), now, effects);
        conditional(req.send().await.map(|_| ()).map_err(|e| map_err("UpdateItem", e)))
    }

    async fn list_files(
        &self,
        owner: &Owner,
        limit: u32,
        start: Option<CatalogPosition>,
        status: Option<UploadStatus>,
        include_deleted: bool,
    ) -> Result<FilePage, RepoError> {
        let owner_pk = owner_pk(owner);
        let mut filters = Vec::new();
        let mut req = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(GSI_FILES)
            .key_condition_expression("gsi2pk = :o")
            .expression_attribute_values(":o", sv(owner_pk.clone()))
            .scan_index_forward(false)
            .limit(limit.min(i32::MAX as u32) as i32);
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
        if let Some(pos) = start {
            // Rebuilt from the caller's owner: a cursor only ever names a position.
            req = req
                .exclusive_start_key("pk", sv(upload_pk(&pos.id)))
                .exclusive_start_key("sk", sv("META"))
                .exclusive_start_key("gsi2pk", sv(owner_pk))
                .exclusive_start_key("gsi2sk", sv(pos.sort_key));
        }
        let out = req.send().await.map_err(|e| map_err("Query", e))?;
        let items = out.items.unwrap_or_default().into_iter().map(from_item).collect::<Result<Vec<Upload>, _>>()?;
        let next = out.last_evaluated_key.and_then(|k| {
            let sort_key = k.get("gsi2sk")?.as_s().ok()?.clone();
            let id = UploadId::parse(k.get("pk")?.as_s().ok()?.strip_prefix("UPLOAD#")?).ok()?;
            Some(CatalogPosition { sort_key, id })
        });
        Ok(FilePage { items, next })
    }

    async fn soft_delete(&self, upload: &Upload, now: i64, purge_at: i64) -> Result<bool, RepoError> {
        let file = Update::builder()
            .table_name(&self.table)
            .key("pk", sv(upload_pk(&upload.id)))
            .key("sk", sv("META"))
            .update_expression(
                "SET deleted_at = :now, purge_at = :p, updated_at = :now, gsi1pk = :purge, gsi1sk = :p \
                 ADD link_generation :one",
            )
            .condition_expression("attribute_exists(pk) AND attribute_not_exists(deleted_at)")
            .expression_attribute_values(":one", nv(1))
            .expression_attribute_values(":now", nv(now))
            .expression_attribute_values(":p", nv(purge_at))
            .expression_attribute_values(":purge", sv(PURGE))
            .build()
            .map_err(corrupt)?;
        // A deleted file gives its bytes back to the owner's storage quota at once.
        let quota = QuotaDelta { open: 0, in_flight: 0, stored: -(upload.size as i128) };
        self.transact(vec![
            TransactWriteItem::builder().update(file).build(),
            TransactWriteItem::builder().update(self.quota_update(&upload.owner, quota)?).build(),
        ])
        .await
    }

    async fn restore(&self, upload: &Upload, now: i64, limits: QuotaLimits) -> Result<bool, RepoError> {
        if upload.size > limits.max_stored {
            // Larger than the whole quota: no condition on the stored sum can say so.
            return Ok(false);
        }
        let file = Update::builder()
            .table_name(&self.table)
            .key("pk", sv(upload_pk(&upload.id)))
            .key("sk", sv("META"))
            .update_expression("SET updated_at = :now REMOVE deleted_at, purge_at, gsi1pk, gsi1sk, stall_check_at")
            .condition_expression("attribute_exists(deleted_at) AND purge_at > :now")
            .expression_attribute_values(":now", nv(now))
            .build()
            .map_err(corrupt)?;
        // ...and takes them again only if they still fit.
        let quota = QuotaDelta { open: 0, in_flight: 0, stored: upload.size as i128 };
        self.transact(vec![
            TransactWriteItem::builder().update(file).build(),
            TransactWriteItem::builder()
                .update(self.quota_update_within(&upload.owner, quota, limits.max_stored)?)
                .build(),
        ])
        .await
    }

    async fn count_signings(&self, id: &UploadId, n: u64) -> Result<u64, RepoError> {
        let out = self
            .update_upload(id)
            .update_expression("ADD signings :n")
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_values(":n", nv(n))
            .return_values(aws_sdk_dynamodb::types::ReturnValue::UpdatedNew)
            .send()
            .await
            .map_err(|e| map_err("UpdateItem", e))?;
        out.attributes()
            .and_then(|a| a.get("signings"))
            .and_then(|v| v.as_n().ok())
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| RepoError::Corrupt("UpdateItem returned no signings count".into()))
    }

    async fn count_request(&self, owner: &Owner, window: i64, limit: u32) -> Result<bool, RepoError> {
        let res = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", sv(owner_pk(owner)))
            .key("sk", sv(format!("RATE#{window}")))
            .update_expression("ADD n :one SET #ttl = :ttl")
            .condition_expression("attribute_not_exists(n) OR n < :limit")
            .expression_attribute_names("#ttl", "ttl")
            .expression_attribute_values(":one", nv(1))
            .expression_attribute_values(":limit", nv(limit))
            .expression_attribute_values(":ttl", nv(window + 3600))
            .send()
            .await;
        conditional(res.map(|_| ()).map_err(|e| map_err("UpdateItem", e)))
    }

    async fn list_open(&self, owner: &Owner, limit: u32) -> Result<Vec<Upload>, RepoError> {
        let out = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(GSI_FILES)
            .key_condition_expression("gsi2pk = :o")
            .expression_attribute_values(":o", sv(open_by_pk(owner)))
            .scan_index_forward(false)
            .limit(limit.clamp(1, 1000) as i32)
            .send()
            .await
            .map_err(|e| map_err("Query", e))?;
        out.items.unwrap_or_default().into_iter().map(from_item).collect()
    }

    async fn due(&self, now: i64, limit: u32) -> Result<Vec<Upload>, RepoError> {
        self.due_in(OPEN, now, limit).await
    }

    async fn due_purges(&self, now: i64, limit: u32) -> Result<Vec<Upload>, RepoError> {
        self.due_in(PURGE, now, limit).await
    }

    async fn delete_upload(&self, id: &UploadId) -> Result<(), RepoError> {
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
                        .map_err(corrupt)
                })
                .collect::<Result<Vec<_>, _>>()?;
            self.batch_write_all(requests).await?;
        }
        Ok(())
    }

    async fn start_windows(&self, id: &UploadId, total: u32, window_bytes: u64, now: i64) -> Result<bool, RepoError> {
        let res = self
            .update_upload(id)
            .update_expression(
                "SET windows_total = :n, window_bytes = :w, windows_done = :zero, hash_next = :zero, hash_state = :h, \
                 updated_at = :now",
            )
            .expression_attribute_values(":w", nv(window_bytes))
            .condition_expression("#s = :processing AND attribute_not_exists(windows_total)")
            .expression_attribute_names("#s", "status")
            .expression_attribute_values(":processing", sv(UploadStatus::Processing.as_str()))
            .expression_attribute_values(":n", nv(total))
            .expression_attribute_values(":zero", nv(0))
            .expression_attribute_values(":h", sv(crate::processing::chained_sha256::ChainState::default().encode()))
            .expression_attribute_values(":now", nv(now))
            .send()
            .await;
        conditional(res.map(|_| ()).map_err(|e| map_err("UpdateItem", e)))
    }

    async fn refused_write(&self, id: &UploadId, n: u32, now: i64) -> Result<(), RepoError> {
        let res = self
            .update_upload(id)
            .update_expression("ADD refused_writes :n SET updated_at = :now")
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_values(":n", nv(n))
            .expression_attribute_values(":now", nv(now))
            .send()
            .await;
        // A record that is gone already has nothing left to count on.
        conditional(res.map(|_| ()).map_err(|e| map_err("UpdateItem", e))).map(|_| ())
    }

    async fn window_recorded(&self, id: &UploadId, index: u32) -> Result<bool, RepoError> {
        Ok(self.item(upload_pk(id), &window_sk(index)).await?.is_some())
    }

    async fn window_scanned(
        &self,
        id: &UploadId,
        index: u32,
        finding: &WindowFinding,
        now: i64,
    ) -> Result<bool, RepoError> {
        let marker = Put::builder()
            .table_name(&self.table)
            .item("pk", sv(upload_pk(id)))
            .item("sk", sv(window_sk(index)))
            .item("ttl", nv(now + CLOSED_RETENTION_SECS))
            .condition_expression("attribute_not_exists(pk)")
            .build()
            .map_err(corrupt)?;
        let mut set = vec!["updated_at = :now"];
        let mut values =
            vec![(":now", nv(now)), (":one", nv(1)), (":processing", sv(UploadStatus::Processing.as_str()))];
        // The first finding of each kind is kept; later windows do not overwrite it.
        if let Some(f) = &finding.found {
            set.push("scan_found = if_not_exists(scan_found, :found)");
            values.push((":found", sv(f.clone())));
        }
        if let Some(g) = &finding.gap {
            set.push("scan_gap = if_not_exists(scan_gap, :gap)");
            values.push((":gap", sv(g.clone())));
        }
        if let Some(head) = &finding.head {
            set_present(
                &mut set,
                &mut values,
                [
                    ("detected_type = :dt", ":dt", head.detected_type.clone().map(sv)),
                    ("type_rejection = :tr", ":tr", head.type_rejection.clone().map(sv)),
                ],
            );
        }
        let mut tally = Update::builder()
            .table_name(&self.table)
            .key("pk", sv(upload_pk(id)))
            .key("sk", sv("META"))
            .update_expression(format!("SET {} ADD windows_done :one", set.join(", ")))
            .condition_expression("#s = :processing")
            .expression_attribute_names("#s", "status");
        for (k, v) in values {
            tally = tally.expression_attribute_values(k, v);
        }
        let tally = tally.build().map_err(corrupt)?;
        // Windows of one file finish at once and all touch its item: a transaction that
        // collides with another is tried again here, not after the queue's visibility
        // timeout (which would re-scan the window).
        let mut attempt = 0u32;
        loop {
            let res = self
                .client
                .transact_write_items()
                .transact_items(TransactWriteItem::builder().put(marker.clone()).build())
                .transact_items(TransactWriteItem::builder().update(tally.clone()).build())
                .send()
                .await;
            match res {
                Ok(_) => return Ok(true),
                Err(e) => {
                    let err = map_err("TransactWriteItems", e);
                    if is_cancelled_by_condition(&err) {
                        return Ok(false);
                    }
                    if is_conflict(&err) && attempt < 8 {
                        attempt += 1;
                        tokio::time::sleep(Duration::from_millis(20 << attempt.min(6))).await;
                        continue;
                    }
                    return Err(err);
                }
            }
        }
    }

    async fn hash_advanced(
        &self,
        id: &UploadId,
        index: u32,
        progress: &HashProgress,
        now: i64,
    ) -> Result<bool, RepoError> {
        let (expr, value) = match progress {
            HashProgress::State(s) => ("SET hash_next = :next, hash_state = :v, updated_at = :now", s),
            HashProgress::Digest(d) => {
                ("SET hash_next = :next, content_sha256 = :v, updated_at = :now REMOVE hash_state", d)
            }
        };
        let mut attempt = 0u32;
        loop {
            let res = self
                .update_upload(id)
                .update_expression(expr)
                .condition_expression("#s = :processing AND hash_next = :k")
                .expression_attribute_names("#s", "status")
                .expression_attribute_values(":processing", sv(UploadStatus::Processing.as_str()))
                .expression_attribute_values(":k", nv(index))
                .expression_attribute_values(":next", nv(index + 1))
                .expression_attribute_values(":v", sv(value.clone()))
                .expression_attribute_values(":now", nv(now))
                .send()
                .await
                .map(|_| ())
                .map_err(|e| map_err("UpdateItem", e));
            match res {
                // A window's tally transaction on the same item: try again at once.
                Err(e) if is_conflict(&e) && attempt < 8 => {
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(20 << attempt.min(6))).await;
                }
                res => return conditional(res),
            }
        }
    }

    async fn recorded_windows(&self, id: &UploadId) -> Result<std::collections::BTreeSet<u32>, RepoError> {
        let items = self.items_under(id, "WIN#", "sk", &[]).await?;
        Ok(items.iter().filter_map(|i| i.get("sk")?.as_s().ok()?.strip_prefix("WIN#")?.parse().ok()).collect())
    }

    async fn watch_processing(&self, id: &UploadId, at: i64) -> Result<bool, RepoError> {
        let res = self
            .watch_update(id, at)
            .update_expression("SET gsi1pk = :open, gsi1sk = :at, stall_check_at = :at")
            .send()
            .await;
        conditional(res.map(|_| ()).map_err(|e| map_err("UpdateItem", e)))
    }

    async fn redrive(&self, upload: &Upload, r: &Redrive, now: i64) -> Result<bool, RepoError> {
        let res = self
            .watch_update(&upload.id, r.check_at)
            .update_expression(
                "SET gsi1pk = :open, gsi1sk = :at, stall_check_at = :at, updated_at = :now, redriven_at = :now, \
                 redrives = :n, redrives_sent = :sent, scanner_waits = :waits, redrive_progress = :progress \
                 REMOVE waiting_for_scanner",
            )
            // `watch_update`'s condition, and nothing moved since the janitor read it.
            .condition_expression("#s = :processing AND attribute_not_exists(deleted_at) AND updated_at = :seen")
            .expression_attribute_values(":seen", nv(upload.updated_at))
            .expression_attribute_values(":now", nv(now))
            .expression_attribute_values(":n", nv(r.redrives))
            .expression_attribute_values(":sent", nv(r.sent))
            .expression_attribute_values(":waits", nv(r.scanner_waits))
            .expression_attribute_values(":progress", nv(r.progress))
            .send()
            .await;
        conditional(res.map(|_| ()).map_err(|e| map_err("UpdateItem", e)))
    }

    async fn redrive_picked_up(&self, id: &UploadId, n: u32) -> Result<bool, RepoError> {
        let res = self
            .update_upload(id)
            .update_expression("SET redrive_seen = :n")
            .condition_expression("#s = :processing AND (attribute_not_exists(redrive_seen) OR redrive_seen < :n)")
            .expression_attribute_names("#s", "status")
            .expression_attribute_values(":processing", sv(UploadStatus::Processing.as_str()))
            .expression_attribute_values(":n", nv(n))
            .send()
            .await;
        conditional(res.map(|_| ()).map_err(|e| map_err("UpdateItem", e)))
    }

    async fn await_scanner(&self, id: &UploadId, reason: &str, check_at: i64, now: i64) -> Result<bool, RepoError> {
        let res = self
            .watch_update(id, check_at)
            .update_expression(
                "SET gsi1pk = :open, gsi1sk = :at, stall_check_at = :at, waiting_for_scanner = :yes, reason = :r, \
                 updated_at = :now",
            )
            .expression_attribute_values(":yes", AttributeValue::Bool(true))
            .expression_attribute_values(":r", sv(reason))
            .expression_attribute_values(":now", nv(now))
            .send()
            .await;
        conditional(res.map(|_| ()).map_err(|e| map_err("UpdateItem", e)))
    }

    async fn unwatch(&self, id: &UploadId) -> Result<bool, RepoError> {
        // Only a decided upload's `OPEN` entry: a deleted one's index entry is its purge.
        let res = self
            .update_upload(id)
            .update_expression("REMOVE gsi1pk, gsi1sk, stall_check_at, waiting_for_scanner")
            .condition_expression("gsi1pk = :open AND #s <> :processing AND attribute_exists(processed_at)")
            .expression_attribute_names("#s", "status")
            .expression_attribute_values(":open", sv(OPEN))
            .expression_attribute_values(":processing", sv(UploadStatus::Processing.as_str()))
            .send()
            .await;
        conditional(res.map(|_| ()).map_err(|e| map_err("UpdateItem", e)))
    }
}

impl DynamoRepo {
    /// Every item of an upload whose sort key starts with `prefix` (all pages, read
    /// consistently), with the attributes `projection` names.
    async fn items_under(
        &self,
        id: &UploadId,
        prefix: &str,
        projection: &str,
        names: &[(&str, &str)],
    ) -> Result<Vec<HashMap<String, AttributeValue>>, RepoError> {
        let mut query = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk AND begins_with(sk, :prefix)")
            .expression_attribute_values(":pk", sv(upload_pk(id)))
            .expression_attribute_values(":prefix", sv(prefix))
            .projection_expression(projection)
            .consistent_read(true);
        for (name, attribute) in names {
            query = query.expression_attribute_names(*name, *attribute);
        }
        query.into_paginator().items().send().try_collect().await.map_err(|e| map_err("Query", e))
    }

    /// A write to a `processing` upload that is not deleted (a deleted one's index entry
    /// belongs to the purge) which files it in the janitor's index at `at`.
    fn watch_update(&self, id: &UploadId, at: i64) -> UpdateBuilder {
        self.update_upload(id)
            .condition_expression("#s = :processing AND attribute_not_exists(deleted_at)")
            .expression_attribute_names("#s", "status")
            .expression_attribute_values(":processing", sv(UploadStatus::Processing.as_str()))
            .expression_attribute_values(":open", sv(OPEN))
            .expression_attribute_values(":at", nv(at))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The condition DynamoDB evaluates is the state machine's, clause for clause.
    #[test]
    fn conditions_come_from_the_state_machine() {
        let mut v = Vec::new();
        let c = transition_condition(Transition::BeginCompletion, &mut v);
        assert_eq!(c, "(#s = :from_uploading OR (#s = :from_completing AND lease_until < :now))");
        assert_eq!(v.len(), 2);
        let mut v = Vec::new();
        assert_eq!(
            transition_condition(Transition::FinishProcessing(UploadStatus::Ready), &mut v),
            "(#s = :from_processing)"
        );
        assert_eq!(v, vec![(":from_processing".to_owned(), sv("processing"))]);
    }
}
