//! Parts: sign part URLs just in time, record what was sent, and report what is missing.

use std::collections::BTreeMap;
use std::time::Duration;

use api_types::uploads::{
    HeldPart, HeldParts, OpenUploads, QuotaView, RecordPartsRequest, RecordPartsResponse, SignPartsRequest,
    SignPartsResponse, SignedPart, UploadView,
};

use crate::{
    config::{RECORD_BATCH_MAX, SIGN_BATCH_MAX},
    domain::{
        ETag, Invalid, Owner, PartNumber, PartPlan, PartRecord, Sha256Digest, Upload, UploadError, UploadId,
        UploadStatus, CLOSED_RETENTION_SECS,
    },
    rfc3339, telemetry, App,
};

use super::{create::whole_number, discard_s3, load_owned, plan_of, refuse_unless_open, url_ttl, view};

fn part_in_plan(plan: &PartPlan, raw: i64) -> Result<PartNumber, UploadError> {
    let n = PartNumber::try_from(raw)?;
    if !plan.contains(n) {
        return Err(Invalid::new(
            "number",
            format!("part {n} is not in this upload's plan of {} parts.", plan.part_count()),
        )
        .into());
    }
    Ok(n)
}

/// Parts of Companion-protocol uploads are signed and listed on the `/s3` routes.
fn refuse_deferred(u: &Upload) -> Result<(), UploadError> {
    if u.deferred_size {
        return Err(UploadError::WrongProtocol(
            "This upload was started through the Companion (/s3) routes; continue it there.",
        ));
    }
    Ok(())
}

/// `POST /uploads/{id}/parts/sign`.
pub async fn sign_parts(
    app: &App,
    owner: &Owner,
    id: &UploadId,
    req: SignPartsRequest,
    now: i64,
) -> Result<SignPartsResponse, UploadError> {
    if req.parts.is_empty() {
        return Err(Invalid::new("parts", "parts must name at least one part to sign.").into());
    }
    if req.parts.len() > SIGN_BATCH_MAX {
        return Err(Invalid::new("parts", format!("at most {SIGN_BATCH_MAX} parts can be signed per request.")).into());
    }
    let upload = load_owned(app, owner, id).await?;
    refuse_unless_open(&upload, now, "sign parts")?;
    refuse_deferred(&upload)?;
    let plan = plan_of(&upload)?;
    let ttl = url_ttl(app, &upload, now);
    let expires_at = rfc3339(now + ttl as i64);
    let mut wanted = Vec::with_capacity(req.parts.len());
    for item in &req.parts {
        let n = part_in_plan(&plan, item.number)?;
        let sha = item.sha256.as_deref().map(|s| Sha256Digest::parse("sha256", s)).transpose()?;
        match (upload.part_checksums, &sha) {
            (true, None) => {
                return Err(Invalid::new(
                    "sha256",
                    format!("part {n} needs its sha256: this upload pins a SHA-256 checksum on every part."),
                )
                .into())
            }
            (false, Some(_)) => {
                return Err(Invalid::new(
                    "sha256",
                    "this upload was created without part_checksums, so parts cannot carry a sha256; create it with part_checksums: \"SHA256\".",
                )
                .into())
            }
            _ => {}
        }
        wanted.push((n, plan.part_len(n).unwrap_or(0), sha));
    }
    let signed =
        app.objects.presign_parts(&upload.s3_key, &upload.s3_upload_id, wanted, Duration::from_secs(ttl)).await?;
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

/// `PUT /uploads/{id}/parts`.
pub async fn record_parts(
    app: &App,
    owner: &Owner,
    id: &UploadId,
    req: RecordPartsRequest,
    now: i64,
) -> Result<RecordPartsResponse, UploadError> {
    if req.parts.is_empty() {
        return Err(Invalid::new("parts", "parts must list at least one uploaded part.").into());
    }
    if req.parts.len() > RECORD_BATCH_MAX {
        return Err(
            Invalid::new("parts", format!("at most {RECORD_BATCH_MAX} parts can be recorded per request.")).into()
        );
    }
    let upload = load_owned(app, owner, id).await?;
    refuse_unless_open(&upload, now, "record parts")?;
    refuse_deferred(&upload)?;
    let plan = plan_of(&upload)?;
    // Last write wins within a batch, as it does in S3 for a re-sent part.
    let mut by_number: BTreeMap<u32, PartRecord> = BTreeMap::new();
    for item in req.parts {
        let n = part_in_plan(&plan, item.number)?;
        let etag = ETag::parse(&item.etag)?;
        let size = whole_number("size", &item.size)?;
        let planned = plan.part_len(n).unwrap_or(0);
        if size != planned {
            return Err(Invalid::new("size", format!("part {n} must be {planned} bytes, not {size}.")).into());
        }
        let sha256 =
            item.sha256.as_deref().map(|s| Sha256Digest::parse("sha256", s)).transpose()?.map(|d| d.to_base64());
        by_number.insert(n.get(), PartRecord { number: n.get(), etag: etag.as_str().to_owned(), size, sha256 });
    }
    let parts: Vec<PartRecord> = by_number.into_values().collect();
    app.repo.put_parts(id, &parts, upload.expires_at + CLOSED_RETENTION_SECS, now).await?;
    Ok(RecordPartsResponse { recorded: parts.len() as u32 })
}

/// How often (in part URLs signed) a session of undeclared size has its parked bytes
/// summed.
pub const PARKED_CHECK_EVERY: u64 = 16;

/// A session of undeclared size signs part URLs that cannot pin a length (the protocol
/// does not say it), so the URLs it has signed are counted, and every
/// [`PARKED_CHECK_EVERY`]th one, whatever its part number, has what S3 holds for the
/// session summed: past the ceiling it reserved, the session is aborted and its parts
/// discarded. So at most `PARKED_CHECK_EVERY` parts of S3's 5 GiB maximum can be parked
/// past the ceiling before this notices, and completion refuses anything above it.
pub async fn enforce_ceiling(app: &App, upload: &Upload, numbers: &[PartNumber], now: i64) -> Result<(), UploadError> {
    if !upload.deferred_size || numbers.is_empty() {
        return Ok(());
    }
    let signed = app.repo.count_signings(&upload.id, numbers.len() as u64).await?;
    let before = signed.saturating_sub(numbers.len() as u64);
    if signed / PARKED_CHECK_EVERY == before / PARKED_CHECK_EVERY {
        return Ok(());
    }
    let parked: u64 = app
        .objects
        .list_parts(&upload.s3_key, &upload.s3_upload_id)
        .await?
        .unwrap_or_default()
        .iter()
        .map(|p| p.size)
        .sum();
    let limit = super::complete::deferred_limit(upload, &app.config);
    if parked <= limit {
        return Ok(());
    }
    let e = UploadError::OverCeiling { limit };
    if app.repo.close_open(upload, UploadStatus::Aborted, &e.to_string(), now + CLOSED_RETENTION_SECS, now).await? {
        discard_s3(app, upload).await?;
        tracing::warn!(upload_id = %upload.id, owner = %upload.owner, parked, limit, "session past its ceiling; aborted");
    }
    Err(e)
}

/// `GET /uploads`: the owner's open uploads and quotas. Open uploads are bounded by the
/// open-upload quota, so one page holds them all.
pub async fn list_open(app: &App, owner: &Owner, now: i64) -> Result<OpenUploads, UploadError> {
    let cfg = &app.config;
    let limit = cfg.max_open_uploads.clamp(1, 1000) as u32;
    let (open, q) = tokio::try_join!(app.repo.list_open(owner, limit), app.repo.quota(owner))?;
    Ok(OpenUploads {
        uploads: open.iter().map(|u| view(u, None, now)).collect(),
        quota: QuotaView {
            open_uploads: q.open_uploads,
            max_open_uploads: cfg.max_open_uploads,
            bytes_in_flight: q.bytes_in_flight,
            max_bytes_in_flight: cfg.max_bytes_in_flight,
            bytes_stored: q.bytes_stored,
            max_stored_bytes: cfg.max_stored_bytes,
        },
    })
}

/// `GET /uploads/{id}/parts`: what S3 holds for an open upload (a resuming client
/// records what it already sent instead of sending it again).
pub async fn held_parts(app: &App, owner: &Owner, id: &UploadId, now: i64) -> Result<HeldParts, UploadError> {
    let upload = load_owned(app, owner, id).await?;
    refuse_unless_open(&upload, now, "list the parts of")?;
    if upload.single_post {
        return Err(UploadError::WrongProtocol("This upload is a single POST (from /s3/params); it has no parts."));
    }
    let stored = app.objects.list_parts(&upload.s3_key, &upload.s3_upload_id).await?.unwrap_or_default();
    Ok(HeldParts {
        parts: stored
            .into_iter()
            .map(|p| HeldPart { number: p.number, etag: p.etag, size: p.size, sha256: p.checksum_sha256 })
            .collect(),
    })
}

/// `GET /uploads/{id}`: status, and for an open upload what is still missing.
pub async fn status(app: &App, owner: &Owner, id: &UploadId, now: i64) -> Result<UploadView, UploadError> {
    let upload = load_owned(app, owner, id).await?;
    if upload.status.is_completed() {
        return Ok(view(&upload, None, now));
    }
    let parts = app.repo.parts(id).await?;
    Ok(view(&upload, Some(&parts), now))
}
