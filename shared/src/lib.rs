//! Hoist's library: domain types, the upload service, AWS access, auth and errors.
//! Handlers in `functions/` are thin wrappers over [`uploads`].

pub mod api;
pub mod app;
pub mod auth;
pub mod authn;
pub mod companion;
pub mod config;
pub mod domain;
pub mod files;
pub mod lambda;
pub mod links;
pub mod pipeline;
pub mod plan;
pub mod processing;
pub mod queue;
pub mod ranges;
pub mod scanner;
pub mod storage;
pub mod store;
pub mod telemetry;
pub mod thumbnail;
pub mod uploads;

pub use app::App;

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
