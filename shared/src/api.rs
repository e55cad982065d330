//! The one API error type, problem+json responses (RFC 9457), and request parsing.
//!
//! Clients see a status, a short title and a sentence; internals are logged, never sent.

use http::{header, HeaderValue, StatusCode};
use lambda_http::{Body, Request, RequestExt, Response};
use serde::{de::DeserializeOwned, Serialize};
use serde_json::{json, Map, Value};

use crate::domain::Invalid;

/// Largest JSON body we parse (a full sign/record batch of 1,000 parts fits easily).
pub const MAX_JSON_BODY: usize = 1024 * 1024;

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
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<Invalid> for ApiError {
    fn from(e: Invalid) -> Self {
        ApiError::Invalid { field: Some(e.field.to_owned()), detail: e.detail }
    }
}

impl ApiError {
    pub fn internal(e: impl std::fmt::Display) -> Self {
        ApiError::Internal(e.to_string())
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

    /// The problem+json response. Internal errors are logged here, with their cause.
    pub fn into_response(self) -> Response<Body> {
        let status = self.status();
        if status.is_server_error() {
            tracing::error!(error = %self, status = status.as_u16(), "request failed");
        } else {
            tracing::info!(error = %self, status = status.as_u16(), "request refused");
        }
        let mut body = json!({
            "type": format!("urn:hoist:problem:{}", self.slug()),
            "title": status.canonical_reason().unwrap_or("Error"),
            "status": status.as_u16(),
            "detail": self.detail(),
        });
        let mut retry_after = None;
        match &self {
            ApiError::Invalid { field: Some(f), .. } => {
                body["field"] = json!(f);
            }
            ApiError::Conflict { extra, .. } => {
                for (k, v) in extra {
                    body[k] = v.clone();
                }
            }
            ApiError::TooManyRequests { retry_after_secs, .. }
            | ApiError::Unavailable { retry_after_secs, .. }
            | ApiError::ConflictRetry { retry_after_secs, .. } => {
                retry_after = Some(*retry_after_secs);
            }
            _ => {}
        }
        let mut resp = Response::builder()
            .status(status)
            .header(header::CONTENT_TYPE, "application/problem+json")
            .header(header::CACHE_CONTROL, "no-store");
        if let Some(s) = retry_after {
            resp = resp.header(header::RETRY_AFTER, s.to_string());
        }
        if matches!(self, ApiError::Unauthorized) {
            resp = resp.header(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        resp.body(Body::Text(body.to_string())).unwrap_or_else(|_| Response::new(Body::Empty))
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
        let problem = e.into_response();
        let (mut parts, body) = problem.into_parts();
        let detail = match &body {
            Body::Text(t) => {
                serde_json::from_str::<Value>(t).ok().and_then(|v| v["detail"].as_str().map(str::to_owned))
            }
            _ => None,
        }
        .unwrap_or_else(|| "Request failed.".into());
        parts.headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        Response::from_parts(parts, Body::Text(json!({ "error": detail }).to_string()))
    })
}

/// Collapses a handler's result into a response.
pub fn respond(result: Result<Response<Body>, ApiError>) -> Response<Body> {
    result.unwrap_or_else(ApiError::into_response)
}

/// Parses a JSON body into `T`, refusing unknown fields (T's serde attributes),
/// wrong media types and oversized bodies with a sentence saying which.
pub fn json_body<T: DeserializeOwned>(req: &Request) -> Result<T, ApiError> {
    if let Some(ct) = req.headers().get(header::CONTENT_TYPE) {
        let ct = ct.to_str().unwrap_or("").to_ascii_lowercase();
        let essence = ct.split(';').next().unwrap_or("").trim();
        if essence != "application/json" && !essence.ends_with("+json") {
            return Err(ApiError::UnsupportedMediaType(format!(
                "Send the request body as application/json, not '{essence}'."
            )));
        }
    }
    let bytes: &[u8] = req.body().as_ref();
    if bytes.len() > MAX_JSON_BODY {
        return Err(ApiError::PayloadTooLarge(format!(
            "The request body is {} bytes; at most {MAX_JSON_BODY} are accepted.",
            bytes.len()
        )));
    }
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::BadRequest("The request body is empty; a JSON object was expected.".into()));
    }
    parse_json(bytes)
}

/// Parses JSON bytes: syntax errors are 400, well-formed JSON of the wrong shape 422.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(bytes).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => {
            ApiError::Invalid { field: None, detail: format!("The request body does not fit this route: {e}.") }
        }
        _ => ApiError::BadRequest(format!("The request body is not valid JSON: {e}.")),
    })
}

/// The public base URL of this API (for links it hands out): configured, or the
/// request's own scheme and host as API Gateway forwards them.
pub fn base_url(req: &Request, configured: Option<&str>) -> String {
    if let Some(c) = configured {
        return c.trim_end_matches('/').to_owned();
    }
    let header = |n: &str| req.headers().get(n).and_then(|v| v.to_str().ok());
    let host = header("x-forwarded-host").or_else(|| header("host")).unwrap_or("localhost");
    let proto = header("x-forwarded-proto")
        .unwrap_or(if host.starts_with("127.0.0.1") || host.starts_with("localhost") { "http" } else { "https" });
    format!("{proto}://{host}")
}

/// The route API Gateway matched, e.g. `GET /files/{id}` (for binaries serving several).
pub fn route_key(req: &Request) -> String {
    match req.request_context_ref() {
        Some(lambda_http::request::RequestContext::ApiGatewayV2(ctx)) => ctx.route_key.clone().unwrap_or_default(),
        _ => String::new(),
    }
}

/// A path parameter as API Gateway extracted it.
pub fn path_param<'r>(req: &'r Request, name: &str) -> Option<&'r str> {
    req.path_parameters_ref().and_then(|p| p.first(name))
}

/// A query-string parameter.
pub fn query_param<'r>(req: &'r Request, name: &str) -> Option<&'r str> {
    req.query_string_parameters_ref().and_then(|q| q.first(name))
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

    #[test]
    fn json_errors_are_classified() {
        #[derive(serde::Deserialize, Debug)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct T {
            a: u32,
        }
        assert_eq!(parse_json::<T>(b"{").unwrap_err().status(), 400);
        assert_eq!(parse_json::<T>(b"{\"a\":1,\"b\":2}").unwrap_err().status(), 422);
        assert_eq!(parse_json::<T>(b"{\"a\":-1}").unwrap_err().status(), 422);
        assert!(parse_json::<T>(b"{\"a\":1}").is_ok());
    }
}
