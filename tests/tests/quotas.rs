//! Issue 11.5 against the real stack (moto's DynamoDB transactions and conditions): the
//! storage quota through complete, delete and restore; what a session without a
//! declared size reserves; `GET /uploads` listing what holds the quota.

use api_types::{
    companion::Created,
    uploads::{CreateUploadRequest, OpenUploads},
};
use hoist_e2e::{unique, Harness};
use serde_json::json;

const KIB: u64 = 1024;

fn create_body(size: u64) -> serde_json::Value {
    json!({"filename": "q.bin", "size": size, "content_type": "application/octet-stream"})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_storage_quota_holds_through_complete_delete_and_restore() {
    let h = Harness::with_config(|c| {
        c.max_stored_bytes = 100 * KIB;
        c.deferred_ceiling = 30 * KIB;
    })
    .await;
    let owner = unique("quota");
    let a = h.upload_file(&owner, "a.bin", "application/octet-stream", &vec![1u8; 60 * KIB as usize], None).await;
    h.process_all().await;
    let open: OpenUploads = h.call_as(Some(&owner), "GET", "/uploads", None, 200).await;
    assert_eq!((open.quota.bytes_stored, open.quota.bytes_in_flight, open.uploads.len()), (60 * KIB, 0, 0));
    assert_eq!(open.quota.max_stored_bytes, 100 * KIB);

    // 50 KiB more does not fit next to 60 stored: 413 with the numbers in words.
    let (s, p, _) = h.call_problem(Some(&owner), "POST", "/uploads", Some(create_body(50 * KIB))).await;
    assert_eq!(s, 413, "{p:?}");
    assert!(p.detail.contains("storage quota"), "{p:?}");
    // A Companion session (no size) reserves its 30 KiB ceiling: it fits, a second does not.
    let body = json!({"filename": "c.bin", "type": "application/octet-stream"});
    let c: Created = h.call_as(Some(&owner), "POST", "/s3/multipart", Some(body.clone()), 200).await;
    let (s, err, _) = h.call(Some(&owner), "POST", "/s3/multipart", Some(body)).await;
    assert_eq!(s, 413, "{err}");
    assert!(err["error"].as_str().unwrap().contains("has 10240 left"), "{err}");
    let open: OpenUploads = h.call_as(Some(&owner), "GET", "/uploads", None, 200).await;
    assert_eq!(open.uploads.iter().map(|u| u.id.as_str()).collect::<Vec<_>>(), vec![c.upload_id.as_str()]);
    assert_eq!((open.quota.open_uploads, open.quota.bytes_in_flight), (1, 30 * KIB));

    // Deleting the file gives its 60 KiB back: the 50 KiB upload fits now.
    h.call(Some(&owner), "DELETE", &format!("/files/{a}"), None).await;
    let b = CreateUploadRequest {
        filename: "b.bin".into(),
        size: (50 * KIB).into(),
        content_type: "application/octet-stream".into(),
        sha256: None,
        part_checksums: None,
        part_size: None,
    };
    let created = h.post_upload(&owner, &b).await;
    // Restoring `a` would need 60 KiB with 80 in flight of 100: refused, still deleted.
    let (s, p, _) = h.call_problem(Some(&owner), "POST", &format!("/files/{a}/restore"), None).await;
    assert_eq!(s, 413, "{p:?}");
    // Aborting both open uploads makes room; the restore takes the bytes again.
    h.call(Some(&owner), "DELETE", &format!("/uploads/{}", created.id), None).await;
    h.call(Some(&owner), "DELETE", &format!("/s3/multipart/{}?key={}", c.upload_id, c.key), None).await;
    let (s, _, _) = h.call(Some(&owner), "POST", &format!("/files/{a}/restore"), None).await;
    assert_eq!(s, 200);
    let open: OpenUploads = h.call_as(Some(&owner), "GET", "/uploads", None, 200).await;
    assert_eq!(
        (open.quota.open_uploads, open.quota.bytes_in_flight, open.quota.bytes_stored, open.uploads.len()),
        (0, 0, 60 * KIB, 0)
    );
    // Another owner sees none of it.
    let theirs: OpenUploads = h.call_as(Some(&unique("other")), "GET", "/uploads", None, 200).await;
    assert_eq!((theirs.uploads.len(), theirs.quota.bytes_stored), (0, 0));
}

/// Issue 11.6: a per-owner request rate limit, counted in DynamoDB (moto here).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_owner_past_the_request_rate_gets_429_and_others_do_not() {
    let h = Harness::with_config(|c| c.owner_requests_per_minute = 5).await;
    let (busy, calm) = (unique("busy"), unique("calm"));
    // A minute boundary in the middle would reset the count: start early in a minute.
    let into_minute = shared::now().rem_euclid(60);
    if into_minute > 50 {
        tokio::time::sleep(std::time::Duration::from_secs((61 - into_minute) as u64)).await;
    }
    for _ in 0..5 {
        assert_eq!(h.call(Some(&busy), "GET", "/uploads", None).await.0, 200);
    }
    let (s, p, headers) = h.call_problem(Some(&busy), "GET", "/uploads", None).await;
    assert_eq!(s, 429, "{p:?}");
    assert!(p.detail.contains("at most 5 a minute"), "{p:?}");
    let retry: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    assert_eq!(h.call(Some(&calm), "GET", "/uploads", None).await.0, 200, "another owner is not limited");
}

/// Issue 11.5 against LocalStack: Companion part URLs pin no length, so what a session
/// parks is summed by S3's own part list; past its ceiling the session is aborted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_companion_session_cannot_park_past_its_ceiling() {
    let h = Harness::with_config(|c| c.deferred_ceiling = 12 * 1024 * 1024).await;
    let owner = unique("park");
    let body = json!({"filename": "big.bin", "type": "application/octet-stream"});
    let c: Created = h.call_as(Some(&owner), "POST", "/s3/multipart", Some(body), 200).await;
    let q = format!("key={}", c.key);
    // Three 5 MiB parts straight to S3: 15 MiB parked against a 12 MiB ceiling.
    for n in 1..=3 {
        let (s, signed, _) = h.call(Some(&owner), "GET", &format!("/s3/multipart/{}/{n}?{q}", c.upload_id), None).await;
        assert_eq!(s, 200, "{signed}");
        let url = signed["url"].as_str().unwrap();
        let put = h.http.put(url).body(vec![n as u8; 5 * 1024 * 1024]).send().await.unwrap();
        assert_eq!(put.status().as_u16(), 200);
    }
    // The 16th URL signed (in a batch, none of them a multiple of 16) sums what is parked.
    let every = shared::usecases::parts::PARKED_CHECK_EVERY;
    let numbers: Vec<String> = (4..=every).map(|n| (n % 15 + 1).to_string()).collect();
    let batch = format!("/s3/multipart/{}/batch?{q}&partNumbers={}", c.upload_id, numbers.join(","));
    let (s, err, _) = h.call(Some(&owner), "GET", &batch, None).await;
    assert_eq!(s, 413, "{err}");
    assert!(err["error"].as_str().unwrap().contains("12582912"), "{err}");
    let v: api_types::uploads::UploadView =
        h.call_as(Some(&owner), "GET", &format!("/uploads/{}", c.upload_id), None, 200).await;
    assert_eq!(v.status, "aborted", "{v:?}");
    let open: OpenUploads = h.call_as(Some(&owner), "GET", "/uploads", None, 200).await;
    assert_eq!((open.quota.open_uploads, open.quota.bytes_in_flight), (0, 0), "its reservation released");
}
