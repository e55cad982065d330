//! The use cases, one module each. They speak domain types, call only the ports, and
//! answer [`UploadError`]s by meaning; `http/` decides what a client sees.

pub mod abort;
pub mod arrival;
pub mod catalog;
pub mod complete;
pub mod create;
pub mod download;
pub mod janitor;
pub mod links;
#[cfg(test)]
mod overwrite_tests;
pub mod parts;
#[cfg(test)]
mod protocol_tests;
#[cfg(test)]
mod quota_tests;
pub mod rate;

use api_types::uploads::{ProcessingProgress, UploadView};

use crate::{
    domain::{Owner, PartPlan, PartRecord, Upload, UploadError, UploadId, UploadStatus},
    ranges::missing_ranges,
    rfc3339, App,
};

/// The one place that turns "not yours" into "not there": another owner's upload
/// and a nonexistent one are indistinguishable.
pub(crate) async fn load_owned(app: &App, owner: &Owner, id: &UploadId) -> Result<Upload, UploadError> {
    match app.repo.get(id).await? {
        Some(u) if &u.owner == owner => Ok(u),
        _ => Err(UploadError::NotFound),
    }
}

/// Uploads become files once their object exists. Another owner's file, an
/// unfinished upload and a nonexistent id all read "no file".
pub(crate) async fn load_file(app: &App, owner: &Owner, id: &UploadId) -> Result<Upload, UploadError> {
    match app.repo.get(id).await? {
        Some(u) if &u.owner == owner && u.status.is_completed() => Ok(u),
        _ => Err(UploadError::FileNotFound),
    }
}

pub(crate) fn plan_of(u: &Upload) -> Result<PartPlan, UploadError> {
    PartPlan::from_stored(u.size, u.part_size, u.part_count)
        .ok_or_else(|| UploadError::Internal(format!("stored plan of {} is inconsistent", u.id)))
}

/// Status as a client should see it: an open upload past its expiry is expired
/// even before the janitor gets to it.
pub(crate) fn effective_status(u: &Upload, now: i64) -> UploadStatus {
    if u.status == UploadStatus::Uploading && now >= u.expires_at {
        UploadStatus::Expired
    } else {
        u.status
    }
}

pub(crate) fn refuse_unless_open(u: &Upload, now: i64, action: &'static str) -> Result<(), UploadError> {
    match effective_status(u, now) {
        UploadStatus::Uploading => Ok(()),
        status => Err(UploadError::NotOpen { action, status, expires_at: u.expires_at }),
    }
}

/// Seconds a presigned URL or form for this upload may live: the configured lifetime,
/// never past the upload's own expiry.
pub(crate) fn url_ttl(app: &App, u: &Upload, now: i64) -> u64 {
    app.config.part_url_ttl.as_secs().min((u.expires_at - now).max(1) as u64)
}

/// Throws away what S3 holds for an upload: its multipart upload's parts, or the object
/// a single POST may have left. Idempotent.
pub(crate) async fn discard_s3(app: &App, u: &Upload) -> Result<(), UploadError> {
    if u.single_post {
        app.objects.delete(&u.s3_key).await?;
    } else {
        app.objects.abort(&u.s3_key, &u.s3_upload_id).await?;
    }
    Ok(())
}

/// An upload as the API shows it.
pub(crate) fn view(u: &Upload, parts: Option<&[PartRecord]>, now: i64) -> UploadView {
    let status = effective_status(u, now);
    let (parts_done, bytes_done, missing) = if status.is_completed() {
        (u.part_count, u.size, Vec::new())
    } else {
        let parts = parts.unwrap_or(&[]);
        let in_plan = parts.iter().filter(|p| p.number >= 1 && p.number <= u.part_count);
        let (count, bytes) = in_plan.fold((0u32, 0u64), |(c, b), p| (c + 1, b + p.size));
        (count, bytes, missing_ranges(u.part_count, parts.iter().map(|p| p.number)))
    };
    UploadView {
        id: u.id.to_string(),
        status: status.as_str().to_owned(),
        filename: u.filename.display().to_owned(),
        content_type: u.content_type.to_string(),
        size: u.size,
        part_size: u.part_size,
        part_count: u.part_count,
        part_checksums: u.part_checksums.then(|| "SHA256".to_owned()),
        sha256: u.sha256.map(|d| d.to_hex()),
        parts_done,
        bytes_done,
        missing_parts: missing,
        created_at: rfc3339(u.created_at),
        updated_at: rfc3339(u.updated_at),
        expires_at: rfc3339(u.expires_at),
        completed_at: u.completed_at.map(rfc3339),
        reason: u.reason.clone(),
        detected_type: u.detected_type.clone(),
        width: u.width,
        height: u.height,
        has_thumbnail: u.thumbnail_key.is_some(),
        processed_at: u.processed_at.map(rfc3339),
        progress: progress(u, status),
        refused_writes: u.refused_writes,
    }
}

/// Progress of a file checked in windows, while it is.
pub(crate) fn progress(u: &Upload, status: UploadStatus) -> Option<ProcessingProgress> {
    let total = u.windows_total.filter(|_| status == UploadStatus::Processing)?;
    let share = |n: u32| (u128::from(u.size) * u128::from(n.min(total)) / u128::from(total.max(1))) as u64;
    Some(ProcessingProgress {
        windows_total: total,
        windows_scanned: u.windows_done.unwrap_or(0),
        bytes_total: u.size,
        bytes_scanned: share(u.windows_done.unwrap_or(0)),
        bytes_hashed: share(u.hash_next.unwrap_or(0)),
    })
}

/// Inclusive ranges, briefly: `1, 3-5, ...` (at most 20 shown).
pub(crate) fn describe_ranges(r: &[[u32; 2]]) -> String {
    let shown: Vec<String> =
        r.iter().take(20).map(|[a, b]| if a == b { a.to_string() } else { format!("{a}-{b}") }).collect();
    let more = if r.len() > 20 { ", ..." } else { "" };
    format!("{}{more}", shown.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_described_briefly() {
        assert_eq!(describe_ranges(&[[1, 1], [3, 5]]), "1, 3-5");
        let many: Vec<[u32; 2]> = (0..30).map(|i| [i * 2 + 1, i * 2 + 1]).collect();
        assert!(describe_ranges(&many).ends_with(", ..."));
    }
}
