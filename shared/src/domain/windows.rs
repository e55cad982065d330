//! Scanning a large file in windows: the byte ranges each window job reads.
//!
//! A file larger than one window is cut into windows of `window` bytes. Each window's
//! *scan* also reads the `overlap` bytes before it, so a signature that straddles a
//! boundary is whole in the next window's stream as long as it is shorter than the
//! overlap. The *hash* of window k reads exactly its own bytes, so the chained SHA-256
//! covers every byte once.

use serde::{Deserialize, Serialize};

use super::{Owner, UploadId, MIB};

/// How far each window's scan reaches back into the previous window: 1 MiB. ClamAV's
/// body signatures (and each sub-signature of a logical one) are at most a few KiB, so
/// 1 MiB covers any that straddles a boundary with room to spare, for 0.1 % more bytes
/// read per 1 GiB window. What it cannot cover: whole-file hash signatures (`.hdb`,
/// meaningless for multi-GiB files) and logical signatures whose parts lie more than
/// 1 MiB apart across a boundary (documented in docs/processing.md).
pub const WINDOW_OVERLAP: u64 = MIB;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowPlan {
    size: u64,
    window: u64,
}

impl WindowPlan {
    /// The plan for a file of `size` bytes and windows of `window` bytes (a whole number
    /// of MiB, larger than the overlap); `None` when one window holds the whole file.
    pub fn new(size: u64, window: u64) -> Option<Self> {
        (window > WINDOW_OVERLAP && window.is_multiple_of(MIB) && size > window).then_some(Self { size, window })
    }

    pub fn window(&self) -> u64 {
        self.window
    }

    pub fn count(&self) -> u32 {
        self.size.div_ceil(self.window) as u32
    }

    /// The bytes window `k`'s hash covers: exactly its own.
    pub fn hash_range(&self, k: u32) -> (u64, u64) {
        let start = u64::from(k) * self.window;
        (start.min(self.size), (start + self.window).min(self.size))
    }

    /// The bytes window `k`'s scan reads: its own, and the overlap before it.
    pub fn scan_range(&self, k: u32) -> (u64, u64) {
        let (start, end) = self.hash_range(k);
        (start.saturating_sub(WINDOW_OVERLAP), end)
    }
}

/// A job for one window of a large file. Delivered at least once, in any order: every
/// effect is conditional, and only the hash chain depends on order (job k+1 is sent by
/// job k).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum WindowJob {
    /// Scan window `index` (and, for window 0, sniff the type and make the thumbnail).
    Scan { upload_id: UploadId, owner: Owner, index: u32 },
    /// Carry the whole-file SHA-256 through window `index`.
    Hash { upload_id: UploadId, owner: Owner, index: u32 },
}

impl WindowJob {
    pub fn upload_id(&self) -> &UploadId {
        match self {
            WindowJob::Scan { upload_id, .. } | WindowJob::Hash { upload_id, .. } => upload_id,
        }
    }
}

/// What a window's scan found, recorded once per window.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WindowFinding {
    /// A malware signature.
    pub found: Option<String>,
    /// Why the window could not be fully scanned.
    pub gap: Option<String>,
    /// Window 0 only: what the file's first bytes are.
    pub head: Option<HeadFinding>,
}

/// What the first window learnt from the file's first bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeadFinding {
    pub detected_type: Option<String>,
    /// Why the bytes are not the declared type (the file is then rejected).
    pub type_rejection: Option<String>,
}

/// Where the whole-file hash stands after a window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HashProgress {
    /// The chaining state after this window (stored form).
    State(String),
    /// The last window: the whole file's SHA-256, hex.
    Digest(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_cover_every_byte_and_overlap_backwards() {
        assert_eq!(WindowPlan::new(10 * MIB, 10 * MIB), None, "one window holds it");
        assert_eq!(WindowPlan::new(10 * MIB, MIB), None, "a window must be longer than the overlap");
        let p = WindowPlan::new(10 * MIB + 1, 4 * MIB).unwrap();
        assert_eq!(p.count(), 3);
        assert_eq!(p.hash_range(0), (0, 4 * MIB));
        assert_eq!(p.hash_range(2), (8 * MIB, 10 * MIB + 1));
        assert_eq!(p.scan_range(0), (0, 4 * MIB));
        assert_eq!(p.scan_range(1), (3 * MIB, 8 * MIB));
        let hashed: u64 = (0..p.count()).map(|k| p.hash_range(k)).map(|(a, b)| b - a).sum();
        assert_eq!(hashed, 10 * MIB + 1);
        // The largest object in 1 GiB windows.
        let big = WindowPlan::new(crate::domain::S3_MAX_OBJECT_SIZE, 1024 * MIB).unwrap();
        assert_eq!(big.count(), 50_000);
        assert_eq!(big.hash_range(big.count() - 1).1, crate::domain::S3_MAX_OBJECT_SIZE);
    }

    #[test]
    fn jobs_say_their_kind() {
        let job = WindowJob::Hash { upload_id: UploadId::generate(), owner: Owner::parse("a").unwrap(), index: 3 };
        let text = serde_json::to_string(&job).unwrap();
        assert!(text.contains(r#""kind":"hash""#), "{text}");
        assert_eq!(serde_json::from_str::<WindowJob>(&text).unwrap(), job);
    }
}
