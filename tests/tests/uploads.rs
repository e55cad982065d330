//! The upload control plane end to end: real HTTP to the dev server (real handlers),
//! real presigned PUTs to LocalStack S3 (signatures and checksums checked), real
//! DynamoDB (moto) and SQS (LocalStack). Needs `scripts/stack.sh start`.

use api_types::{
    ranges,
    uploads::{CreateUploadRequest, RecordPartItem, RecordPartsRequest, SignPartItem, SignPartsRequest, UploadView},
};
use hoist_e2e::{chunk, rand_like, sha256_hex, to_json, typed, unique, Harness};
use serde_json::{json, Value};

const MIB: usize = 1024 * 1024;
const PART: usize = 5 * MIB;

/// A well-formed create request for a small text file.
fn small_text(filename: &str, size: u64) -> CreateUploadRequest {
    CreateUploadRequest {
        filename: filename.into(),
        size: size.into(),
        content_type: "text/plain".into(),
        sha256: None,
        part_checksums: None,
        part_size: None,
    }
}

/// A sign request for these part numbers (no checksums).
fn sign_request(numbers: &[i64]) -> Value {
    to_json(&SignPartsRequest { parts: numbers.iter().map(|&number| SignPartItem { number, sha256: None }).collect() })
}

/// A record request for one part.
fn record_request(number: i64, etag: &str, size: u64) -> Value {
    to_json(&RecordPartsRequest {
        parts: vec![RecordPartItem { number, etag: etag.into(), size: size.into(), sha256: None }],
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_multipart_upload_round_trips_and_enqueues_one_job() {
    let h = Harness::start().await;
    let owner = unique("alice");
    let data = rand_like::bytes(2 * PART + 123_457);
    let created = h.create(&owner, "big.bin", &data, PART as u64, true).await;
    assert_eq!(created.status, "uploading");
    assert_eq!(created.part_count, 3);
    assert_eq!(created.missing_parts, vec![[1, 3]]);
    let id = created.id;

    let sent = h.upload_parts(&owner, &id, &data, PART, &[1, 2, 3], true).await;
    assert_eq!(sent, 3);
    let status: UploadView = h.call_as(Some(&owner), "GET", &format!("/uploads/{id}"), None, 200).await;
    assert_eq!(status.parts_done, 3);
    assert_eq!(status.bytes_done, data.len() as u64);
    assert_eq!(status.missing_parts, Vec::<[u32; 2]>::new());

    let done: UploadView = h.call_as(Some(&owner), "POST", &format!("/uploads/{id}/complete"), None, 200).await;
    assert_eq!(done.status, "processing");
    assert_eq!(h.object_bytes(&id).await, data, "object bytes equal the source");

    let jobs = h.drain_jobs().await;
    assert_eq!(jobs.len(), 1, "exactly one processing job: {jobs:?}");
    assert_eq!(jobs[0]["upload_id"], id);
    assert_eq!(jobs[0]["size"], data.len());
    assert_eq!(jobs[0]["sha256"], sha256_hex(&data));

    // Completing again answers the same and sends nothing new.
    let again: UploadView = h.call_as(Some(&owner), "POST", &format!("/uploads/{id}/complete"), None, 200).await;
    assert_eq!(again.status, "processing");
    assert_eq!(again.completed_at, done.completed_at, "the same answer");
    assert!(h.drain_jobs().await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupted_part_is_refused_by_s3_and_can_be_resent() {
    let h = Harness::start().await;
    let owner = unique("bob");
    let data = rand_like::bytes(PART + 10);
    let id = h.create(&owner, "x.bin", &data, PART as u64, true).await.id;
    let signed = h.sign(&owner, &id, &data, PART, &[1], true).await;
    assert!(signed[0].headers.contains_key("x-amz-checksum-sha256"), "checksum travels as a signed header");
    assert!(signed[0].url.contains("x-amz-checksum-sha256"), "and is among the signed headers");

    let mut wrong = chunk(&data, PART, 1).to_vec();
    wrong[1000] ^= 0xff;
    let (st, _, text) = h.put_part(&signed[0], wrong).await;
    assert_eq!(st, 400, "S3 refuses corrupted bytes: {text}");
    assert!(text.contains("BadDigest"), "{text}");

    let (st, etag, text) = h.put_part(&signed[0], chunk(&data, PART, 1).to_vec()).await;
    assert_eq!(st, 200, "the same URL takes the right bytes: {text}");
    assert!(etag.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn part_of_the_wrong_length_is_refused_by_s3() {
    let h = Harness::start().await;
    let owner = unique("carol");
    let data = rand_like::bytes(PART + 10);
    let id = h.create(&owner, "x.bin", &data, PART as u64, false).await.id;
    let signed = h.sign(&owner, &id, &data, PART, &[1, 2], false).await;
    assert_eq!(signed[0].content_length, PART as u64);
    assert_eq!(signed[1].content_length, 10);
    let (st, _, text) = h.put_part(&signed[1], vec![7u8; 11]).await;
    assert!(st == 403 || st == 400, "longer than planned must be refused, got {st}: {text}");
    let (st, _, _) = h.put_part(&signed[1], vec![7u8; 9]).await;
    assert!(st == 403 || st == 400, "shorter than planned must be refused, got {st}");
    let (st, _, _) = h.put_part(&signed[1], chunk(&data, PART, 2).to_vec()).await;
    assert_eq!(st, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_after_crash_sends_only_missing_parts() {
    let h = Harness::start().await;
    let owner = unique("dave");
    let data = rand_like::bytes(4 * PART - 99);
    let id = h.create(&owner, "resume.bin", &data, PART as u64, true).await.id;
    // First run: parts 1 and 3 get through, then the client "crashes".
    h.upload_parts(&owner, &id, &data, PART, &[1, 3], true).await;

    // Second run: a fresh client asks what is missing and sends only that.
    let status: UploadView = h.call_as(Some(&owner), "GET", &format!("/uploads/{id}"), None, 200).await;
    assert_eq!(status.missing_parts, vec![[2, 2], [4, 4]]);
    let missing: Vec<u32> = ranges::expand(&status.missing_parts).collect();
    let sent = h.upload_parts(&owner, &id, &data, PART, &missing, true).await;
    assert_eq!(sent, 2);

    // S3 saw exactly four parts: nothing was sent twice.
    let parts =
        h.app.objects.list_parts(&format!("uploads/{id}"), &upload_s3_id(&h, &id).await).await.unwrap().unwrap();
    assert_eq!(parts.iter().map(|p| p.number).collect::<Vec<_>>(), vec![1, 2, 3, 4]);

    let done: UploadView = h.call_as(Some(&owner), "POST", &format!("/uploads/{id}/complete"), None, 200).await;
    assert_eq!(done.status, "processing");
    assert_eq!(h.object_bytes(&id).await, data);
}

async fn upload_s3_id(h: &Harness, id: &str) -> String {
    let rec = h.app.repo.get(&shared::domain::UploadId::parse(id).unwrap()).await.unwrap().unwrap();
    rec.s3_upload_id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn complete_with_a_missing_part_is_409_naming_it() {
    let h = Harness::start().await;
    let owner = unique("erin");
    let data = rand_like::bytes(3 * PART);
    let id = h.create(&owner, "gap.bin", &data, PART as u64, false).await.id;
    h.upload_parts(&owner, &id, &data, PART, &[1, 3], false).await;
    let (s, problem, headers) = h.call_problem(Some(&owner), "POST", &format!("/uploads/{id}/complete"), None).await;
    assert_eq!(s, 409, "{problem:?}");
    assert_eq!(headers["content-type"], api_types::problem::PROBLEM_JSON);
    assert_eq!(problem.slug(), "conflict");
    assert_eq!(typed::<Vec<[u32; 2]>>(&problem.extra["missing_parts"]), vec![[2, 2]]);
    assert!(problem.detail.contains('2'));
    // Still resumable: send the gap, complete works.
    h.upload_parts(&owner, &id, &data, PART, &[2], false).await;
    let done: UploadView = h.call_as(Some(&owner), "POST", &format!("/uploads/{id}/complete"), None, 200).await;
    assert_eq!(done.status, "processing");
    assert_eq!(h.object_bytes(&id).await, data);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ten_concurrent_completes_make_one_object_and_one_job() {
    let h = Harness::start().await;
    let owner = unique("frank");
    let data = rand_like::bytes(2 * PART + 1);
    let id = h.create(&owner, "race.bin", &data, PART as u64, true).await.id;
    h.upload_parts(&owner, &id, &data, PART, &[1, 2, 3], true).await;
    let path = format!("/uploads/{id}/complete");
    let calls = (0..10).map(|_| h.call(Some(&owner), "POST", &path, None));
    let results = futures::future::join_all(calls).await;
    let mut views = Vec::new();
    for (s, v, _) in &results {
        assert_eq!(*s, 200, "every caller gets the answer: {v}");
        views.push(typed::<UploadView>(v));
    }
    assert!(views[0].completed_at.is_some(), "{:?}", views[0]);
    for v in &views {
        assert_eq!(v.status, "processing");
        assert_eq!(v.completed_at, views[0].completed_at, "the same answer");
    }
    let jobs = h.drain_jobs().await;
    assert_eq!(jobs.len(), 1, "one job for ten completes: {jobs:?}");
    assert_eq!(h.object_bytes(&id).await, data);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abort_discards_parts_and_frees_quota() {
    let h = Harness::with_config(|c| c.max_open_uploads = 2).await;
    let owner = unique("gina");
    let data = rand_like::bytes(PART + 5);
    let a = h.create(&owner, "a.bin", &data, PART as u64, false).await.id;
    let _b = h.create(&owner, "b.bin", &data, PART as u64, false).await.id;
    h.upload_parts(&owner, &a, &data, PART, &[1], false).await;

    // Quota: a third open upload is refused with Retry-After.
    let body = to_json(&small_text("c.bin", 10));
    let (s, problem, headers) = h.call_problem(Some(&owner), "POST", "/uploads", Some(body.clone())).await;
    assert_eq!(s, 429, "{problem:?}");
    assert_eq!(problem.slug(), "quota-exceeded");
    assert!(headers.get("retry-after").is_some());

    let s3_id = upload_s3_id(&h, &a).await;
    let v: UploadView = h.call_as(Some(&owner), "DELETE", &format!("/uploads/{a}"), None, 200).await;
    assert_eq!(v.status, "aborted");
    assert!(
        h.app.objects.list_parts(&format!("uploads/{a}"), &s3_id).await.unwrap().is_none(),
        "S3 forgot the multipart upload"
    );
    let again: UploadView = h.call_as(Some(&owner), "DELETE", &format!("/uploads/{a}"), None, 200).await;
    assert_eq!(again.status, "aborted", "abort is idempotent");
    let (s, p, _) =
        h.call_problem(Some(&owner), "POST", &format!("/uploads/{a}/parts/sign"), Some(sign_request(&[1]))).await;
    assert_eq!(s, 409, "no signing after abort: {p:?}");
    assert_eq!(p.slug(), "conflict");
    let (s, p, _) = h.call_problem(Some(&owner), "POST", &format!("/uploads/{a}/complete"), None).await;
    assert_eq!(s, 409, "no completing after abort: {p:?}");
    assert_eq!(p.slug(), "conflict");

    // The slot is free again.
    let v: UploadView = h.call_as(Some(&owner), "POST", "/uploads", Some(body), 201).await;
    assert_eq!(v.status, "uploading");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_owners_upload_is_indistinguishable_from_none() {
    let h = Harness::start().await;
    let owner = unique("hank");
    let thief = unique("ivan");
    let data = rand_like::bytes(PART + 1);
    let id = h.create(&owner, "mine.bin", &data, PART as u64, false).await.id;
    let ghost = "0123456789abcdef0123456789abcdef";
    let record = record_request(1, "abc", PART as u64);
    let sign = sign_request(&[1]);
    for target in [id.as_str(), ghost] {
        let cases: Vec<(&str, String, Option<Value>)> = vec![
            ("GET", format!("/uploads/{target}"), None),
            ("POST", format!("/uploads/{target}/parts/sign"), Some(sign.clone())),
            ("PUT", format!("/uploads/{target}/parts"), Some(record.clone())),
            ("POST", format!("/uploads/{target}/complete"), None),
            ("DELETE", format!("/uploads/{target}"), None),
        ];
        for (m, p, b) in cases {
            let (s, problem, _) = h.call_problem(Some(&thief), m, &p, b).await;
            assert_eq!(s, 404, "{m} {p}: {problem:?}");
            assert_eq!(problem.slug(), "not-found");
            assert_eq!(problem.detail, "No upload with this id exists.");
        }
    }
    // The owner's upload is untouched.
    let v: UploadView = h.call_as(Some(&owner), "GET", &format!("/uploads/{id}"), None, 200).await;
    assert_eq!(v.status, "uploading");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_or_bad_token_is_refused_by_the_gateway() {
    // API Gateway's answer when our authorizer says no (no identity source is configured,
    // since a token may come in a header or a cookie): 403 {"message":"Forbidden"}.
    let h = Harness::start().await;
    let body = small_text("a", 1);
    let reason = h.call_refused_by_gateway(None, "POST", "/uploads", Some(to_json(&body))).await;
    assert!(reason.contains("token"), "{reason}");
    for bad in
        ["not.a.token".to_owned(), hoist_dev::jwt::issue("some-other-secret", "alice", 600, shared::now()).unwrap()]
    {
        let resp = h.http.post(format!("{}/uploads", h.base)).bearer_auth(bad).json(&body).send().await.unwrap();
        assert_eq!(resp.status().as_u16(), 403);
        assert_eq!(resp.json::<serde_json::Value>().await.unwrap(), serde_json::json!({"message": "Forbidden"}));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_inputs_get_4xx_problems_never_5xx() {
    let h = Harness::start().await;
    let owner = unique("judy");
    let ok = |over: Value| {
        let mut b = json!({"filename": "ok.txt", "size": 10, "content_type": "text/plain"});
        for (k, v) in over.as_object().unwrap() {
            b[k] = v.clone();
        }
        b
    };
    let cases = vec![
        ok(json!({"size": -1})),
        ok(json!({"size": 1.5})),
        ok(json!({"size": "10"})),
        ok(json!({"size": 53_687_091_200_001u64})),
        ok(json!({"size": 6_000_000_000_000u64})),
        ok(json!({"filename": "../../etc/passwd"})),
        ok(json!({"filename": "a\u{0000}b.txt"})),
        ok(json!({"filename": "invoice\u{202E}fdp.exe"})),
        ok(json!({"filename": ""})),
        ok(json!({"filename": "x".repeat(300)})),
        ok(json!({"content_type": "application/x-msdownload"})),
        ok(json!({"content_type": "text/html"})),
        ok(json!({"content_type": "nonsense"})),
        ok(json!({"sha256": "zz"})),
        ok(json!({"part_size": 1})),
        ok(json!({"part_checksums": "CRC32"})),
        ok(json!({"unknown_field": true})),
        json!({"filename": "a.txt"}),
        json!([1, 2, 3]),
        json!(null),
    ];
    for body in cases {
        let (s, p, headers) = h.call_problem(Some(&owner), "POST", "/uploads", Some(body.clone())).await;
        assert!((400..500).contains(&s), "{body} -> {s} {p:?}");
        assert_eq!(headers["content-type"], api_types::problem::PROBLEM_JSON, "{body}");
        assert!(p.detail.len() > 10, "a sentence for {body}: {p:?}");
    }
    for raw in [&b"{"[..], b"", b"not json", b"{\"filename\": \"a\", \"size\": 1e999}"] {
        let (s, v, ct) = h.call_raw(&owner, "POST", "/uploads", "application/json", raw).await;
        assert!((400..500).contains(&s), "{raw:?} -> {s} {v}");
        assert_eq!(ct, api_types::problem::PROBLEM_JSON);
        assert_eq!(hoist_e2e::problem(&v).status, s, "{v}");
    }
    let (s, v, _) = h.call_raw(&owner, "POST", "/uploads", "text/plain", b"{}").await;
    assert_eq!(s, 415);
    assert_eq!(hoist_e2e::problem(&v).slug(), "unsupported-media-type", "{v}");

    // Part numbers outside S3's range or the plan, on sign and record.
    let data = rand_like::bytes(PART + 1);
    let id = h.create(&owner, "p.bin", &data, PART as u64, false).await.id;
    for n in [json!(0), json!(10_001), json!(3), json!(-1), json!(1.5), json!("1")] {
        let sign = &format!("/uploads/{id}/parts/sign");
        let (s, p, _) = h.call_problem(Some(&owner), "POST", sign, Some(json!({"parts": [{"number": n}]}))).await;
        assert!((400..500).contains(&s), "sign {n} -> {s} {p:?}");
        let rec = json!({"parts": [{"number": n, "etag": "e", "size": 1}]});
        let (s, p, _) = h.call_problem(Some(&owner), "PUT", &format!("/uploads/{id}/parts"), Some(rec)).await;
        assert!((400..500).contains(&s), "record {n} -> {s} {p:?}");
    }
    let sign = format!("/uploads/{id}/parts/sign");
    let (s, p, _) = h.call_problem(Some(&owner), "POST", &sign, Some(sign_request(&[]))).await;
    assert_eq!(s, 422, "{p:?}");
    assert_eq!(p.field.as_deref(), Some("parts"));
    let too_many: Vec<i64> = (1..=1001).collect();
    let (s, p, _) = h.call_problem(Some(&owner), "POST", &sign, Some(sign_request(&too_many))).await;
    assert_eq!(s, 422, "{p:?}");
    assert_eq!(p.field.as_deref(), Some("parts"));
    // A part recorded with the wrong size is refused.
    let (s, p, _) =
        h.call_problem(Some(&owner), "PUT", &format!("/uploads/{id}/parts"), Some(record_request(2, "e", 2))).await;
    assert_eq!(s, 422, "{p:?}");
    assert_eq!(p.slug(), "invalid-input");
    // Checksum rules: this upload has no part checksums.
    let with_sha =
        to_json(&SignPartsRequest { parts: vec![SignPartItem { number: 1, sha256: Some(sha256_hex(b"x")) }] });
    let (s, p, _) = h.call_problem(Some(&owner), "POST", &sign, Some(with_sha)).await;
    assert_eq!(s, 422, "{p:?}");
    assert_eq!(p.field.as_deref(), Some("sha256"));
    // Malformed ids are simply not found.
    for bad in ["..%2F..%2Fetc", "ZZZ", "0123456789ABCDEF0123456789ABCDEF"] {
        let (s, p, _) = h.call_problem(Some(&owner), "GET", &format!("/uploads/{bad}"), None).await;
        assert_eq!(s, 404, "{bad}: {p:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_file_uploads_as_one_empty_part() {
    let h = Harness::start().await;
    let owner = unique("kim");
    let created = h.create(&owner, "empty.txt", b"", 5 * MIB as u64, true).await;
    assert_eq!(created.part_count, 1);
    let id = created.id;
    h.upload_parts(&owner, &id, b"", PART, &[1], true).await;
    let done: UploadView = h.call_as(Some(&owner), "POST", &format!("/uploads/{id}/complete"), None, 200).await;
    assert_eq!((done.status.as_str(), done.size), ("processing", 0));
    assert!(h.object_bytes(&id).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn janitor_expires_abandoned_uploads_and_aborts_their_parts() {
    // Long enough that a loaded machine cannot expire it before the test is ready;
    // the sweep below runs "a minute later".
    let h = Harness::with_config(|c| c.upload_ttl = std::time::Duration::from_secs(30)).await;
    let owner = unique("liam");
    let data = rand_like::bytes(PART + 3);
    let id = h.create(&owner, "old.bin", &data, PART as u64, false).await.id;
    h.upload_parts(&owner, &id, &data, PART, &[1], false).await;
    let s3_id = upload_s3_id(&h, &id).await;
    let quota_before = h.app.repo.quota(&shared::domain::Owner::parse(&owner).unwrap()).await.unwrap();
    assert_eq!(quota_before.open_uploads, 1);

    let report = shared::usecases::janitor::sweep(&h.app, shared::now() + 60).await.unwrap();
    assert!(report.expired >= 1, "{report:?}");
    assert!(
        h.app.objects.list_parts(&format!("uploads/{id}"), &s3_id).await.unwrap().is_none(),
        "multipart upload aborted in S3"
    );
    let v: UploadView = h.call_as(Some(&owner), "GET", &format!("/uploads/{id}"), None, 200).await;
    assert_eq!(v.status, "expired", "{v:?}");
    let quota_after = h.app.repo.quota(&shared::domain::Owner::parse(&owner).unwrap()).await.unwrap();
    assert_eq!(quota_after.open_uploads, 0, "quota released");
    assert_eq!(quota_after.bytes_in_flight, 0);
    let (s, p, _) = h.call_problem(Some(&owner), "POST", &format!("/uploads/{id}/complete"), None).await;
    assert_eq!(s, 409, "{p:?}");
    assert_eq!(p.slug(), "conflict");
}

/// The whole-file SHA-256 declared at completion (as `hoist put --sha256` does, hashing
/// while it sends): bad bodies are clear errors that change nothing, a hash other than the one
/// declared is 409, and processing verifies the hash that was declared.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_whole_file_hash_can_be_declared_at_completion() {
    let h = Harness::start().await;
    let owner = unique("late-hash");
    let data = rand_like::bytes(PART + 1234);
    let mut body = CreateUploadRequest {
        filename: "late.bin".into(),
        size: data.len().into(),
        content_type: "application/octet-stream".into(),
        sha256: None,
        part_checksums: Some("SHA256".into()),
        part_size: Some(PART.into()),
    };
    let good = h.post_upload(&owner, &body).await;
    assert_eq!(good.sha256, None);
    h.upload_parts(&owner, &good.id, &data, PART, &[1, 2], true).await;
    let complete = format!("/uploads/{}/complete", good.id);
    for (bad, status, field) in [
        (json!({"sha256": "not a digest"}), 422, "sha256"),
        (json!({"sha256": 7}), 422, ""),
        (json!({"sha_256": sha256_hex(&data)}), 422, ""),
    ] {
        let (s, p, _) = h.call_problem(Some(&owner), "POST", &complete, Some(bad.clone())).await;
        assert_eq!(s, status, "{bad}: {p:?}");
        assert!(p.detail.contains(field), "{bad}: {p:?}");
    }
    let (s, v, _) = h.call_raw(&owner, "POST", &complete, "text/plain", br#"{"sha256":"00"}"#).await;
    assert_eq!(s, 415, "{v}");
    let status: UploadView = h.call_as(Some(&owner), "GET", &format!("/uploads/{}", good.id), None, 200).await;
    assert_eq!(status.status, "uploading", "refused completions change nothing");

    let done: UploadView =
        h.call_as(Some(&owner), "POST", &complete, Some(json!({"sha256": sha256_hex(&data)})), 200).await;
    assert_eq!((done.status.as_str(), done.sha256.as_deref()), ("processing", Some(sha256_hex(&data).as_str())));
    // Repeating the completion with another hash is refused, not ignored.
    let (s, p, _) =
        h.call_problem(Some(&owner), "POST", &complete, Some(json!({"sha256": sha256_hex(b"other")}))).await;
    assert_eq!(s, 409, "{p:?}");
    assert!(p.detail.contains("differs"), "{p:?}");

    // One declared at creation: another at completion is 409 and the upload stays open.
    body.sha256 = Some(sha256_hex(&data));
    let declared = h.post_upload(&owner, &body).await;
    h.upload_parts(&owner, &declared.id, &data, PART, &[1, 2], true).await;
    let path = format!("/uploads/{}/complete", declared.id);
    let (s, _, _) = h.call_problem(Some(&owner), "POST", &path, Some(json!({"sha256": sha256_hex(b"x")}))).await;
    assert_eq!(s, 409);
    let v: UploadView = h.call_as(Some(&owner), "GET", &format!("/uploads/{}", declared.id), None, 200).await;
    assert_eq!(v.status, "uploading");
    h.call_as::<UploadView>(Some(&owner), "POST", &path, Some(json!({"sha256": sha256_hex(&data)})), 200).await;

    // A wrong hash declared at completion ends corrupt, like a wrong one declared at creation.
    body.sha256 = None;
    let wrong = h.post_upload(&owner, &body).await;
    h.upload_parts(&owner, &wrong.id, &data, PART, &[1, 2], true).await;
    let path = format!("/uploads/{}/complete", wrong.id);
    h.call_as::<UploadView>(Some(&owner), "POST", &path, Some(json!({"sha256": sha256_hex(b"x")})), 200).await;

    h.process_all().await;
    for (id, expected) in [(&good.id, "ready"), (&declared.id, "ready"), (&wrong.id, "corrupt")] {
        let v: UploadView = h.call_as(Some(&owner), "GET", &format!("/uploads/{id}"), None, 200).await;
        assert_eq!(v.status, expected, "{v:?}");
    }
}
