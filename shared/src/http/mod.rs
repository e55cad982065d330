//! The HTTP edge: request parsing, who is calling, the problem+json mapping of domain
//! errors (the only place that picks status codes), Uppy's Companion protocol, token
//! verification for the authorizer, and the Lambda glue that runs a handler.

pub mod auth;
pub mod authn;
pub mod companion;
pub mod lambda;
pub mod problem;
pub mod request;

pub use problem::{json, respond, respond_companion, ApiError};
pub use request::{base_url, json_body, parse_json, path_param, query_param, route_key};

use crate::domain::{UploadError, UploadId};

/// Parses an upload id from a path; a malformed one is just "not found".
pub fn upload_id(raw: Option<&str>) -> Result<UploadId, ApiError> {
    raw.and_then(|s| UploadId::parse(s).ok()).ok_or_else(|| UploadError::NotFound.into())
}

/// Parses a file id from a path; a malformed one is just "not found".
pub fn file_id(raw: Option<&str>) -> Result<UploadId, ApiError> {
    raw.and_then(|s| UploadId::parse(s).ok()).ok_or_else(|| UploadError::FileNotFound.into())
}
