//! Who is calling, decided once for every route: a bearer token from the
//! `Authorization` header, or the same token from the `__Host-hoist_session` cookie
//! (Uppy 6's Companion mode sends cookies, not headers), which counts only under the
//! [`BrowserPolicy`] (CSRF). Used by the Lambda request authorizer in AWS and by the
//! dev server locally, so both run the same code.

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use jsonwebtoken::{
    decode, decode_header,
    jwk::{Jwk, JwkSet},
    Algorithm, DecodingKey, Validation,
};
use serde::Deserialize;

use crate::{
    config::{var, ConfigError},
    domain::Owner,
};

/// The session cookie's name. `__Host-`: browsers take it only with `Secure`, `Path=/`
/// and no `Domain`, so no sibling subdomain can plant or overwrite it.
pub const SESSION_COOKIE: &str = "__Host-hoist_session";

/// Least time between two fetches of the provider's keys.
pub const JWKS_REFRESH_EVERY: Duration = Duration::from_secs(60);

/// The identity provider's public signing keys: a fixed JWKS document, or its JWKS URL,
/// fetched at the first token and again whenever a token names a key id we do not hold
/// (the provider rotated its keys): rotation needs no redeploy. Refetches happen at
/// most once per `refresh_every`, so made-up key ids cannot turn into a flood of fetches.
pub struct KeyRing {
    keys: RwLock<Arc<JwkSet>>,
    source: Option<KeySource>,
}

struct KeySource {
    url: String,
    http: reqwest::Client,
    refresh_every: Duration,
    last_fetch: tokio::sync::Mutex<Option<Instant>>,
}

impl KeyRing {
    pub fn fixed(keys: JwkSet) -> Self {
        Self { keys: RwLock::new(Arc::new(keys)), source: None }
    }

    /// Keys from `url` (https; plain http only to a loopback address, for tests).
    pub fn from_url(url: &str, refresh_every: Duration) -> Result<Self, ConfigError> {
        let bad = |detail: &str| ConfigError { name: "HOIST_AUTH_JWKS_URL", detail: detail.into() };
        let loopback = ["http://127.0.0.1:", "http://localhost:", "http://[::1]:"];
        if !url.starts_with("https://") && !loopback.iter().any(|p| url.starts_with(p)) {
            return Err(bad("must be an https:// URL"));
        }
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(3))
            .build()
            .map_err(|e| bad(&format!("HTTP client: {e}")))?;
        Ok(Self {
            keys: RwLock::new(Arc::new(JwkSet { keys: Vec::new() })),
            source: Some(KeySource {
                url: url.to_owned(),
                http,
                refresh_every,
                last_fetch: tokio::sync::Mutex::new(None),
            }),
        })
    }

    fn current(&self) -> Arc<JwkSet> {
        self.keys.read().map(|k| k.clone()).unwrap_or_else(|poisoned| poisoned.into_inner().clone())
    }

    fn find(&self, kid: &str) -> Option<Jwk> {
        self.current().find(kid).cloned()
    }

    fn len(&self) -> usize {
        self.current().keys.len()
    }

    /// The key `kid`, fetching the provider's keys once if it is not known yet.
    async fn key(&self, kid: &str) -> Option<Jwk> {
        if let Some(k) = self.find(kid) {
            return Some(k);
        }
        self.refresh().await;
        self.find(kid)
    }

    /// Fetches the keys unless they were fetched within `refresh_every`; a failed fetch
    /// keeps the keys we have.
    async fn refresh(&self) {
        let Some(src) = &self.source else { return };
        let mut last = src.last_fetch.lock().await;
        if last.is_some_and(|t| t.elapsed() < src.refresh_every) {
            return;
        }
        *last = Some(Instant::now());
        let fetched = async {
            let resp = src.http.get(&src.url).send().await?.error_for_status()?;
            resp.json::<JwkSet>().await
        }
        .await;
        match fetched {
            Ok(keys) => {
                tracing::info!(url = %src.url, keys = keys.keys.len(), "identity provider keys fetched");
                match self.keys.write() {
                    Ok(mut k) => *k = Arc::new(keys),
                    Err(poisoned) => *poisoned.into_inner() = Arc::new(keys),
                }
            }
            Err(e) => tracing::error!(url = %src.url, error = %e, "could not fetch the identity provider's keys"),
        }
    }
}

/// How tokens are checked.
pub enum Verifier {
    /// Tokens signed by the identity provider, checked against its published keys.
    Jwks { keys: KeyRing, issuer: String, audience: Vec<String> },
    /// Dev only: tokens signed with a shared secret by `hoist-dev token`.
    Hs256 { secret: Vec<u8>, issuer: String, audience: Vec<String> },
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Verifier::Jwks { keys, issuer, .. } => write!(f, "Jwks({} keys, {issuer})", keys.len()),
            Verifier::Hs256 { issuer, .. } => write!(f, "Hs256(<redacted>, {issuer})"),
        }
    }
}

#[derive(Deserialize)]
struct Claims {
    sub: String,
}

impl Verifier {
    /// `HOIST_AUTH_JWKS_URL` (the provider's JWKS URL, preferred) or `HOIST_AUTH_JWKS`
    /// (its JWKS document), with `HOIST_AUTH_ISSUER` and `HOIST_AUTH_AUDIENCE`
    /// (comma-separated); or, for local development only, `HOIST_DEV_JWT_SECRET`
    /// (issuer `hoist-dev`, audience `hoist`).
    pub fn from_env() -> Result<Self, ConfigError> {
        let keys =
            match (var("HOIST_AUTH_JWKS_URL"), var("HOIST_AUTH_JWKS")) {
                (Some(url), _) => Some(KeyRing::from_url(&url, JWKS_REFRESH_EVERY)?),
                (None, Some(jwks)) => Some(KeyRing::fixed(serde_json::from_str(&jwks).map_err(|e| ConfigError {
                    name: "HOIST_AUTH_JWKS",
                    detail: format!("not a JWKS document: {e}"),
                })?)),
                (None, None) => None,
            };
        if let Some(keys) = keys {
            let issuer = var("HOIST_AUTH_ISSUER").ok_or(ConfigError {
                name: "HOIST_AUTH_ISSUER",
                detail: "is required with the provider's keys".into(),
            })?;
            let audience: Vec<String> = var("HOIST_AUTH_AUDIENCE")
                .ok_or(ConfigError {
                    name: "HOIST_AUTH_AUDIENCE",
                    detail: "is required with the provider's keys".into(),
                })?
                .split(',')
                .map(|a| a.trim().to_owned())
                .filter(|a| !a.is_empty())
                .collect();
            return Ok(Verifier::Jwks { keys, issuer, audience });
        }
        if let Some(secret) = var("HOIST_DEV_JWT_SECRET") {
            return Ok(Verifier::dev(&secret));
        }
        Err(ConfigError {
            name: "HOIST_AUTH_JWKS",
            detail: "or HOIST_AUTH_JWKS_URL is required (or HOIST_DEV_JWT_SECRET for local development)".into(),
        })
    }

    pub fn dev(secret: &str) -> Self {
        Verifier::Hs256 {
            secret: secret.as_bytes().to_vec(),
            issuer: "hoist-dev".into(),
            audience: vec!["hoist".into()],
        }
    }

    /// The owner a valid token names; None for anything else (expired, forged, malformed).
    pub async fn owner_of(&self, token: &str) -> Option<Owner> {
        let (key, alg, issuer, audience) = match self {
            Verifier::Hs256 { secret, issuer, audience } => {
                (DecodingKey::from_secret(secret), Algorithm::HS256, issuer, audience)
            }
            Verifier::Jwks { keys, issuer, audience } => {
                let header = decode_header(token).ok()?;
                // Never let the token pick a symmetric algorithm against a public key.
                if matches!(header.alg, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512) {
                    return None;
                }
                let jwk = keys.key(header.kid.as_deref()?).await?;
                (DecodingKey::from_jwk(&jwk).ok()?, header.alg, issuer, audience)
            }
        };
        let mut v = Validation::new(alg);
        // All four must be present (an absent `iss` or `aud` is not "any"), and a token
        // is not valid before its `nbf`.
        v.set_required_spec_claims(&["iss", "aud", "sub", "exp"]);
        v.set_issuer(&[issuer]);
        v.set_audience(audience);
        v.validate_nbf = true;
        v.leeway = 5;
        let claims = decode::<Claims>(token, &key, &v).ok()?.claims;
        Owner::parse(&claims.sub).ok()
    }
}

/// What a request presents as its credential.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Credential<'a> {
    /// `Authorization: Bearer <t>`: only code that holds the token can send it.
    Bearer(&'a str),
    /// The session cookie: a browser attaches it on its own, so it counts only where
    /// [`BrowserPolicy`] says the request came from our own pages.
    Cookie(&'a str),
}

/// The token a request carries: `Authorization: Bearer <t>` first, else the session cookie.
/// `cookies` are `name=value` pairs (API Gateway's `cookies` array, or a split Cookie header).
/// A request carrying the session cookie twice (a planted second one) carries none.
pub fn credential_from<'a>(
    authorization: Option<&'a str>,
    cookies: impl IntoIterator<Item = &'a str>,
) -> Result<Credential<'a>, Refusal> {
    if let Some(v) = authorization {
        let (scheme, token) = v.trim().split_once(' ').ok_or(Refusal::NoCredential)?;
        return scheme
            .eq_ignore_ascii_case("bearer")
            .then_some(token.trim())
            .filter(|t| !t.is_empty())
            .map(Credential::Bearer)
            .ok_or(Refusal::NoCredential);
    }
    let mut found = cookies.into_iter().filter_map(|c| c.trim().strip_prefix(SESSION_COOKIE)?.strip_prefix('='));
    let first = found.next().ok_or(Refusal::NoCredential)?;
    if found.next().is_some() {
        return Err(Refusal::DuplicateCookie);
    }
    Some(first).filter(|t| !t.is_empty()).map(Credential::Cookie).ok_or(Refusal::NoCredential)
}

/// Why a request is not authenticated (logged; clients only see 401 or 403).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("no bearer token or session cookie")]
    NoCredential,
    #[error("the session cookie was sent more than once")]
    DuplicateCookie,
    #[error("this route does not accept the session cookie (send a bearer token)")]
    CookieNotAccepted,
    #[error("a cookie-authenticated request from a foreign or unknown origin")]
    ForeignOrigin,
    #[error("the token is invalid, expired or not yet valid")]
    BadToken,
}

impl Refusal {
    /// 401 when no usable credential came, 403 when one came in a way we refuse.
    pub fn status(self) -> u16 {
        match self {
            Refusal::NoCredential | Refusal::BadToken => 401,
            Refusal::DuplicateCookie | Refusal::CookieNotAccepted | Refusal::ForeignOrigin => 403,
        }
    }
}

/// What the authorizer sees of a request.
#[derive(Debug, Clone, Default)]
pub struct Caller<'a> {
    /// The route's path as the template declares it (`/s3/multipart`, `/files/{id}`).
    pub path: &'a str,
    pub authorization: Option<&'a str>,
    pub cookies: Vec<&'a str>,
    pub origin: Option<&'a str>,
    pub sec_fetch_site: Option<&'a str>,
    /// The Host the request was sent to (the API's own origin).
    pub host: Option<&'a str>,
}

/// CSRF defence for cookie sessions. A browser attaches the cookie to any request to
/// us, from any page; so a cookie counts only (1) on the routes our web page needs
/// (Uppy's Companion routes and the file list), and (2) when the browser says the
/// request comes from our own origin (`Sec-Fetch-Site: same-origin`) or from an origin
/// on the configured list (or the API's own), per its `Origin` header. Bearer tokens are
/// not sent by browsers on their own and need neither.
#[derive(Debug, Clone, Default)]
pub struct BrowserPolicy {
    /// Origins whose pages may use the session (`https://app.example.com`), besides
    /// the API's own.
    pub allowed_origins: Vec<String>,
}

impl BrowserPolicy {
    /// `HOIST_ALLOWED_ORIGINS`: comma-separated origins (`*` entries are ignored).
    pub fn from_env() -> Self {
        let allowed_origins = var("HOIST_ALLOWED_ORIGINS")
            .unwrap_or_default()
            .split(',')
            .map(|o| o.trim().trim_end_matches('/').to_owned())
            .filter(|o| !o.is_empty() && !o.contains('*'))
            .collect();
        Self { allowed_origins }
    }

    /// Routes a browser session may use: the Companion routes Uppy calls and the
    /// files the page lists and links. Upload sessions of the CLI (`/uploads…`) are
    /// bearer-only.
    pub fn cookie_route(path: &str) -> bool {
        path.starts_with("/s3/") || path == "/files" || path.starts_with("/files/")
    }

    /// Whether a cookie-authenticated request comes from a page allowed to use it.
    pub fn trusted_origin(&self, caller: &Caller<'_>) -> bool {
        if caller.sec_fetch_site.is_some_and(|s| s.eq_ignore_ascii_case("same-origin")) {
            return true;
        }
        let Some(origin) = caller.origin.map(|o| o.trim_end_matches('/')) else { return false };
        if self.allowed_origins.iter().any(|a| a.eq_ignore_ascii_case(origin)) {
            return true;
        }
        // The API's own origin: https, or plain http only on this machine.
        let Some(host) = caller.host else { return false };
        origin.eq_ignore_ascii_case(&format!("https://{host}"))
            || (super::request::is_loopback_host(host) && origin.eq_ignore_ascii_case(&format!("http://{host}")))
    }

    /// The owner a request is authenticated as, or why not.
    pub async fn authenticate(&self, verifier: &Verifier, caller: &Caller<'_>) -> Result<Owner, Refusal> {
        let token = match credential_from(caller.authorization, caller.cookies.iter().copied())? {
            Credential::Bearer(t) => t,
            Credential::Cookie(t) => {
                if !Self::cookie_route(caller.path) {
                    return Err(Refusal::CookieNotAccepted);
                }
                if !self.trusted_origin(caller) {
                    return Err(Refusal::ForeignOrigin);
                }
                t
            }
        };
        verifier.owner_of(token).await.ok_or(Refusal::BadToken)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{encode, EncodingKey, Header};

    fn dev_token(secret: &str, sub: &str, exp_in: i64) -> String {
        let now = crate::now();
        let claims =
            serde_json::json!({"sub": sub, "iss": "hoist-dev", "aud": "hoist", "iat": now, "exp": now + exp_in});
        encode(&Header::new(Algorithm::HS256), &claims, &EncodingKey::from_secret(secret.as_bytes())).unwrap()
    }

    fn signed(secret: &str, claims: serde_json::Value) -> String {
        encode(&Header::new(Algorithm::HS256), &claims, &EncodingKey::from_secret(secret.as_bytes())).unwrap()
    }

    /// Issue 11.2: `iss`, `aud`, `sub` and `exp` are required, and `nbf` is honoured.
    #[tokio::test]
    async fn tokens_must_carry_every_required_claim_and_not_be_early() {
        let v = Verifier::dev("s3cret");
        let now = crate::now();
        let full = serde_json::json!({"sub": "alice", "iss": "hoist-dev", "aud": "hoist", "exp": now + 60});
        assert!(v.owner_of(&signed("s3cret", full.clone())).await.is_some(), "the baseline is accepted");
        for missing in ["iss", "aud", "sub", "exp"] {
            let mut c = full.clone();
            c.as_object_mut().unwrap().remove(missing);
            assert!(v.owner_of(&signed("s3cret", c)).await.is_none(), "accepted without {missing}");
        }
        let only_sub_exp = serde_json::json!({"sub": "alice", "exp": now + 60});
        assert!(v.owner_of(&signed("s3cret", only_sub_exp)).await.is_none());
        for (field, value) in [("iss", "someone-else"), ("aud", "another-api")] {
            let mut c = full.clone();
            c[field] = value.into();
            assert!(v.owner_of(&signed("s3cret", c)).await.is_none(), "accepted a wrong {field}");
        }
        let mut early = full.clone();
        early["nbf"] = (now + 600).into();
        assert!(v.owner_of(&signed("s3cret", early)).await.is_none(), "accepted before nbf");
        let mut started = full;
        started["nbf"] = (now - 60).into();
        assert!(v.owner_of(&signed("s3cret", started)).await.is_some(), "refused after nbf");
    }

    #[tokio::test]
    async fn dev_tokens() {
        let v = Verifier::dev("s3cret");
        assert_eq!(v.owner_of(&dev_token("s3cret", "alice", 60)).await.unwrap().as_str(), "alice");
        assert!(v.owner_of(&dev_token("other", "alice", 60)).await.is_none(), "forged");
        assert!(v.owner_of(&dev_token("s3cret", "alice", -120)).await.is_none(), "expired");
        assert!(v.owner_of(&dev_token("s3cret", "", 60)).await.is_none(), "no owner");
        assert!(v.owner_of("garbage").await.is_none());
    }

    #[test]
    fn header_then_cookie() {
        use Credential::*;
        let c = "__Host-hoist_session";
        let s = format!("{c}=zzz");
        assert_eq!(credential_from(Some("Bearer abc"), [s.as_str()]), Ok(Bearer("abc")));
        assert_eq!(credential_from(Some("bearer  abc "), []), Ok(Bearer("abc")));
        assert_eq!(
            credential_from(Some("Basic abc"), [s.as_str()]),
            Err(Refusal::NoCredential),
            "a wrong scheme is not silently replaced"
        );
        assert_eq!(credential_from(None, ["a=1", &format!(" {s}")]), Ok(Cookie("zzz")));
        assert_eq!(credential_from(None, [&format!("{c}x=zzz")[..]]), Err(Refusal::NoCredential));
        assert_eq!(credential_from(None, ["hoist_session=zzz"]), Err(Refusal::NoCredential), "the old name");
        assert_eq!(credential_from(None, [&format!("{c}=")[..]]), Err(Refusal::NoCredential));
        assert_eq!(credential_from(None, []), Err(Refusal::NoCredential));
        assert_eq!(credential_from(None, [s.as_str(), "a=1", &format!("{c}=yyy")]), Err(Refusal::DuplicateCookie));
    }

    /// Issue 11.3: a cookie counts only on the page's routes, from the page's origin.
    #[tokio::test]
    async fn cookie_sessions_refuse_cross_site_requests() {
        let v = Verifier::dev("s3cret");
        let token = dev_token("s3cret", "alice", 60);
        let cookie: &'static str = Box::leak(format!("{SESSION_COOKIE}={token}").into_boxed_str());
        let policy = BrowserPolicy { allowed_origins: vec!["https://app.example.com".into()] };
        let caller = |path, origin, site| Caller {
            path,
            authorization: None,
            cookies: vec![cookie],
            origin,
            sec_fetch_site: site,
            host: Some("api.example.com"),
        };
        let ok = |c: Caller<'static>| {
            let (policy, v) = (&policy, &v);
            async move { policy.authenticate(v, &c).await }
        };
        // The page itself, and a configured origin.
        assert!(ok(caller("/s3/multipart", None, Some("same-origin"))).await.is_ok());
        assert!(ok(caller("/files", Some("https://api.example.com"), Some("same-origin"))).await.is_ok());
        assert!(ok(caller("/s3/params", Some("https://app.example.com"), Some("cross-site"))).await.is_ok());
        // The repro: a cross-site POST with the victim's cookie.
        for (path, origin, site) in [
            ("/s3/multipart", Some("https://evil.example"), Some("cross-site")),
            ("/s3/multipart", Some("https://evil.example"), None),
            ("/files", None, None),
            ("/s3/multipart", Some("http://api.example.com"), None),
            ("/s3/multipart", Some("null"), Some("cross-site")),
        ] {
            assert_eq!(ok(caller(path, origin, site)).await, Err(Refusal::ForeignOrigin), "{path} {origin:?} {site:?}");
        }
        // Routes a browser never needs take bearer tokens only, even same-origin.
        for path in ["/uploads", "/uploads/abc/complete", "/uploads/abc/parts"] {
            assert_eq!(ok(caller(path, None, Some("same-origin"))).await, Err(Refusal::CookieNotAccepted));
        }
        // A bearer token needs no origin.
        let bearer = format!("Bearer {token}");
        let c = Caller { path: "/uploads", authorization: Some(&bearer), ..Caller::default() };
        assert_eq!(policy.authenticate(&v, &c).await.unwrap().as_str(), "alice");
        // Loopback serves plain http: its own origin is trusted there only.
        let local = Caller {
            path: "/s3/multipart",
            cookies: vec![cookie],
            origin: Some("http://127.0.0.1:8787"),
            host: Some("127.0.0.1:8787"),
            ..Caller::default()
        };
        assert!(policy.authenticate(&v, &local).await.is_ok());
        assert_eq!(Refusal::ForeignOrigin.status(), 403);
        assert_eq!(Refusal::BadToken.status(), 401);
    }

    #[tokio::test]
    async fn symmetric_algorithms_are_refused_against_published_keys() {
        // A JWKS with one RSA public key; a token "signed" with HS256 using that key id.
        let jwks = r#"{"keys":[{"kty":"RSA","kid":"k1","use":"sig","alg":"RS256","n":"sXchDaQebHnPiGvyDOAT4saGEUetSyo9MKLOoWFsueri23bOdgWp4Dy1WlUzewbgBHod5pcM9H95GQRV3JDXboIRROSBigeC5yjU1hGzHHyXss8UDprecbAYxknTcQkhslANGRUZmdTOQ5qTRsLAt6BTYuyvVRdhS8exSZEy_c4gs_7svlJJQ4H9_NxsiIoLwAEk7-Q3UXERGYw_75IDrGA84-lA_-Ct4eTlXHBIY2EaV7t7LjJaynVJCpkv4LKjTTAumiGUIuQhrNhZLuF_RJLqHpM2kgWFLU7-VTdL1VbC2tejvcI2BlMkEpk1BzBZI0KQB0GaDWFLN-aEAw3vRw","e":"AQAB"}]}"#;
        let v = Verifier::Jwks {
            keys: KeyRing::fixed(serde_json::from_str(jwks).unwrap()),
            issuer: "https://idp".into(),
            audience: vec!["hoist".into()],
        };
        let mut h = Header::new(Algorithm::HS256);
        h.kid = Some("k1".into());
        let claims =
            serde_json::json!({"sub": "mallory", "iss": "https://idp", "aud": "hoist", "exp": crate::now() + 60});
        let t = encode(&h, &claims, &EncodingKey::from_secret(b"whatever")).unwrap();
        assert!(v.owner_of(&t).await.is_none());
    }

    // RFC 8032 section 7.1 test vectors 1 and 2 (published Ed25519 keys: test use only).
    const SEED_1: &str = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60";
    const PUB_1: &str = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";
    const SEED_2: &str = "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb";
    const PUB_2: &str = "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c";

    fn jwk(kid: &str, public_hex: &str) -> serde_json::Value {
        use base64::Engine;
        let x = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(hex::decode(public_hex).unwrap());
        serde_json::json!({"kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "use": "sig", "kid": kid, "x": x})
    }

    fn idp_token(kid: &str, seed_hex: &str, sub: &str) -> String {
        // PKCS#8 v1 wrapping of an Ed25519 seed: a fixed 16-byte prefix, then the seed.
        let der = [hex::decode("302e020100300506032b657004220420").unwrap(), hex::decode(seed_hex).unwrap()].concat();
        let mut h = Header::new(Algorithm::EdDSA);
        h.kid = Some(kid.into());
        let claims = serde_json::json!({"sub": sub, "iss": "https://idp", "aud": "hoist", "exp": crate::now() + 60});
        encode(&h, &claims, &EncodingKey::from_ed_der(&der)).unwrap()
    }

    /// A JWKS endpoint on loopback whose document can be swapped; counts fetches.
    async fn jwks_server(doc: Arc<std::sync::Mutex<String>>, fetches: Arc<std::sync::atomic::AtomicUsize>) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/.well-known/jwks.json", listener.local_addr().unwrap());
        tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                let mut buf = [0u8; 4096];
                let _ = sock.read(&mut buf).await;
                fetches.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let body = doc.lock().unwrap().clone();
                let resp = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = sock.write_all(resp.as_bytes()).await;
            }
        });
        url
    }

    #[tokio::test]
    async fn keys_come_from_the_jwks_url_and_rotation_is_picked_up() {
        use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
        let doc = Arc::new(std::sync::Mutex::new(serde_json::json!({"keys": [jwk("k1", PUB_1)]}).to_string()));
        let fetches = Arc::new(AtomicUsize::new(0));
        let url = jwks_server(doc.clone(), fetches.clone()).await;
        let verifier = |every| Verifier::Jwks {
            keys: KeyRing::from_url(&url, every).unwrap(),
            issuer: "https://idp".into(),
            audience: vec!["hoist".into()],
        };
        let v = verifier(Duration::from_secs(60));
        assert_eq!(fetches.load(SeqCst), 0, "nothing is fetched before a token needs it");
        assert_eq!(v.owner_of(&idp_token("k1", SEED_1, "alice")).await.unwrap().as_str(), "alice");
        assert_eq!(v.owner_of(&idp_token("k1", SEED_1, "bob")).await.unwrap().as_str(), "bob");
        assert_eq!(fetches.load(SeqCst), 1, "known keys are not fetched again");
        // A key signed by the right seed but presented under another kid, and a forged
        // token under k1, are both refused.
        assert!(v.owner_of(&idp_token("k1", SEED_2, "mallory")).await.is_none());

        // The provider rotates: k2 appears. Within the refresh interval, unknown kids cause
        // at most the one fetch above (made-up kids cannot flood the provider)...
        *doc.lock().unwrap() = serde_json::json!({"keys": [jwk("k1", PUB_1), jwk("k2", PUB_2)]}).to_string();
        for i in 0..5 {
            assert!(v.owner_of(&idp_token(&format!("made-up-{i}"), SEED_2, "x")).await.is_none());
        }
        assert_eq!(fetches.load(SeqCst), 1);
        // ...and once it has passed, the new key is fetched and accepted.
        let v = verifier(Duration::ZERO);
        assert_eq!(v.owner_of(&idp_token("k2", SEED_2, "carol")).await.unwrap().as_str(), "carol");
        assert!(v.owner_of(&idp_token("k2", SEED_1, "mallory")).await.is_none(), "wrong key for k2");
    }

    #[test]
    fn jwks_url_must_be_https_outside_loopback() {
        assert!(KeyRing::from_url("http://idp.example.com/jwks.json", JWKS_REFRESH_EVERY).is_err());
        assert!(KeyRing::from_url("https://idp.example.com/jwks.json", JWKS_REFRESH_EVERY).is_ok());
        assert!(KeyRing::from_url("http://127.0.0.1:9/jwks.json", JWKS_REFRESH_EVERY).is_ok());
    }
}
