//! The upload service: create, sign, record, status, complete, abort, and the
//! janitor's sweep. Handlers parse HTTP and call these; everything here speaks
//! domain types and returns [`ApiError`] for anything a client should see.
//!
//! Status machine (every arrow is a conditional write):
//!
//! ```text
//! uploading ──complete──▶ completing ──▶ processing ──▶ ready | quarantined | rejected | corrupt | failed
//!     │  ▲                    │
//!     │  └──refused (409)─────┘
//!     ├──DELETE──▶ aborted
//!     └──janitor─▶ expired
//! ```

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::{
    api::ApiError,
    config::{ContentTypePolicy, RECORD_BATCH_MAX, SIGN_BATCH_MAX},
    domain::{ByteSize, ContentType, ETag, FileName, Invalid, Owner, PartNumber, Sha256Digest, UploadId},
    plan::PartPlan,
    queue::{ProcessJob, QueueError},
    ranges::missing_ranges,
    rfc3339,
    storage::{CompleteOutcome, StorageError},
    store::{CreateError, PartRecord, StoreError, UploadRecord, UploadStatus},
    telemetry, App,
};

/// How long records of closed sessions and their parts stay before DynamoDB's TTL removes them.
const CLOSED_RETENTION_SECS: i64 = 7 * 24 * 3600;

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        if e.is_throttling() {
            tracing::warn!(error = %e, "dynamodb throttled");
            ApiError::Unavailable {
                detail: "The service is busy; please retry in a moment.".into(),
                retry_after_secs: 1,
            }
        } else {
            ApiError::internal(e)
        }
    }
}

impl From<StorageError> for ApiError {
    fn from(e: StorageError) -> Self {
        if e.is_throttling() {
            tracing::warn!(error = %e, "s3 throttled");
            ApiError::Unavailable { detail: "Storage is busy; please retry in a moment.".into(), retry_after_secs: 1 }
        } else {
            ApiError::internal(e)
        }
    }
}

impl From<QueueError> for ApiError {
    fn from(e: QueueError) -> Self {
        ApiError::internal(e)
    }
}

const NOT_FOUND: &str = "No upload with this id exists.";

/// The one place that turns "not yours" into "not there": another owner's upload
/// and a nonexistent one are indistinguishable.
pub(crate) async fn load_owned(app: &App, owner: &Owner, id: &UploadId) -> Result<UploadRecord, ApiError> {
    match app.store.get(id).await? {
        Some(rec) if &rec.owner == owner => Ok(rec),
        _ => Err(ApiError::NotFound(NOT_FOUND)),
    }
}

/// Parses an upload id from a path; a malformed one is just "not found".
pub fn parse_upload_id(raw: Option<&str>) -> Result<UploadId, ApiError> {
    raw.and_then(|s| UploadId::parse(s).ok()).ok_or(ApiError::NotFound(NOT_FOUND))
}

fn plan_of(rec: &UploadRecord) -> Result<PartPlan, ApiError> {
    PartPlan::from_stored(rec.size, rec.part_size, rec.part_count)
        .ok_or_else(|| ApiError::internal(format!("stored plan of {} is inconsistent", rec.id)))
}

/// Status as a client should see it: an open session past its expiry is expired
/// even before the janitor gets to it.
fn effective_status(rec: &UploadRecord, now: i64) -> UploadStatus {
    if rec.status == UploadStatus::Uploading && now >= rec.expires_at {
        UploadStatus::Expired
    } else {
        rec.status
    }
}

pub(crate) fn refuse_unless_open(rec: &UploadRecord, now: i64, action: &str) -> Result<(), ApiError> {
    match effective_status(rec, now) {
        UploadStatus::Uploading => Ok(()),
        UploadStatus::Completing => Err(ApiError::conflict(format!("Cannot {action}: the upload is being completed."))),
        UploadStatus::Expired => Err(ApiError::conflict(format!(
            "Cannot {action}: the upload expired at {}. Start a new upload.",
            rfc3339(rec.expires_at)
        ))),
        UploadStatus::Aborted => Err(ApiError::conflict(format!("Cannot {action}: the upload was aborted."))),
        s => {
            Err(ApiError::conflict(format!("Cannot {action}: the upload is already complete (status {}).", s.as_str())))
        }
    }
}

/// Seconds a presigned URL or form for this session may live: the configured lifetime,
/// never past the session's own expiry.
pub(crate) fn url_ttl(app: &App, rec: &UploadRecord, now: i64) -> u64 {
    app.config.part_url_ttl.as_secs().min((rec.expires_at - now).max(1) as u64)
}

fn refuse_deferred(rec: &UploadRecord) -> Result<(), ApiError> {
    if rec.deferred_size {
        return Err(ApiError::conflict(
            "This upload was started through the Companion (/s3) routes; continue it there.",
        ));
    }
    Ok(())
}

// ---------------------------------------------------------------- views

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct UploadView {
    pub id: String,
    pub status: String,
    pub filename: String,
    pub content_type: String,
    pub size: u64,
    pub part_size: u64,
    pub part_count: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub part_checksums: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    pub parts_done: u32,
    pub bytes_done: u64,
    /// Inclusive ranges `[first, last]` of part numbers not yet recorded.
    pub missing_parts: Vec<[u32; 2]>,
    pub created_at: String,
    pub updated_at: String,
    pub expires_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The type processing read from the bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detected_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub width: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub height: Option<u32>,
    #[serde(default)]
    pub has_thumbnail: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub processed_at: Option<String>,
}

fn view(rec: &UploadRecord, parts: Option<&[PartRecord]>, now: i64) -> UploadView {
    let status = effective_status(rec, now);
    let (parts_done, bytes_done, missing) = if status.is_completed() {
        (rec.part_count, rec.size, Vec::new())
    } else {
        let parts = parts.unwrap_or(&[]);
        let in_plan = parts.iter().filter(|p| p.number >= 1 && p.number <= rec.part_count);
        let (count, bytes) = in_plan.fold((0u32, 0u64), |(c, b), p| (c + 1, b + p.size));
        (count, bytes, missing_ranges(rec.part_count, parts.iter().map(|p| p.number)))
    };
    UploadView {
        id: rec.id.to_string(),
        status: status.as_str().to_owned(),
        filename: rec.filename.display().to_owned(),
        content_type: rec.content_type.to_string(),
        size: rec.size,
        part_size: rec.part_size,
        part_count: rec.part_count,
        part_checksums: rec.part_checksums.then(|| "SHA256".to_owned()),
        sha256: rec.sha256.map(|d| d.to_hex()),
        parts_done,
        bytes_done,
        missing_parts: missing,
        created_at: rfc3339(rec.created_at),
        updated_at: rfc3339(rec.updated_at),
        expires_at: rfc3339(rec.expires_at),
        completed_at: rec.completed_at.map(rfc3339),
        reason: rec.reason.clone(),
        detected_type: rec.detected_type.clone(),
        width: rec.width,
        height: rec.height,
        has_thumbnail: rec.thumbnail_key.is_some(),
        processed_at: rec.processed_at.map(rfc3339),
    }
}

// ---------------------------------------------------------------- create

/// `POST /uploads` body, as sent. Fields are parsed one by one so every error names its field.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateUploadRequest {
    pub filename: String,
    pub size: serde_json::Number,
    pub content_type: String,
    #[serde(default)]
    pub sha256: Option<String>,
    #[serde(default)]
    pub part_checksums: Option<String>,
    #[serde(default)]
    pub part_size: Option<serde_json::Number>,
}

fn whole_number(field: &'static str, n: &serde_json::Number) -> Result<u64, Invalid> {
    if let Some(v) = n.as_u64() {
        return Ok(v);
    }
    if n.as_i64().is_some_and(|v| v < 0) || n.as_f64().is_some_and(|v| v < 0.0) {
        return Err(Invalid::new(field, format!("{field} must not be negative.")));
    }
    Err(Invalid::new(field, format!("{field} must be a whole number of bytes, not {n}.")))
}

/// A create request whose every field is valid.
#[derive(Debug, Clone)]
pub struct NewUpload {
    pub filename: FileName,
    pub size: ByteSize,
    pub content_type: ContentType,
    pub sha256: Option<Sha256Digest>,
    pub part_checksums: bool,
    pub part_size: Option<u64>,
}

impl NewUpload {
    pub fn parse(req: CreateUploadRequest, max_size: u64, types: &ContentTypePolicy) -> Result<Self, ApiError> {
        let filename = FileName::parse(&req.filename)?;
        let raw_size = whole_number("size", &req.size)?;
        let size = ByteSize::new(raw_size)?;
        if size.get() > max_size {
            return Err(ApiError::invalid(
                "size",
                format!("size {} is above this service's limit of {max_size} bytes.", size.get()),
            ));
        }
        let content_type = ContentType::parse(&req.content_type)?;
        if ContentTypePolicy::is_blocked(&content_type) {
            return Err(ApiError::invalid(
                "content_type",
                format!("'{content_type}' is not accepted: executables and scripts are blocked."),
            ));
        }
        if !types.allows(&content_type) {
            return Err(ApiError::invalid(
                "content_type",
                format!("'{content_type}' is not on this service's list of accepted types."),
            ));
        }
        let sha256 = req.sha256.as_deref().map(|s| Sha256Digest::parse("sha256", s)).transpose()?;
        let part_checksums = match req.part_checksums.as_deref() {
            None => false,
            Some(a) if a.eq_ignore_ascii_case("SHA256") => true,
            Some(other) => {
                return Err(ApiError::invalid(
                    "part_checksums",
                    format!("part_checksums must be \"SHA256\" (or left out), not \"{}\".", other.escape_debug()),
                ))
            }
        };
        let part_size = req.part_size.as_ref().map(|n| whole_number("part_size", n)).transpose()?;
        Ok(Self { filename, size, content_type, sha256, part_checksums, part_size })
    }
}

pub async fn create(app: &App, owner: &Owner, new: NewUpload, now: i64) -> Result<UploadView, ApiError> {
    let cfg = &app.config;
    let plan = PartPlan::new(new.size, new.part_size, cfg.default_part_size)?;
    if new.size.get() > cfg.max_bytes_in_flight {
        return Err(ApiError::invalid(
            "size",
            format!("size {} is above your allowance of {} bytes in flight.", new.size, cfg.max_bytes_in_flight),
        ));
    }
    let session = Session {
        filename: new.filename,
        content_type: new.content_type,
        plan: Some(plan),
        part_checksums: new.part_checksums,
        sha256: new.sha256,
        single_post: false,
    };
    let rec = open_session(app, owner, session, now).await?;
    Ok(view(&rec, Some(&[]), now))
}

/// What a new session is made of. `plan: None` is a deferred-size session (the size
/// is learnt at completion, as in Uppy's Companion protocol).
pub(crate) struct Session {
    pub filename: FileName,
    pub content_type: ContentType,
    pub plan: Option<PartPlan>,
    pub part_checksums: bool,
    pub sha256: Option<Sha256Digest>,
    /// One presigned POST instead of a multipart upload (no S3 call at creation).
    pub single_post: bool,
}

/// How long a single-POST session stays open (its policy lives minutes; the rest is for
/// a form still being sent).
pub const SINGLE_POST_TTL: Duration = Duration::from_secs(6 * 3600);

/// Opens the S3 multipart upload (unless the session is a single POST) and stores the
/// session with its quota, in that order; undoes the first when the second is refused.
pub(crate) async fn open_session(
    app: &App,
    owner: &Owner,
    session: Session,
    now: i64,
) -> Result<UploadRecord, ApiError> {
    let cfg = &app.config;
    let reserved = session.plan.map_or(0, |p| p.size());
    // Cheap pre-check so a full quota costs no S3 call; the transaction below is the real guard.
    let quota = app.store.quota(owner).await?;
    if quota.open_uploads >= cfg.max_open_uploads || quota.bytes_in_flight + reserved > cfg.max_bytes_in_flight {
        return Err(quota_exceeded(cfg.max_open_uploads, cfg.max_bytes_in_flight));
    }
    let id = UploadId::generate();
    let key = format!("uploads/{id}");
    let s3_upload_id = if session.single_post {
        String::new()
    } else {
        app.storage
            .create_multipart(
                &key,
                session.content_type.as_str(),
                session.part_checksums,
                &[("hoist-upload-id", id.to_string())],
            )
            .await?
    };
    // A single POST that was never sent leaves no trace a client would clean up (Uppy
    // makes no call when such a file is removed): it frees its open-upload slot within
    // hours, not days. The grace covers a form still in flight when its policy expires.
    let ttl = if session.single_post { cfg.upload_ttl.min(SINGLE_POST_TTL) } else { cfg.upload_ttl };
    let expires_at = now + ttl.as_secs() as i64;
    let (pk, sk, gsi1pk, gsi1sk) = UploadRecord::open_keys(&id, expires_at);
    let rec = UploadRecord {
        pk,
        sk,
        id: id.clone(),
        owner: owner.clone(),
        status: UploadStatus::Uploading,
        filename: session.filename,
        content_type: session.content_type,
        size: session.plan.map_or(0, |p| p.size()),
        part_size: session.plan.map_or(0, |p| p.part_size()),
        part_count: session.plan.map_or(0, |p| p.part_count()),
        part_checksums: session.part_checksums,
        sha256: session.sha256,
        s3_key: key.clone(),
        s3_upload_id: s3_upload_id.clone(),
        created_at: now,
        updated_at: now,
        expires_at,
        completed_at: None,
        lease_until: None,
        etag: None,
        reason: None,
        detected_type: None,
        content_sha256: None,
        thumbnail_key: None,
        width: None,
        height: None,
        processed_at: None,
        deleted_at: None,
        purge_at: None,
        gsi2pk: None,
        gsi2sk: None,
        deferred_size: session.plan.is_none(),
        single_post: session.single_post,
        gsi1pk,
        gsi1sk,
        // A backstop only: the janitor expires sessions long before DynamoDB deletes them.
        ttl: Some(expires_at + CLOSED_RETENTION_SECS),
    };
    match app.store.create_session(&rec, cfg.max_open_uploads, cfg.max_bytes_in_flight).await {
        Ok(()) => {}
        Err(CreateError::QuotaExceeded) => {
            if let Err(e) = discard_s3(app, &rec).await {
                tracing::warn!(error = %e, upload_id = %id, "abort after quota refusal failed; lifecycle rule will clean up");
            }
            return Err(quota_exceeded(cfg.max_open_uploads, cfg.max_bytes_in_flight));
        }
        Err(CreateError::Store(e)) => {
            let _ = discard_s3(app, &rec).await;
            return Err(e.into());
        }
    }
    tracing::info!(upload_id = %id, owner = %owner, size = rec.size, parts = rec.part_count, deferred = rec.deferred_size, single_post = rec.single_post, "upload created");
    telemetry::metric("create_upload", "UploadsCreated", 1.0, "Count");
    Ok(rec)
}

/// Throws away what S3 holds for a session: its multipart upload's parts, or the object
/// a single POST may have left. Idempotent.
async fn discard_s3(app: &App, rec: &UploadRecord) -> Result<(), crate::storage::StorageError> {
    if rec.single_post {
        app.storage.delete_object(&rec.s3_key).await
    } else {
        app.storage.abort(&rec.s3_key, &rec.s3_upload_id).await
    }
}

fn quota_exceeded(max_open: u64, max_bytes: u64) -> ApiError {
    ApiError::TooManyRequests {
        detail: format!(
            "You have reached your limit of {max_open} open uploads or {max_bytes} bytes in flight. Complete or abort an upload, then retry."
        ),
        retry_after_secs: 60,
    }
}

// ---------------------------------------------------------------- sign

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignPartsRequest {
    pub parts: Vec<SignPartItem>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignPartItem {
    pub number: i64,
    #[serde(default)]
    pub sha256: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SignedPart {
    pub number: u32,
    pub url: String,
    pub method: String,
    /// Send these headers verbatim with the PUT.
    pub headers: BTreeMap<String, String>,
    /// The exact body length S3 will accept for this part (signed).
    pub content_length: u64,
    pub expires_at: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SignPartsResponse {
    pub parts: Vec<SignedPart>,
}

fn part_in_plan(plan: &PartPlan, raw: i64) -> Result<PartNumber, ApiError> {
    let n = PartNumber::try_from(raw).map_err(ApiError::from)?;
    if !plan.contains(n) {
        return Err(ApiError::invalid(
            "number",
            format!("part {n} is not in this upload's plan of {} parts.", plan.part_count()),
        ));
    }
    Ok(n)
}

pub async fn sign_parts(
    app: &App,
    owner: &Owner,
    id: &UploadId,
    req: SignPartsRequest,
    now: i64,
) -> Result<SignPartsResponse, ApiError> {
    if req.parts.is_empty() {
        return Err(ApiError::invalid("parts", "parts must name at least one part to sign."));
    }
    if req.parts.len() > SIGN_BATCH_MAX {
        return Err(ApiError::invalid("parts", format!("at most {SIGN_BATCH_MAX} parts can be signed per request.")));
    }
    let rec = load_owned(app, owner, id).await?;
    refuse_unless_open(&rec, now, "sign parts")?;
    refuse_deferred(&rec)?;
    let plan = plan_of(&rec)?;
    let ttl = url_ttl(app, &rec, now);
    let expires_at = rfc3339(now + ttl as i64);
    let mut wanted: Vec<(PartNumber, Option<Sha256Digest>)> = Vec::with_capacity(req.parts.len());
    for item in &req.parts {
        let n = part_in_plan(&plan, item.number)?;
        let sha = item.sha256.as_deref().map(|s| Sha256Digest::parse("sha256", s)).transpose()?;
        match (rec.part_checksums, &sha) {
            (true, None) => {
                return Err(ApiError::invalid("sha256", format!("part {n} needs its sha256: this upload pins a SHA-256 checksum on every part.")))
            }
            (false, Some(_)) => {
                return Err(ApiError::invalid(
                    "sha256",
                    "this upload was created without part_checksums, so parts cannot carry a sha256; create it with part_checksums: \"SHA256\".",
                ))
            }
            _ => {}
        }
        wanted.push((n, sha));
    }
    let batch = wanted.into_iter().map(|(n, sha)| (n, plan.part_len(n).unwrap_or(0), sha));
    let signed = app.storage.presign_batch(&rec.s3_key, &rec.s3_upload_id, batch, Duration::from_secs(ttl)).await?;
    let parts: Vec<SignedPart> = signed
        .into_iter()
        .map(|(n, p)| SignedPart {
            number: n.get(),
            url: p.url,
            method: p.method,
            headers: p.headers,
            content_length: plan.part_len(n).unwrap_or(0),
            expires_at: expires_at.clone(),
        })
        .collect();
    telemetry::metric("sign_parts", "PartsSigned", parts.len() as f64, "Count");
    Ok(SignPartsResponse { parts })
}

// ---------------------------------------------------------------- record

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordPartsRequest {
    pub parts: Vec<RecordPartItem>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordPartItem {
    pub number: i64,
    pub etag: String,
    pub size: serde_json::Number,
    #[serde(default)]
    pub sha256: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RecordPartsResponse {
    pub recorded: u32,
}

pub async fn record_parts(
    app: &App,
    owner: &Owner,
    id: &UploadId,
    req: RecordPartsRequest,
    now: i64,
) -> Result<RecordPartsResponse, ApiError> {
    if req.parts.is_empty() {
        return Err(ApiError::invalid("parts", "parts must list at least one uploaded part."));
    }
    if req.parts.len() > RECORD_BATCH_MAX {
        return Err(ApiError::invalid(
            "parts",
            format!("at most {RECORD_BATCH_MAX} parts can be recorded per request."),
        ));
    }
    let rec = load_owned(app, owner, id).await?;
    refuse_unless_open(&rec, now, "record parts")?;
    refuse_deferred(&rec)?;
    let plan = plan_of(&rec)?;
    // Last write wins within a batch, as it does in S3 for a re-sent part.
    let mut by_number: BTreeMap<u32, PartRecord> = BTreeMap::new();
    for item in req.parts {
        let n = part_in_plan(&plan, item.number)?;
        let etag = ETag::parse(&item.etag)?;
        let size = whole_number("size", &item.size)?;
        let planned = plan.part_len(n).unwrap_or(0);
        if size != planned {
            return Err(ApiError::invalid("size", format!("part {n} must be {planned} bytes, not {size}.")));
        }
        let sha256 =
            item.sha256.as_deref().map(|s| Sha256Digest::parse("sha256", s)).transpose()?.map(|d| d.to_base64());
        by_number.insert(n.get(), PartRecord { number: n.get(), etag: etag.as_str().to_owned(), size, sha256 });
    }
    let parts: Vec<PartRecord> = by_number.into_values().collect();
    app.store.put_parts(id, &parts, rec.expires_at + CLOSED_RETENTION_SECS, now).await?;
    Ok(RecordPartsResponse { recorded: parts.len() as u32 })
}

// ---------------------------------------------------------------- status

pub async fn status(app: &App, owner: &Owner, id: &UploadId, now: i64) -> Result<UploadView, ApiError> {
    let rec = load_owned(app, owner, id).await?;
    if rec.status.is_completed() {
        return Ok(view(&rec, None, now));
    }
    let parts = app.store.parts(id).await?;
    Ok(view(&rec, Some(&parts), now))
}

// ---------------------------------------------------------------- complete

/// Finalizes the upload. Safe to call any number of times, concurrently: one caller
/// takes a lease and does the work; the others wait for its result and return it.
pub async fn complete(app: &App, owner: &Owner, id: &UploadId, now: i64) -> Result<UploadView, ApiError> {
    let started = tokio::time::Instant::now();
    loop {
        // `now` advances while we wait for another caller's completion.
        let t = now + started.elapsed().as_secs() as i64;
        let rec = load_owned(app, owner, id).await?;
        match effective_status(&rec, t) {
            s if s.is_completed() => return Ok(view(&rec, None, t)),
            UploadStatus::Uploading => {
                if app.store.begin_completion(id, t, app.config.complete_lease).await? {
                    return drive_completion(app, rec, t).await;
                }
            }
            UploadStatus::Completing => {
                // A completion that died holding its lease is taken over (the condition
                // in begin_completion only lets a stale lease go).
                if rec.lease_until.is_some_and(|l| l < t)
                    && app.store.begin_completion(id, t, app.config.complete_lease).await?
                {
                    return drive_completion(app, rec, t).await;
                }
            }
            _ => refuse_unless_open(&rec, t, "complete")?,
        }
        if started.elapsed() >= app.config.complete_wait {
            return Err(ApiError::conflict(
                "Another request is still completing this upload; ask again in a few seconds.",
            ));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Runs with the completion lease held; gives it back on any failure.
async fn drive_completion(app: &App, mut rec: UploadRecord, now: i64) -> Result<UploadView, ApiError> {
    let finished = if rec.single_post {
        finish_single_object(app, &rec).await
    } else if rec.deferred_size {
        finish_deferred_object(app, &rec).await
    } else {
        finish_object(app, &rec).await
    };
    match finished {
        Ok((etag, size)) => {
            // A deferred-size upload learns its size now.
            rec.size = size;
            let job = ProcessJob {
                version: 1,
                upload_id: rec.id.clone(),
                owner: rec.owner.clone(),
                bucket: app.storage.bucket().to_owned(),
                key: rec.s3_key.clone(),
                size: rec.size,
                etag: etag.clone(),
                content_type: rec.content_type.clone(),
                sha256: rec.sha256,
            };
            // Job first, status second: a crash between them leaves `completing`, which
            // a retry or the janitor drives again (the job is idempotent by design).
            if let Err(e) = app.queue.send(&job).await {
                let _ = app.store.release_completion(&rec, now).await;
                return Err(e.into());
            }
            app.store.finish_completion(&rec, &etag, now).await?;
            tracing::info!(upload_id = %rec.id, owner = %rec.owner, size = rec.size, "upload completed");
            telemetry::metric("complete_upload", "UploadsCompleted", 1.0, "Count");
            telemetry::metric("complete_upload", "BytesCompleted", rec.size as f64, "Bytes");
            let done = app.store.get(&rec.id).await?.unwrap_or(rec);
            Ok(view(&done, None, now))
        }
        Err(e) => {
            if let Err(release) = app.store.release_completion(&rec, now).await {
                tracing::error!(error = %release, upload_id = %rec.id, "could not release completion lease");
            }
            Err(e)
        }
    }
}

/// Makes sure the object exists, assembled from exactly the planned parts; returns its
/// ETag and size.
async fn finish_object(app: &App, rec: &UploadRecord) -> Result<(String, u64), ApiError> {
    let Some(stored) = app.storage.list_parts(&rec.s3_key, &rec.s3_upload_id).await? else {
        // S3 no longer knows the multipart upload: our own earlier completion (that
        // crashed before recording it), or an abort by the lifecycle rule.
        return existing_object(app, rec).await?.map(|e| (e, rec.size)).ok_or_else(|| {
            ApiError::conflict("S3 no longer holds this upload's parts (aborted or expired). Start a new upload.")
        });
    };
    let plan = plan_of(rec)?;
    let recorded: HashMap<u32, PartRecord> =
        app.store.parts(&rec.id).await?.into_iter().map(|p| (p.number, p)).collect();
    let in_s3: HashMap<u32, &crate::storage::StoredPart> = stored.iter().map(|p| (p.number, p)).collect();
    let mut missing = Vec::new();
    let mut mismatched = Vec::new();
    let mut parts = Vec::with_capacity(rec.part_count as usize);
    for n in 1..=rec.part_count {
        let number = PartNumber::new(n)?;
        let Some(s3) = in_s3.get(&n) else {
            missing.push(n);
            continue;
        };
        let planned = plan.part_len(number).unwrap_or(0);
        let etag_differs = recorded.get(&n).is_some_and(|r| r.etag != s3.etag);
        let checksum_missing = rec.part_checksums && s3.checksum_sha256.is_none();
        if s3.size != planned || etag_differs || checksum_missing {
            mismatched.push(n);
            continue;
        }
        let etag = ETag::parse(&s3.etag)
            .map_err(|_| ApiError::internal(format!("S3 returned an unusable ETag for part {n}")))?;
        parts.push((number, etag, rec.part_checksums.then(|| s3.checksum_sha256.clone()).flatten()));
    }
    if !missing.is_empty() || !mismatched.is_empty() {
        let missing_ranges = missing_ranges(rec.part_count, (1..=rec.part_count).filter(|n| !missing.contains(n)));
        let mut extra = Map::new();
        extra.insert("missing_parts".into(), json!(missing_ranges));
        extra.insert("mismatched_parts".into(), json!(mismatched));
        let mut detail = String::from("The upload cannot be completed yet:");
        if !missing.is_empty() {
            detail.push_str(&format!(
                " {} part(s) are not in S3 ({})",
                missing.len(),
                describe_ranges(&missing_ranges)
            ));
        }
        if !mismatched.is_empty() {
            if !missing.is_empty() {
                detail.push(';');
            }
            detail.push_str(&format!(
                " part(s) {} in S3 differ from what was recorded (re-send or re-record them)",
                mismatched.iter().map(u32::to_string).collect::<Vec<_>>().join(", ")
            ));
        }
        detail.push('.');
        return Err(ApiError::Conflict { detail, extra });
    }
    complete_parts(app, rec, &parts, rec.size).await
}

/// CompleteMultipartUpload, resolving "already done" answers against the object itself.
async fn complete_parts(
    app: &App,
    rec: &UploadRecord,
    parts: &[(PartNumber, ETag, Option<String>)],
    size: u64,
) -> Result<(String, u64), ApiError> {
    match app.storage.complete(&rec.s3_key, &rec.s3_upload_id, parts, size).await? {
        CompleteOutcome::Completed { etag } => Ok((etag, size)),
        CompleteOutcome::AlreadyExists | CompleteOutcome::NoSuchUpload => {
            existing_object(app, rec).await?.map(|e| (e, size)).ok_or_else(|| {
                ApiError::conflict("S3 refused to complete this upload and holds no object for it. Start a new upload.")
            })
        }
        CompleteOutcome::Refused { code, message } => Err(ApiError::Conflict {
            detail: format!("S3 refused to assemble the parts ({code}): {message}"),
            extra: Map::from_iter([("s3_code".to_owned(), Value::String(code))]),
        }),
    }
}

/// Completes an upload whose size was not declared (Uppy's Companion protocol): the
/// parts are whatever S3 holds, which must run 1..=n without gaps; the total must be
/// within the service's limit, or the upload is aborted.
async fn finish_deferred_object(app: &App, rec: &UploadRecord) -> Result<(String, u64), ApiError> {
    let Some(stored) = app.storage.list_parts(&rec.s3_key, &rec.s3_upload_id).await? else {
        return match app.storage.head(&rec.s3_key).await? {
            Some((size, etag)) => Ok((etag, size)),
            None => Err(ApiError::conflict(
                "S3 no longer holds this upload's parts (aborted or expired). Start a new upload.",
            )),
        };
    };
    if stored.is_empty() {
        return Err(ApiError::conflict("No parts have been uploaded yet."));
    }
    let mut numbers: Vec<u32> = stored.iter().map(|p| p.number).collect();
    numbers.sort_unstable();
    let count = numbers.len() as u32;
    let gaps = missing_ranges(numbers.last().copied().unwrap_or(0), numbers.iter().copied());
    if !gaps.is_empty() {
        let mut extra = Map::new();
        extra.insert("missing_parts".into(), json!(gaps));
        return Err(ApiError::Conflict {
            detail: format!("The upload cannot be completed yet: part(s) {} are not in S3.", describe_ranges(&gaps)),
            extra,
        });
    }
    let size: u64 = stored.iter().map(|p| p.size).sum();
    if size > app.config.max_upload_size {
        // Enforced here because this protocol does not declare the size up front.
        return Err(discard_too_large(app, rec, size).await);
    }
    let mut parts = Vec::with_capacity(count as usize);
    let mut sorted = stored;
    sorted.sort_by_key(|p| p.number);
    for p in sorted {
        let etag = ETag::parse(&p.etag).map_err(|_| ApiError::internal("S3 returned an unusable ETag"))?;
        parts.push((PartNumber::new(p.number)?, etag, None));
    }
    complete_parts(app, rec, &parts, size).await
}

/// A single POST's object is whatever S3 received (the signed policy bounded its size
/// and pinned its key and type).
async fn finish_single_object(app: &App, rec: &UploadRecord) -> Result<(String, u64), ApiError> {
    match app.storage.head(&rec.s3_key).await? {
        Some((size, etag)) if size <= app.config.max_upload_size => Ok((etag, size)),
        Some((size, _)) => Err(discard_too_large(app, rec, size).await),
        None => Err(ApiError::conflict("S3 has not received this upload's file yet.")),
    }
}

/// An upload whose size was not declared turned out above the limit: what S3 holds is
/// thrown away, and the caller is told why.
async fn discard_too_large(app: &App, rec: &UploadRecord, size: u64) -> ApiError {
    if let Err(e) = discard_s3(app, rec).await {
        return e.into();
    }
    ApiError::invalid(
        "size",
        format!(
            "The upload is {size} bytes, above this service's limit of {} bytes; it was discarded.",
            app.config.max_upload_size
        ),
    )
}

/// What became of an S3 ObjectCreated event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    /// A single POST's session moved to processing (its job is queued).
    Completed,
    /// The object landed after its session was aborted or expired: deleted.
    Discarded,
    /// Not a single-POST upload of ours, or already handled (events repeat).
    Ignored,
}

/// S3 says an object was created at `key`. For a single-POST session that is the end of
/// the upload (there is no completion call on that path), so it completes here, even
/// past its expiry time: the policy was signed while the session was open. Safe to run
/// any number of times, concurrently (the completion lease decides).
pub async fn object_arrived(app: &App, key: &str, now: i64) -> Result<Arrival, ApiError> {
    let Some(id) = key.strip_prefix("uploads/").and_then(|s| UploadId::parse(s).ok()) else {
        return Ok(Arrival::Ignored);
    };
    let Some(rec) = app.store.get(&id).await? else {
        tracing::warn!(key, "object created for an unknown upload");
        return Ok(Arrival::Ignored);
    };
    if !rec.single_post {
        return Ok(Arrival::Ignored);
    }
    match rec.status {
        UploadStatus::Uploading | UploadStatus::Completing => {
            if app.store.begin_completion(&id, now, app.config.complete_lease).await? {
                return match drive_completion(app, rec.clone(), now).await {
                    Ok(_) => Ok(Arrival::Completed),
                    // Too large (the limit was lowered after signing): the object is gone,
                    // and so is the session; retrying would change nothing.
                    Err(ApiError::Invalid { detail, .. }) => {
                        app.store
                            .close_open(&rec, UploadStatus::Aborted, &detail, now + CLOSED_RETENTION_SECS, now)
                            .await?;
                        Ok(Arrival::Discarded)
                    }
                    Err(e) => Err(e),
                };
            }
            let now_rec = app.store.get(&id).await?.unwrap_or(rec);
            if now_rec.status == UploadStatus::Completing {
                // Someone holds a live lease: hand the event back to be redelivered.
                return Err(ApiError::conflict("Another worker is completing this upload."));
            }
            Ok(Arrival::Ignored)
        }
        UploadStatus::Aborted | UploadStatus::Expired => {
            app.storage.delete_object(&rec.s3_key).await?;
            tracing::info!(upload_id = %id, owner = %rec.owner, "object arrived after its upload closed; deleted");
            Ok(Arrival::Discarded)
        }
        _ => Ok(Arrival::Ignored),
    }
}

/// The object at the upload's key, if it is the one this upload produced (right size).
async fn existing_object(app: &App, rec: &UploadRecord) -> Result<Option<String>, ApiError> {
    Ok(match app.storage.head(&rec.s3_key).await? {
        Some((size, etag)) if size == rec.size || rec.deferred_size => Some(etag),
        Some((size, _)) => {
            tracing::error!(upload_id = %rec.id, size, expected = rec.size, "object at upload key has the wrong size");
            None
        }
        None => None,
    })
}

fn describe_ranges(r: &[[u32; 2]]) -> String {
    let shown: Vec<String> =
        r.iter().take(20).map(|[a, b]| if a == b { a.to_string() } else { format!("{a}-{b}") }).collect();
    let more = if r.len() > 20 { ", ..." } else { "" };
    format!("{}{more}", shown.join(", "))
}

// ---------------------------------------------------------------- abort

pub async fn abort(app: &App, owner: &Owner, id: &UploadId, now: i64) -> Result<UploadView, ApiError> {
    let mut rec = load_owned(app, owner, id).await?;
    match rec.status {
        UploadStatus::Uploading => {
            let closed = app
                .store
                .close_open(&rec, UploadStatus::Aborted, "Aborted by its owner.", now + CLOSED_RETENTION_SECS, now)
                .await?;
            if !closed {
                // Raced with a completion or another abort: answer from what won.
                rec = load_owned(app, owner, id).await?;
                if rec.status != UploadStatus::Aborted {
                    refuse_unless_open(&rec, now, "abort")?;
                }
            }
        }
        UploadStatus::Aborted | UploadStatus::Expired => {}
        UploadStatus::Completing => return Err(ApiError::conflict("Cannot abort: the upload is being completed.")),
        s => {
            return Err(ApiError::conflict(format!(
                "Cannot abort: the upload is already complete (status {}).",
                s.as_str()
            )))
        }
    }
    // Idempotent: a repeated DELETE re-aborts, which S3 treats as done.
    discard_s3(app, &rec).await?;
    tracing::info!(upload_id = %id, owner = %owner, "upload aborted");
    let rec = load_owned(app, owner, id).await?;
    Ok(view(&rec, Some(&[]), now))
}

// ---------------------------------------------------------------- janitor

#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct SweepReport {
    pub expired: u32,
    pub completed: u32,
    pub released: u32,
    pub purged: u32,
    pub errors: u32,
}

/// Expires sessions past their time (aborting their multipart uploads) and finishes
/// completions whose caller died holding the lease.
// The lease is taken inside the arm, not in a guard: a guard that awaits and writes hides a side effect.
#[allow(clippy::collapsible_match)]
pub async fn sweep(app: &App, now: i64) -> Result<SweepReport, ApiError> {
    let mut report = SweepReport::default();
    // Bounded: a run does at most 20 pages of 100; the next run continues.
    for _ in 0..20 {
        let due = app.store.due(now, 100).await?;
        if due.is_empty() {
            break;
        }
        let mut progressed = false;
        for rec in due {
            match rec.status {
                UploadStatus::Uploading if rec.expires_at <= now => {
                    // A single POST whose S3 event never came: its object is the upload,
                    // handled as the event would have been.
                    if rec.single_post && app.storage.head(&rec.s3_key).await?.is_some() {
                        match object_arrived(app, &rec.s3_key, now).await {
                            Ok(Arrival::Completed) => {
                                progressed = true;
                                report.completed += 1;
                            }
                            Ok(Arrival::Discarded) => progressed = true,
                            Ok(Arrival::Ignored) => {}
                            Err(e) => {
                                report.errors += 1;
                                tracing::error!(error = %e, upload_id = %rec.id, "janitor could not complete a single POST");
                            }
                        }
                        continue;
                    }
                    let reason = "Expired before it was completed; its parts were discarded.";
                    if app
                        .store
                        .close_open(&rec, UploadStatus::Expired, reason, now + CLOSED_RETENTION_SECS, now)
                        .await?
                    {
                        progressed = true;
                        report.expired += 1;
                        // DynamoDB first (no new signatures, no completion), then S3; if S3
                        // fails, the bucket's lifecycle rule aborts the parts later.
                        if let Err(e) = discard_s3(app, &rec).await {
                            report.errors += 1;
                            tracing::error!(error = %e, upload_id = %rec.id, "janitor could not abort multipart upload");
                        }
                        tracing::info!(upload_id = %rec.id, owner = %rec.owner, "upload expired");
                    }
                }
                UploadStatus::Completing if rec.lease_until.is_some_and(|l| l < now) => {
                    if app.store.begin_completion(&rec.id, now, app.config.complete_lease).await? {
                        progressed = true;
                        match drive_completion(app, rec.clone(), now).await {
                            Ok(_) => report.completed += 1,
                            Err(ApiError::Conflict { .. }) => report.released += 1,
                            Err(e) => {
                                report.errors += 1;
                                tracing::error!(error = %e, upload_id = %rec.id, "janitor could not finish completion");
                            }
                        }
                    }
                }
                _ => {}
            }
        }
        if !progressed {
            break;
        }
    }
    report.purged = crate::files::purge_due(app, now).await?;
    telemetry::metric("janitor", "FilesPurged", f64::from(report.purged), "Count");
    telemetry::metric("janitor", "UploadsExpired", f64::from(report.expired), "Count");
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::DEFAULT_ALLOWED_TYPES;

    fn req(json: &str) -> Result<NewUpload, ApiError> {
        let r: CreateUploadRequest = crate::api::parse_json(json.as_bytes())?;
        NewUpload::parse(r, 5 * crate::domain::TIB, &ContentTypePolicy::parse(DEFAULT_ALLOWED_TYPES).unwrap())
    }

    fn field_of(e: ApiError) -> Option<String> {
        match e {
            ApiError::Invalid { field, .. } => field,
            other => panic!("expected Invalid, got {other:?}"),
        }
    }

    #[test]
    fn create_request_validation() {
        let ok = req(r#"{"filename":"a.jpg","size":10,"content_type":"image/jpeg"}"#).unwrap();
        assert_eq!(ok.size.get(), 10);
        assert!(!ok.part_checksums);
        assert_eq!(
            field_of(req(r#"{"filename":"a.jpg","size":-1,"content_type":"image/jpeg"}"#).unwrap_err()).as_deref(),
            Some("size")
        );
        assert_eq!(
            field_of(req(r#"{"filename":"a.jpg","size":1.5,"content_type":"image/jpeg"}"#).unwrap_err()).as_deref(),
            Some("size")
        );
        assert_eq!(
            field_of(
                req(r#"{"filename":"a.jpg","size":99999999999999999999,"content_type":"image/jpeg"}"#).unwrap_err()
            )
            .as_deref(),
            Some("size")
        );
        assert_eq!(
            field_of(req(r#"{"filename":"a.jpg","size":6000000000000,"content_type":"image/jpeg"}"#).unwrap_err())
                .as_deref(),
            Some("size")
        );
        assert_eq!(
            field_of(req(r#"{"filename":"../x","size":1,"content_type":"image/jpeg"}"#).unwrap_err()).as_deref(),
            Some("filename")
        );
        assert_eq!(
            field_of(req(r#"{"filename":"a.exe","size":1,"content_type":"application/x-msdownload"}"#).unwrap_err())
                .as_deref(),
            Some("content_type")
        );
        assert_eq!(
            field_of(req(r#"{"filename":"a","size":1,"content_type":"application/x-foo"}"#).unwrap_err()).as_deref(),
            Some("content_type")
        );
        assert_eq!(
            field_of(req(r#"{"filename":"a","size":1,"content_type":"image/png","sha256":"nope"}"#).unwrap_err())
                .as_deref(),
            Some("sha256")
        );
        assert_eq!(
            field_of(
                req(r#"{"filename":"a","size":1,"content_type":"image/png","part_checksums":"MD5"}"#).unwrap_err()
            )
            .as_deref(),
            Some("part_checksums")
        );
        assert_eq!(
            field_of(req(r#"{"filename":"a","size":1,"content_type":"image/png","part_size":-5}"#).unwrap_err())
                .as_deref(),
            Some("part_size")
        );
        // Unknown fields and missing fields are refused, not ignored.
        assert_eq!(
            req(r#"{"filename":"a","size":1,"content_type":"image/png","owner":"x"}"#).unwrap_err().status(),
            422
        );
        assert_eq!(req(r#"{"filename":"a","size":1}"#).unwrap_err().status(), 422);
        assert_eq!(req(r#"{"filename":"#).unwrap_err().status(), 400);
        let with = req(r#"{"filename":"a","size":1,"content_type":"image/png","part_checksums":"SHA256","sha256":"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"}"#).unwrap();
        assert!(with.part_checksums && with.sha256.is_some());
    }

    #[test]
    fn ranges_are_described_briefly() {
        assert_eq!(describe_ranges(&[[1, 1], [3, 5]]), "1, 3-5");
        let many: Vec<[u32; 2]> = (0..30).map(|i| [i * 2 + 1, i * 2 + 1]).collect();
        assert!(describe_ranges(&many).ends_with(", ..."));
    }
}
