//! Issue 11.2 and 11.3 against the dev server (the authorizer's own code, over HTTP):
//! the reproduced cross-site request with the victim's session cookie, the rules that
//! close it, and tokens without the claims every token must carry.

use hoist_e2e::{unique, Harness};
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::json;

const COOKIE: &str = shared::http::authn::SESSION_COOKIE;

/// Signs in through the dev login as a browser would; answers the `Cookie` header value.
async fn session_cookie(h: &Harness, owner: &str) -> String {
    let no_redirect = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let resp = no_redirect.get(format!("{}/dev/login?owner={owner}", h.base)).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 303);
    let set = resp.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(set.starts_with(&format!("{COOKIE}=")), "{set}");
    for attr in ["Path=/", "Secure", "HttpOnly", "SameSite=Strict"] {
        assert!(set.split("; ").any(|a| a == attr), "{attr} missing: {set}");
    }
    assert!(!set.contains("Domain="), "a __Host- cookie has no Domain: {set}");
    set.split(';').next().unwrap().to_owned()
}

/// A POST as a browser would send it: the cookie, and the given extra headers.
async fn post(h: &Harness, path: &str, cookie: &str, headers: &[(&str, &str)], body: Option<&str>) -> (u16, String) {
    let mut rb = h.http.post(format!("{}{path}", h.base)).header("cookie", cookie);
    for (k, v) in headers {
        rb = rb.header(*k, *v);
    }
    if let Some(b) = body {
        rb = rb.body(b.to_owned());
    }
    let resp = rb.send().await.unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

async fn open_uploads(h: &Harness, owner: &str) -> u64 {
    let id = shared::domain::Owner::parse(owner).unwrap();
    h.app.repo.quota(&id).await.unwrap().open_uploads
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cross_site_request_with_the_session_cookie_creates_nothing() {
    let h = Harness::start().await;
    let owner = unique("victim");
    let cookie = session_cookie(&h, &owner).await;
    let body = r#"{"filename":"x.bin","type":"application/octet-stream"}"#;
    let create = r#"{"filename":"x.bin","size":1,"content_type":"application/octet-stream"}"#;

    // The repro: another site's page POSTs with the victim's cookie and no Content-Type.
    let evil = [("origin", "https://evil.example"), ("sec-fetch-site", "cross-site")];
    for (path, b) in [("/s3/multipart", body), ("/uploads", create)] {
        let (s, text) = post(&h, path, &cookie, &evil, Some(b)).await;
        assert_eq!(s, 403, "{path}: {text}");
    }
    // No Origin and no Sec-Fetch-Site (an old or odd client): not trusted with a cookie.
    let (s, _) = post(&h, "/s3/multipart", &cookie, &[], Some(body)).await;
    assert_eq!(s, 403);
    // The cookie twice (one planted by a sibling site): refused even from our own page.
    let twice = format!("{cookie}; {cookie}");
    let ours = [("sec-fetch-site", "same-origin"), ("content-type", "application/json")];
    let (s, _) = post(&h, "/s3/multipart", &twice, &ours, Some(body)).await;
    assert_eq!(s, 403);
    // Routes a browser never needs take bearer tokens only, even from our own page.
    let (s, _) = post(&h, "/uploads", &cookie, &ours, Some(create)).await;
    assert_eq!(s, 403);
    // Our own page without a JSON Content-Type: 415, nothing created.
    let (s, text) = post(&h, "/s3/multipart", &cookie, &[("sec-fetch-site", "same-origin")], Some(body)).await;
    assert_eq!(s, 415, "{text}");
    assert_eq!(open_uploads(&h, &owner).await, 0, "nothing was created");

    // The page itself (same origin, JSON) works; so does a page on the API's own origin
    // that says so only by its Origin header.
    let (s, text) = post(&h, "/s3/multipart", &cookie, &ours, Some(body)).await;
    assert_eq!(s, 200, "{text}");
    let own = [("origin", h.base.as_str()), ("content-type", "application/json")];
    let (s, text) = post(&h, "/s3/multipart", &cookie, &own, Some(body)).await;
    assert_eq!(s, 200, "{text}");
    assert_eq!(open_uploads(&h, &owner).await, 2);
}

fn token(h: &Harness, claims: serde_json::Value) -> String {
    encode(&Header::new(Algorithm::HS256), &claims, &EncodingKey::from_secret(h.secret.as_bytes())).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_without_the_required_claims_or_before_nbf_are_refused() {
    let h = Harness::start().await;
    let now = shared::now();
    let owner = unique("claims");
    let full = json!({"sub": owner, "iss": "hoist-dev", "aud": "hoist", "exp": now + 60});
    let status_with = |t: String| {
        let url = format!("{}/files", h.base);
        let http = h.http.clone();
        async move { http.get(url).bearer_auth(t).send().await.unwrap().status().as_u16() }
    };
    assert_eq!(status_with(token(&h, full.clone())).await, 200);
    assert_eq!(status_with(token(&h, json!({"sub": owner, "exp": now + 60}))).await, 403, "only sub and exp");
    for missing in ["iss", "aud"] {
        let mut c = full.clone();
        c.as_object_mut().unwrap().remove(missing);
        assert_eq!(status_with(token(&h, c)).await, 403, "without {missing}");
    }
    let mut early = full;
    early["nbf"] = (now + 3600).into();
    assert_eq!(status_with(token(&h, early)).await, 403, "nbf in the future");
}
