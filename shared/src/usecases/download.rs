//! Download: `GET /d/{id}` with a signed link (no login: the signature is the
//! authorization) → a presigned S3 GET living seconds.

use crate::{
    domain::{
        links::{content_disposition, served_disposition, LinkError, LinkQuery, Variant},
        Upload, UploadError, UploadStatus,
    },
    App,
};

use super::links::keys;

/// Why a file that exists is not served, as the client should hear it.
pub(crate) fn not_servable(u: &Upload) -> UploadError {
    match u.status {
        UploadStatus::Processing => UploadError::StillProcessing,
        status if status.is_final_verdict() => {
            UploadError::NotServable { status, reason: u.reason.clone().unwrap_or_default() }
        }
        _ => UploadError::FileNotFound,
    }
}

/// Where a download link goes: a presigned S3 GET living seconds.
#[derive(Debug, Clone)]
pub struct Redirect {
    pub location: String,
}

/// How long the S3 URL behind a download redirect lives.
pub const S3_URL_SECS: u64 = 60;

/// Verifies the link, re-checks the file (ready, not deleted) and answers where to go.
pub async fn download(app: &App, raw_id: &str, q: &LinkQuery<'_>, now: i64) -> Result<Redirect, UploadError> {
    let max_lifetime = app.config.link_max_ttl.as_secs() as i64;
    let link = keys(app)?.verify(raw_id, q, now, max_lifetime).map_err(|e| match e {
        LinkError::Invalid => UploadError::LinkInvalid,
        LinkError::Expired => UploadError::LinkExpired,
    })?;
    let Some(u) = app.repo.get(&link.id).await? else {
        return Err(UploadError::Gone("The file no longer exists."));
    };
    if u.deleted_at.is_some() {
        return Err(UploadError::Gone("The file was deleted."));
    }
    if link.generation != u.link_generation.unwrap_or(0) {
        return Err(UploadError::Gone("This link was revoked when the file was deleted; create a new one."));
    }
    if u.status != UploadStatus::Ready {
        return Err(not_servable(&u));
    }
    // The file is served at exactly the version that was scanned; a thumbnail is only
    // ever written by processing.
    let (key, version, content_type, name) = match link.variant {
        Variant::File => {
            (u.s3_key.clone(), u.version_id.as_deref(), u.content_type.to_string(), u.filename.display().to_owned())
        }
        Variant::Thumbnail => match &u.thumbnail_key {
            Some(k) => (k.clone(), None, "image/jpeg".to_owned(), format!("{}.thumbnail.jpg", u.filename.display())),
            None => return Err(UploadError::NoThumbnail),
        },
    };
    let location = app
        .objects
        .presign_get(
            &key,
            version,
            &content_type,
            &content_disposition(served_disposition(&content_type, link.disposition), &name),
            std::time::Duration::from_secs(S3_URL_SECS),
        )
        .await?;
    tracing::info!(upload_id = %u.id, variant = ?link.variant, "download redirected");
    Ok(Redirect { location })
}
