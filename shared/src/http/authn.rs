//! Who is calling, decided once for every route: a bearer token from the
//! `Authorization` header, or the same token from the `hoist_session` cookie (Uppy 6's
//! Companion mode sends cookies, not headers). Used by the Lambda request authorizer
//! in AWS and by the dev server locally, so both run the same code.

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

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "hoist_session";

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
        v.set_issuer(&[issuer]);
        v.set_audience(audience);
        v.leeway = 5;
        let claims = decode::<Claims>(token, &key, &v).ok()?.claims;
        Owner::parse(&claims.sub).ok()
    }
}

/// The token a request carries: `Authorization: Bearer <t>` first, else the session cookie.
/// `cookies` are `name=value` pairs (API Gateway's `cookies` array, or a split Cookie header).
pub fn token_from<'a>(authorization: Option<&'a str>, cookies: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    if let Some(v) = authorization {
        let (scheme, token) = v.trim().split_once(' ')?;
        return scheme.eq_ignore_ascii_case("bearer").then_some(token.trim()).filter(|t| !t.is_empty());
    }
    cookies.into_iter().find_map(|c| c.trim().strip_prefix(SESSION_COOKIE)?.strip_prefix('=')).filter(|t| !t.is_empty())
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
        assert_eq!(token_from(Some("Bearer abc"), ["hoist_session=zzz"]), Some("abc"));
        assert_eq!(token_from(Some("bearer  abc "), []), Some("abc"));
        assert_eq!(
            token_from(Some("Basic abc"), ["hoist_session=zzz"]),
            None,
            "a wrong scheme is not silently replaced"
        );
        assert_eq!(token_from(None, ["a=1", " hoist_session=zzz"]), Some("zzz"));
        assert_eq!(token_from(None, ["hoist_sessionx=zzz"]), None);
        assert_eq!(token_from(None, ["hoist_session="]), None);
        assert_eq!(token_from(None, []), None);
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
