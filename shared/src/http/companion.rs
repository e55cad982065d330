//! Uppy's Companion S3 multipart protocol (`@uppy/aws-s3` pointed at a Companion URL),
//! over the same upload service: same owner isolation, quotas, expiry, completion and
//! processing. Uppy declares no size at creation, so these sessions are deferred-size:
//! part URLs cannot pin a length or checksum (Uppy's sign calls carry neither), and the
//! size limit is enforced at completion. Errors are Companion's `{error: "..."}`.

use std::collections::BTreeMap;
use std::time::Duration;

pub use api_types::companion::{Completed, CreateRequest, Created, ListedPart, SignedBatch, SignedOne, SingleUpload};

use super::problem::ApiError;
use crate::{
    domain::{FileName, Invalid, Owner, PartNumber, Upload, UploadError, UploadId},
    usecases::{
        self,
        create::{accepted_type, open_session, Session},
    },
    App,
};

const NOT_FOUND: &str = "No upload with this id exists.";

/// The S3 key Uppy carries back in `?key=` (ours: `uploads/<upload id>`).
pub fn key_of(id: &UploadId) -> String {
    format!("uploads/{id}")
}

/// Parses `{uploadId}` and checks the `key` Uppy sends with it.
pub fn parse_ids(upload_id: Option<&str>, key: Option<&str>) -> Result<UploadId, ApiError> {
    let id = upload_id.and_then(|s| UploadId::parse(s).ok()).ok_or(ApiError::NotFound(NOT_FOUND))?;
    match key {
        Some(k) if k == key_of(&id) => Ok(id),
        Some(_) => Err(ApiError::NotFound(NOT_FOUND)),
        None => Err(ApiError::invalid("key", "the key query parameter is required.")),
    }
}

/// A file as Uppy names it: its name and declared type (empty: octet-stream), both checked
/// against the service's rules.
fn parse_file(
    app: &App,
    filename: &str,
    content_type: &str,
) -> Result<(FileName, crate::domain::ContentType), UploadError> {
    let filename = FileName::parse(filename)?;
    let raw = if content_type.is_empty() { "application/octet-stream" } else { content_type };
    Ok((filename, accepted_type(&app.config.content_types, "type", raw)?))
}

pub async fn create(app: &App, owner: &Owner, req: CreateRequest, now: i64) -> Result<Created, ApiError> {
    let (filename, content_type) = parse_file(app, &req.filename, &req.content_type)?;
    let session =
        Session { filename, content_type, plan: None, part_checksums: false, sha256: None, single_post: false };
    let upload = open_session(app, owner, session, now).await?;
    Ok(Created {
        key: upload.s3_key.clone(),
        upload_id: upload.id.to_string(),
        bucket: app.objects.bucket().to_owned(),
    })
}

async fn open_deferred(
    app: &App,
    owner: &Owner,
    id: &UploadId,
    now: i64,
    action: &'static str,
) -> Result<Upload, UploadError> {
    let upload = usecases::load_owned(app, owner, id).await?;
    usecases::refuse_unless_open(&upload, now, action)?;
    if !upload.deferred_size {
        return Err(UploadError::WrongProtocol("This upload was created with /uploads; continue it there."));
    }
    if upload.single_post {
        return Err(UploadError::WrongProtocol("This upload is a single POST (from /s3/params); it has no parts."));
    }
    Ok(upload)
}

/// Every part S3 holds (all pages): what Uppy resumes from after a reload.
pub async fn list_parts(app: &App, owner: &Owner, id: &UploadId, now: i64) -> Result<Vec<ListedPart>, ApiError> {
    let upload = open_deferred(app, owner, id, now, "list parts").await?;
    let parts = app.objects.list_parts(&upload.s3_key, &upload.s3_upload_id).await.map_err(UploadError::from)?;
    let parts = parts.unwrap_or_default();
    Ok(parts
        .into_iter()
        .map(|p| ListedPart { part_number: p.number, etag: format!("\"{}\"", p.etag), size: p.size })
        .collect())
}

fn part_number(raw: &str) -> Result<PartNumber, ApiError> {
    let n: i64 = raw
        .trim()
        .parse()
        .map_err(|_| ApiError::invalid("partNumber", format!("'{}' is not a part number.", raw.escape_debug())))?;
    PartNumber::try_from(n).map_err(|e: Invalid| ApiError::from(e))
}

/// Presigned part URLs (unpinned length: the protocol does not say it) and their lifetime.
async fn sign(
    app: &App,
    owner: &Owner,
    id: &UploadId,
    numbers: Vec<PartNumber>,
    now: i64,
) -> Result<(Vec<(u32, String)>, u64), ApiError> {
    let upload = open_deferred(app, owner, id, now, "sign parts").await?;
    usecases::parts::enforce_ceiling(app, &upload, &numbers, now).await?;
    let ttl = usecases::url_ttl(app, &upload, now);
    let signed = app
        .objects
        .presign_parts(
            &upload.s3_key,
            &upload.s3_upload_id,
            numbers.into_iter().map(|n| (n, 0, None)).collect(),
            Duration::from_secs(ttl),
        )
        .await
        .map_err(UploadError::from)?;
    Ok((signed.into_iter().map(|(n, p)| (n.get(), p.url)).collect(), ttl))
}

pub async fn sign_one(
    app: &App,
    owner: &Owner,
    id: &UploadId,
    raw_number: &str,
    now: i64,
) -> Result<SignedOne, ApiError> {
    let (mut urls, expires) = sign(app, owner, id, vec![part_number(raw_number)?], now).await?;
    let (_, url) = urls.pop().ok_or_else(|| ApiError::internal("no URL signed"))?;
    Ok(SignedOne { url, expires })
}

pub async fn sign_batch(
    app: &App,
    owner: &Owner,
    id: &UploadId,
    part_numbers: Option<&str>,
    now: i64,
) -> Result<SignedBatch, ApiError> {
    let raw = part_numbers
        .filter(|s| !s.trim().is_empty())
        .ok_or_else(|| ApiError::invalid("partNumbers", "partNumbers is required, e.g. 1,2,3."))?;
    let numbers = raw.split(',').map(part_number).collect::<Result<Vec<_>, _>>()?;
    if numbers.len() > crate::config::SIGN_BATCH_MAX {
        return Err(ApiError::invalid(
            "partNumbers",
            format!("at most {} parts per request.", crate::config::SIGN_BATCH_MAX),
        ));
    }
    let (urls, _) = sign(app, owner, id, numbers, now).await?;
    Ok(SignedBatch { presigned_urls: urls.into_iter().map(|(n, u)| (n.to_string(), u)).collect() })
}

/// Completes from S3's own part list (Uppy's list of parts is informational here: S3
/// is the authority, and a part Uppy forgot to mention is still part of the file).
pub async fn complete(app: &App, owner: &Owner, id: &UploadId, now: i64) -> Result<Completed, ApiError> {
    let upload = usecases::load_owned(app, owner, id).await?;
    if !upload.deferred_size {
        return Err(UploadError::WrongProtocol("This upload was created with /uploads; complete it there.").into());
    }
    if upload.single_post {
        return Err(UploadError::WrongProtocol(
            "This upload is a single POST: it completes when S3 has received the file.",
        )
        .into());
    }
    usecases::complete::complete(app, owner, id, now).await?;
    Ok(Completed {
        location: format!("s3://{}/{}", app.objects.bucket(), upload.s3_key),
        key: upload.s3_key,
        bucket: app.objects.bucket().to_owned(),
    })
}

pub async fn params(
    app: &App,
    owner: &Owner,
    filename: Option<&str>,
    content_type: Option<&str>,
    now: i64,
) -> Result<SingleUpload, ApiError> {
    let filename = filename
        .filter(|f| !f.is_empty())
        .ok_or_else(|| ApiError::invalid("filename", "the filename query parameter is required."))?;
    let (filename, content_type) = parse_file(app, filename, content_type.unwrap_or(""))?;
    let session =
        Session { filename, content_type, plan: None, part_checksums: false, sha256: None, single_post: true };
    let upload = open_session(app, owner, session, now).await?;
    let ttl = usecases::url_ttl(app, &upload, now);
    let post = app
        .objects
        .presign_post(
            &upload.s3_key,
            upload.content_type.as_str(),
            // Exactly what the session reserved in the quota.
            upload.reserved_bytes(),
            &[("hoist-upload-id", upload.id.to_string())],
            Duration::from_secs(ttl),
        )
        .await
        .map_err(UploadError::from)?;
    Ok(SingleUpload { method: "POST".into(), url: post.url, fields: post.fields, headers: BTreeMap::new() })
}

pub async fn abort(app: &App, owner: &Owner, id: &UploadId, now: i64) -> Result<serde_json::Value, ApiError> {
    usecases::abort::abort(app, owner, id, now).await?;
    Ok(serde_json::json!({}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_keys() {
        let id = UploadId::generate();
        assert_eq!(parse_ids(Some(id.as_str()), Some(&key_of(&id))).unwrap(), id);
        assert!(matches!(parse_ids(Some(id.as_str()), Some("uploads/other")), Err(ApiError::NotFound(_))));
        assert!(matches!(parse_ids(Some("nope"), Some("uploads/nope")), Err(ApiError::NotFound(_))));
        assert!(matches!(parse_ids(Some(id.as_str()), None), Err(ApiError::Invalid { .. })));
    }

    #[test]
    fn part_numbers() {
        assert_eq!(part_number(" 7 ").unwrap().get(), 7);
        assert!(part_number("0").is_err());
        assert!(part_number("10001").is_err());
        assert!(part_number("x").is_err());
    }
}
