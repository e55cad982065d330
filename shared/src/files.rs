//! The owner's catalog of files (uploads whose object exists), soft delete and
//! restore, signed download links, and the public download decision.

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine as _};
use serde::{Deserialize, Serialize};

use crate::{
    api::ApiError,
    domain::{Owner, UploadId},
    links::{content_disposition, Disposition, LinkError, LinkKeys, LinkQuery, Variant},
    rfc3339,
    store::{UploadRecord, UploadStatus},
    App,
};

const NO_FILE: &str = "No file with this id exists.";

/// Uploads become files once their object exists. Another owner's file, an
/// unfinished upload and a nonexistent id all read "no file".
async fn load_file(app: &App, owner: &Owner, id: &UploadId) -> Result<UploadRecord, ApiError> {
    match app.store.get(id).await? {
        Some(rec) if &rec.owner == owner && rec.status.is_completed() => Ok(rec),
        _ => Err(ApiError::NotFound(NO_FILE)),
    }
}

pub fn parse_file_id(raw: Option<&str>) -> Result<UploadId, ApiError> {
    raw.and_then(|s| UploadId::parse(s).ok()).ok_or(ApiError::NotFound(NO_FILE))
}

fn keys(app: &App) -> Result<&LinkKeys, ApiError> {
    app.config.link_keys.as_ref().ok_or_else(|| ApiError::internal("HOIST_LINK_KEYS is not configured"))
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FileView {
    pub id: String,
    pub filename: String,
    pub size: u64,
    pub content_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detected_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub width: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub height: Option<u32>,
    /// A signed link to the thumbnail (valid one hour), for ready images.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thumbnail_url: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deleted_at: Option<String>,
    /// Until when a deleted file can be restored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restorable_until: Option<String>,
}

const THUMBNAIL_LINK_SECS: i64 = 3600;

fn file_view(app: &App, rec: &UploadRecord, base_url: &str, now: i64) -> FileView {
    let thumbnail_url = match (&rec.thumbnail_key, rec.status, rec.deleted_at, app.config.link_keys.as_ref()) {
        (Some(_), UploadStatus::Ready, None, Some(keys)) => {
            // Rounded so a listing's thumbnail URLs stay cacheable for a while.
            let expires = (now / 600) * 600 + THUMBNAIL_LINK_SECS;
            Some(format!("{base_url}{}", keys.sign(&rec.id, Variant::Thumbnail, expires, Disposition::Inline)))
        }
        _ => None,
    };
    FileView {
        id: rec.id.to_string(),
        filename: rec.filename.display().to_owned(),
        size: rec.size,
        content_type: rec.content_type.to_string(),
        detected_type: rec.detected_type.clone(),
        sha256: rec.content_sha256.clone().or_else(|| rec.sha256.map(|d| d.to_hex())),
        status: rec.status.as_str().to_owned(),
        reason: rec.reason.clone(),
        width: rec.width,
        height: rec.height,
        thumbnail_url,
        created_at: rfc3339(rec.created_at),
        updated_at: rfc3339(rec.updated_at),
        deleted_at: rec.deleted_at.map(rfc3339),
        restorable_until: rec.deleted_at.and(rec.purge_at).map(rfc3339),
    }
}

// ---------------------------------------------------------------- list

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FileList {
    pub files: Vec<FileView>,
    /// Pass as `cursor` for the next page; absent on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct ListQuery {
    pub status: Option<UploadStatus>,
    pub include_deleted: bool,
    pub limit: Option<u32>,
    pub cursor: Option<String>,
}

pub const MAX_PAGE: u32 = 100;
const DEFAULT_PAGE: u32 = 25;

#[derive(Serialize, Deserialize)]
struct Cursor {
    /// The listing sort key of the last file seen.
    k: String,
    /// Its id.
    i: String,
}

impl ListQuery {
    /// Parses the query string values of `GET /files`.
    pub fn parse(
        status: Option<&str>,
        include_deleted: Option<&str>,
        limit: Option<&str>,
        cursor: Option<&str>,
    ) -> Result<Self, ApiError> {
        let status = match status {
            None | Some("") => None,
            Some(s) => {
                let parsed: UploadStatus =
                    serde_json::from_value(serde_json::Value::String(s.to_owned())).map_err(|_| {
                        ApiError::invalid("status", format!("'{}' is not a file status.", s.escape_debug()))
                    })?;
                if !parsed.is_completed() {
                    return Err(ApiError::invalid("status", format!("'{s}' is an upload status, not a file status.")));
                }
                Some(parsed)
            }
        };
        let include_deleted = match include_deleted {
            None | Some("false") | Some("0") => false,
            Some("true") | Some("1") => true,
            Some(_) => return Err(ApiError::invalid("include_deleted", "include_deleted must be true or false.")),
        };
        let limit = match limit {
            None => None,
            Some(l) => match l.parse::<u32>() {
                Ok(n) if (1..=MAX_PAGE).contains(&n) => Some(n),
                _ => {
                    return Err(ApiError::invalid(
                        "limit",
                        format!("limit must be a whole number from 1 to {MAX_PAGE}."),
                    ))
                }
            },
        };
        Ok(Self { status, include_deleted, limit, cursor: cursor.map(str::to_owned) })
    }
}

fn decode_cursor(raw: &str) -> Result<(String, UploadId), ApiError> {
    let bad = || ApiError::invalid("cursor", "cursor is not one this service gave out; start again without it.");
    let bytes = URL_SAFE_NO_PAD.decode(raw).map_err(|_| bad())?;
    let c: Cursor = serde_json::from_slice(&bytes).map_err(|_| bad())?;
    let id = UploadId::parse(&c.i).map_err(|_| bad())?;
    if c.k.len() > 64 || !c.k.bytes().all(|b| b.is_ascii_digit() || b == b'#' || b.is_ascii_hexdigit()) {
        return Err(bad());
    }
    Ok((c.k, id))
}

fn encode_cursor(sort_key: &str, id: &UploadId) -> String {
    let json = serde_json::json!({"k": sort_key, "i": id.as_str()}).to_string();
    URL_SAFE_NO_PAD.encode(json)
}

/// The owner's files, newest first. The cursor only carries a position: the owner
/// always comes from the token, so a forged cursor cannot reach anyone else's files.
pub async fn list(app: &App, owner: &Owner, q: ListQuery, base_url: &str, now: i64) -> Result<FileList, ApiError> {
    let start = q.cursor.as_deref().map(decode_cursor).transpose()?;
    let limit = q.limit.unwrap_or(DEFAULT_PAGE);
    let page = app.store.list_files(owner, limit, start, q.status, q.include_deleted).await?;
    let next_cursor = page.last_key.map(|(k, id)| encode_cursor(&k, &id));
    Ok(FileList { files: page.items.iter().map(|r| file_view(app, r, base_url, now)).collect(), next_cursor })
}

pub async fn get(app: &App, owner: &Owner, id: &UploadId, base_url: &str, now: i64) -> Result<FileView, ApiError> {
    let rec = load_file(app, owner, id).await?;
    Ok(file_view(app, &rec, base_url, now))
}

// ---------------------------------------------------------------- delete / restore

pub async fn delete(app: &App, owner: &Owner, id: &UploadId, base_url: &str, now: i64) -> Result<FileView, ApiError> {
    let rec = load_file(app, owner, id).await?;
    if rec.deleted_at.is_none() {
        let purge_at = now + app.config.delete_retention.as_secs() as i64;
        app.store.soft_delete(id, now, purge_at).await?;
        tracing::info!(upload_id = %id, owner = %owner, "file deleted (soft)");
    }
    let rec = load_file(app, owner, id).await?;
    Ok(file_view(app, &rec, base_url, now))
}

pub async fn restore(app: &App, owner: &Owner, id: &UploadId, base_url: &str, now: i64) -> Result<FileView, ApiError> {
    let rec = load_file(app, owner, id).await?;
    if rec.deleted_at.is_some() {
        if rec.purge_at.is_some_and(|p| p <= now) || !app.store.restore(id, now).await? {
            return Err(ApiError::Gone("The file's retention period is over; it can no longer be restored.".into()));
        }
        tracing::info!(upload_id = %id, owner = %owner, "file restored");
    }
    let rec = load_file(app, owner, id).await?;
    Ok(file_view(app, &rec, base_url, now))
}

// ---------------------------------------------------------------- links

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct LinkRequest {
    #[serde(default)]
    pub expires_in: Option<serde_json::Number>,
    #[serde(default)]
    pub disposition: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LinkResponse {
    pub url: String,
    pub expires_at: String,
}

pub async fn create_link(
    app: &App,
    owner: &Owner,
    id: &UploadId,
    req: LinkRequest,
    base_url: &str,
    now: i64,
) -> Result<LinkResponse, ApiError> {
    let max = app.config.link_max_ttl.as_secs();
    let expires_in = match &req.expires_in {
        None => app.config.link_default_ttl.as_secs().min(max),
        Some(n) => match n.as_u64() {
            Some(s) if (1..=max).contains(&s) => s,
            _ => {
                return Err(ApiError::invalid(
                    "expires_in",
                    format!("expires_in must be a whole number of seconds from 1 to {max}."),
                ))
            }
        },
    };
    let disposition = match req.disposition.as_deref() {
        None => Disposition::Attachment,
        Some(d) => Disposition::parse(d)
            .ok_or_else(|| ApiError::invalid("disposition", "disposition must be \"attachment\" or \"inline\"."))?,
    };
    let rec = load_file(app, owner, id).await?;
    if rec.deleted_at.is_some() {
        return Err(ApiError::Gone("The file is deleted; restore it to share it again.".into()));
    }
    if rec.status != UploadStatus::Ready {
        return Err(not_servable(&rec));
    }
    let expires = now + expires_in as i64;
    let path = keys(app)?.sign(id, Variant::File, expires, disposition);
    Ok(LinkResponse { url: format!("{base_url}{path}"), expires_at: rfc3339(expires) })
}

/// Why a file that exists is not served, as the client should hear it.
fn not_servable(rec: &UploadRecord) -> ApiError {
    let why = rec.reason.clone().unwrap_or_default();
    match rec.status {
        UploadStatus::Processing => ApiError::ConflictRetry {
            detail: "The file is still being checked; try again in a few seconds.".into(),
            retry_after_secs: 5,
        },
        UploadStatus::Quarantined => ApiError::Forbidden(format!("The file is quarantined and is never served. {why}")),
        UploadStatus::Rejected => ApiError::Forbidden(format!("The file was rejected and is never served. {why}")),
        UploadStatus::Corrupt => ApiError::Forbidden(format!("The file is corrupt and is never served. {why}")),
        UploadStatus::Unscanned => {
            ApiError::Forbidden(format!("The file could not be scanned and is not served. {why}"))
        }
        UploadStatus::Failed => {
            ApiError::Forbidden(format!("The file could not be processed and is not served. {why}"))
        }
        _ => ApiError::NotFound(NO_FILE),
    }
}

/// Where a download link goes: a presigned S3 GET living seconds.
#[derive(Debug, Clone)]
pub struct Redirect {
    pub location: String,
}

/// How long the S3 URL behind a download redirect lives.
pub const S3_URL_SECS: u64 = 60;

/// `GET /d/{id}`: no login, the signature is the authorization.
pub async fn download(app: &App, raw_id: &str, q: &LinkQuery<'_>, now: i64) -> Result<Redirect, ApiError> {
    let link = keys(app)?.verify(raw_id, q, now).map_err(|e| match e {
        LinkError::Invalid => {
            ApiError::Forbidden("This download link is not valid (it was altered or truncated).".into())
        }
        LinkError::Expired => ApiError::Forbidden("This download link has expired; ask for a new one.".into()),
    })?;
    let Some(rec) = app.store.get(&link.id).await? else {
        return Err(ApiError::Gone("The file no longer exists.".into()));
    };
    if rec.deleted_at.is_some() {
        return Err(ApiError::Gone("The file was deleted.".into()));
    }
    if rec.status != UploadStatus::Ready {
        return Err(not_servable(&rec));
    }
    let (key, content_type, name) = match link.variant {
        Variant::File => (rec.s3_key.clone(), rec.content_type.to_string(), rec.filename.display().to_owned()),
        Variant::Thumbnail => match &rec.thumbnail_key {
            Some(k) => (k.clone(), "image/jpeg".to_owned(), format!("{}.thumbnail.jpg", rec.filename.display())),
            None => return Err(ApiError::NotFound("This file has no thumbnail.")),
        },
    };
    let location = app
        .storage
        .presign_get(
            &key,
            &content_type,
            &content_disposition(link.disposition, &name),
            std::time::Duration::from_secs(S3_URL_SECS),
        )
        .await?;
    tracing::info!(upload_id = %rec.id, variant = ?link.variant, "download redirected");
    Ok(Redirect { location })
}

// ---------------------------------------------------------------- purge (janitor)

/// Permanently removes files whose retention after deletion is over: object,
/// thumbnail, and every record of the upload.
pub async fn purge_due(app: &App, now: i64) -> Result<u32, ApiError> {
    let mut purged = 0;
    for rec in app.store.due_purges(now, 100).await? {
        if rec.deleted_at.is_none() || rec.purge_at.is_none_or(|p| p > now) {
            continue;
        }
        app.storage.delete_object(&rec.s3_key).await?;
        if let Some(t) = &rec.thumbnail_key {
            app.storage.delete_object(t).await?;
        }
        app.store.delete_upload_items(&rec.id).await?;
        tracing::info!(upload_id = %rec.id, owner = %rec.owner, "file purged");
        purged += 1;
    }
    Ok(purged)
}
