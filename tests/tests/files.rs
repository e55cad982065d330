//! Files and downloads end to end: upload → process (real clamd) → ready → signed link
//! → 302 → bytes from LocalStack S3 (whole and by Range), tampering, expiry, soft
//! delete and restore, owner isolation, pagination, Content-Disposition.

use api_types::{
    files::{FileList, FileView, LinkRequest, LinkResponse},
    problem::Problem,
    uploads::CreateUploadRequest,
};
use hoist_e2e::{rand_like, to_json, unique, Harness};
use serde_json::{json, Value};

async fn ready_file(h: &Harness, owner: &str, name: &str, ct: &str, data: &[u8]) -> String {
    let id = h.upload_file(owner, name, ct, data, None).await;
    h.process_all().await;
    id
}

/// Follows a download link by hand: (status of our route, Location, body of the S3 GET).
async fn follow(
    h: &Harness,
    url: &str,
    range: Option<&str>,
) -> (u16, Option<String>, Vec<u8>, reqwest::header::HeaderMap) {
    let no_redirect = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let resp = no_redirect.get(url).send().await.unwrap();
    let status = resp.status().as_u16();
    let location = resp.headers().get("location").and_then(|v| v.to_str().ok()).map(str::to_owned);
    let Some(loc) = location.clone() else {
        let headers = resp.headers().clone();
        return (status, None, resp.bytes().await.unwrap().to_vec(), headers);
    };
    let mut rb = h.http.get(&loc);
    if let Some(r) = range {
        rb = rb.header("range", r);
    }
    let s3 = rb.send().await.unwrap();
    let headers = s3.headers().clone();
    (status, location, s3.bytes().await.unwrap().to_vec(), headers)
}

/// A body our download route answered with: problem+json.
fn problem_in(body: &[u8]) -> Problem {
    let v: Value =
        serde_json::from_slice(body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(body)));
    hoist_e2e::problem(&v)
}

/// `POST /files/{id}/links`, expecting 201.
async fn link(h: &Harness, owner: &str, id: &str, body: LinkRequest) -> LinkResponse {
    h.call_as(Some(owner), "POST", &format!("/files/{id}/links"), Some(to_json(&body)), 201).await
}

/// `POST /files/{id}/links` that must be refused (the body may be hand-written JSON).
async fn link_refused(h: &Harness, owner: &str, id: &str, body: Value) -> (u16, Problem) {
    let (s, p, _) = h.call_problem(Some(owner), "POST", &format!("/files/{id}/links"), Some(body)).await;
    (s, p)
}

/// A link made with the server's own key (as if it had handed it out), valid a minute.
fn own_link(id: &str) -> shared::domain::links::Link {
    shared::domain::links::Link {
        id: shared::domain::UploadId::parse(id).unwrap(),
        variant: shared::domain::links::Variant::File,
        expires: shared::now() + 60,
        disposition: shared::domain::links::Disposition::Attachment,
        generation: 0,
    }
}

fn expiring_in(secs: u64) -> LinkRequest {
    LinkRequest { expires_in: Some(secs.into()), ..LinkRequest::default() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_process_link_download_whole_and_by_range() {
    let h = Harness::start().await;
    let owner = unique("wes");
    let data = rand_like::bytes(6 * 1024 * 1024 + 17);
    let id = ready_file(&h, &owner, "report.bin", "application/octet-stream", &data).await;
    let f: FileView = h.call_as(Some(&owner), "GET", &format!("/files/{id}"), None, 200).await;
    assert_eq!(f.status, "ready");
    assert_eq!(f.size, data.len() as u64);
    assert_eq!(f.sha256, Some(hoist_e2e::sha256_hex(&data)));

    let l = link(&h, &owner, &id, LinkRequest::default()).await;
    let url = l.url.as_str();
    assert!(url.starts_with(&h.base), "{url}");
    let (status, location, body, headers) = follow(&h, url, None).await;
    assert_eq!(status, 302);
    assert!(location.unwrap().contains("X-Amz-Expires=60"), "the S3 URL lives seconds");
    assert_eq!(body, data, "downloaded bytes equal the source");
    assert_eq!(headers["content-type"], "application/octet-stream");
    assert!(headers["content-disposition"].to_str().unwrap().starts_with("attachment; filename=\"report.bin\""));

    let (_, _, part, headers) = follow(&h, url, Some("bytes=1000-1999")).await;
    assert_eq!(part, &data[1000..2000], "Range requests work end to end");
    assert!(headers["content-range"].to_str().unwrap().starts_with("bytes 1000-1999/"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampered_truncated_or_expired_links_are_403() {
    let h = Harness::start().await;
    let owner = unique("xena");
    let id = ready_file(&h, &owner, "a.txt", "text/plain", b"some text").await;
    let url = link(&h, &owner, &id, expiring_in(600)).await.url;
    assert_eq!(follow(&h, &url, None).await.0, 302);
    let (base, query) = url.split_once('?').unwrap();
    let pairs: Vec<(String, String)> = query
        .split('&')
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap();
            (k.to_owned(), v.to_owned())
        })
        .collect();
    for i in 0..pairs.len() {
        let mut p = pairs.clone();
        p[i].1 = match p[i].0.as_str() {
            "v" => "thumb".into(),
            "e" => (p[i].1.parse::<i64>().unwrap() + 3600).to_string(),
            "d" => "i".into(),
            "k" => "other".into(),
            _ => format!("{}x", &p[i].1[..p[i].1.len() - 1]),
        };
        let q: Vec<String> = p.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let (s, _, body, _) = follow(&h, &format!("{base}?{}", q.join("&")), None).await;
        assert_eq!(s, 403, "tampered {}: {}", p[i].0, String::from_utf8_lossy(&body));
        assert_eq!(problem_in(&body).slug(), "forbidden");
    }
    // Another file's id with this signature.
    let other = ready_file(&h, &owner, "b.txt", "text/plain", b"other").await;
    let (s, _, body, _) = follow(&h, &url.replace(&id, &other), None).await;
    assert_eq!(s, 403);
    assert_eq!(problem_in(&body).status, 403);
    // Truncated: the signature cut short, or a field missing.
    assert_eq!(follow(&h, &url[..url.len() - 5], None).await.0, 403);
    assert_eq!(follow(&h, &url[..url.find("&s=").unwrap()], None).await.0, 403);
    // Expired.
    let short = link(&h, &owner, &id, expiring_in(1)).await;
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    let (s, _, body, headers) = follow(&h, &short.url, None).await;
    assert_eq!(s, 403);
    assert_eq!(headers["content-type"], api_types::problem::PROBLEM_JSON);
    let expired = problem_in(&body);
    assert_eq!(expired.status, 403);
    assert!(expired.detail.contains("expired"), "{expired:?}");
    // Bounds on expires_in and disposition (an unknown member is sent as written).
    for (bad, field) in [
        (to_json(&expiring_in(0)), Some("expires_in")),
        (to_json(&expiring_in(999_999_999)), Some("expires_in")),
        (to_json(&LinkRequest { disposition: Some("evil".into()), ..LinkRequest::default() }), Some("disposition")),
        (json!({"x": 1}), None),
    ] {
        let (s, p) = link_refused(&h, &owner, &id, bad.clone()).await;
        assert_eq!(s, 422, "{bad} -> {p:?}");
        assert_eq!((p.slug(), p.field.as_deref()), ("invalid-input", field), "{bad} -> {p:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleted_is_410_restore_needs_new_links_and_listing_hides_it() {
    let h = Harness::start().await;
    let owner = unique("yan");
    let id = ready_file(&h, &owner, "keep.txt", "text/plain", b"precious").await;
    let url = link(&h, &owner, &id, LinkRequest::default()).await.url;
    let v: FileView = h.call_as(Some(&owner), "DELETE", &format!("/files/{id}"), None, 200).await;
    assert!(v.deleted_at.is_some() && v.restorable_until.is_some(), "{v:?}");
    let (s, _, body, _) = follow(&h, &url, None).await;
    assert_eq!(s, 410, "links stop working at once");
    assert_eq!(problem_in(&body).slug(), "gone");
    let (s, p) = link_refused(&h, &owner, &id, to_json(&LinkRequest::default())).await;
    assert_eq!(s, 410, "{p:?}");
    assert_eq!(p.slug(), "gone");
    let list: FileList = h.call_as(Some(&owner), "GET", "/files", None, 200).await;
    assert!(list.files.iter().all(|f| f.id != id), "hidden from listings");
    let list: FileList = h.call_as(Some(&owner), "GET", "/files?include_deleted=true", None, 200).await;
    assert!(list.files.iter().any(|f| f.id == id));
    let v: FileView = h.call_as(Some(&owner), "POST", &format!("/files/{id}/restore"), None, 200).await;
    assert!(v.deleted_at.is_none(), "{v:?}");
    // Issue 11.7: a link made before the delete stays dead; a new one works.
    let (s, _, body, _) = follow(&h, &url, None).await;
    assert_eq!(s, 410, "a link from before the delete was revoked");
    assert!(problem_in(&body).detail.contains("revoked"), "{}", String::from_utf8_lossy(&body));
    let fresh = link(&h, &owner, &id, LinkRequest::default()).await.url;
    let (s, _, body, _) = follow(&h, &fresh, None).await;
    assert_eq!((s, body.as_slice()), (302, &b"precious"[..]), "a new link works");
    // It carries the generation the delete moved to.
    let g = fresh.split("&g=").nth(1).unwrap().split('&').next().unwrap();
    assert_eq!(g, "1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_over_means_purged_by_the_janitor() {
    let h = Harness::with_config(|c| c.delete_retention = std::time::Duration::from_secs(1)).await;
    let owner = unique("zoe");
    let id = ready_file(&h, &owner, "gone.jpg", "text/plain", b"bye").await;
    let v: FileView = h.call_as(Some(&owner), "DELETE", &format!("/files/{id}"), None, 200).await;
    assert!(v.deleted_at.is_some(), "{v:?}");
    let report = shared::usecases::janitor::sweep(&h.app, shared::now() + 5).await.unwrap();
    assert!(report.purged >= 1, "{report:?}");
    assert!(h.app.objects.head(&format!("uploads/{id}"), None).await.unwrap().is_none(), "object purged");
    let (s, p, _) = h.call_problem(Some(&owner), "POST", &format!("/files/{id}/restore"), None).await;
    assert_eq!(s, 404, "nothing left to restore: {p:?}");
    assert_eq!(p.slug(), "not-found");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsafe_files_are_never_redirected() {
    let h = Harness::start().await;
    let owner = unique("abe");
    let eicar = ["X5O!P%@AP[4\\PZX54(P^)7CC)7}$", "EICAR-STANDARD-ANTIVIRUS", "-TEST-FILE!$H+H*"].concat().into_bytes();
    let bad = ready_file(&h, &owner, "eicar.txt", "text/plain", &eicar).await;
    let (s, p) = link_refused(&h, &owner, &bad, to_json(&LinkRequest::default())).await;
    assert_eq!(s, 403, "no links for quarantined files: {p:?}");
    assert_eq!(p.slug(), "forbidden");
    assert!(p.detail.contains("quarantined"), "{p:?}");
    // A link forged with the server's own key still does not redirect.
    let keys = h.app.config.link_keys.clone().unwrap();
    let forged = keys.sign(&own_link(&bad));
    let (s, loc, body, _) = follow(&h, &format!("{}{forged}", h.base), None).await;
    assert_eq!((s, loc), (403, None), "{}", String::from_utf8_lossy(&body));
    assert_eq!(problem_in(&body).slug(), "forbidden");
    // Not yet processed: a clear 409 with Retry-After, no redirect.
    let pending = h.upload_file(&owner, "later.txt", "text/plain", b"wait for it", None).await;
    let forged = keys.sign(&own_link(&pending));
    let (s, loc, body, headers) = follow(&h, &format!("{}{forged}", h.base), None).await;
    assert_eq!((s, loc), (409, None));
    assert!(headers.get("retry-after").is_some());
    assert_eq!(problem_in(&body).slug(), "conflict");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_owner_gets_404_everywhere() {
    let h = Harness::start().await;
    let owner = unique("ben");
    let thief = unique("cat");
    let id = ready_file(&h, &owner, "mine.txt", "text/plain", b"private").await;
    for (m, p, b) in [
        ("GET", format!("/files/{id}"), None),
        ("DELETE", format!("/files/{id}"), None),
        ("POST", format!("/files/{id}/restore"), None),
        ("POST", format!("/files/{id}/links"), Some(to_json(&LinkRequest::default()))),
    ] {
        let (s, problem, _) = h.call_problem(Some(&thief), m, &p, b).await;
        assert_eq!(s, 404, "{m} {p}: {problem:?}");
        assert_eq!(problem.slug(), "not-found");
        assert_eq!(problem.detail, "No file with this id exists.");
    }
    let list: FileList = h.call_as(Some(&thief), "GET", "/files?include_deleted=true", None, 200).await;
    assert_eq!(list.files, Vec::<FileView>::new());
    let v: FileView = h.call_as(Some(&owner), "GET", &format!("/files/{id}"), None, 200).await;
    assert_eq!((v.status.as_str(), v.deleted_at.is_none()), ("ready", true), "untouched");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pagination_returns_every_file_exactly_once() {
    let h = Harness::start().await;
    let owner = unique("dot");
    let mut ids = Vec::new();
    for i in 0..7 {
        ids.push(h.upload_file(&owner, &format!("f{i}.txt"), "text/plain", format!("file {i}").as_bytes(), None).await);
    }
    h.process_all().await;
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let path = match &cursor {
            Some(c) => format!("/files?limit=3&cursor={c}"),
            None => "/files?limit=3".into(),
        };
        let page: FileList = h.call_as(Some(&owner), "GET", &path, None, 200).await;
        assert!(page.files.len() <= 3, "{page:?}");
        seen.extend(page.files.into_iter().map(|f| f.id));
        pages += 1;
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
        assert!(pages < 10);
    }
    let mut expected = ids.clone();
    expected.reverse();
    assert_eq!(seen, expected, "newest first, each exactly once");
    // Status filter and bad parameters.
    let ready: FileList = h.call_as(Some(&owner), "GET", "/files?status=ready&limit=100", None, 200).await;
    assert_eq!(ready.files.len(), 7);
    assert!(ready.files.iter().all(|f| f.status == "ready"), "{ready:?}");
    for (bad, field) in [
        ("/files?limit=0", "limit"),
        ("/files?limit=1000", "limit"),
        ("/files?status=bogus", "status"),
        ("/files?status=uploading", "status"),
        ("/files?cursor=%%%", "cursor"),
        ("/files?cursor=eyJrIjoxfQ", "cursor"),
    ] {
        let (s, p, _) = h.call_problem(Some(&owner), "GET", bad, None).await;
        assert_eq!(s, 422, "{bad}: {p:?}");
        assert_eq!(p.field.as_deref(), Some(field), "{bad}: {p:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn awkward_filenames_get_a_safe_content_disposition() {
    let h = Harness::start().await;
    let owner = unique("eve");
    let name = "..Résumé \"final\" ; filename=evil.exe 日本.txt";
    let id = ready_file(&h, &owner, name, "text/plain", b"cv").await;
    let l = link(&h, &owner, &id, LinkRequest { disposition: Some("inline".into()), ..LinkRequest::default() }).await;
    let (s, _, body, headers) = follow(&h, &l.url, None).await;
    assert_eq!((s, body.as_slice()), (302, &b"cv"[..]));
    let cd = headers["content-disposition"].to_str().unwrap();
    assert!(cd.starts_with("inline; filename=\""), "{cd}");
    let fallback = cd.split('"').nth(1).unwrap();
    assert!(fallback.is_ascii() && !fallback.starts_with('.') && !fallback.contains(';'), "{cd}");
    assert_eq!(cd.matches("filename=").count(), 1, "no injected parameters: {cd}");
    assert!(
        cd.contains(
            "filename*=UTF-8''R%C3%A9sum%C3%A9%20%22final%22%20%3B%20filename%3Devil.exe%20%E6%97%A5%E6%9C%AC.txt"
        ),
        "{cd}"
    );
    // Newlines never get that far: they are refused at upload.
    let body = CreateUploadRequest {
        filename: "a\r\nb.txt".into(),
        size: 1.into(),
        content_type: "text/plain".into(),
        sha256: None,
        part_checksums: None,
        part_size: None,
    };
    let (s, p, _) = h.call_problem(Some(&owner), "POST", "/uploads", Some(to_json(&body))).await;
    assert_eq!(s, 422, "{p:?}");
    assert_eq!(p.field.as_deref(), Some("filename"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thumbnail_links_follow_the_same_rules() {
    let h = Harness::start().await;
    let owner = unique("fay");
    let img = image::RgbImage::from_fn(640, 480, |x, y| image::Rgb([(x % 256) as u8, (y % 256) as u8, 99]));
    let mut jpeg = std::io::Cursor::new(Vec::new());
    img.write_to(&mut jpeg, image::ImageFormat::Jpeg).unwrap();
    let id = ready_file(&h, &owner, "pic.jpg", "image/jpeg", &jpeg.into_inner()).await;
    let f: FileView = h.call_as(Some(&owner), "GET", &format!("/files/{id}"), None, 200).await;
    let thumb_url = f.thumbnail_url.expect("thumbnail link");
    let (s, _, body, headers) = follow(&h, &thumb_url, None).await;
    assert_eq!(s, 302);
    assert_eq!(headers["content-type"], "image/jpeg");
    assert_eq!(image::load_from_memory(&body).unwrap().width(), 256);
    let _: FileView = h.call_as(Some(&owner), "DELETE", &format!("/files/{id}"), None, 200).await;
    assert_eq!(follow(&h, &thumb_url, None).await.0, 410);
}

/// Issue 11.7: a link's host comes from configuration or API Gateway, never from a
/// header the client sends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn links_ignore_forwarded_host() {
    let h = Harness::start().await;
    let owner = unique("fwd");
    let id = ready_file(&h, &owner, "a.txt", "text/plain", b"hello").await;
    let resp = h
        .http
        .post(format!("{}/files/{id}/links", h.base))
        .bearer_auth(h.token(&owner))
        .header("x-forwarded-host", "evil.example")
        .header("x-forwarded-proto", "https")
        .json(&serde_json::json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 201);
    let l: LinkResponse = resp.json().await.unwrap();
    assert!(l.url.starts_with(&format!("{}/d/", h.base)), "{}", l.url);
    let listed: FileList = h.call_as(Some(&owner), "GET", "/files", None, 200).await;
    assert!(listed.files.iter().all(|f| f.thumbnail_url.as_deref().is_none_or(|u| u.starts_with(&h.base))));
}

/// Issue 11.7: the maximum lifetime is checked when a link is used, not only when it
/// is made (a link minted with the server's key, expiring too far ahead, is refused).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_beyond_the_maximum_lifetime_is_refused() {
    let h = Harness::start().await;
    let owner = unique("cap");
    let id = ready_file(&h, &owner, "a.txt", "text/plain", b"hello").await;
    let keys = h.app.config.link_keys.clone().unwrap();
    let max = h.app.config.link_max_ttl.as_secs() as i64;
    let within = keys.sign(&shared::domain::links::Link { expires: shared::now() + max, ..own_link(&id) });
    let (s, _, body, _) = follow(&h, &format!("{}{within}", h.base), None).await;
    assert_eq!((s, body.as_slice()), (302, &b"hello"[..]));
    let beyond = keys.sign(&shared::domain::links::Link { expires: shared::now() + max + 3600, ..own_link(&id) });
    let (s, loc, body, _) = follow(&h, &format!("{}{beyond}", h.base), None).await;
    assert_eq!((s, loc), (403, None), "{}", String::from_utf8_lossy(&body));
}
