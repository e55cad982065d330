//! The upload state machine, written once. Adapters turn [`Transition`]s into their own
//! conditional writes (DynamoDB condition expressions, the in-memory fake's checks), so
//! which status may follow which is decided here and nowhere else.
//!
//! ```text
//! uploading ──complete──▶ completing ──▶ processing ──▶ ready | quarantined | rejected | corrupt | unscanned | failed
//!     │  ▲                    │  ▲ (stale lease: taken over)
//!     │  └──refused (409)─────┘──┘
//!     ├──DELETE──▶ aborted
//!     └──janitor─▶ expired
//! ```

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UploadStatus {
    /// Parts are being sent.
    Uploading,
    /// One `complete` call holds the lease and is finishing the object.
    Completing,
    /// The object exists; a processing job was sent.
    Processing,
    Ready,
    Quarantined,
    Rejected,
    Corrupt,
    Failed,
    Aborted,
    Expired,
    /// Could not be fully scanned; not served under the default policy.
    Unscanned,
}

impl UploadStatus {
    pub const ALL: [UploadStatus; 11] = [
        UploadStatus::Uploading,
        UploadStatus::Completing,
        UploadStatus::Processing,
        UploadStatus::Ready,
        UploadStatus::Quarantined,
        UploadStatus::Rejected,
        UploadStatus::Corrupt,
        UploadStatus::Failed,
        UploadStatus::Aborted,
        UploadStatus::Expired,
        UploadStatus::Unscanned,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            UploadStatus::Uploading => "uploading",
            UploadStatus::Completing => "completing",
            UploadStatus::Processing => "processing",
            UploadStatus::Ready => "ready",
            UploadStatus::Quarantined => "quarantined",
            UploadStatus::Rejected => "rejected",
            UploadStatus::Corrupt => "corrupt",
            UploadStatus::Failed => "failed",
            UploadStatus::Aborted => "aborted",
            UploadStatus::Expired => "expired",
            UploadStatus::Unscanned => "unscanned",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|x| x.as_str() == s)
    }

    /// The object was assembled (processing or any outcome of processing).
    pub fn is_completed(self) -> bool {
        matches!(
            self,
            UploadStatus::Processing
                | UploadStatus::Ready
                | UploadStatus::Quarantined
                | UploadStatus::Rejected
                | UploadStatus::Corrupt
                | UploadStatus::Failed
                | UploadStatus::Unscanned
        )
    }

    /// A verdict of processing: the end of the line.
    pub fn is_final_verdict(self) -> bool {
        self.is_completed() && self != UploadStatus::Processing
    }
}

/// Every status change the service makes. Each is one conditional write: it happens only
/// when the stored status is one of [`Transition::from`] (and, for taking over a
/// completion, the lease has run out), so concurrent writers cannot both win.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// `uploading → completing`, or a stale `completing` lease taken over.
    BeginCompletion,
    /// `completing → uploading`: the completion was refused; the client may fix and retry.
    ReleaseCompletion,
    /// `completing → processing`: the object exists and its job is queued.
    FinishCompletion,
    /// `uploading → aborted | expired`.
    Close(UploadStatus),
    /// `processing → a verdict`.
    FinishProcessing(UploadStatus),
}

impl Transition {
    /// Statuses this transition may start from.
    pub fn from(self) -> &'static [UploadStatus] {
        match self {
            Transition::BeginCompletion => &[UploadStatus::Uploading, UploadStatus::Completing],
            Transition::ReleaseCompletion | Transition::FinishCompletion => &[UploadStatus::Completing],
            Transition::Close(_) => &[UploadStatus::Uploading],
            Transition::FinishProcessing(_) => &[UploadStatus::Processing],
        }
    }

    /// The status it ends in.
    pub fn to(self) -> UploadStatus {
        match self {
            Transition::BeginCompletion => UploadStatus::Completing,
            Transition::ReleaseCompletion => UploadStatus::Uploading,
            Transition::FinishCompletion => UploadStatus::Processing,
            Transition::Close(to) | Transition::FinishProcessing(to) => to,
        }
    }

    /// Whether a `completing` session may be taken over only once its lease ran out.
    pub fn needs_stale_lease(self, from: UploadStatus) -> bool {
        self == Transition::BeginCompletion && from == UploadStatus::Completing
    }

    /// The decision itself, for adapters that check in code: may an upload in `current`
    /// (with `lease_until`) take this transition at `now`?
    pub fn allowed(self, current: UploadStatus, lease_until: Option<i64>, now: i64) -> bool {
        self.is_well_formed()
            && self.from().contains(&current)
            && (!self.needs_stale_lease(current) || lease_until.is_some_and(|l| l < now))
    }

    /// Close and FinishProcessing carry their target; only real targets are allowed.
    fn is_well_formed(self) -> bool {
        match self {
            Transition::Close(to) => matches!(to, UploadStatus::Aborted | UploadStatus::Expired),
            Transition::FinishProcessing(to) => to.is_final_verdict(),
            _ => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_round_trip_their_names() {
        for s in UploadStatus::ALL {
            assert_eq!(UploadStatus::parse(s.as_str()), Some(s));
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
        }
        assert_eq!(UploadStatus::parse("nope"), None);
    }

    #[test]
    fn the_machine() {
        use UploadStatus::*;
        let t = Transition::BeginCompletion;
        assert!(t.allowed(Uploading, None, 10));
        assert!(!t.allowed(Completing, Some(10), 10), "a live lease is not taken over");
        assert!(t.allowed(Completing, Some(9), 10), "a stale lease is");
        assert!(!t.allowed(Processing, None, 10));
        assert!(Transition::FinishCompletion.allowed(Completing, Some(99), 10));
        assert!(!Transition::FinishCompletion.allowed(Uploading, None, 10));
        assert!(Transition::Close(Aborted).allowed(Uploading, None, 10));
        assert!(!Transition::Close(Aborted).allowed(Completing, None, 10));
        assert!(!Transition::Close(Ready).allowed(Uploading, None, 10), "closing is not a verdict");
        assert!(Transition::FinishProcessing(Quarantined).allowed(Processing, None, 10));
        assert!(!Transition::FinishProcessing(Quarantined).allowed(Ready, None, 10), "verdicts are written once");
        assert!(!Transition::FinishProcessing(Processing).allowed(Processing, None, 10));
    }
}
