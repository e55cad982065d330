//! Abort: close an open upload and throw away its parts.

use api_types::uploads::UploadView;

use crate::{
    domain::{Owner, UploadError, UploadId, UploadStatus, CLOSED_RETENTION_SECS},
    App,
};

use super::{discard_s3, load_owned, refuse_unless_open, view};

/// `DELETE /uploads/{id}` (idempotent: a repeated abort answers the aborted upload).
pub async fn abort(app: &App, owner: &Owner, id: &UploadId, now: i64) -> Result<UploadView, UploadError> {
    let mut upload = load_owned(app, owner, id).await?;
    match upload.status {
        UploadStatus::Uploading => {
            let closed = app
                .repo
                .close_open(&upload, UploadStatus::Aborted, "Aborted by its owner.", now + CLOSED_RETENTION_SECS, now)
                .await?;
            if !closed {
                // Raced with a completion or another abort: answer from what won.
                upload = load_owned(app, owner, id).await?;
                if upload.status != UploadStatus::Aborted {
                    refuse_unless_open(&upload, now, "abort")?;
                }
            }
        }
        UploadStatus::Aborted | UploadStatus::Expired => {}
        status => return Err(UploadError::NotOpen { action: "abort", status, expires_at: upload.expires_at }),
    }
    // Idempotent: a repeated DELETE re-aborts, which S3 treats as done.
    discard_s3(app, &upload).await?;
    tracing::info!(upload_id = %id, owner = %owner, "upload aborted");
    let upload = load_owned(app, owner, id).await?;
    Ok(view(&upload, Some(&[]), now))
}
