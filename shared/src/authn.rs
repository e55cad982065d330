//! Who is calling, decided once for every route: a bearer token from the
//! `Authorization` header, or the same token from the `hoist_session` cookie (Uppy 6's
//! Companion mode sends cookies, not headers). Used by the Lambda request authorizer
//! in AWS and by the dev server locally, so both run the same code.

use jsonwebtoken::{decode, decode_header, jwk::JwkSet, Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use crate::{config::ConfigError, domain::Owner};

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "hoist_session";

/// How tokens are checked.
pub enum Verifier {
    /// Tokens signed by the identity provider, checked against its published keys.
    Jwks { keys: JwkSet, issuer: String, audience: Vec<String> },
    /// Dev only: tokens signed with a shared secret by `hoist-dev token`.
    Hs256 { secret: Vec<u8>, issuer: String, audience: Vec<String> },
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Verifier::Jwks { keys, issuer, .. } => write!(f, "Jwks({} keys, {issuer})", keys.keys.len()),
            Verifier::Hs256 { issuer, .. } => write!(f, "Hs256(<redacted>, {issuer})"),
        }
    }
}

#[derive(Deserialize)]
struct Claims {
    sub: String,
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

impl Verifier {
    /// `HOIST_AUTH_JWKS` (the provider's JWKS document) with `HOIST_AUTH_ISSUER` and
    /// `HOIST_AUTH_AUDIENCE` (comma-separated); or, for local development only,
    /// `HOIST_DEV_JWT_SECRET` (issuer `hoist-dev`, audience `hoist`).
    pub fn from_env() -> Result<Self, ConfigError> {
        if let Some(jwks) = env("HOIST_AUTH_JWKS") {
            let keys: JwkSet = serde_json::from_str(&jwks)
                .map_err(|e| ConfigError { name: "HOIST_AUTH_JWKS", detail: format!("not a JWKS document: {e}") })?;
            let issuer = env("HOIST_AUTH_ISSUER")
                .ok_or(ConfigError { name: "HOIST_AUTH_ISSUER", detail: "is required with HOIST_AUTH_JWKS".into() })?;
            let audience: Vec<String> = env("HOIST_AUTH_AUDIENCE")
                .ok_or(ConfigError { name: "HOIST_AUTH_AUDIENCE", detail: "is required with HOIST_AUTH_JWKS".into() })?
                .split(',')
                .map(|a| a.trim().to_owned())
                .filter(|a| !a.is_empty())
                .collect();
            return Ok(Verifier::Jwks { keys, issuer, audience });
        }
        if let Some(secret) = env("HOIST_DEV_JWT_SECRET") {
            return Ok(Verifier::dev(&secret));
        }
        Err(ConfigError {
            name: "HOIST_AUTH_JWKS",
            detail: "is required (or HOIST_DEV_JWT_SECRET for local development)".into(),
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
    pub fn owner_of(&self, token: &str) -> Option<Owner> {
        let (key, alg, issuer, audience) = match self {
            Verifier::Hs256 { secret, issuer, audience } => {
                (DecodingKey::from_secret(secret), Algorithm::HS256, issuer, audience)
            }
            Verifier::Jwks { keys, issuer, audience } => {
                let header = decode_header(token).ok()?;
                let jwk = keys.find(header.kid.as_deref()?)?;
                // Never let the token pick a symmetric algorithm against a public key.
                if matches!(header.alg, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512) {
                    return None;
                }
                (DecodingKey::from_jwk(jwk).ok()?, header.alg, issuer, audience)
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

    #[test]
    fn dev_tokens() {
        let v = Verifier::dev("s3cret");
        assert_eq!(v.owner_of(&dev_token("s3cret", "alice", 60)).unwrap().as_str(), "alice");
        assert!(v.owner_of(&dev_token("other", "alice", 60)).is_none(), "forged");
        assert!(v.owner_of(&dev_token("s3cret", "alice", -120)).is_none(), "expired");
        assert!(v.owner_of(&dev_token("s3cret", "", 60)).is_none(), "no owner");
        assert!(v.owner_of("garbage").is_none());
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

    #[test]
    fn symmetric_algorithms_are_refused_against_published_keys() {
        // A JWKS with one RSA public key; a token "signed" with HS256 using that key id.
        let jwks = r#"{"keys":[{"kty":"RSA","kid":"k1","use":"sig","alg":"RS256","n":"sXchDaQebHnPiGvyDOAT4saGEUetSyo9MKLOoWFsueri23bOdgWp4Dy1WlUzewbgBHod5pcM9H95GQRV3JDXboIRROSBigeC5yjU1hGzHHyXss8UDprecbAYxknTcQkhslANGRUZmdTOQ5qTRsLAt6BTYuyvVRdhS8exSZEy_c4gs_7svlJJQ4H9_NxsiIoLwAEk7-Q3UXERGYw_75IDrGA84-lA_-Ct4eTlXHBIY2EaV7t7LjJaynVJCpkv4LKjTTAumiGUIuQhrNhZLuF_RJLqHpM2kgWFLU7-VTdL1VbC2tejvcI2BlMkEpk1BzBZI0KQB0GaDWFLN-aEAw3vRw","e":"AQAB"}]}"#;
        let v = Verifier::Jwks {
            keys: serde_json::from_str(jwks).unwrap(),
            issuer: "https://idp".into(),
            audience: vec!["hoist".into()],
        };
        let mut h = Header::new(Algorithm::HS256);
        h.kid = Some("k1".into());
        let claims =
            serde_json::json!({"sub": "mallory", "iss": "https://idp", "aud": "hoist", "exp": crate::now() + 60});
        let t = encode(&h, &claims, &EncodingKey::from_secret(b"whatever")).unwrap();
        assert!(v.owner_of(&t).is_none());
    }
}
