//! Uppy's Companion S3 multipart protocol, spoken exactly as `@uppy/aws-s3` speaks it,
//! against the dev server and the real local stack.

use api_types::{
    companion::{Completed, CreateRequest, Created, ListedPart, SignedBatch, SignedOne, SingleUpload},
    files::FileView,
};
use hoist_e2e::{chunk, rand_like, to_json, unique, Harness};
use serde_json::{json, Value};

const MIB: usize = 1024 * 1024;
const PART: usize = 5 * MIB;

/// `POST /s3/multipart`'s body as Uppy sends it (name and type again in `metadata`).
fn create_request(name: &str, ct: &str) -> CreateRequest {
    CreateRequest { filename: name.into(), content_type: ct.into(), metadata: json!({"name": name, "type": ct}) }
}

async fn create(h: &Harness, owner: &str, name: &str, ct: &str) -> (String, String) {
    let created: Created =
        h.call_as(Some(owner), "POST", "/s3/multipart", Some(to_json(&create_request(name, ct))), 200).await;
    assert_eq!(created.bucket, h.app.objects.bucket());
    (created.upload_id, created.key)
}

/// Parts as Uppy lists them in its completion request: (PartNumber, ETag).
type SentPart = (u32, String);

/// The completion body Uppy sends.
fn complete_body(parts: &[SentPart]) -> Value {
    let parts: Vec<Value> = parts.iter().map(|(n, etag)| json!({"PartNumber": n, "ETag": etag})).collect();
    json!({ "parts": parts })
}

async fn put_parts(h: &Harness, owner: &str, id: &str, key: &str, data: &[u8], numbers: &[u32]) -> Vec<SentPart> {
    let list: Vec<String> = numbers.iter().map(u32::to_string).collect();
    let path = format!("/s3/multipart/{id}/batch?key={key}&partNumbers={}", list.join(","));
    let batch: SignedBatch = h.call_as(Some(owner), "GET", &path, None, 200).await;
    assert_eq!(batch.presigned_urls.len(), numbers.len(), "{batch:?}");
    let mut done = Vec::new();
    for n in numbers {
        let url = &batch.presigned_urls[&n.to_string()];
        let resp = h.http.put(url).body(chunk(data, PART, *n).to_vec()).send().await.unwrap();
        assert_eq!(resp.status().as_u16(), 200);
        done.push((*n, resp.headers()["etag"].to_str().unwrap().to_owned()));
    }
    done
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uppy_multipart_flow_with_resume_ends_ready() {
    let h = Harness::start().await;
    let owner = unique("uppy");
    let data = rand_like::bytes(2 * PART + 777);
    let (id, key) = create(&h, &owner, "clip.bin", "application/octet-stream").await;
    assert_eq!(key, format!("uploads/{id}"));
    let mut parts = put_parts(&h, &owner, &id, &key, &data, &[1, 2]).await;

    // A reload: Uppy (Golden Retriever) asks what S3 already has and sends only the rest.
    let listed: Vec<ListedPart> =
        h.call_as(Some(&owner), "GET", &format!("/s3/multipart/{id}?key={key}"), None, 200).await;
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[0].part_number, 1);
    assert_eq!(listed[0].size, PART as u64);
    assert_eq!(listed[0].etag, parts[0].1);

    // Uppy also signs single parts.
    let one: SignedOne = h.call_as(Some(&owner), "GET", &format!("/s3/multipart/{id}/3?key={key}"), None, 200).await;
    assert!(one.expires > 0);
    let resp = h.http.put(&one.url).body(chunk(&data, PART, 3).to_vec()).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    parts.push((3, resp.headers()["etag"].to_str().unwrap().to_owned()));

    let done: Completed = h
        .call_as(
            Some(&owner),
            "POST",
            &format!("/s3/multipart/{id}/complete?key={key}"),
            Some(complete_body(&parts)),
            200,
        )
        .await;
    assert!(done.location.ends_with(&key), "{done:?}");
    assert_eq!((done.key.as_str(), done.bucket.as_str()), (key.as_str(), h.app.objects.bucket()));
    assert_eq!(h.object_bytes(&id).await, data);
    h.process_all().await;
    let f: FileView = h.call_as(Some(&owner), "GET", &format!("/files/{id}"), None, 200).await;
    assert_eq!(f.status, "ready", "{f:?}");
    assert_eq!(f.size, data.len() as u64, "the size learnt at completion is recorded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn size_limit_is_enforced_at_completion() {
    let h = Harness::with_config(|c| c.max_upload_size = 8 * MIB as u64).await;
    let owner = unique("big");
    let data = rand_like::bytes(2 * PART);
    let (id, key) = create(&h, &owner, "too-big.bin", "application/octet-stream").await;
    let parts = put_parts(&h, &owner, &id, &key, &data, &[1, 2]).await;
    let path = format!("/s3/multipart/{id}/complete?key={key}");
    let (s, e) = h.call_companion_error(Some(&owner), "POST", &path, Some(complete_body(&parts))).await;
    assert_eq!(s, 422, "{e:?}");
    assert!(e.error.contains("limit"), "Companion error shape: {e:?}");
    assert!(h.app.objects.head(&key, None).await.unwrap().is_none(), "no object was made");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn companion_errors_isolation_and_abort() {
    let h = Harness::start().await;
    let owner = unique("own");
    let thief = unique("thief");
    let (id, key) = create(&h, &owner, "a.bin", "application/octet-stream").await;
    for (m, p) in [
        ("GET", format!("/s3/multipart/{id}?key={key}")),
        ("GET", format!("/s3/multipart/{id}/1?key={key}")),
        ("GET", format!("/s3/multipart/{id}/batch?key={key}&partNumbers=1")),
        ("POST", format!("/s3/multipart/{id}/complete?key={key}")),
        ("DELETE", format!("/s3/multipart/{id}?key={key}")),
    ] {
        let body = if m == "POST" { Some(complete_body(&[])) } else { None };
        let (s, e) = h.call_companion_error(Some(&thief), m, &p, body).await;
        assert_eq!(s, 404, "{m} {p}: {e:?}");
        assert!(!e.error.is_empty(), "{e:?}");
    }
    let (s, e) =
        h.call_companion_error(Some(&owner), "GET", &format!("/s3/multipart/{id}?key=uploads/other"), None).await;
    assert_eq!(s, 404, "a key that does not belong to the upload: {e:?}");
    let (s, e) = h.call_companion_error(Some(&owner), "GET", &format!("/s3/multipart/{id}/0?key={key}"), None).await;
    assert_eq!(s, 422, "{e:?}");
    // The single-request route answers a presigned POST (tests/tests/single_post.rs).
    let single: SingleUpload =
        h.call_as(Some(&owner), "GET", "/s3/params?filename=a.txt&type=text/plain", None, 200).await;
    assert_eq!(single.method, "POST");
    let exe = to_json(&create_request("x.exe", "application/x-msdownload"));
    let (s, e) = h.call_companion_error(Some(&owner), "POST", "/s3/multipart", Some(exe)).await;
    assert_eq!(s, 422, "{e:?}");
    // Aborting answers an empty object (Companion's shape; no wire type to parse into).
    let (s, v, _) = h.call(Some(&owner), "DELETE", &format!("/s3/multipart/{id}?key={key}"), None).await;
    assert_eq!((s, v), (200, json!({})));
    let (s, e) = h.call_companion_error(Some(&owner), "GET", &format!("/s3/multipart/{id}/1?key={key}"), None).await;
    assert_eq!(s, 409, "no signing after abort: {e:?}");
    // No credentials: refused by the gateway before any function runs.
    let body = to_json(&create_request("a", "text/plain"));
    h.call_refused_by_gateway(None, "POST", "/s3/multipart", Some(body)).await;
}
