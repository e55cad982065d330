//! Uppy's Companion S3 multipart protocol, spoken exactly as `@uppy/aws-s3` speaks it,
//! against the dev server and the real local stack.

use hoist_e2e::{chunk, rand_like, unique, Harness};
use serde_json::{json, Value};

const MIB: usize = 1024 * 1024;
const PART: usize = 5 * MIB;

async fn create(h: &Harness, owner: &str, name: &str, ct: &str) -> (String, String) {
    let (s, v, _) = h
        .call(
            Some(owner),
            "POST",
            "/s3/multipart",
            Some(json!({"filename": name, "type": ct, "metadata": {"name": name, "type": ct}})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["bucket"], h.app.objects.bucket());
    (v["uploadId"].as_str().unwrap().to_owned(), v["key"].as_str().unwrap().to_owned())
}

async fn put_parts(h: &Harness, owner: &str, id: &str, key: &str, data: &[u8], numbers: &[u32]) -> Vec<Value> {
    let list: Vec<String> = numbers.iter().map(u32::to_string).collect();
    let (s, v, _) = h
        .call(Some(owner), "GET", &format!("/s3/multipart/{id}/batch?key={key}&partNumbers={}", list.join(",")), None)
        .await;
    assert_eq!(s, 200, "{v}");
    let mut done = Vec::new();
    for n in numbers {
        let url = v["presignedUrls"][n.to_string()].as_str().unwrap();
        let resp = h.http.put(url).body(chunk(data, PART, *n).to_vec()).send().await.unwrap();
        assert_eq!(resp.status().as_u16(), 200);
        done.push(json!({"PartNumber": n, "ETag": resp.headers()["etag"].to_str().unwrap()}));
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
    let (s, listed, _) = h.call(Some(&owner), "GET", &format!("/s3/multipart/{id}?key={key}"), None).await;
    assert_eq!(s, 200, "{listed}");
    let listed = listed.as_array().unwrap();
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[0]["PartNumber"], 1);
    assert_eq!(listed[0]["Size"], PART);
    assert_eq!(listed[0]["ETag"], parts[0]["ETag"]);

    // Uppy also signs single parts.
    let (s, one, _) = h.call(Some(&owner), "GET", &format!("/s3/multipart/{id}/3?key={key}"), None).await;
    assert_eq!(s, 200, "{one}");
    assert!(one["expires"].as_u64().unwrap() > 0);
    let resp = h.http.put(one["url"].as_str().unwrap()).body(chunk(&data, PART, 3).to_vec()).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    parts.push(json!({"PartNumber": 3, "ETag": resp.headers()["etag"].to_str().unwrap()}));

    let (s, done, _) = h
        .call(Some(&owner), "POST", &format!("/s3/multipart/{id}/complete?key={key}"), Some(json!({ "parts": parts })))
        .await;
    assert_eq!(s, 200, "{done}");
    assert!(done["location"].as_str().unwrap().ends_with(&key));
    assert_eq!(h.object_bytes(&id).await, data);
    h.process_all().await;
    let (_, f, _) = h.call(Some(&owner), "GET", &format!("/files/{id}"), None).await;
    assert_eq!(f["status"], "ready", "{f}");
    assert_eq!(f["size"], data.len(), "the size learnt at completion is recorded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn size_limit_is_enforced_at_completion() {
    let h = Harness::with_config(|c| c.max_upload_size = 8 * MIB as u64).await;
    let owner = unique("big");
    let data = rand_like::bytes(2 * PART);
    let (id, key) = create(&h, &owner, "too-big.bin", "application/octet-stream").await;
    let parts = put_parts(&h, &owner, &id, &key, &data, &[1, 2]).await;
    let (s, v, headers) = h
        .call(Some(&owner), "POST", &format!("/s3/multipart/{id}/complete?key={key}"), Some(json!({ "parts": parts })))
        .await;
    assert_eq!(s, 422, "{v}");
    assert!(v["error"].as_str().unwrap().contains("limit"), "Companion error shape: {v}");
    assert_eq!(headers["content-type"], "application/json");
    assert!(h.app.objects.head(&key).await.unwrap().is_none(), "no object was made");
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
        let (s, v, _) = h.call(Some(&thief), m, &p, if m == "POST" { Some(json!({"parts": []})) } else { None }).await;
        assert_eq!(s, 404, "{m} {p}: {v}");
        assert!(v["error"].is_string(), "{v}");
    }
    let (s, _, _) = h.call(Some(&owner), "GET", &format!("/s3/multipart/{id}?key=uploads/other"), None).await;
    assert_eq!(s, 404, "a key that does not belong to the upload");
    let (s, v, _) = h.call(Some(&owner), "GET", &format!("/s3/multipart/{id}/0?key={key}"), None).await;
    assert_eq!(s, 422, "{v}");
    // The single-request route answers a presigned POST (tests/tests/single_post.rs).
    let (s, v, _) = h.call(Some(&owner), "GET", "/s3/params?filename=a.txt&type=text/plain", None).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["method"], "POST");
    let (s, v, _) = h
        .call(
            Some(&owner),
            "POST",
            "/s3/multipart",
            Some(json!({"filename": "x.exe", "type": "application/x-msdownload"})),
        )
        .await;
    assert_eq!(s, 422, "{v}");
    let (s, v, _) = h.call(Some(&owner), "DELETE", &format!("/s3/multipart/{id}?key={key}"), None).await;
    assert_eq!((s, v), (200, json!({})));
    let (s, _, _) = h.call(Some(&owner), "GET", &format!("/s3/multipart/{id}/1?key={key}"), None).await;
    assert_eq!(s, 409, "no signing after abort");
    let (s, _, _) = h.call(None, "POST", "/s3/multipart", Some(json!({"filename": "a", "type": "text/plain"}))).await;
    assert_eq!(s, 401);
}
