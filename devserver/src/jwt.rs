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

impl Claims {
    /// What every dev token carries: the owner, the issuer, our audience, valid from now.
    fn new(issuer: &str, owner: &str, ttl_secs: i64, now: i64) -> Self {
        Claims {
            sub: owner.to_owned(),
            iss: issuer.into(),
            aud: AUDIENCE.into(),
            iat: now,
            nbf: now,
            exp: now + ttl_secs,
        }
    }
}

pub fn issue(secret: &str, owner: &str, ttl_secs: i64, now: i64) -> Result<String, jsonwebtoken::errors::Error> {
    let claims = Claims::new(ISSUER, owner, ttl_secs, now);
    encode(&Header::new(Algorithm::HS256), &claims, &EncodingKey::from_secret(secret.as_bytes()))
}

/// The dev identity provider (`sam local` only): tokens signed with an Ed25519 key derived
/// from the dev secret, and its public half as a JWKS document, which the template's
/// `JwksJson` parameter takes in AWS. Under SAM the authorizer therefore runs exactly its
/// AWS path (a provider's JWKS, an asymmetric key, `iss`/`aud`), and the deployable
/// template needs no dev switch. Never a real provider: the key is only as secret as the
/// dev secret.
pub mod idp {
    use super::*;
    use sha2::{Digest, Sha256};

    pub const ISSUER: &str = "hoist-dev-idp";
    pub const KEY_ID: &str = "hoist-dev-idp-1";

    fn seed(secret: &str) -> [u8; 32] {
        Sha256::new().chain_update(b"hoist-dev-idp\0").chain_update(secret.as_bytes()).finalize().into()
    }

    /// The provider's JWKS document (one Ed25519 key).
    pub fn jwks(secret: &str) -> String {
        use base64::Engine;
        let public = ed25519_dalek::SigningKey::from_bytes(&seed(secret)).verifying_key().to_bytes();
        let x = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(public);
        serde_json::json!({"keys": [{"kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "use": "sig", "kid": KEY_ID, "x": x}]})
            .to_string()
    }

    pub fn issue(secret: &str, owner: &str, ttl_secs: i64, now: i64) -> Result<String, jsonwebtoken::errors::Error> {
        // PKCS#8 v1 wrapping of an Ed25519 seed: a fixed 16-byte prefix, then the seed.
        const PKCS8_PREFIX: [u8; 16] =
            [0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20];
        let der = [&PKCS8_PREFIX[..], &seed(secret)].concat();
        let claims = Claims::new(ISSUER, owner, ttl_secs, now);
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(KEY_ID.into());
        encode(&header, &claims, &EncodingKey::from_ed_der(&der))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn dev_idp_tokens_pass_the_jwks_authorizer_and_others_do_not() {
        let now = shared::now();
        let doc = idp::jwks("s3cret");
        let verifier = shared::http::authn::Verifier::Jwks {
            keys: shared::http::authn::KeyRing::fixed(serde_json::from_str(&doc).unwrap()),
            issuer: idp::ISSUER.into(),
            audience: vec![AUDIENCE.into()],
        };
        let t = idp::issue("s3cret", "alice", 60, now).unwrap();
        assert_eq!(verifier.owner_of(&t).await.unwrap().as_str(), "alice");
        // Another dev secret is another key; an HS256 dev token is never accepted by a JWKS.
        assert!(verifier.owner_of(&idp::issue("other", "alice", 60, now).unwrap()).await.is_none());
        assert!(verifier.owner_of(&issue("s3cret", "alice", 60, now).unwrap()).await.is_none());
    }

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
