//! Uppy's Companion S3 multipart protocol (`@uppy/aws-s3` pointed at a Companion URL),
//! over the same upload service: same owner isolation, quotas, expiry, completion and
//! processing. Uppy declares no size at creation, so these sessions are deferred-size:
//! part URLs cannot pin a length or checksum (Uppy's sign calls carry neither), and the
//! size limit is enforced at completion. Errors are Companion's `{error: "..."}`.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::{
    api::ApiError,
    config::ContentTypePolicy,
    domain::{ContentType, FileName, Owner, PartNumber, UploadId},
    uploads::{self, Session},
    App,
};

const NOT_FOUND: &str = "No upload with this id exists.";

/// `POST /s3/multipart` body. Unknown fields are tolerated: Uppy versions add some.
#[derive(Debug, Deserialize)]
pub struct CreateRequest {
    pub filename: String,
    #[serde(rename = "type")]
    pub content_type: String,
    #[serde(default)]
    pub metadata: serde_json::Value,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Created {
    pub key: String,
    pub upload_id: String,
    pub bucket: String,
}

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
fn parse_file(app: &App, filename: &str, content_type: &str) -> Result<(FileName, ContentType), ApiError> {
    let filename = FileName::parse(filename)?;
    let content_type =
        ContentType::parse(if content_type.is_empty() { "application/octet-stream" } else { content_type })?;
    if ContentTypePolicy::is_blocked(&content_type) {
        return Err(ApiError::invalid(
            "type",
            format!("'{content_type}' is not accepted: executables and scripts are blocked."),
        ));
    }
    if !app.config.content_types.allows(&content_type) {
        return Err(ApiError::invalid(
            "type",
            format!("'{content_type}' is not on this service's list of accepted types."),
        ));
    }
    Ok((filename, content_type))
}

pub async fn create(app: &App, owner: &Owner, req: CreateRequest, now: i64) -> Result<Created, ApiError> {
    let (filename, content_type) = parse_file(app, &req.filename, &req.content_type)?;
    let session =
        Session { filename, content_type, plan: None, part_checksums: false, sha256: None, single_post: false };
    let rec = uploads::open_session(app, owner, session, now).await?;
    Ok(Created { key: rec.s3_key.clone(), upload_id: rec.id.to_string(), bucket: app.storage.bucket().to_owned() })
}

async fn open_deferred(
    app: &App,
    owner: &Owner,
    id: &UploadId,
    now: i64,
    action: &str,
) -> Result<crate::store::UploadRecord, ApiError> {
    let rec = uploads::load_owned(app, owner, id).await?;
    uploads::refuse_unless_open(&rec, now, action)?;
    if !rec.deferred_size {
        return Err(ApiError::conflict("This upload was created with /uploads; continue it there."));
    }
    if rec.single_post {
        return Err(ApiError::conflict("This upload is a single POST (from /s3/params); it has no parts."));
    }
    Ok(rec)
}

/// A part as Uppy expects it from the list-parts route.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct ListedPart {
    pub part_number: u32,
    #[serde(rename = "ETag")]
    pub etag: String,
    pub size: u64,
}

/// Every part S3 holds (all pages): what Uppy resumes from after a reload.
pub async fn list_parts(app: &App, owner: &Owner, id: &UploadId, now: i64) -> Result<Vec<ListedPart>, ApiError> {
    let rec = open_deferred(app, owner, id, now, "list parts").await?;
    let parts = app.storage.list_parts(&rec.s3_key, &rec.s3_upload_id).await?.unwrap_or_default();
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
    Ok(PartNumber::try_from(n)?)
}

/// Presigned part URLs (unpinned length: the protocol does not say it) and their lifetime.
async fn sign(
    app: &App,
    owner: &Owner,
    id: &UploadId,
    numbers: Vec<PartNumber>,
    now: i64,
) -> Result<(Vec<(u32, String)>, u64), ApiError> {
    let rec = open_deferred(app, owner, id, now, "sign parts").await?;
    let ttl = uploads::url_ttl(app, &rec, now);
    let signed = app
        .storage
        .presign_batch(
            &rec.s3_key,
            &rec.s3_upload_id,
            numbers.into_iter().map(|n| (n, 0, None)),
            Duration::from_secs(ttl),
        )
        .await?;
    Ok((signed.into_iter().map(|(n, p)| (n.get(), p.url)).collect(), ttl))
}

#[derive(Debug, Serialize, Deserialize)]
pub struct SignedOne {
    pub url: String,
    pub expires: u64,
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

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SignedBatch {
    pub presigned_urls: BTreeMap<String, String>,
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

#[derive(Debug, Serialize, Deserialize)]
pub struct Completed {
    pub location: String,
    pub key: String,
    pub bucket: String,
}

/// Completes from S3's own part list (Uppy's list of parts is informational here: S3
/// is the authority, and a part Uppy forgot to mention is still part of the file).
pub async fn complete(app: &App, owner: &Owner, id: &UploadId, now: i64) -> Result<Completed, ApiError> {
    let rec = uploads::load_owned(app, owner, id).await?;
    if !rec.deferred_size {
        return Err(ApiError::conflict("This upload was created with /uploads; complete it there."));
    }
    if rec.single_post {
        return Err(ApiError::conflict("This upload is a single POST: it completes when S3 has received the file."));
    }
    uploads::complete(app, owner, id, now).await?;
    Ok(Completed {
        location: format!("s3://{}/{}", app.storage.bucket(), rec.s3_key),
        key: rec.s3_key,
        bucket: app.storage.bucket().to_owned(),
    })
}

/// S3's ceiling for an object sent in one request.
pub const SINGLE_POST_MAX: u64 = 5 * crate::domain::GIB;

/// `GET /s3/params`: how to send a file in one request (Uppy's default below 100 MiB).
/// Uppy 5 reads `method`, `url`, `fields` and `headers`; Uppy 6 posts `fields` and the
/// file as a form to `url`. Both therefore get a presigned POST, whose policy pins the
/// key, the type and a size limit, which a presigned PUT could not (Uppy sends no size).
#[derive(Debug, Serialize, Deserialize)]
pub struct SingleUpload {
    pub method: String,
    pub url: String,
    pub fields: BTreeMap<String, String>,
    pub headers: BTreeMap<String, String>,
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
    let rec = uploads::open_session(app, owner, session, now).await?;
    let ttl = uploads::url_ttl(app, &rec, now);
    let post = app
        .storage
        .presign_post(
            &rec.s3_key,
            rec.content_type.as_str(),
            app.config.max_upload_size.min(SINGLE_POST_MAX),
            &[("hoist-upload-id", rec.id.to_string())],
            Duration::from_secs(ttl),
        )
        .await?;
    Ok(SingleUpload { method: "POST".into(), url: post.url, fields: post.fields, headers: BTreeMap::new() })
}

pub async fn abort(app: &App, owner: &Owner, id: &UploadId, now: i64) -> Result<serde_json::Value, ApiError> {
    uploads::abort(app, owner, id, now).await?;
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
