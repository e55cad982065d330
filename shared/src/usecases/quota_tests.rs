//! Issue 11.5, on in-memory ports: sessions of undeclared size reserve a ceiling and
//! cannot park more than it; every owner has a storage quota that completion, delete,
//! restore and purge keep exact; `GET /uploads` shows what holds the quota.

use api_types::companion::CreateRequest;

use crate::domain::{Owner, Quota, UploadError, UploadId, UploadStatus, MIB};
use crate::http::companion;
use crate::testing::{config, Fakes};

use super::{
    catalog,
    create::{create, NewUpload},
    janitor::sweep,
    parts::{list_open, PARKED_CHECK_EVERY},
};

const T0: i64 = 1_800_000_000;

fn owner(name: &str) -> Owner {
    Owner::parse(name).unwrap()
}

fn new_upload(size: u64) -> NewUpload {
    serde_json::from_value::<api_types::uploads::CreateUploadRequest>(serde_json::json!({
        "filename": "f.bin", "size": size, "content_type": "application/octet-stream"
    }))
    .map_err(|e| e.to_string())
    .and_then(|r| NewUpload::parse(r, config().max_upload_size, &config().content_types).map_err(|e| e.to_string()))
    .unwrap()
}

/// Creates, sends and completes an upload of `size` bytes (one part).
async fn stored_file(f: &Fakes, who: &Owner, size: usize) -> UploadId {
    let view = create(&f.app, who, new_upload(size as u64), T0).await.unwrap();
    let id = UploadId::parse(&view.id).unwrap();
    let mpu = f.repo.upload(&id).unwrap().s3_upload_id;
    f.objects.upload_part(&mpu, 1, &vec![7u8; size]).unwrap();
    super::complete::complete(&f.app, who, &id, T0).await.unwrap();
    id
}

fn quota(open_uploads: u64, bytes_in_flight: u64, bytes_stored: u64) -> Quota {
    Quota { open_uploads, bytes_in_flight, bytes_stored }
}

#[tokio::test]
async fn storage_quota_is_exact_through_complete_delete_restore_and_purge() {
    let mut cfg = config();
    cfg.max_stored_bytes = 10 * MIB;
    let f = Fakes::with_config(cfg);
    let who = owner("sam");
    let a = stored_file(&f, &who, 4 * MIB as usize).await;
    assert_eq!(f.repo.quota_of(&who), quota(0, 0, 4 * MIB));
    let b = stored_file(&f, &who, 5 * MIB as usize).await;
    assert_eq!(f.repo.quota_of(&who), quota(0, 0, 9 * MIB));
    // 2 MiB more does not fit (9 + 2 > 10): refused before anything is opened in S3.
    match create(&f.app, &who, new_upload(2 * MIB), T0).await {
        Err(UploadError::StorageFull { needed, available, limit }) => {
            assert_eq!((needed, available, limit), (2 * MIB, MIB, 10 * MIB))
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(f.objects.open_multipart_uploads(), 0);

    // A delete gives the bytes back at once; a second delete changes nothing.
    catalog::delete(&f.app, &who, &a, "", T0).await.unwrap();
    catalog::delete(&f.app, &who, &a, "", T0).await.unwrap();
    assert_eq!(f.repo.quota_of(&who), quota(0, 0, 5 * MIB));
    // Room is taken by a new upload in flight; restoring `a` would now overflow.
    let c = create(&f.app, &who, new_upload(2 * MIB), T0).await.unwrap();
    assert_eq!(f.repo.quota_of(&who), quota(1, 2 * MIB, 5 * MIB));
    match catalog::restore(&f.app, &who, &a, "", T0).await {
        Err(e @ UploadError::StorageFull { .. }) => assert_eq!(crate::http::ApiError::from(e).status(), 413),
        other => panic!("{other:?}"),
    }
    assert!(f.repo.upload(&a).unwrap().deleted_at.is_some(), "still deleted");
    // Once the upload is aborted, the restore fits and takes the bytes again.
    super::abort::abort(&f.app, &who, &UploadId::parse(&c.id).unwrap(), T0).await.unwrap();
    catalog::restore(&f.app, &who, &a, "", T0).await.unwrap();
    catalog::restore(&f.app, &who, &a, "", T0).await.unwrap();
    assert_eq!(f.repo.quota_of(&who), quota(0, 0, 9 * MIB));
    // Purge of a deleted file: its bytes were given back at the delete, not twice.
    catalog::delete(&f.app, &who, &b, "", T0).await.unwrap();
    let retention = f.app.config.delete_retention.as_secs() as i64;
    assert_eq!(sweep(&f.app, T0 + retention + 1).await.unwrap().purged, 1);
    assert!(f.repo.upload(&b).is_none(), "purged");
    assert_eq!(f.repo.quota_of(&who), quota(0, 0, 4 * MIB));
}

#[tokio::test]
async fn sessions_without_a_size_reserve_their_ceiling_and_cannot_park_past_it() {
    let mut cfg = config();
    cfg.deferred_ceiling = 12 * MIB;
    let f = Fakes::with_config(cfg);
    let who = owner("uma");
    let req = || CreateRequest {
        filename: "u.bin".into(),
        content_type: "application/octet-stream".into(),
        metadata: serde_json::Value::Null,
    };
    let created = companion::create(&f.app, &who, req(), T0).await.unwrap();
    let id = UploadId::parse(&created.upload_id).unwrap();
    assert_eq!(f.repo.quota_of(&who), quota(1, 12 * MIB, 0), "the ceiling is reserved");
    // A single POST reserves its policy's limit (here the ceiling, below S3's 5 GiB).
    let post = companion::params(&f.app, &who, Some("p.txt"), Some("text/plain"), T0).await.unwrap();
    assert_eq!(f.repo.quota_of(&who), quota(2, 24 * MIB, 0));
    assert!(post.fields.contains_key("policy") || post.fields.contains_key("key"));

    // Parts whose URLs pin no length: 3 x 5 MiB parked, past the 12 MiB ceiling.
    let mpu = f.repo.upload(&id).unwrap().s3_upload_id;
    for n in 1..=3 {
        f.objects.upload_part(&mpu, n, &vec![1u8; 5 * MIB as usize]).unwrap();
    }
    // Signing below the check interval costs no listing, whatever the part numbers...
    companion::sign_one(&f.app, &who, &id, "16", T0).await.unwrap();
    companion::sign_one(&f.app, &who, &id, "32", T0).await.unwrap();
    assert_eq!(f.faults.count("s3.list_parts"), 0);
    // ...at every PARKED_CHECK_EVERYth URL signed the parked bytes are summed (here in a
    // batch that avoids every multiple of 16): the session is over.
    let numbers: Vec<String> = (1..PARKED_CHECK_EVERY - 1).map(|n| (n * 17 % 15 + 1).to_string()).collect();
    let e = companion::sign_batch(&f.app, &who, &id, Some(&numbers.join(",")), T0).await.unwrap_err();
    assert_eq!(e.status(), 413, "{e:?}");
    assert_eq!(f.faults.count("s3.list_parts"), 1);
    let u = f.repo.upload(&id).unwrap();
    assert_eq!(u.status, UploadStatus::Aborted);
    assert_eq!(f.objects.open_multipart_uploads(), 0, "parked parts discarded");
    assert_eq!(f.repo.quota_of(&who), quota(1, 12 * MIB, 0), "its reservation released");

    // Completing a deferred session above its ceiling is refused too; at or below it,
    // the reservation becomes the real size.
    let small = companion::create(&f.app, &who, req(), T0).await.unwrap();
    let small_id = UploadId::parse(&small.upload_id).unwrap();
    let mpu = f.repo.upload(&small_id).unwrap().s3_upload_id;
    f.objects.upload_part(&mpu, 1, &vec![2u8; 3 * MIB as usize]).unwrap();
    companion::complete(&f.app, &who, &small_id, T0).await.unwrap();
    assert_eq!(f.repo.quota_of(&who), quota(1, 12 * MIB, 3 * MIB));
    let big = companion::create(&f.app, &who, req(), T0).await.unwrap();
    let big_id = UploadId::parse(&big.upload_id).unwrap();
    let mpu = f.repo.upload(&big_id).unwrap().s3_upload_id;
    for n in 1..=3 {
        f.objects.upload_part(&mpu, n, &vec![3u8; 5 * MIB as usize]).unwrap();
    }
    let e = companion::complete(&f.app, &who, &big_id, T0).await.unwrap_err();
    assert_eq!(e.status(), 422, "{e:?}");
    assert!(format!("{e:?}").contains("limit of 12582912 bytes"), "{e:?}");
    assert_eq!(f.repo.quota_of(&who), quota(1, 12 * MIB, 3 * MIB));
}

#[tokio::test]
async fn open_uploads_are_listed_with_the_quota_they_hold() {
    let f = Fakes::new();
    let (who, other) = (owner("vic"), owner("wen"));
    let a = create(&f.app, &who, new_upload(10), T0).await.unwrap();
    let b = create(&f.app, &who, new_upload(20), T0 + 1).await.unwrap();
    stored_file(&f, &who, 30).await;
    create(&f.app, &other, new_upload(40), T0).await.unwrap();
    let open = list_open(&f.app, &who, T0 + 2).await.unwrap();
    let ids: Vec<&str> = open.uploads.iter().map(|u| u.id.as_str()).collect();
    assert_eq!(ids, vec![b.id.as_str(), a.id.as_str()], "newest first, completed and foreign ones left out");
    assert_eq!((open.quota.open_uploads, open.quota.bytes_in_flight, open.quota.bytes_stored), (2, 30, 30));
    assert_eq!(open.quota.max_open_uploads, f.app.config.max_open_uploads);
    // Aborting one frees it from the list and the quota.
    super::abort::abort(&f.app, &who, &UploadId::parse(&a.id).unwrap(), T0 + 3).await.unwrap();
    let open = list_open(&f.app, &who, T0 + 4).await.unwrap();
    assert_eq!(open.uploads.len(), 1);
    assert_eq!(open.quota.bytes_in_flight, 20);
}
