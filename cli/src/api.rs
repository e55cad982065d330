//! The Hoist API as the CLI speaks it: typed calls, retries with jittered backoff for
//! what is transient (connection errors, 5xx, 429/503 with Retry-After), and short
//! messages for what is not.

use std::time::Duration;

use serde::{de::DeserializeOwned, Deserialize, Serialize};
use serde_json::{json, Value};

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

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Upload {
    pub id: String,
    pub status: String,
    pub filename: String,
    pub size: u64,
    pub part_size: u64,
    pub part_count: u32,
    pub parts_done: u32,
    pub bytes_done: u64,
    pub missing_parts: Vec<[u32; 2]>,
    #[serde(default)]
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct SignedPart {
    pub number: u32,
    pub url: String,
    pub headers: std::collections::BTreeMap<String, String>,
    pub content_length: u64,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct FileInfo {
    pub id: String,
    pub filename: String,
    pub size: u64,
    pub status: String,
    #[serde(default)]
    pub sha256: Option<String>,
    #[serde(default)]
    pub reason: Option<String>,
    pub created_at: String,
    #[serde(default)]
    pub deleted_at: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RecordedPart {
    pub number: u32,
    pub etag: String,
    pub size: u64,
    pub sha256: String,
}

impl Api {
    pub fn new(base: &str, token: &str) -> Result<Self, CliError> {
        let http = reqwest::Client::builder()
            .user_agent(concat!("hoist-cli/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(10))
            .pool_max_idle_per_host(64)
            .build()
            .map_err(|e| CliError::Other(e.to_string()))?;
        Ok(Self { base: base.trim_end_matches('/').to_owned(), token: token.to_owned(), http })
    }

    /// One API call with retries. `idempotent` calls are retried after any transient
    /// failure; others only when the request provably did not happen (connect errors,
    /// 429, 503).
    async fn call<T: DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
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
                        let detail = serde_json::from_str::<Value>(&text)
                            .ok()
                            .and_then(|v| v["detail"].as_str().or(v["error"].as_str()).map(str::to_owned))
                            .unwrap_or_else(|| text.chars().take(200).collect());
                        return Err(CliError::Api { status, detail });
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
        sha256_hex: &str,
        part_size: u64,
    ) -> Result<Upload, CliError> {
        let body = json!({
            "filename": filename, "size": size, "content_type": content_type,
            "sha256": sha256_hex, "part_checksums": "SHA256", "part_size": part_size,
        });
        self.call(reqwest::Method::POST, "/uploads", Some(&body), false).await
    }

    pub async fn upload(&self, id: &str) -> Result<Upload, CliError> {
        self.call(reqwest::Method::GET, &format!("/uploads/{id}"), None, true).await
    }

    pub async fn sign(&self, id: &str, parts: &[(u32, String)]) -> Result<Vec<SignedPart>, CliError> {
        let body =
            json!({"parts": parts.iter().map(|(n, sha)| json!({"number": n, "sha256": sha})).collect::<Vec<_>>()});
        #[derive(Deserialize)]
        struct R {
            parts: Vec<SignedPart>,
        }
        let r: R = self.call(reqwest::Method::POST, &format!("/uploads/{id}/parts/sign"), Some(&body), true).await?;
        Ok(r.parts)
    }

    pub async fn record(&self, id: &str, parts: &[RecordedPart]) -> Result<(), CliError> {
        let body = json!({ "parts": parts });
        let _: Value = self.call(reqwest::Method::PUT, &format!("/uploads/{id}/parts"), Some(&body), true).await?;
        Ok(())
    }

    pub async fn complete(&self, id: &str) -> Result<Upload, CliError> {
        self.call(reqwest::Method::POST, &format!("/uploads/{id}/complete"), None, true).await
    }

    pub async fn file(&self, id: &str) -> Result<FileInfo, CliError> {
        self.call(reqwest::Method::GET, &format!("/files/{id}"), None, true).await
    }

    pub async fn files(&self, query: &str) -> Result<Value, CliError> {
        self.call(reqwest::Method::GET, &format!("/files{query}"), None, true).await
    }

    pub async fn link(&self, id: &str, expires_in: Option<u64>, inline: bool) -> Result<Value, CliError> {
        let mut body = json!({"disposition": if inline { "inline" } else { "attachment" }});
        if let Some(e) = expires_in {
            body["expires_in"] = json!(e);
        }
        self.call(reqwest::Method::POST, &format!("/files/{id}/links"), Some(&body), true).await
    }

    pub async fn delete_file(&self, id: &str) -> Result<FileInfo, CliError> {
        self.call(reqwest::Method::DELETE, &format!("/files/{id}"), None, true).await
    }

    pub async fn restore_file(&self, id: &str) -> Result<FileInfo, CliError> {
        self.call(reqwest::Method::POST, &format!("/files/{id}/restore"), None, true).await
    }
}
