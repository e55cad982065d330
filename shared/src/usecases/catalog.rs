//! The owner's catalog of files (uploads whose object exists): list, show, soft delete
//! and restore.

use api_types::files::{FileList, FileView};
use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine as _};
use serde::{Deserialize, Serialize};

use crate::{
    domain::{
        links::{Disposition, Link, Variant},
        CatalogPosition, Invalid, Owner, Upload, UploadError, UploadId, UploadStatus,
    },
    rfc3339, App,
};

use super::{
    create::{quota_limits, refusal},
    load_file,
};

const THUMBNAIL_LINK_SECS: i64 = 3600;

/// A file as the API shows it, with a signed thumbnail link for ready images.
pub(crate) fn file_view(app: &App, u: &Upload, base_url: &str, now: i64) -> FileView {
    let thumbnail_url = match (&u.thumbnail_key, u.status, u.deleted_at, app.config.link_keys.as_ref()) {
        (Some(_), UploadStatus::Ready, None, Some(keys)) => {
            // Rounded so a listing's thumbnail URLs stay cacheable for a while.
            let expires = (now / 600) * 600 + THUMBNAIL_LINK_SECS;
            let link = Link {
                id: u.id.clone(),
                variant: Variant::Thumbnail,
                expires,
                disposition: Disposition::Inline,
                generation: u.link_generation.unwrap_or(0),
            };
            Some(format!("{base_url}{}", keys.sign(&link)))
        }
        _ => None,
    };
    FileView {
        id: u.id.to_string(),
        filename: u.filename.display().to_owned(),
        size: u.size,
        content_type: u.content_type.to_string(),
        detected_type: u.detected_type.clone(),
        sha256: u.content_sha256.clone().or_else(|| u.sha256.map(|d| d.to_hex())),
        status: u.status.as_str().to_owned(),
        reason: u.reason.clone(),
        width: u.width,
        height: u.height,
        thumbnail_url,
        created_at: rfc3339(u.created_at),
        updated_at: rfc3339(u.updated_at),
        deleted_at: u.deleted_at.map(rfc3339),
        restorable_until: u.deleted_at.and(u.purge_at).map(rfc3339),
        progress: super::progress(u, u.status),
    }
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
    ) -> Result<Self, UploadError> {
        let status = match status {
            None | Some("") => None,
            Some(s) => {
                let parsed = UploadStatus::parse(s)
                    .ok_or_else(|| Invalid::new("status", format!("'{}' is not a file status.", s.escape_debug())))?;
                if !parsed.is_completed() {
                    return Err(Invalid::new("status", format!("'{s}' is an upload status, not a file status.")).into());
                }
                Some(parsed)
            }
        };
        let include_deleted = match include_deleted {
            None | Some("false") | Some("0") => false,
            Some("true") | Some("1") => true,
            Some(_) => return Err(Invalid::new("include_deleted", "include_deleted must be true or false.").into()),
        };
        let limit = match limit {
            None => None,
            Some(l) => match l.parse::<u32>() {
                Ok(n) if (1..=MAX_PAGE).contains(&n) => Some(n),
                _ => {
                    return Err(
                        Invalid::new("limit", format!("limit must be a whole number from 1 to {MAX_PAGE}.")).into()
                    )
                }
            },
        };
        Ok(Self { status, include_deleted, limit, cursor: cursor.map(str::to_owned) })
    }
}

fn decode_cursor(raw: &str) -> Result<CatalogPosition, Invalid> {
    let bad = || Invalid::new("cursor", "cursor is not one this service gave out; start again without it.");
    let bytes = URL_SAFE_NO_PAD.decode(raw).map_err(|_| bad())?;
    let c: Cursor = serde_json::from_slice(&bytes).map_err(|_| bad())?;
    let id = UploadId::parse(&c.i).map_err(|_| bad())?;
    if c.k.len() > 64 || !c.k.bytes().all(|b| b.is_ascii_digit() || b == b'#' || b.is_ascii_hexdigit()) {
        return Err(bad());
    }
    Ok(CatalogPosition { sort_key: c.k, id })
}

fn encode_cursor(pos: &CatalogPosition) -> String {
    let json = serde_json::json!({"k": pos.sort_key, "i": pos.id.as_str()}).to_string();
    URL_SAFE_NO_PAD.encode(json)
}

/// `GET /files`: the owner's files, newest first. The cursor only carries a position:
/// the owner always comes from the token, so a forged cursor cannot reach anyone else's files.
pub async fn list(app: &App, owner: &Owner, q: ListQuery, base_url: &str, now: i64) -> Result<FileList, UploadError> {
    let start = q.cursor.as_deref().map(decode_cursor).transpose()?;
    let limit = q.limit.unwrap_or(DEFAULT_PAGE);
    let page = app.repo.list_files(owner, limit, start, q.status, q.include_deleted).await?;
    Ok(FileList {
        files: page.items.iter().map(|u| file_view(app, u, base_url, now)).collect(),
        next_cursor: page.next.as_ref().map(encode_cursor),
    })
}

/// `GET /files/{id}`.
pub async fn get(app: &App, owner: &Owner, id: &UploadId, base_url: &str, now: i64) -> Result<FileView, UploadError> {
    let u = load_file(app, owner, id).await?;
    Ok(file_view(app, &u, base_url, now))
}

/// `DELETE /files/{id}`: hidden at once, links stop, restorable until the retention ends.
pub async fn delete(
    app: &App,
    owner: &Owner,
    id: &UploadId,
    base_url: &str,
    now: i64,
) -> Result<FileView, UploadError> {
    let u = load_file(app, owner, id).await?;
    if u.deleted_at.is_none() {
        let purge_at = now + app.config.delete_retention.as_secs() as i64;
        app.repo.soft_delete(&u, now, purge_at).await?;
        tracing::info!(upload_id = %id, owner = %owner, "file deleted (soft)");
    }
    get(app, owner, id, base_url, now).await
}

/// `POST /files/{id}/restore`.
pub async fn restore(
    app: &App,
    owner: &Owner,
    id: &UploadId,
    base_url: &str,
    now: i64,
) -> Result<FileView, UploadError> {
    let u = load_file(app, owner, id).await?;
    if u.deleted_at.is_some() {
        let over = || UploadError::Gone("The file's retention period is over; it can no longer be restored.");
        if u.purge_at.is_some_and(|p| p <= now) {
            return Err(over());
        }
        let limits = quota_limits(&app.config);
        // The repository's condition is the real guard; this one also refuses a file
        // larger than the whole quota (which a condition on the stored sum cannot).
        let quota = app.repo.quota(owner).await?;
        if !limits.has_room(quota, u.size) {
            return Err(refusal(limits, quota, u.size));
        }
        if !app.repo.restore(&u, now, limits).await? {
            // Either the retention ended meanwhile or the file no longer fits.
            let quota = app.repo.quota(owner).await?;
            if !limits.has_room(quota, u.size) {
                return Err(refusal(limits, quota, u.size));
            }
            return Err(over());
        }
        tracing::info!(upload_id = %id, owner = %owner, "file restored");
    }
    if u.status == crate::domain::UploadStatus::Processing && (u.deleted_at.is_some() || u.stall_check_at.is_none()) {
        // The delete took it out of the janitor's watch of stalled processing. Also when
        // it is already restored but not watched: a retry after this write failed.
        app.repo.watch_processing(id, now + app.config.processing_stall.as_secs() as i64).await?;
    }
    get(app, owner, id, base_url, now).await
}
