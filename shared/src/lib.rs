//! Hoist's core: the domain, the use cases, the ports they need and the adapters that
//! serve them. Read it top-down:
//!
//! - [`domain`]: newtypes that can only hold valid values, the upload entity, the state
//!   machine ([`domain::Transition`]) and the domain error ([`domain::UploadError`]);
//! - [`usecases`]: one module per use case (create, parts, complete, abort, arrival,
//!   janitor, catalog, links, download), calling only [`ports`];
//! - [`processing`]: the processing use case (one streaming pass) and its pure decisions;
//! - [`ports`]: `UploadRepo`, `ObjectStore`, `JobQueue`, `Scanner`;
//! - [`aws`]: the DynamoDB, S3 and SQS adapters (the only code importing the SDKs),
//!   and [`clamd`], the scanner adapter;
//! - [`http`]: the edge (parsing, problem+json, Companion, the authorizer's token check,
//!   the Lambda glue); handlers in `functions/` are a few lines over it;
//! - [`testing`] (feature `testing`): in-memory ports with fault injection.
//!
//! The wire types live in the `api-types` crate, shared with the CLI and the tests.

pub mod app;
pub mod aws;
pub mod clamd;
pub mod config;
pub mod domain;
pub mod http;
pub mod ports;
pub mod processing;
pub mod telemetry;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod usecases;

pub use api_types::ranges;
pub use app::{App, StartupError};

/// Seconds since the Unix epoch.
pub fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

/// Milliseconds since the Unix epoch.
pub fn now_millis() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// RFC 3339 text of a Unix time (empty if out of range).
pub fn rfc3339(t: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(t)
        .ok()
        .and_then(|d| d.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_default()
}
