//! Dev-only bearer tokens (HS256). In AWS, API Gateway's JWT authorizer verifies
//! tokens from the real identity provider; locally we verify these and put the
//! same claims into the request context.

use jsonwebtoken::{decode, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

pub const ISSUER: &str = "hoist-dev";
pub const AUDIENCE: &str = "hoist";

#[derive(Debug, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub iss: String,
    pub aud: String,
    pub iat: i64,
    pub exp: i64,
}

pub fn issue(secret: &str, owner: &str, ttl_secs: i64, now: i64) -> Result<String, jsonwebtoken::errors::Error> {
    let claims =
        Claims { sub: owner.to_owned(), iss: ISSUER.into(), aud: AUDIENCE.into(), iat: now, exp: now + ttl_secs };
    encode(&Header::new(Algorithm::HS256), &claims, &EncodingKey::from_secret(secret.as_bytes()))
}

pub fn verify(secret: &str, token: &str) -> Option<Claims> {
    let mut v = Validation::new(Algorithm::HS256);
    v.set_issuer(&[ISSUER]);
    v.set_audience(&[AUDIENCE]);
    v.leeway = 5;
    decode::<Claims>(token, &DecodingKey::from_secret(secret.as_bytes()), &v).ok().map(|d| d.claims)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_refusals() {
        let now = shared::now();
        let t = issue("s3cret", "alice", 60, now).unwrap();
        assert_eq!(verify("s3cret", &t).unwrap().sub, "alice");
        assert!(verify("other", &t).is_none());
        let expired = issue("s3cret", "alice", -120, now).unwrap();
        assert!(verify("s3cret", &expired).is_none());
        let mut tampered = t.clone();
        tampered.insert(t.len() / 2, 'x');
        assert!(verify("s3cret", &tampered).is_none());
        assert!(verify("s3cret", "not-a-jwt").is_none());
    }
}
