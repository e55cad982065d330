//! Links: signed, expiring download links for ready files.

use api_types::files::{LinkRequest, LinkResponse};

use crate::{
    domain::{
        links::{Disposition, Link, LinkKeys, Variant},
        Invalid, Owner, UploadError, UploadId, UploadStatus,
    },
    rfc3339, App,
};

use super::{download::not_servable, load_file};

pub(crate) fn keys(app: &App) -> Result<&LinkKeys, UploadError> {
    app.config.link_keys.as_ref().ok_or_else(|| UploadError::Internal("HOIST_LINK_KEYS is not configured".into()))
}

/// `POST /files/{id}/links`.
pub async fn create_link(
    app: &App,
    owner: &Owner,
    id: &UploadId,
    req: LinkRequest,
    base_url: &str,
    now: i64,
) -> Result<LinkResponse, UploadError> {
    let max = app.config.link_max_ttl.as_secs();
    let expires_in = match &req.expires_in {
        None => app.config.link_default_ttl.as_secs().min(max),
        Some(n) => match n.as_u64() {
            Some(s) if (1..=max).contains(&s) => s,
            _ => {
                return Err(Invalid::new(
                    "expires_in",
                    format!("expires_in must be a whole number of seconds from 1 to {max}."),
                )
                .into())
            }
        },
    };
    let disposition = match req.disposition.as_deref() {
        None => Disposition::Attachment,
        Some(d) => Disposition::parse(d)
            .ok_or_else(|| Invalid::new("disposition", "disposition must be \"attachment\" or \"inline\"."))?,
    };
    let u = load_file(app, owner, id).await?;
    if u.deleted_at.is_some() {
        return Err(UploadError::Gone("The file is deleted; restore it to share it again."));
    }
    if u.status != UploadStatus::Ready {
        return Err(not_servable(&u));
    }
    let expires = now + expires_in as i64;
    let generation = u.link_generation.unwrap_or(0);
    let path = keys(app)?.sign(&Link { id: id.clone(), variant: Variant::File, expires, disposition, generation });
    Ok(LinkResponse { url: format!("{base_url}{path}"), expires_at: rfc3339(expires) })
}
