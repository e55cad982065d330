//! Uppy's single-request path (`GET /s3/params`, its default below 100 MiB): a presigned
//! POST form straight to S3, completed by S3's ObjectCreated event on the processing
//! queue (there is no completion call), against the dev server and the real local stack.

use std::collections::BTreeMap;
use std::time::Duration;

use api_types::{companion::SingleUpload, files::FileView, uploads::UploadView};
use hoist_e2e::{jpeg, rand_like, sha256_hex, unique, Harness};
use serde_json::json;

/// `GET /s3/params` as Uppy sends it (name, type and `metadata[...]` fields).
async fn params(h: &Harness, owner: &str, name: &str, ct: &str) -> SingleUpload {
    h.call_as(
        Some(owner),
        "GET",
        &format!("/s3/params?filename={name}&type={ct}&metadata%5Bname%5D={name}&metadata%5Btype%5D={ct}"),
        None,
        200,
    )
    .await
}

/// POSTs the form as a browser does: every field, then the file last.
async fn post_form(
    h: &Harness,
    url: &str,
    fields: &BTreeMap<String, String>,
    data: Vec<u8>,
) -> (u16, String, Option<String>) {
    let mut form = reqwest::multipart::Form::new();
    for (k, v) in fields {
        form = form.text(k.clone(), v.clone());
    }
    form = form.part("file", reqwest::multipart::Part::bytes(data).file_name("upload"));
    let resp = h.http.post(url).multipart(form).send().await.expect("POST to S3");
    let status = resp.status().as_u16();
    let etag = resp.headers().get("etag").and_then(|v| v.to_str().ok()).map(str::to_owned);
    (status, resp.text().await.unwrap_or_default(), etag)
}

fn upload_id(p: &SingleUpload) -> String {
    let key = p.fields.get("key").expect("key");
    key.strip_prefix("uploads/").expect("uploads/ key").to_owned()
}

async fn upload_status(h: &Harness, owner: &str, id: &str) -> UploadView {
    h.call_as(Some(owner), "GET", &format!("/uploads/{id}"), None, 200).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_post_is_completed_by_the_s3_event_and_ends_ready() {
    let h = Harness::with_notifying_bucket(|_| {}).await;
    let owner = unique("sp");
    let photo = jpeg(640, 427);
    let p = params(&h, &owner, "holiday.jpg", "image/jpeg").await;
    assert_eq!(p.method, "POST");
    assert_eq!(p.headers, BTreeMap::new());
    let url = p.url.as_str();
    assert!(url.ends_with(&format!("/{}/", h.app.objects.bucket())), "the form goes to the bucket: {url}");
    let fields = &p.fields;
    assert_eq!(fields["Content-Type"], "image/jpeg");
    let id = upload_id(&p);
    assert_eq!(fields["x-amz-meta-hoist-upload-id"], id);
    // An unsent single POST frees its open-upload slot within hours, not days.
    let rec = h.app.repo.get(&shared::domain::UploadId::parse(&id).unwrap()).await.unwrap().unwrap();
    assert!(
        rec.expires_at <= shared::now() + shared::usecases::create::SINGLE_POST_TTL.as_secs() as i64,
        "{}",
        rec.expires_at
    );
    assert_eq!(upload_status(&h, &owner, &id).await.status, "uploading");

    let (s, body, etag) = post_form(&h, url, fields, photo.clone()).await;
    assert_eq!(s, 204, "{body}");
    assert!(etag.is_some(), "S3 answers a POST with its ETag (Uppy 5 waits for it)");

    // No call from the client: S3's event (then the job it leads to) finishes the upload.
    let handled = h.process_all().await;
    assert!(handled >= 2, "the S3 event and then the processing job: {handled}");
    let v = upload_status(&h, &owner, &id).await;
    assert_eq!(v.status, "ready", "{v:?}");
    assert_eq!(v.size, photo.len() as u64);
    let f: FileView = h.call_as(Some(&owner), "GET", &format!("/files/{id}"), None, 200).await;
    assert_eq!(f.sha256, Some(sha256_hex(&photo)));
    assert_eq!(f.width, Some(640), "a JPEG gets its thumbnail like any other: {f:?}");
    assert_eq!(h.object_bytes(&id).await, photo);

    // Events are at-least-once: the same event again changes nothing and queues nothing.
    let event = json!({"Records": [{"eventName": "ObjectCreated:Post",
        "s3": {"bucket": {"name": h.app.objects.bucket()}, "object": {"key": format!("uploads/{id}"), "size": photo.len()}}}]});
    h.sqs.send_message().queue_url(&h.queue_url).message_body(event.to_string()).send().await.unwrap();
    assert_eq!(h.process_all().await, 1, "only the repeated event itself");
    assert_eq!(upload_status(&h, &owner, &id).await.status, "ready");
    // Another owner cannot see it.
    let (s, problem, _) = h.call_problem(Some(&unique("other")), "GET", &format!("/files/{id}"), None).await;
    assert_eq!(s, 404, "{problem:?}");
    assert_eq!(problem.slug(), "not-found");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_enforces_the_signed_policy() {
    let h = Harness::with_notifying_bucket(|c| c.max_upload_size = 4096).await;
    let owner = unique("pol");
    let p = params(&h, &owner, "notes.txt", "text/plain").await;
    let url = p.url.clone();
    let fields = p.fields.clone();

    // The signature is SigV4's, checked by an independent implementation (botocore):
    // LocalStack itself does not verify POST signatures.
    let python = std::env::var("HOIST_BOTO_PYTHON").expect("HOIST_BOTO_PYTHON (source scripts/env.sh)");
    let script = r#"
import json, os, sys
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
f = json.load(sys.stdin)
region = f["x-amz-credential"].split("/")[2]
auth = SigV4Auth(Credentials(os.environ["AWS_ACCESS_KEY_ID"], os.environ["AWS_SECRET_ACCESS_KEY"]), "s3", region)
req = AWSRequest(method="POST", url="http://x/")
req.context["timestamp"] = f["x-amz-date"]
print(auth.signature(f["policy"], req))
"#;
    let mut child = std::process::Command::new(python)
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("run botocore");
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), serde_json::to_string(&fields).unwrap().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), fields["x-amz-signature"]);

    // Larger than the limit: S3 refuses it.
    let (s, body, _) = post_form(&h, &url, &fields, vec![b'a'; 4097]).await;
    assert_eq!(s, 400, "{body}");
    assert!(body.contains("EntityTooLarge"), "{body}");
    // Another key or another type than signed: refused.
    let mut other_key = fields.clone();
    other_key.insert("key".into(), "uploads/someone-elses".into());
    let (s, body, _) = post_form(&h, &url, &other_key, b"hello".to_vec()).await;
    assert_eq!(s, 403, "{body}");
    let mut other_type = fields.clone();
    other_type.insert("Content-Type".into(), "text/html".into());
    let (s, body, _) = post_form(&h, &url, &other_type, b"<script>".to_vec()).await;
    assert_eq!(s, 403, "{body}");
    let id = upload_id(&p);
    assert!(h.app.objects.head(&format!("uploads/{id}"), None).await.unwrap().is_none(), "nothing was stored");
    assert_eq!(h.process_all().await, 0, "no event for a refused POST");
    assert_eq!(upload_status(&h, &owner, &id).await.status, "uploading");

    // Within the policy: accepted, and the upload ends ready.
    let (s, body, _) = post_form(&h, &url, &fields, vec![b'a'; 4096]).await;
    assert_eq!(s, 204, "{body}");
    h.process_all().await;
    assert_eq!(upload_status(&h, &owner, &id).await.status, "ready");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_policy_is_refused() {
    let h = Harness::with_notifying_bucket(|c| c.part_url_ttl = Duration::from_secs(1)).await;
    let owner = unique("exp");
    let p = params(&h, &owner, "late.bin", "application/octet-stream").await;
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let (s, body, _) = post_form(&h, &p.url, &p.fields, b"late".to_vec()).await;
    assert_eq!(s, 403, "{body}");
    assert!(body.contains("expired"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_params_abort_and_a_late_arrival() {
    let h = Harness::with_notifying_bucket(|_| {}).await;
    let owner = unique("bad");
    for query in [
        "type=text/plain",
        "filename=&type=text/plain",
        "filename=..%2Fetc%2Fpasswd&type=text/plain",
        "filename=a.exe&type=application/x-msdownload",
        "filename=a.txt&type=not%20a%20type",
    ] {
        let (s, e) = h.call_companion_error(Some(&owner), "GET", &format!("/s3/params?{query}"), None).await;
        assert_eq!(s, 422, "{query}: {e:?}");
        assert!(!e.error.is_empty(), "Companion's {{error}} shape for {query}: {e:?}");
    }
    // No credentials: refused by the gateway before any function runs.
    h.call_refused_by_gateway(None, "GET", "/s3/params?filename=a.txt&type=text/plain", None).await;

    let p = params(&h, &owner, "tiny.txt", "text/plain").await;
    let id = upload_id(&p);
    let key = format!("uploads/{id}");
    // It has no parts: the multipart routes and an early completion say so.
    let (s, e) = h.call_companion_error(Some(&owner), "GET", &format!("/s3/multipart/{id}?key={key}"), None).await;
    assert_eq!(s, 409, "{e:?}");
    let (s, problem, _) = h.call_problem(Some(&owner), "POST", &format!("/uploads/{id}/complete"), None).await;
    assert_eq!(s, 409, "{problem:?}");
    assert_eq!(problem.slug(), "conflict");
    assert!(problem.detail.contains("completes when S3 has received the file"), "{problem:?}");
    assert_eq!(upload_status(&h, &owner, &id).await.status, "uploading", "a refused completion changes nothing");
    // Another owner cannot touch it.
    let (s, problem, _) = h.call_problem(Some(&unique("mallory")), "DELETE", &format!("/uploads/{id}"), None).await;
    assert_eq!(s, 404, "{problem:?}");
    assert_eq!(problem.slug(), "not-found");

    // Aborted, then the (still valid) form is sent anyway: S3 takes it, the event
    // handler deletes it, and the upload stays aborted.
    let v: UploadView = h.call_as(Some(&owner), "DELETE", &format!("/uploads/{id}"), None, 200).await;
    assert_eq!(v.status, "aborted");
    let (s, body, _) = post_form(&h, &p.url, &p.fields, rand_like::bytes(1000)).await;
    assert_eq!(s, 204, "{body}");
    assert_eq!(h.process_all().await, 1, "the event, and no job");
    assert!(h.app.objects.head(&key, None).await.unwrap().is_none(), "the late object was deleted");
    assert_eq!(upload_status(&h, &owner, &id).await.status, "aborted");
}

/// The event is the normal path; if it never comes, the janitor finds the object when
/// the session expires and completes it rather than expiring it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn janitor_completes_a_single_post_whose_event_was_lost() {
    // The shared bucket's events go to the shared dev queue, never to this test's: lost.
    let h = Harness::with_config(|c| c.upload_ttl = Duration::from_secs(30)).await;
    let owner = unique("lost");
    let data = rand_like::bytes(70_000);
    let p = params(&h, &owner, "orphan.bin", "application/octet-stream").await;
    let id = upload_id(&p);
    let (s, body, _) = post_form(&h, &p.url, &p.fields, data.clone()).await;
    assert_eq!(s, 204, "{body}");
    let abandoned = params(&h, &owner, "never-sent.bin", "application/octet-stream").await;
    let abandoned_id = upload_id(&abandoned);
    assert_eq!(upload_status(&h, &owner, &id).await.status, "uploading");

    let later = shared::now() + 60;
    let report = shared::usecases::janitor::sweep(&h.app, later).await.unwrap();
    assert!(report.completed >= 1 && report.expired >= 1, "{report:?}");
    assert_eq!(upload_status(&h, &owner, &abandoned_id).await.status, "expired");
    h.process_all().await;
    let v = upload_status(&h, &owner, &id).await;
    assert_eq!(v.status, "ready", "{v:?}");
    assert_eq!(h.object_bytes(&id).await, data);
}

/// Follows a download link: the bytes S3 serves behind its redirect.
async fn downloaded(h: &Harness, owner: &str, id: &str) -> Vec<u8> {
    let l: api_types::files::LinkResponse =
        h.call_as(Some(owner), "POST", &format!("/files/{id}/links"), Some(json!({})), 201).await;
    let no_redirect = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let resp = no_redirect.get(&l.url).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 302);
    let location = resp.headers()["location"].to_str().unwrap().to_owned();
    assert!(location.contains("versionId="), "the S3 URL names the scanned version: {location}");
    let got = h.http.get(&location).send().await.unwrap();
    assert_eq!(got.status().as_u16(), 200);
    got.bytes().await.unwrap().to_vec()
}

/// Issue 11.1: the POST form stays valid for minutes; sending it again (after the
/// verdict, or while the scan runs) must never get unscanned bytes served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reused_form_never_replaces_the_scanned_bytes() {
    let h = Harness::with_notifying_bucket(|_| {}).await;
    let owner = unique("reuse");
    let clean = b"a perfectly ordinary note\n".to_vec();
    let eicar = br"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*".to_vec();
    let p = params(&h, &owner, "note.txt", "text/plain").await;
    let id = upload_id(&p);
    let key = format!("uploads/{id}");
    let (s, body, _) = post_form(&h, &p.url, &p.fields, clean.clone()).await;
    assert_eq!(s, 204, "{body}");
    h.process_all().await;
    assert_eq!(upload_status(&h, &owner, &id).await.status, "ready");

    // After the verdict: the same form, the EICAR string. S3 takes it (a new version).
    let (s, body, _) = post_form(&h, &p.url, &p.fields, eicar.clone()).await;
    assert_eq!(s, 204, "{body}");
    assert_eq!(h.object_bytes(&id).await, eicar, "S3 made it the key's current version");
    // Before its event is handled, a link already serves only the scanned version.
    assert_eq!(downloaded(&h, &owner, &id).await, clean);
    // Its event deletes that version and counts the write; the verdict stands.
    assert_eq!(h.process_all().await, 1, "the event only; no new job");
    let v = upload_status(&h, &owner, &id).await;
    assert_eq!((v.status.as_str(), v.refused_writes), ("ready", Some(1)), "{v:?}");
    assert_eq!(h.object_bytes(&id).await, clean, "the later version is gone");
    assert_eq!(h.status_tag(&key).await.as_deref(), Some("ready"));
    assert_eq!(downloaded(&h, &owner, &id).await, clean);

    // While the scan runs: a second session, written over between completion and its job.
    let p = params(&h, &owner, "other.txt", "text/plain").await;
    let id = upload_id(&p);
    let (s, _, _) = post_form(&h, &p.url, &p.fields, clean.clone()).await;
    assert_eq!(s, 204);
    // The first event completes the upload and queues its job; nothing else runs yet.
    let processor = h.processor(5);
    let mut handled = 0;
    while upload_status(&h, &owner, &id).await.status == "uploading" && handled < 20 {
        handled += hoist_dev::sqs::poll_once(&processor, &h.sqs, &h.queue_url, 1).await.expect("poll").received;
    }
    assert_eq!(upload_status(&h, &owner, &id).await.status, "processing");
    let (s, _, _) = post_form(&h, &p.url, &p.fields, eicar.clone()).await;
    assert_eq!(s, 204);
    h.process_all().await;
    let v = upload_status(&h, &owner, &id).await;
    assert_eq!(
        (v.status.as_str(), v.refused_writes),
        ("ready", Some(1)),
        "the scanned version was the clean one: {v:?}"
    );
    assert_eq!(h.object_bytes(&id).await, clean);
    assert_eq!(downloaded(&h, &owner, &id).await, clean);
}
