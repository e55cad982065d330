//! Create: validate the file, plan its parts, open the S3 multipart upload and store
//! the upload with its quota. Also opens the Companion protocol's deferred-size uploads
//! and Uppy's single-POST uploads.

use std::time::Duration;

use api_types::uploads::{CreateUploadRequest, UploadView};

use crate::{
    config::ContentTypePolicy,
    domain::{
        ByteSize, ContentType, FileName, Invalid, Owner, PartPlan, Quota, QuotaLimits, Sha256Digest, Upload,
        UploadError, UploadId, UploadStatus,
    },
    ports::CreateError,
    telemetry, App,
};

use super::{discard_s3, view};

/// A JSON number that must be a whole, non-negative byte count; errors name the field.
pub(crate) fn whole_number(field: &'static str, n: &serde_json::Number) -> Result<u64, Invalid> {
    if let Some(v) = n.as_u64() {
        return Ok(v);
    }
    if n.as_i64().is_some_and(|v| v < 0) || n.as_f64().is_some_and(|v| v < 0.0) {
        return Err(Invalid::new(field, format!("{field} must not be negative.")));
    }
    Err(Invalid::new(field, format!("{field} must be a whole number of bytes, not {n}.")))
}

/// A declared type checked against the service's rules; `field` names it in errors.
pub(crate) fn accepted_type(
    types: &ContentTypePolicy,
    field: &'static str,
    raw: &str,
) -> Result<ContentType, UploadError> {
    let content_type = ContentType::parse(raw).map_err(|e| Invalid::new(field, e.detail))?;
    if ContentTypePolicy::is_blocked(&content_type) {
        return Err(Invalid::new(
            field,
            format!("'{content_type}' is not accepted: executables and scripts are blocked."),
        )
        .into());
    }
    if !types.allows(&content_type) {
        return Err(
            Invalid::new(field, format!("'{content_type}' is not on this service's list of accepted types.")).into()
        );
    }
    Ok(content_type)
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
    /// Parses `POST /uploads` field by field, so every error names its field.
    pub fn parse(req: CreateUploadRequest, max_size: u64, types: &ContentTypePolicy) -> Result<Self, UploadError> {
        let filename = FileName::parse(&req.filename)?;
        let raw_size = whole_number("size", &req.size)?;
        let size = ByteSize::new(raw_size)?;
        if size.get() > max_size {
            return Err(Invalid::new(
                "size",
                format!("size {} is above this service's limit of {max_size} bytes.", size.get()),
            )
            .into());
        }
        let content_type = accepted_type(types, "content_type", &req.content_type)?;
        let sha256 = req.sha256.as_deref().map(|s| Sha256Digest::parse("sha256", s)).transpose()?;
        let part_checksums = match req.part_checksums.as_deref() {
            None => false,
            Some(a) if a.eq_ignore_ascii_case("SHA256") => true,
            Some(other) => {
                return Err(Invalid::new(
                    "part_checksums",
                    format!("part_checksums must be \"SHA256\" (or left out), not \"{}\".", other.escape_debug()),
                )
                .into())
            }
        };
        let part_size = req.part_size.as_ref().map(|n| whole_number("part_size", n)).transpose()?;
        Ok(Self { filename, size, content_type, sha256, part_checksums, part_size })
    }
}

/// `POST /uploads`.
pub async fn create(app: &App, owner: &Owner, new: NewUpload, now: i64) -> Result<UploadView, UploadError> {
    let cfg = &app.config;
    let plan = PartPlan::new(new.size, new.part_size, cfg.default_part_size)?;
    if new.size.get() > cfg.max_bytes_in_flight {
        return Err(Invalid::new(
            "size",
            format!("size {} is above your allowance of {} bytes in flight.", new.size, cfg.max_bytes_in_flight),
        )
        .into());
    }
    let session = Session {
        filename: new.filename,
        content_type: new.content_type,
        plan: Some(plan),
        part_checksums: new.part_checksums,
        sha256: new.sha256,
        single_post: false,
    };
    let upload = open_session(app, owner, session, now).await?;
    Ok(view(&upload, Some(&[]), now))
}

/// What a new upload is made of. `plan: None` is a deferred-size upload (the size
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

/// The owner quotas the configuration sets.
pub(crate) fn quota_limits(cfg: &crate::config::Config) -> QuotaLimits {
    QuotaLimits { max_open: cfg.max_open_uploads, max_bytes: cfg.max_bytes_in_flight, max_stored: cfg.max_stored_bytes }
}

/// The most a session of undeclared size may hold: the configured ceiling, and for a
/// single POST also S3's limit for one POST.
pub fn deferred_ceiling(cfg: &crate::config::Config, single_post: bool) -> u64 {
    let ceiling = cfg.max_upload_size.min(cfg.deferred_ceiling);
    if single_post {
        ceiling.min(SINGLE_POST_MAX)
    } else {
        ceiling
    }
}

/// S3 takes at most 5 GiB in one POST.
pub const SINGLE_POST_MAX: u64 = 5 * crate::domain::GIB;

/// Which quota a refused reservation of `needed` bytes ran into, in words.
pub(crate) fn refusal(limits: QuotaLimits, quota: Quota, needed: u64) -> UploadError {
    if limits.has_room(quota, needed) {
        UploadError::QuotaExceeded { max_open: limits.max_open, max_bytes: limits.max_bytes }
    } else {
        UploadError::StorageFull {
            needed,
            available: limits.max_stored.saturating_sub(quota.bytes_stored.saturating_add(quota.bytes_in_flight)),
            limit: limits.max_stored,
        }
    }
}

/// How long a single-POST upload stays open (its policy lives minutes; the rest is for
/// a form still being sent).
pub const SINGLE_POST_TTL: Duration = Duration::from_secs(6 * 3600);

/// Opens the S3 multipart upload (unless it is a single POST) and stores the upload
/// with its quota, in that order; undoes the first when the second is refused.
pub(crate) async fn open_session(app: &App, owner: &Owner, session: Session, now: i64) -> Result<Upload, UploadError> {
    let cfg = &app.config;
    let limits = quota_limits(cfg);
    // A session of undeclared size reserves its ceiling, the most it may hold.
    let reservation = session.plan.is_none().then(|| deferred_ceiling(cfg, session.single_post));
    let reserved = session.plan.map_or(0, |p| p.size()).max(reservation.unwrap_or(0));
    // Cheap pre-check so a full quota costs no S3 call; the repository's transaction is the real guard.
    let quota = app.repo.quota(owner).await?;
    if !limits.admits(quota, reserved) {
        return Err(refusal(limits, quota, reserved));
    }
    let id = UploadId::generate();
    let key = format!("uploads/{id}");
    let s3_upload_id = if session.single_post {
        String::new()
    } else {
        app.objects
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
    let upload = Upload {
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
        s3_key: key,
        s3_upload_id,
        created_at: now,
        updated_at: now,
        expires_at: now + ttl.as_secs() as i64,
        completed_at: None,
        lease_until: None,
        etag: None,
        version_id: None,
        refused_writes: None,
        link_generation: None,
        reason: None,
        detected_type: None,
        content_sha256: None,
        thumbnail_key: None,
        width: None,
        height: None,
        processed_at: None,
        deleted_at: None,
        purge_at: None,
        deferred_size: session.plan.is_none(),
        single_post: session.single_post,
        reservation,
        signings: None,
        windows_total: None,
        window_bytes: None,
        windows_done: None,
        hash_next: None,
        hash_state: None,
        scan_found: None,
        scan_gap: None,
        type_rejection: None,
        stall_check_at: None,
        redrives: None,
        redrives_sent: None,
        redrive_seen: None,
        redriven_at: None,
        redrive_progress: None,
        waiting_for_scanner: false,
        scanner_waits: None,
    };
    match app.repo.create(&upload, limits).await {
        Ok(()) => {}
        Err(CreateError::QuotaExceeded) => {
            if let Err(e) = discard_s3(app, &upload).await {
                tracing::warn!(error = %e, upload_id = %id, "abort after quota refusal failed; lifecycle rule will clean up");
            }
            let quota = app.repo.quota(owner).await.unwrap_or(quota);
            return Err(refusal(limits, quota, reserved));
        }
        Err(CreateError::Repo(e)) => {
            let _ = discard_s3(app, &upload).await;
            return Err(e.into());
        }
    }
    tracing::info!(upload_id = %id, owner = %owner, size = upload.size, parts = upload.part_count, deferred = upload.deferred_size, single_post = upload.single_post, "upload created");
    telemetry::metric("create_upload", "UploadsCreated", 1.0, "Count");
    Ok(upload)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::DEFAULT_ALLOWED_TYPES;

    fn req(json: &str) -> Result<NewUpload, UploadError> {
        let r: CreateUploadRequest = serde_json::from_str(json).map_err(|e| UploadError::Internal(e.to_string()))?;
        NewUpload::parse(r, 5 * crate::domain::TIB, &ContentTypePolicy::parse(DEFAULT_ALLOWED_TYPES).unwrap())
    }

    fn field_of(e: UploadError) -> &'static str {
        match e {
            UploadError::Invalid(i) => i.field,
            other => panic!("expected Invalid, got {other:?}"),
        }
    }

    #[test]
    fn create_request_validation() {
        let ok = req(r#"{"filename":"a.jpg","size":10,"content_type":"image/jpeg"}"#).unwrap();
        assert_eq!(ok.size.get(), 10);
        assert!(!ok.part_checksums);
        let cases = [
            (r#"{"filename":"a.jpg","size":-1,"content_type":"image/jpeg"}"#, "size"),
            (r#"{"filename":"a.jpg","size":1.5,"content_type":"image/jpeg"}"#, "size"),
            (r#"{"filename":"a.jpg","size":99999999999999999999,"content_type":"image/jpeg"}"#, "size"),
            (r#"{"filename":"a.jpg","size":6000000000000,"content_type":"image/jpeg"}"#, "size"),
            (r#"{"filename":"../x","size":1,"content_type":"image/jpeg"}"#, "filename"),
            (r#"{"filename":"a.exe","size":1,"content_type":"application/x-msdownload"}"#, "content_type"),
            (r#"{"filename":"a","size":1,"content_type":"application/x-foo"}"#, "content_type"),
            (r#"{"filename":"a","size":1,"content_type":"image/png","sha256":"nope"}"#, "sha256"),
            (r#"{"filename":"a","size":1,"content_type":"image/png","part_checksums":"MD5"}"#, "part_checksums"),
            (r#"{"filename":"a","size":1,"content_type":"image/png","part_size":-5}"#, "part_size"),
        ];
        for (json, field) in cases {
            assert_eq!(field_of(req(json).unwrap_err()), field, "{json}");
        }
        let with = req(r#"{"filename":"a","size":1,"content_type":"image/png","part_checksums":"SHA256","sha256":"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"}"#).unwrap();
        assert!(with.part_checksums && with.sha256.is_some());
    }
}
