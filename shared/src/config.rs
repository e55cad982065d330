//! Configuration from the environment, read once at cold start, by one reader: the API
//! settings ([`Config`]), processing's ([`ProcessConfig`]) and the authorizer's
//! (`http::authn::Verifier::from_env`) all go through [`var`], [`required`] and [`number`].

use std::time::Duration;

use crate::domain::{ContentType, GIB, MIB, S3_MAX_OBJECT_SIZE, TIB};
use crate::processing::UnscannedPolicy;

#[derive(Debug, thiserror::Error)]
#[error("configuration {name}: {detail}")]
pub struct ConfigError {
    pub name: &'static str,
    pub detail: String,
}

/// Media types we never accept, whatever the allow-list says: executables,
/// installers and anything a browser would run as script.
pub const ALWAYS_BLOCKED_TYPES: &[&str] = &[
    "application/x-msdownload",
    "application/x-dosexec",
    "application/x-msdos-program",
    "application/vnd.microsoft.portable-executable",
    "application/x-executable",
    "application/x-elf",
    "application/x-sharedlib",
    "application/x-mach-binary",
    "application/x-msi",
    "application/x-ms-installer",
    "application/x-apple-diskimage",
    "application/vnd.apple.installer+xml",
    "application/java-archive",
    "application/x-java-archive",
    "application/x-sh",
    "application/x-shellscript",
    "text/x-shellscript",
    "application/x-csh",
    "application/x-bat",
    "application/x-powershell",
    "application/hta",
    "application/javascript",
    "application/ecmascript",
    "application/x-javascript",
    "text/javascript",
    "text/ecmascript",
    "text/x-python",
    "application/x-python-code",
    "application/x-httpd-php",
    "application/x-perl",
    "text/html",
    "application/xhtml+xml",
    "image/svg+xml",
];

pub const DEFAULT_ALLOWED_TYPES: &str = "image/jpeg,image/png,image/gif,image/webp,image/avif,image/heic,image/tiff,\
video/*,audio/*,application/pdf,application/zip,application/gzip,application/x-tar,application/x-7z-compressed,\
application/zstd,text/plain,text/csv,application/json,application/octet-stream";

/// Allow-list of media types: exact types or `type/*`, minus the always-blocked ones.
#[derive(Debug, Clone)]
pub struct ContentTypePolicy {
    allowed: Vec<String>,
}

impl ContentTypePolicy {
    pub fn parse(list: &str) -> Result<Self, ConfigError> {
        let allowed: Vec<String> =
            list.split(',').map(|s| s.trim().to_ascii_lowercase()).filter(|s| !s.is_empty()).collect();
        for a in &allowed {
            let ok = match a.strip_suffix("/*") {
                Some(top) => !top.contains('/') && !top.is_empty(),
                None => ContentType::parse(a).is_ok(),
            };
            if !ok {
                return Err(ConfigError {
                    name: "HOIST_ALLOWED_CONTENT_TYPES",
                    detail: format!("'{a}' is not a media type or type/*"),
                });
            }
        }
        Ok(Self { allowed })
    }

    pub fn is_blocked(ct: &ContentType) -> bool {
        ALWAYS_BLOCKED_TYPES.contains(&ct.as_str())
    }

    pub fn allows(&self, ct: &ContentType) -> bool {
        if Self::is_blocked(ct) {
            return false;
        }
        self.allowed.iter().any(|a| match a.strip_suffix("/*") {
            Some(top) => ct.top_level() == top,
            None => a == ct.as_str(),
        })
    }
}

#[derive(Debug, Clone)]
pub struct Config {
    pub bucket: String,
    pub table: String,
    pub queue_url: String,
    pub s3_force_path_style: bool,
    /// Largest upload accepted (default 5 TiB, never above S3's 48.8 TiB).
    pub max_upload_size: u64,
    pub default_part_size: u64,
    pub content_types: ContentTypePolicy,
    /// Lifetime of one presigned part URL.
    pub part_url_ttl: Duration,
    /// Lifetime of an upload session before the janitor expires it.
    pub upload_ttl: Duration,
    pub max_open_uploads: u64,
    pub max_bytes_in_flight: u64,
    /// Per owner: stored files plus open uploads.
    pub max_stored_bytes: u64,
    /// Per owner: API requests a minute (0: no limit).
    pub owner_requests_per_minute: u32,
    /// What a session of undeclared size (Companion, single POST) reserves, and so the
    /// most it may hold.
    pub deferred_ceiling: u64,
    /// How long a second `complete` waits for the first one to finish.
    pub complete_wait: Duration,
    /// How long a completion may hold its lease before another may take over.
    pub complete_lease: Duration,
    /// Download-link signing keys (catalog and download functions).
    pub link_keys: Option<crate::domain::links::LinkKeys>,
    pub link_default_ttl: Duration,
    pub link_max_ttl: Duration,
    /// How long a deleted file can be restored before the janitor purges it.
    pub delete_retention: Duration,
    /// Base URL for links; when unset, taken from the request (Host, X-Forwarded-Proto).
    pub public_base_url: Option<String>,
    /// Delay of processing jobs on the queue (see `Queue`).
    pub job_delay_secs: i32,
    /// A `processing` file on which nothing moved for this long is stalled: its job was
    /// lost or crashed out of every retry. Must be longer than the queue's whole retry
    /// cycle (maxReceiveCount x visibility timeout: 5 x 960 s in the template), and the
    /// same for every function (the template leaves the default everywhere). At least
    /// 15 minutes (the janitor's period).
    pub processing_stall: Duration,
    /// How many times the janitor sends a stalled file's job again before setting the
    /// file aside as `failed` (waits for the scanner are not counted).
    pub max_redrives: u32,
}

pub const SIGN_BATCH_MAX: usize = 1000;
pub const RECORD_BATCH_MAX: usize = 1000;

/// A set, non-blank environment variable.
pub fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

pub fn required(name: &'static str) -> Result<String, ConfigError> {
    var(name).ok_or(ConfigError { name, detail: "is required".into() })
}

pub fn number(name: &'static str, default: u64) -> Result<u64, ConfigError> {
    match var(name) {
        None => Ok(default),
        Some(v) => v.trim().parse().map_err(|_| ConfigError { name, detail: format!("'{v}' is not a whole number") }),
    }
}

impl Config {
    pub fn from_env() -> Result<Self, ConfigError> {
        let max_upload_size = number("HOIST_MAX_UPLOAD_SIZE", 5 * TIB)?;
        if max_upload_size > S3_MAX_OBJECT_SIZE {
            return Err(ConfigError {
                name: "HOIST_MAX_UPLOAD_SIZE",
                detail: "is above S3's largest object (48.8 TiB)".into(),
            });
        }
        let default_part_size = number("HOIST_DEFAULT_PART_SIZE", api_types::plan::DEFAULT_PART_SIZE)?;
        if !(5 * MIB..=5 * GIB).contains(&default_part_size) {
            return Err(ConfigError { name: "HOIST_DEFAULT_PART_SIZE", detail: "must be within 5 MiB..=5 GiB".into() });
        }
        let part_url_ttl = number("HOIST_PART_URL_TTL_SECONDS", 900)?;
        if !(1..=7 * 24 * 3600).contains(&part_url_ttl) {
            return Err(ConfigError {
                name: "HOIST_PART_URL_TTL_SECONDS",
                detail: "must be 1..=604800 (SigV4's 7 days)".into(),
            });
        }
        Ok(Self {
            bucket: required("HOIST_BUCKET")?,
            table: required("HOIST_TABLE")?,
            queue_url: required("HOIST_QUEUE_URL")?,
            s3_force_path_style: var("HOIST_S3_FORCE_PATH_STYLE").is_some_and(|v| v == "true" || v == "1"),
            max_upload_size,
            default_part_size,
            content_types: ContentTypePolicy::parse(
                &var("HOIST_ALLOWED_CONTENT_TYPES").unwrap_or_else(|| DEFAULT_ALLOWED_TYPES.into()),
            )?,
            part_url_ttl: Duration::from_secs(part_url_ttl),
            upload_ttl: Duration::from_secs(number("HOIST_UPLOAD_TTL_SECONDS", 3 * 24 * 3600)?),
            max_open_uploads: number("HOIST_MAX_OPEN_UPLOADS", 100)?,
            max_bytes_in_flight: number("HOIST_MAX_BYTES_IN_FLIGHT", 10 * TIB)?,
            max_stored_bytes: number("HOIST_MAX_STORED_BYTES", 100 * TIB)?,
            owner_requests_per_minute: number("HOIST_OWNER_REQUESTS_PER_MINUTE", 1200)? as u32,
            deferred_ceiling: number("HOIST_DEFERRED_CEILING_BYTES", 64 * GIB)?,
            complete_wait: Duration::from_secs(number("HOIST_COMPLETE_WAIT_SECONDS", 20)?),
            complete_lease: Duration::from_secs(number("HOIST_COMPLETE_LEASE_SECONDS", 120)?),
            link_keys: var("HOIST_LINK_KEYS")
                .map(|k| crate::domain::links::LinkKeys::parse(&k))
                .transpose()
                .map_err(|e| ConfigError { name: "HOIST_LINK_KEYS", detail: e.to_string() })?,
            link_default_ttl: Duration::from_secs(number("HOIST_LINK_DEFAULT_TTL_SECONDS", 3600)?),
            link_max_ttl: Duration::from_secs(number("HOIST_LINK_MAX_TTL_SECONDS", 7 * 24 * 3600)?),
            delete_retention: Duration::from_secs(number("HOIST_DELETE_RETENTION_SECONDS", 30 * 24 * 3600)?),
            public_base_url: var("HOIST_PUBLIC_BASE_URL"),
            job_delay_secs: number("HOIST_JOB_DELAY_SECONDS", 2)?.min(900) as i32,
            processing_stall: Duration::from_secs(number("HOIST_PROCESSING_STALL_SECONDS", 2 * 3600)?.max(900)),
            max_redrives: number("HOIST_MAX_REDRIVES", 2)?.min(100) as u32,
        })
    }
}

/// Processing settings (the `process` function).
#[derive(Debug, Clone)]
pub struct ProcessConfig {
    pub clamd_addr: String,
    /// How long a refused connection to clamd is retried (it may still be loading
    /// beside the function, started by the ClamAV layer's extension).
    pub clamd_start_wait: Duration,
    /// Files above this are not sent to clamd (its StreamMaxLength; ClamAV caps at 4 GB).
    pub scan_limit: u64,
    pub unscanned_policy: UnscannedPolicy,
    /// Images up to this size are buffered during the pass to make a thumbnail.
    pub thumbnail_max_bytes: u64,
    pub thumbnail_side: u32,
    /// The queue's maxReceiveCount: on the last delivery a failure is recorded as `failed`.
    pub max_receives: u32,
    /// Files larger than this are scanned in windows of this many bytes, each its own
    /// job (a whole number of MiB; one window plus its overlap must fit `scan_limit`).
    pub scan_window: u64,
}

impl ProcessConfig {
    pub fn from_env() -> Result<Self, ConfigError> {
        let unscanned_policy = match var("HOIST_UNSCANNED_POLICY").as_deref() {
            None | Some("block") => UnscannedPolicy::Block,
            Some("allow") => UnscannedPolicy::Allow,
            Some(other) => {
                return Err(ConfigError {
                    name: "HOIST_UNSCANNED_POLICY",
                    detail: format!("'{other}' is not block or allow"),
                })
            }
        };
        Self {
            clamd_addr: var("HOIST_CLAMD_ADDR").unwrap_or_else(|| "127.0.0.1:3310".into()),
            clamd_start_wait: Duration::from_secs(number("HOIST_CLAMD_START_SECONDS", 0)?.min(600)),
            scan_limit: number("HOIST_SCAN_LIMIT_BYTES", 1100 * MIB)?,
            unscanned_policy,
            thumbnail_max_bytes: number("HOIST_THUMBNAIL_MAX_BYTES", 64 * MIB)?,
            thumbnail_side: number("HOIST_THUMBNAIL_SIDE", 256)?.min(4096) as u32,
            max_receives: number("HOIST_MAX_RECEIVES", 5)?.min(1000) as u32,
            scan_window: number("HOIST_SCAN_WINDOW_BYTES", GIB)?,
        }
        .checked()
    }

    /// Refuses settings under which clamd would be sent more than it accepts.
    pub fn checked(self) -> Result<Self, ConfigError> {
        use crate::domain::WINDOW_OVERLAP;
        let name = "HOIST_SCAN_WINDOW_BYTES";
        if !self.scan_window.is_multiple_of(MIB) || self.scan_window <= WINDOW_OVERLAP {
            return Err(ConfigError { name, detail: "must be a whole number of MiB, larger than 1 MiB".into() });
        }
        if self.scan_window + WINDOW_OVERLAP > self.scan_limit {
            return Err(ConfigError {
                name,
                detail: format!(
                    "one window and its 1 MiB overlap ({} bytes) exceed the scanner's stream limit HOIST_SCAN_LIMIT_BYTES ({})",
                    self.scan_window + WINDOW_OVERLAP,
                    self.scan_limit
                ),
            });
        }
        Ok(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ct(s: &str) -> ContentType {
        ContentType::parse(s).unwrap()
    }

    #[test]
    fn default_policy() {
        let p = ContentTypePolicy::parse(DEFAULT_ALLOWED_TYPES).unwrap();
        assert!(p.allows(&ct("image/jpeg")));
        assert!(p.allows(&ct("video/mp4")));
        assert!(!p.allows(&ct("application/x-msdownload")));
        assert!(!p.allows(&ct("text/html")));
        assert!(!p.allows(&ct("image/svg+xml")));
        assert!(!p.allows(&ct("application/x-unknown")));
    }

    #[test]
    fn blocked_types_win_over_wildcards() {
        let p = ContentTypePolicy::parse("image/*, text/*, application/x-sh").unwrap();
        assert!(p.allows(&ct("image/png")));
        assert!(!p.allows(&ct("image/svg+xml")));
        assert!(!p.allows(&ct("text/html")));
        assert!(!p.allows(&ct("application/x-sh")));
        assert!(p.allows(&ct("text/plain")));
    }

    #[test]
    fn bad_policy_entries() {
        assert!(ContentTypePolicy::parse("image").is_err());
        assert!(ContentTypePolicy::parse("*/*/x").is_err());
    }
}
