//! Arrival: S3 says an object was created. For a single-POST upload (Uppy's
//! `/s3/params`) that is the end of the upload, since there is no completion call on
//! that path. A POST form stays valid for minutes and can be sent again: every later
//! write to a completed upload's key is a new version in the (versioned) bucket, and is
//! deleted here, counted on the upload and logged. The version the upload recorded is
//! the one scanned, tagged and served.

use crate::{
    domain::{UploadError, UploadId, UploadStatus},
    telemetry, App,
};

use super::complete::drive_completion;

/// What became of an S3 ObjectCreated event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    /// A single POST's upload moved to processing (its job is queued).
    Completed,
    /// The object landed after its upload was aborted or expired: deleted.
    Discarded,
    /// A write to an upload that already has its object (a reused POST form): that
    /// version was deleted; the recorded one stays the upload's bytes.
    Refused,
    /// Not a single-POST upload of ours, or already handled (events repeat).
    Ignored,
}

/// An object was created at `key`, as `version` (None: the event named none, e.g. an
/// unversioned bucket). A single-POST upload completes here, even past its expiry time:
/// the policy was signed while the upload was open. Safe to run any number of times,
/// concurrently (the completion lease decides); answers [`UploadError::LeaseHeld`] when
/// another worker is completing it right now.
pub async fn object_arrived(app: &App, key: &str, version: Option<&str>, now: i64) -> Result<Arrival, UploadError> {
    let Some(id) = key.strip_prefix("uploads/").and_then(|s| UploadId::parse(s).ok()) else {
        return Ok(Arrival::Ignored);
    };
    let Some(upload) = app.repo.get(&id).await? else {
        tracing::warn!(key, "object created for an unknown upload");
        return Ok(Arrival::Ignored);
    };
    if !upload.single_post {
        return Ok(Arrival::Ignored);
    }
    match upload.status {
        UploadStatus::Uploading | UploadStatus::Completing => {
            if app.repo.begin_completion(&id, now, app.config.complete_lease).await? {
                return match drive_completion(app, upload.clone(), version, now).await {
                    Ok(_) => Ok(Arrival::Completed),
                    // Too large (the limit was lowered after signing): the object and the
                    // upload are gone (the completion closed it); retrying changes nothing.
                    Err(UploadError::TooLarge { .. }) => Ok(Arrival::Discarded),
                    Err(e) => Err(e),
                };
            }
            let current = app.repo.get(&id).await?.unwrap_or(upload);
            if current.status == UploadStatus::Completing {
                // Someone holds a live lease: hand the event back to be redelivered.
                return Err(UploadError::LeaseHeld);
            }
            // Completed meanwhile: this event may be a second write.
            refuse_unless_recorded(app, &current, key, version, now).await
        }
        UploadStatus::Aborted | UploadStatus::Expired => {
            app.objects.delete(&upload.s3_key).await?;
            tracing::info!(upload_id = %id, owner = %upload.owner, "object arrived after its upload closed; deleted");
            Ok(Arrival::Discarded)
        }
        _ => refuse_unless_recorded(app, &upload, key, version, now).await,
    }
}

/// A completed upload's key was written again: unless `version` is the one the upload
/// recorded (a repeated event), it is deleted, so nothing but the scanned bytes can ever
/// be read at the key.
async fn refuse_unless_recorded(
    app: &App,
    upload: &crate::domain::Upload,
    key: &str,
    version: Option<&str>,
    now: i64,
) -> Result<Arrival, UploadError> {
    let (Some(arrived), Some(recorded)) = (version, upload.version_id.as_deref()) else {
        // Without versions there is nothing to tell apart (and nothing to delete safely).
        return Ok(Arrival::Ignored);
    };
    if arrived == recorded {
        return Ok(Arrival::Ignored);
    }
    app.objects.delete_version(key, arrived).await?;
    app.repo.refused_write(&upload.id, 1, now).await?;
    tracing::warn!(upload_id = %upload.id, owner = %upload.owner, version = arrived, status = upload.status.as_str(),
        "a later write to a completed upload was deleted; the scanned version stays");
    telemetry::metric("process", "WritesRefused", 1.0, "Count");
    Ok(Arrival::Refused)
}
