//! The one API error type and its problem+json responses (RFC 9457). The only place
//! that decides which HTTP status a domain error becomes ([`From<UploadError>`]).
//!
//! Clients see a status, a short title and a sentence; internals are logged with their
//! whole source chain, never sent.

use api_types::problem::{CompanionError, Problem, PROBLEM_JSON};
use http::{header, HeaderValue, StatusCode};
use lambda_http::{Body, Response};
use serde::Serialize;
use serde_json::{json, Map, Value};

use crate::domain::{Invalid, UploadError};

/// An error and every error it came from, `: `-separated (for logs).
pub fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let more = s.to_string();
        if !text.ends_with(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = s.source();
    }
    text
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("missing or invalid credentials")]
    Unauthorized,
    #[error("{0}")]
    NotFound(&'static str),
    #[error("{0}")]
    BadRequest(String),
    #[error("{detail}")]
    Invalid { field: Option<String>, detail: String },
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("{detail}")]
    Conflict { detail: String, extra: Map<String, Value> },
    /// 409 that will resolve by itself (e.g. still processing).
    #[error("{detail}")]
    ConflictRetry { detail: String, retry_after_secs: u64 },
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    Gone(String),
    #[error("{detail}")]
    TooManyRequests { detail: String, retry_after_secs: u64 },
    #[error("{detail}")]
    Unavailable { detail: String, retry_after_secs: u64 },
    /// Anything unexpected: logged with its cause, shown as a generic sentence.
    #[error("internal error")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl From<UploadError> for ApiError {
    fn from(e: UploadError) -> Self {
        let detail = e.to_string();
        match e {
            UploadError::Invalid(i) => i.into(),
            UploadError::NotFound | UploadError::FileNotFound | UploadError::NoThumbnail => {
                ApiError::NotFound(match e {
                    UploadError::NotFound => "No upload with this id exists.",
                    UploadError::FileNotFound => "No file with this id exists.",
                    _ => "This file has no thumbnail.",
                })
            }
            UploadError::TooLarge { .. } => ApiError::Invalid { field: Some("size".into()), detail },
            UploadError::Incomplete { missing_parts, mismatched_parts, .. } => {
                let mut extra = Map::new();
                extra.insert("missing_parts".into(), json!(missing_parts));
                if let Some(m) = mismatched_parts {
                    extra.insert("mismatched_parts".into(), json!(m));
                }
                ApiError::Conflict { detail, extra }
            }
            UploadError::AssemblyRefused { code, .. } => {
                ApiError::Conflict { detail, extra: Map::from_iter([("s3_code".to_owned(), Value::String(code))]) }
            }
            UploadError::NotOpen { .. }
            | UploadError::LeaseHeld
            | UploadError::WrongProtocol(_)
            | UploadError::HashConflict { .. }
            | UploadError::HashTooLate
            | UploadError::NoPartsYet
            | UploadError::PartsGone
            | UploadError::NoObject
            | UploadError::NotArrived => ApiError::conflict(detail),
            UploadError::StillProcessing => ApiError::ConflictRetry { detail, retry_after_secs: 5 },
            UploadError::QuotaExceeded { .. } => ApiError::TooManyRequests { detail, retry_after_secs: 60 },
            UploadError::RateLimited { retry_after_secs, .. } => ApiError::TooManyRequests { detail, retry_after_secs },
            UploadError::StorageFull { .. } | UploadError::OverCeiling { .. } => ApiError::PayloadTooLarge(detail),
            UploadError::NotServable { .. } | UploadError::LinkInvalid | UploadError::LinkExpired => {
                ApiError::Forbidden(detail)
            }
            UploadError::Gone(_) => ApiError::Gone(detail),
            e @ (UploadError::Repo(_) | UploadError::Storage(_)) if e.is_throttling() => {
                tracing::warn!(error = %chain(&e), "throttled");
                let what = if matches!(e, UploadError::Repo(_)) { "The service" } else { "Storage" };
                ApiError::Unavailable {
                    detail: format!("{what} is busy; please retry in a moment."),
                    retry_after_secs: 1,
                }
            }
            e @ (UploadError::Repo(_) | UploadError::Storage(_) | UploadError::Queue(_) | UploadError::Internal(_)) => {
                ApiError::Internal(Box::new(e))
            }
        }
    }
}

impl From<Invalid> for ApiError {
    fn from(e: Invalid) -> Self {
        ApiError::Invalid { field: Some(e.field.to_owned()), detail: e.detail }
    }
}

impl ApiError {
    pub fn internal(e: impl std::fmt::Display) -> Self {
        ApiError::Internal(e.to_string().into())
    }

    pub fn invalid(field: &str, detail: impl Into<String>) -> Self {
        ApiError::Invalid { field: Some(field.to_owned()), detail: detail.into() }
    }

    pub fn conflict(detail: impl Into<String>) -> Self {
        ApiError::Conflict { detail: detail.into(), extra: Map::new() }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Invalid { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Conflict { .. } | ApiError::ConflictRetry { .. } => StatusCode::CONFLICT,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::Gone(_) => StatusCode::GONE,
            ApiError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn slug(&self) -> &'static str {
        match self {
            ApiError::Unauthorized => "unauthorized",
            ApiError::NotFound(_) => "not-found",
            ApiError::BadRequest(_) => "bad-request",
            ApiError::Invalid { .. } => "invalid-input",
            ApiError::UnsupportedMediaType(_) => "unsupported-media-type",
            ApiError::PayloadTooLarge(_) => "payload-too-large",
            ApiError::Conflict { .. } | ApiError::ConflictRetry { .. } => "conflict",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::Gone(_) => "gone",
            ApiError::TooManyRequests { .. } => "quota-exceeded",
            ApiError::Unavailable { .. } => "unavailable",
            ApiError::Internal(_) => "internal",
        }
    }

    /// The sentence a client sees.
    pub fn detail(&self) -> String {
        match self {
            ApiError::Unauthorized => "This request needs a valid bearer token (Authorization: Bearer ...).".into(),
            ApiError::Internal(_) => {
                "Something went wrong on our side. Nothing was lost; please retry in a moment.".into()
            }
            other => other.to_string(),
        }
    }

    /// The problem+json body.
    pub fn problem(&self) -> Problem {
        let status = self.status();
        let mut p = Problem {
            kind: format!("urn:hoist:problem:{}", self.slug()),
            title: status.canonical_reason().unwrap_or("Error").to_owned(),
            status: status.as_u16(),
            detail: self.detail(),
            field: None,
            extra: Map::new(),
        };
        match self {
            ApiError::Invalid { field, .. } => p.field = field.clone(),
            ApiError::Conflict { extra, .. } => p.extra = extra.clone(),
            _ => {}
        }
        p
    }

    /// The problem+json response. Errors are logged here, internal ones with their causes.
    pub fn into_response(self) -> Response<Body> {
        let status = self.status();
        if status.is_server_error() {
            tracing::error!(error = %chain(&self), status = status.as_u16(), "request failed");
        } else {
            tracing::info!(error = %self, status = status.as_u16(), "request refused");
        }
        let body = self.problem();
        let retry_after = match &self {
            ApiError::TooManyRequests { retry_after_secs, .. }
            | ApiError::Unavailable { retry_after_secs, .. }
            | ApiError::ConflictRetry { retry_after_secs, .. } => Some(*retry_after_secs),
            _ => None,
        };
        let mut resp = Response::builder()
            .status(status)
            .header(header::CONTENT_TYPE, PROBLEM_JSON)
            .header(header::CACHE_CONTROL, "no-store");
        if let Some(s) = retry_after {
            resp = resp.header(header::RETRY_AFTER, s.to_string());
        }
        if matches!(self, ApiError::Unauthorized) {
            resp = resp.header(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        let text = serde_json::to_string(&body).unwrap_or_default();
        resp.body(Body::Text(text)).unwrap_or_else(|_| Response::new(Body::Empty))
    }
}

/// A JSON response with the given status.
pub fn json<T: Serialize>(status: StatusCode, value: &T) -> Result<Response<Body>, ApiError> {
    let text = serde_json::to_string(value).map_err(ApiError::internal)?;
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::CACHE_CONTROL, "no-store")
        .body(Body::Text(text))
        .map_err(ApiError::internal)
}

/// Collapses a handler's result into a response in Uppy Companion's error shape,
/// `{"error": "<sentence>"}` (Uppy throws on any `error` field), same status codes.
pub fn respond_companion(result: Result<Response<Body>, ApiError>) -> Response<Body> {
    result.unwrap_or_else(|e| {
        let error = e.detail();
        let (mut parts, _) = e.into_response().into_parts();
        parts.headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        let body = serde_json::to_string(&CompanionError { error }).unwrap_or_default();
        Response::from_parts(parts, Body::Text(body))
    })
}

/// Collapses a handler's result into a response.
pub fn respond(result: Result<Response<Body>, ApiError>) -> Response<Body> {
    result.unwrap_or_else(ApiError::into_response)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body_of(r: &Response<Body>) -> Value {
        match r.body() {
            Body::Text(t) => serde_json::from_str(t).unwrap(),
            _ => panic!("expected text"),
        }
    }

    #[test]
    fn internal_errors_hide_their_cause() {
        let r = ApiError::internal("dynamodb: table secret-table not found").into_response();
        assert_eq!(r.status(), 500);
        let b = body_of(&r);
        assert!(!b.to_string().contains("secret-table"));
        assert_eq!(r.headers()["content-type"], "application/problem+json");
    }

    #[test]
    fn problem_shape() {
        let r = ApiError::TooManyRequests { detail: "slow down".into(), retry_after_secs: 30 }.into_response();
        assert_eq!(r.status(), 429);
        assert_eq!(r.headers()["retry-after"], "30");
        let b = body_of(&r);
        assert_eq!(b["status"], 429);
        assert_eq!(b["detail"], "slow down");
        assert_eq!(b["type"], "urn:hoist:problem:quota-exceeded");
    }

    /// The one place a domain error becomes a status: each meaning, its status, and
    /// internals never shown.
    #[test]
    fn domain_errors_map_to_statuses() {
        use crate::domain::UploadStatus;
        use crate::ports::{ObjectStoreError, QueueError, RepoError};
        let cases: Vec<(UploadError, u16)> = vec![
            (Invalid::new("size", "too big").into(), 422),
            (UploadError::NotFound, 404),
            (UploadError::FileNotFound, 404),
            (UploadError::NotOpen { action: "sign parts", status: UploadStatus::Aborted, expires_at: 0 }, 409),
            (UploadError::LeaseHeld, 409),
            (UploadError::Incomplete { detail: "x".into(), missing_parts: vec![[2, 3]], mismatched_parts: None }, 409),
            (UploadError::TooLarge { size: 2, limit: 1 }, 422),
            (UploadError::QuotaExceeded { max_open: 1, max_bytes: 1 }, 429),
            (UploadError::StorageFull { needed: 2, available: 1, limit: 3 }, 413),
            (UploadError::RateLimited { limit: 1, retry_after_secs: 3 }, 429),
            (UploadError::OverCeiling { limit: 3 }, 413),
            (UploadError::StillProcessing, 409),
            (UploadError::NotServable { status: UploadStatus::Quarantined, reason: "EICAR".into() }, 403),
            (UploadError::Gone("The file was deleted."), 410),
            (UploadError::LinkExpired, 403),
            (
                RepoError::Service {
                    op: "GetItem",
                    code: "ThrottlingException".into(),
                    message: String::new(),
                    throttled: true,
                }
                .into(),
                503,
            ),
            (ObjectStoreError::Other { op: "HeadObject", detail: "bucket secret-bkt".into() }.into(), 500),
            (UploadError::Queue(QueueError("queue https://sqs/secret-queue".into())), 500),
        ];
        for (e, status) in cases {
            let text = e.to_string();
            let r = ApiError::from(e).into_response();
            assert_eq!(r.status(), status, "{text}");
            let b = body_of(&r);
            assert!(!b.to_string().contains("secret"), "internals leak: {b}");
        }
        let incomplete = UploadError::Incomplete {
            detail: "x".into(),
            missing_parts: vec![[2, 3]],
            mismatched_parts: Some(vec![5]),
        };
        let p = ApiError::from(incomplete).problem();
        assert_eq!(
            (p.extra["missing_parts"].clone(), p.extra["mismatched_parts"].clone()),
            (json!([[2, 3]]), json!([5]))
        );
        let p = ApiError::from(UploadError::TooLarge { size: 2, limit: 1 }).problem();
        assert_eq!(p.field.as_deref(), Some("size"));
    }

    /// Logs keep the whole chain of an internal error.
    #[test]
    fn internal_errors_keep_their_source() {
        use crate::ports::RepoError;
        let e = ApiError::from(UploadError::Repo(RepoError::Corrupt("item 42".into())));
        assert_eq!(e.detail(), "Something went wrong on our side. Nothing was lost; please retry in a moment.");
        assert!(chain(&e).contains("item 42"), "{}", chain(&e));
    }
}
