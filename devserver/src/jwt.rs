//! Dev-only bearer tokens (HS256), verified by the same authorizer code that runs in
//! AWS (`shared::authn`, with the dev secret instead of the provider's keys).

use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde::{Deserialize, Serialize};

pub const ISSUER: &str = "hoist-dev";
pub const AUDIENCE: &str = "hoist";

#[derive(Debug, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub iss: String,
    pub aud: String,
    pub iat: i64,
    pub nbf: i64,
    pub exp: i64,
}

pub fn issue(secret: &str, owner: &str, ttl_secs: i64, now: i64) -> Result<String, jsonwebtoken::errors::Error> {
    let claims = Claims {
        sub: owner.to_owned(),
        iss: ISSUER.into(),
        aud: AUDIENCE.into(),
        iat: now,
        nbf: now,
        exp: now + ttl_secs,
    };
    encode(&Header::new(Algorithm::HS256), &claims, &EncodingKey::from_secret(secret.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn issued_tokens_pass_the_authorizer_and_forgeries_do_not() {
        let now = shared::now();
        let v = shared::http::authn::Verifier::dev("s3cret");
        let t = issue("s3cret", "alice", 60, now).unwrap();
        assert_eq!(v.owner_of(&t).await.unwrap().as_str(), "alice");
        assert!(shared::http::authn::Verifier::dev("other").owner_of(&t).await.is_none());
        assert!(v.owner_of(&issue("s3cret", "alice", -120, now).unwrap()).await.is_none());
        let mut tampered = t.clone();
        tampered.insert(t.len() / 2, 'x');
        assert!(v.owner_of(&tampered).await.is_none());
    }
}
