//! The Hoist API as the CLI speaks it: typed calls, retries with jittered backoff for
//! what is transient (connection errors, 5xx, 429/503 with Retry-After), and short
//! messages for what is not.

use std::time::Duration;

use api_types::{
    files::{FileList, FileView, LinkRequest, LinkResponse},
    problem::{CompanionError, Problem},
    uploads::{
        CompleteUploadRequest, CreateUploadRequest, RecordPartItem, RecordPartsRequest, RecordPartsResponse,
        SignPartItem, SignPartsRequest, SignPartsResponse, SignedPart, UploadView,
    },
};
use reqwest::Method;
use serde::{de::DeserializeOwned, Serialize};
use serde_json::Number;

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The API refused: its own sentence.
    #[error("{detail} (HTTP {status})")]
    Api { status: u16, detail: String },
    #[error("cannot reach {0}")]
    Unreachable(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Source(String),
    #[error("{0}")]
    Other(String),
    #[error("interrupted; run the same command again to resume")]
    Interrupted,
}

/// Jittered exponential backoff: 200 ms, 400 ms, ... capped at 10 s, ±50 %.
pub fn backoff(attempt: u32) -> Duration {
    let base = 200u64.saturating_mul(1 << attempt.min(6)).min(10_000);
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    let jitter = u64::from(nanos % 1000) * base / 1000; // 0..base
    Duration::from_millis(base / 2 + jitter)
}

pub const MAX_ATTEMPTS: u32 = 8;

#[derive(Clone)]
pub struct Api {
    base: String,
    token: String,
    pub http: reqwest::Client,
}

/// A bearer token is a password: it only travels over TLS, or over plain HTTP to this
/// machine itself (the dev server). Anything else is refused before a byte is sent.
pub fn check_transport(base: &str) -> Result<(), CliError> {
    let lower = base.trim().to_ascii_lowercase();
    if lower.starts_with("https://") {
        return Ok(());
    }
    let Some(rest) = lower.strip_prefix("http://") else {
        return Err(CliError::Other(format!(
            "{base}: the API URL must start with https:// (or http:// to this machine)"
        )));
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = if host.starts_with('[') {
        host.split(']').next().map(|h| format!("{h}]")).unwrap_or_default()
    } else {
        host.split(':').next().unwrap_or("").to_owned()
    };
    let loopback =
        host == "localhost" || host == "[::1]" || host.parse::<std::net::Ipv4Addr>().is_ok_and(|a| a.is_loopback());
    if loopback {
        Ok(())
    } else {
        Err(CliError::Other(format!(
            "refusing to send your token over plain http:// to {host}: use https:// (http:// is for this machine only)"
        )))
    }
}

impl Api {
    pub fn new(base: &str, token: &str) -> Result<Self, CliError> {
        check_transport(base)?;
        let http = reqwest::Client::builder()
            .user_agent(concat!("hoist-cli/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(10))
            .pool_max_idle_per_host(64)
            .build()
            .map_err(|e| CliError::Other(e.to_string()))?;
        Ok(Self { base: base.trim_end_matches('/').to_owned(), token: token.to_owned(), http })
    }

    /// One API call without a body (see [`Api::send`]).
    async fn call<T: DeserializeOwned>(&self, method: Method, path: &str, idempotent: bool) -> Result<T, CliError> {
        self.send::<(), T>(method, path, None, idempotent).await
    }

    /// One API call with a JSON body (see [`Api::send`]).
    async fn call_with<B: Serialize, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: &B,
        idempotent: bool,
    ) -> Result<T, CliError> {
        self.send(method, path, Some(body), idempotent).await
    }

    /// One API call with retries. `idempotent` calls are retried after any transient
    /// failure; others only when the request provably did not happen (connect errors,
    /// 429, 503).
    async fn send<B: Serialize, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
        idempotent: bool,
    ) -> Result<T, CliError> {
        let url = format!("{}{path}", self.base);
        let mut attempt = 0;
        loop {
            let mut req =
                self.http.request(method.clone(), &url).bearer_auth(&self.token).timeout(Duration::from_secs(60));
            if let Some(b) = body {
                req = req.json(b);
            }
            let retry_after = match req.send().await {
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    let retry_after = resp
                        .headers()
                        .get("retry-after")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.parse::<u64>().ok())
                        .map(Duration::from_secs);
                    let text = resp.text().await.unwrap_or_default();
                    if (200..300).contains(&status) {
                        return serde_json::from_str(&text)
                            .map_err(|e| CliError::Other(format!("unexpected answer from {path}: {e}")));
                    }
                    let transient = status == 429 || status == 503 || (idempotent && status >= 500);
                    if !transient || attempt + 1 >= MAX_ATTEMPTS {
                        return Err(CliError::Api { status, detail: error_detail(&text) });
                    }
                    retry_after
                }
                Err(e) => {
                    let safe = e.is_connect() || idempotent;
                    if !safe || attempt + 1 >= MAX_ATTEMPTS {
                        return Err(CliError::Unreachable(format!("{url}: {e}")));
                    }
                    None
                }
            };
            tokio::time::sleep(retry_after.unwrap_or_else(|| backoff(attempt)).min(Duration::from_secs(60))).await;
            attempt += 1;
        }
    }

    pub async fn create(
        &self,
        filename: &str,
        size: u64,
        content_type: &str,
        part_size: u64,
    ) -> Result<UploadView, CliError> {
        // A whole-file SHA-256 (`put --sha256`) is declared at completion: it is computed
        // while the parts are sent, so nothing waits for a hashing pass over the file.
        let body = CreateUploadRequest {
            filename: filename.to_owned(),
            size: Number::from(size),
            content_type: content_type.to_owned(),
            sha256: None,
            part_checksums: Some("SHA256".to_owned()),
            part_size: Some(Number::from(part_size)),
        };
        self.call_with(Method::POST, "/uploads", &body, false).await
    }

    pub async fn upload(&self, id: &str) -> Result<UploadView, CliError> {
        self.call(Method::GET, &format!("/uploads/{id}"), true).await
    }

    /// The parts S3 holds for an open upload (recorded or not).
    pub async fn held_parts(&self, id: &str) -> Result<api_types::uploads::HeldParts, CliError> {
        self.call(Method::GET, &format!("/uploads/{id}/parts"), true).await
    }

    /// Signs parts `(number, base64 SHA-256)`.
    pub async fn sign(&self, id: &str, parts: &[(u32, String)]) -> Result<Vec<SignedPart>, CliError> {
        let body = SignPartsRequest {
            parts: parts
                .iter()
                .map(|(n, sha)| SignPartItem { number: i64::from(*n), sha256: Some(sha.clone()) })
                .collect(),
        };
        let r: SignPartsResponse =
            self.call_with(Method::POST, &format!("/uploads/{id}/parts/sign"), &body, true).await?;
        Ok(r.parts)
    }

    pub async fn record(&self, id: &str, parts: Vec<RecordPartItem>) -> Result<RecordPartsResponse, CliError> {
        let body = RecordPartsRequest { parts };
        self.call_with(Method::PUT, &format!("/uploads/{id}/parts"), &body, true).await
    }

    /// Completes an upload, declaring the whole file's SHA-256 (hex) if it was computed.
    pub async fn complete(&self, id: &str, sha256_hex: Option<&str>) -> Result<UploadView, CliError> {
        let body = CompleteUploadRequest { sha256: sha256_hex.map(str::to_owned) };
        self.call_with(Method::POST, &format!("/uploads/{id}/complete"), &body, true).await
    }

    pub async fn file(&self, id: &str) -> Result<FileView, CliError> {
        self.call(Method::GET, &format!("/files/{id}"), true).await
    }

    pub async fn files(&self, query: &str) -> Result<FileList, CliError> {
        self.call(Method::GET, &format!("/files{query}"), true).await
    }

    pub async fn link(&self, id: &str, expires_in: Option<u64>, inline: bool) -> Result<LinkResponse, CliError> {
        let body = LinkRequest {
            expires_in: expires_in.map(Number::from),
            disposition: Some(if inline { "inline" } else { "attachment" }.to_owned()),
        };
        self.call_with(Method::POST, &format!("/files/{id}/links"), &body, true).await
    }

    pub async fn delete_file(&self, id: &str) -> Result<FileView, CliError> {
        self.call(Method::DELETE, &format!("/files/{id}"), true).await
    }

    pub async fn restore_file(&self, id: &str) -> Result<FileView, CliError> {
        self.call(Method::POST, &format!("/files/{id}/restore"), true).await
    }
}

/// The sentence of an error body: problem+json's `detail`, else Companion's `error`,
/// else the start of the raw text.
pub fn error_detail(text: &str) -> String {
    if let Ok(p) = serde_json::from_str::<Problem>(text) {
        return p.detail;
    }
    if let Ok(c) = serde_json::from_str::<CompanionError>(text) {
        return c.error;
    }
    // API Gateway's own answers: its authorizer refused (403), or no such route (404).
    #[derive(serde::Deserialize)]
    struct Gateway {
        message: String,
    }
    if let Ok(g) = serde_json::from_str::<Gateway>(text) {
        return match g.message.as_str() {
            // HTTP API's words; the last is what SAM's emulator says.
            "Forbidden" | "Unauthorized" | "User is not authorized to access this resource" => {
                "the API refused the token: it is missing, expired or not valid (pass --token or set HOIST_TOKEN)"
                    .into()
            }
            other => format!("the API gateway says: {other}"),
        };
    }
    text.chars().take(200).collect()
}

#[cfg(test)]
mod tests {
    use super::{check_transport, error_detail};

    #[test]
    fn the_gateways_own_refusal_reads_as_a_sentence() {
        assert!(error_detail(r#"{"message":"Forbidden"}"#).contains("token"));
        assert_eq!(error_detail(r#"{"message":"Not Found"}"#), "the API gateway says: Not Found");
        assert_eq!(error_detail("plain words"), "plain words");
    }

    #[test]
    fn tokens_travel_over_tls_or_stay_on_this_machine() {
        for ok in ["https://api.example.com", "http://127.0.0.1:8787", "http://localhost:8787/", "http://[::1]:8787"] {
            assert!(check_transport(ok).is_ok(), "{ok}");
        }
        for bad in [
            "http://api.example.com",
            "http://10.0.0.5:8787",
            "http://127.0.0.1.evil.example",
            "http://localhost.evil.example",
            "http://user@evil.example",
            "ftp://127.0.0.1",
            "127.0.0.1:8787",
        ] {
            assert!(check_transport(bad).is_err(), "{bad}");
        }
    }
}
