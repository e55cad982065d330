//! Errors on the wire: `application/problem+json` (RFC 9457) on every route, and
//! Companion's `{"error": "..."}` on the `/s3` routes (Uppy throws on any `error` field).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Media type of [`Problem`] bodies.
pub const PROBLEM_JSON: &str = "application/problem+json";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Problem {
    /// `urn:hoist:problem:<slug>`, e.g. `urn:hoist:problem:invalid-input`.
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    /// A sentence saying what to fix.
    pub detail: String,
    /// The request field at fault, for validation errors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// Route-specific members, e.g. `missing_parts` and `mismatched_parts` on a refused
    /// completion, `s3_code` when S3 refused to assemble the parts.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Problem {
    /// The slug of `type` (`invalid-input` for `urn:hoist:problem:invalid-input`).
    pub fn slug(&self) -> &str {
        self.kind.rsplit(':').next().unwrap_or(&self.kind)
    }
}

/// Companion's error shape.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct CompanionError {
    pub error: String,
}
