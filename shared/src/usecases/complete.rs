//! Complete: assemble the object exactly once and queue its processing job.
//!
//! One caller takes a lease with a conditional write (`uploading → completing`, or a
//! stale lease); only it reconciles parts with S3, completes the object, sends the job
//! and moves to `processing`. Concurrent callers wait for its result. The job is sent
//! before the status changes, so there is never an object without a job; a crash at any
//! point leaves `completing` with a lease that runs out, and the next `complete` (or the
//! janitor) finishes the work: S3 answers "already done", which is resolved against the
//! object itself.

use std::collections::HashMap;
use std::time::Duration;

use api_types::uploads::{CompleteUploadRequest, UploadView};

use crate::{
    domain::{
        ETag, Owner, PartNumber, PartRecord, ProcessJob, Sha256Digest, Upload, UploadError, UploadId, UploadStatus,
    },
    ports::{CompleteOutcome, ObjectInfo, StoredPart},
    ranges::missing_ranges,
    telemetry, App,
};

use super::{describe_ranges, discard_s3, effective_status, load_owned, plan_of, refuse_unless_open, view};

/// `POST /uploads/{id}/complete`. Safe to call any number of times, concurrently: one
/// caller takes a lease and does the work; the others wait for its result and return it.
pub async fn complete(app: &App, owner: &Owner, id: &UploadId, now: i64) -> Result<UploadView, UploadError> {
    complete_with(app, owner, id, None, now).await
}

/// [`complete`], with the whole-file SHA-256 the client declares now (it hashed the file
/// while sending it, so its first part left at once). Written with the object when the
/// completion succeeds; one declared at creation must be the same.
async fn complete_with(
    app: &App,
    owner: &Owner,
    id: &UploadId,
    declared: Option<Sha256Digest>,
    now: i64,
) -> Result<UploadView, UploadError> {
    let started = tokio::time::Instant::now();
    loop {
        // `now` advances while we wait for another caller's completion.
        let t = now + started.elapsed().as_secs() as i64;
        let upload = load_owned(app, owner, id).await?;
        refuse_another_hash(&upload, declared)?;
        match effective_status(&upload, t) {
            s if s.is_completed() => {
                if declared.is_some() && upload.sha256.is_none() {
                    return Err(UploadError::HashTooLate);
                }
                return Ok(view(&upload, None, t));
            }
            UploadStatus::Uploading => {
                if app.repo.begin_completion(id, t, app.config.complete_lease).await? {
                    let upload = declare(upload, declared);
                    return drive_completion(app, upload, None, t).await;
                }
            }
            UploadStatus::Completing => {
                // A completion that died holding its lease is taken over (the transition
                // only lets a stale lease go).
                if upload.lease_until.is_some_and(|l| l < t)
                    && app.repo.begin_completion(id, t, app.config.complete_lease).await?
                {
                    let upload = declare(upload, declared);
                    return drive_completion(app, upload, None, t).await;
                }
            }
            _ => refuse_unless_open(&upload, t, "complete")?,
        }
        if started.elapsed() >= app.config.complete_wait {
            return Err(UploadError::LeaseHeld);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The whole-file SHA-256 a completion request declares, if any.
pub fn declared_sha256(req: &CompleteUploadRequest) -> Result<Option<Sha256Digest>, UploadError> {
    Ok(req.sha256.as_deref().map(|s| Sha256Digest::parse("sha256", s)).transpose()?)
}

fn refuse_another_hash(upload: &Upload, declared: Option<Sha256Digest>) -> Result<(), UploadError> {
    match (upload.sha256, declared) {
        (Some(had), Some(sent)) if had != sent => {
            Err(UploadError::HashConflict { declared: had.to_hex(), sent: sent.to_hex() })
        }
        _ => Ok(()),
    }
}

/// The upload as this completion will finish it: with the hash it declares (checked
/// against any declared before by [`refuse_another_hash`]). The hash is written with the
/// object by `finish_completion`, so a completion that fails leaves none behind, and the
/// job carries it to processing.
fn declare(mut upload: Upload, declared: Option<Sha256Digest>) -> Upload {
    upload.sha256 = upload.sha256.or(declared);
    upload
}

/// `POST /uploads/{id}/complete`: for uploads created with `POST /uploads` (a declared
/// size). Companion and single-POST sessions complete by their own protocols. `declared`
/// is the whole-file SHA-256 when the client sends it only now.
pub async fn complete_declared(
    app: &App,
    owner: &Owner,
    id: &UploadId,
    declared: Option<Sha256Digest>,
    now: i64,
) -> Result<UploadView, UploadError> {
    let upload = load_owned(app, owner, id).await?;
    if upload.single_post {
        return Err(UploadError::WrongProtocol(
            "This upload is a single POST: it completes when S3 has received the file.",
        ));
    }
    if upload.deferred_size {
        return Err(UploadError::WrongProtocol("This upload was created with /s3/multipart; complete it there."));
    }
    complete_with(app, owner, id, declared, now).await
}

/// The most a session of undeclared size may hold: the ceiling it reserved (sessions
/// from before reservations: the service's limit), never above the limit.
pub fn deferred_limit(upload: &Upload, cfg: &crate::config::Config) -> u64 {
    upload.reservation.unwrap_or(cfg.max_upload_size).min(cfg.max_upload_size)
}

/// Runs with the completion lease held; gives it back on any failure before the job is
/// sent. After the job is sent, a failure keeps the lease: whoever takes it over next
/// finds the object done and sends the (idempotent) job again. `arrived` is the version
/// an S3 event announced (a single POST): that exact version is the upload's object.
pub(crate) async fn drive_completion(
    app: &App,
    mut upload: Upload,
    arrived: Option<&str>,
    now: i64,
) -> Result<UploadView, UploadError> {
    let started = std::time::Instant::now();
    let finished = if upload.single_post {
        finish_single_object(app, &upload, arrived).await
    } else if upload.deferred_size {
        finish_deferred_object(app, &upload).await
    } else {
        finish_object(app, &upload).await
    };
    let object = match finished {
        Ok(done) => done,
        // Too large (a size learnt only now): S3's bytes are gone, so the session is
        // over and its quota released; retrying could change nothing.
        Err(e @ UploadError::TooLarge { .. }) => {
            let forget_at = now + crate::domain::CLOSED_RETENTION_SECS;
            app.repo.release_completion(&upload, now).await?;
            app.repo.close_open(&upload, UploadStatus::Aborted, &e.to_string(), forget_at, now).await?;
            return Err(e);
        }
        Err(e) => {
            if let Err(release) = app.repo.release_completion(&upload, now).await {
                tracing::error!(error = %release, upload_id = %upload.id, "could not release completion lease");
            }
            return Err(e);
        }
    };
    let assembled_ms = started.elapsed().as_millis() as u64;
    // A deferred-size upload learns its size now.
    upload.size = object.size;
    let job = ProcessJob::for_upload(&upload, app.objects.bucket(), &object.etag);
    // The janitor looks at it if nothing has moved by then (a lost or crashed job).
    upload.stall_check_at = Some(now + app.config.processing_stall.as_secs() as i64);
    // Job first, status second: a crash between them leaves `completing`, which a
    // retry or the janitor drives again (the job is idempotent by design).
    if let Err(e) = app.jobs.send(&job).await {
        let _ = app.repo.release_completion(&upload, now).await;
        return Err(e.into());
    }
    if object.version.is_none() {
        // Without versions a later write could replace what gets scanned (docs/security.md).
        tracing::error!(upload_id = %upload.id, "the bucket is not versioned: the object cannot be pinned");
    }
    app.repo.finish_completion(&upload, &object, now).await?;
    // Where completion time goes: assembling (ListParts, CompleteMultipartUpload) vs the rest.
    let total_ms = started.elapsed().as_millis() as u64;
    tracing::info!(upload_id = %upload.id, owner = %upload.owner, size = upload.size, assembled_ms, total_ms, "upload completed");
    telemetry::metric("complete_upload", "UploadsCompleted", 1.0, "Count");
    telemetry::metric("complete_upload", "BytesCompleted", upload.size as f64, "Bytes");
    let done = app.repo.get(&upload.id).await?.unwrap_or(upload);
    Ok(view(&done, None, now))
}

/// Makes sure the object exists, assembled from exactly the planned parts; returns its
/// ETag, version and size.
async fn finish_object(app: &App, upload: &Upload) -> Result<ObjectInfo, UploadError> {
    let Some(stored) = app.objects.list_parts(&upload.s3_key, &upload.s3_upload_id).await? else {
        // S3 no longer knows the multipart upload: our own earlier completion (that
        // crashed before recording it), or an abort by the lifecycle rule.
        return existing_object(app, upload).await?.ok_or(UploadError::PartsGone);
    };
    let plan = plan_of(upload)?;
    let recorded: HashMap<u32, PartRecord> =
        app.repo.parts(&upload.id).await?.into_iter().map(|p| (p.number, p)).collect();
    let in_s3: HashMap<u32, &StoredPart> = stored.iter().map(|p| (p.number, p)).collect();
    let mut missing = Vec::new();
    let mut mismatched = Vec::new();
    let mut parts = Vec::with_capacity(upload.part_count as usize);
    for n in 1..=upload.part_count {
        let number = PartNumber::new(n)?;
        let Some(s3) = in_s3.get(&n) else {
            missing.push(n);
            continue;
        };
        let planned = plan.part_len(number).unwrap_or(0);
        let etag_differs = recorded.get(&n).is_some_and(|r| r.etag != s3.etag);
        let checksum_missing = upload.part_checksums && s3.checksum_sha256.is_none();
        if s3.size != planned || etag_differs || checksum_missing {
            mismatched.push(n);
            continue;
        }
        let etag = ETag::parse(&s3.etag)
            .map_err(|_| UploadError::Internal(format!("S3 returned an unusable ETag for part {n}")))?;
        parts.push((number, etag, upload.part_checksums.then(|| s3.checksum_sha256.clone()).flatten()));
    }
    if !missing.is_empty() || !mismatched.is_empty() {
        let missing_parts = missing_ranges(upload.part_count, (1..=upload.part_count).filter(|n| !missing.contains(n)));
        let mut detail = String::from("The upload cannot be completed yet:");
        if !missing.is_empty() {
            detail.push_str(&format!(" {} part(s) are not in S3 ({})", missing.len(), describe_ranges(&missing_parts)));
        }
        if !mismatched.is_empty() {
            if !missing.is_empty() {
                detail.push(';');
            }
            detail.push_str(&format!(
                " part(s) {} in S3 differ from what was recorded (re-send or re-record them)",
                mismatched.iter().map(u32::to_string).collect::<Vec<_>>().join(", ")
            ));
        }
        detail.push('.');
        return Err(UploadError::Incomplete { detail, missing_parts, mismatched_parts: Some(mismatched) });
    }
    complete_parts(app, upload, &parts, upload.size).await
}

/// CompleteMultipartUpload, resolving "already done" answers against the object itself.
async fn complete_parts(
    app: &App,
    upload: &Upload,
    parts: &[(PartNumber, ETag, Option<String>)],
    size: u64,
) -> Result<ObjectInfo, UploadError> {
    match app.objects.complete(&upload.s3_key, &upload.s3_upload_id, parts, size).await? {
        CompleteOutcome::Completed { etag, version } => Ok(ObjectInfo { size, etag, version }),
        CompleteOutcome::AlreadyExists | CompleteOutcome::NoSuchUpload => {
            existing_object(app, upload).await?.ok_or(UploadError::NoObject)
        }
        CompleteOutcome::Refused { code, message } => Err(UploadError::AssemblyRefused { code, message }),
    }
}

/// Completes an upload whose size was not declared (Uppy's Companion protocol): the
/// parts are whatever S3 holds, which must run 1..=n without gaps; the total must be
/// within the service's limit, or the upload is aborted.
async fn finish_deferred_object(app: &App, upload: &Upload) -> Result<ObjectInfo, UploadError> {
    let Some(mut stored) = app.objects.list_parts(&upload.s3_key, &upload.s3_upload_id).await? else {
        return app.objects.head(&upload.s3_key, None).await?.ok_or(UploadError::PartsGone);
    };
    if stored.is_empty() {
        return Err(UploadError::NoPartsYet);
    }
    stored.sort_by_key(|p| p.number);
    let last = stored.last().map_or(0, |p| p.number);
    let gaps = missing_ranges(last, stored.iter().map(|p| p.number));
    if !gaps.is_empty() {
        return Err(UploadError::Incomplete {
            detail: format!("The upload cannot be completed yet: part(s) {} are not in S3.", describe_ranges(&gaps)),
            missing_parts: gaps,
            mismatched_parts: None,
        });
    }
    let size: u64 = stored.iter().map(|p| p.size).sum();
    // Enforced here because this protocol does not declare the size up front: the
    // ceiling the session reserved (sessions from before reservations: the limit).
    let limit = deferred_limit(upload, &app.config);
    if size > limit {
        return Err(discard_too_large(app, upload, size, limit).await);
    }
    let mut parts = Vec::with_capacity(stored.len());
    for p in stored {
        let etag = ETag::parse(&p.etag).map_err(|_| UploadError::Internal("S3 returned an unusable ETag".into()))?;
        parts.push((PartNumber::new(p.number)?, etag, None));
    }
    complete_parts(app, upload, &parts, size).await
}

/// A single POST's object is what S3 received in the `arrived` version (the current
/// one when the event is unknown, e.g. the janitor's lost-event path); the signed
/// policy bounded its size and pinned its key and type.
async fn finish_single_object(app: &App, upload: &Upload, arrived: Option<&str>) -> Result<ObjectInfo, UploadError> {
    match app.objects.head(&upload.s3_key, arrived).await? {
        Some(o) if o.size <= app.config.max_upload_size => Ok(o),
        Some(o) => Err(discard_too_large(app, upload, o.size, app.config.max_upload_size).await),
        None => Err(UploadError::NotArrived),
    }
}

/// An upload whose size was not declared turned out above the limit: what S3 holds is
/// thrown away, and the caller is told why.
async fn discard_too_large(app: &App, upload: &Upload, size: u64, limit: u64) -> UploadError {
    if let Err(e) = discard_s3(app, upload).await {
        return e;
    }
    UploadError::TooLarge { size, limit }
}

/// The object at the upload's key, if it is the one this upload produced (right size).
/// Multipart completions never overwrite (If-None-Match), so it is the only version.
async fn existing_object(app: &App, upload: &Upload) -> Result<Option<ObjectInfo>, UploadError> {
    Ok(match app.objects.head(&upload.s3_key, None).await? {
        Some(o) if o.size == upload.size || upload.deferred_size => Some(o),
        Some(o) => {
            tracing::error!(upload_id = %upload.id, size = o.size, expected = upload.size, "object at upload key has the wrong size");
            None
        }
        None => None,
    })
}
