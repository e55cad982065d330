//! Part-plan arithmetic: how a file of `size` bytes is cut into S3 parts.
//!
//! Invariants (checked by the constructor, relied upon everywhere else):
//! - 1 <= part_count <= 10,000 (an empty file is one empty part);
//! - every part but the last is exactly `part_size`, within 5 MiB..=5 GiB;
//! - the last part is 1..=part_size bytes (0 only for an empty file).

use serde::Serialize;

use crate::limits::{ByteSize, Invalid, PartNumber, MIB, S3_MAX_PARTS, S3_MAX_PART_SIZE, S3_MIN_PART_SIZE};

/// The server's default part size (`HOIST_DEFAULT_PART_SIZE` may change it there).
pub const DEFAULT_PART_SIZE: u64 = 16 * MIB;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct PartPlan {
    size: u64,
    part_size: u64,
    part_count: u32,
}

fn div_ceil(a: u64, b: u64) -> u64 {
    a.div_ceil(b)
}

impl PartPlan {
    /// Plans `size` bytes. `requested` is the client's wish (validated, never
    /// adjusted silently); otherwise `default_part_size`, grown in whole MiB
    /// until the file fits in 10,000 parts.
    pub fn new(size: ByteSize, requested: Option<u64>, default_part_size: u64) -> Result<Self, Invalid> {
        let size = size.get();
        let part_size = match requested {
            Some(p) => {
                if !(S3_MIN_PART_SIZE..=S3_MAX_PART_SIZE).contains(&p) {
                    return Err(Invalid::new(
                        "part_size",
                        format!("part_size {p} is outside S3's range of 5 MiB ({S3_MIN_PART_SIZE}) to 5 GiB ({S3_MAX_PART_SIZE}) bytes."),
                    ));
                }
                if div_ceil(size, p) > u64::from(S3_MAX_PARTS) {
                    return Err(Invalid::new(
                        "part_size",
                        format!(
                            "part_size {p} would cut this file into {} parts; S3 allows at most 10000. Use at least {} bytes or leave part_size out.",
                            div_ceil(size, p),
                            div_ceil(size, u64::from(S3_MAX_PARTS))
                        ),
                    ));
                }
                p
            }
            None => {
                let needed = div_ceil(div_ceil(size, u64::from(S3_MAX_PARTS)), MIB) * MIB;
                default_part_size.clamp(S3_MIN_PART_SIZE, S3_MAX_PART_SIZE).max(needed).min(S3_MAX_PART_SIZE)
            }
        };
        let part_count = div_ceil(size, part_size).max(1);
        // ByteSize caps size at 10,000 x 5 GiB, so this cannot fail; keep the check anyway
        // so the invariant lives next to the arithmetic.
        if part_count > u64::from(S3_MAX_PARTS) {
            return Err(Invalid::new("size", "this file cannot fit in S3's 10,000 parts."));
        }
        Ok(Self { size, part_size, part_count: part_count as u32 })
    }

    /// The plan the server makes when the client names no part size (default settings).
    pub fn default_for(size: ByteSize) -> Self {
        match Self::new(size, None, DEFAULT_PART_SIZE) {
            Ok(p) => p,
            // Unreachable: with no requested size the rule always fits ByteSize's range.
            Err(_) => Self { size: size.get(), part_size: S3_MAX_PART_SIZE, part_count: S3_MAX_PARTS },
        }
    }

    pub fn size(&self) -> u64 {
        self.size
    }
    pub fn part_size(&self) -> u64 {
        self.part_size
    }
    pub fn part_count(&self) -> u32 {
        self.part_count
    }

    /// Rebuilds a stored plan (values that were validated when it was made).
    pub fn from_stored(size: u64, part_size: u64, part_count: u32) -> Option<Self> {
        let p = Self::new(ByteSize::new(size).ok()?, Some(part_size), part_size).ok()?;
        (p.part_count == part_count).then_some(p)
    }

    /// Whether `n` belongs to this plan.
    pub fn contains(&self, n: PartNumber) -> bool {
        n.get() <= self.part_count
    }

    /// Byte offset and exact length of part `n`, or `None` outside the plan.
    pub fn part_range(&self, n: PartNumber) -> Option<(u64, u64)> {
        if !self.contains(n) {
            return None;
        }
        let offset = u64::from(n.get() - 1) * self.part_size;
        Some((offset, (self.size - offset).min(self.part_size)))
    }

    pub fn part_len(&self, n: PartNumber) -> Option<u64> {
        self.part_range(n).map(|(_, len)| len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::{GIB, S3_MAX_OBJECT_SIZE, TIB};

    const DEFAULT: u64 = 16 * MIB;

    fn plan(size: u64) -> PartPlan {
        PartPlan::new(ByteSize::new(size).unwrap(), None, DEFAULT).unwrap()
    }

    fn check_invariants(p: &PartPlan) {
        assert!(p.part_count >= 1 && p.part_count <= S3_MAX_PARTS);
        assert!((S3_MIN_PART_SIZE..=S3_MAX_PART_SIZE).contains(&p.part_size));
        let total: u64 = (1..=p.part_count).map(|n| p.part_len(PartNumber::new(n).unwrap()).unwrap()).sum();
        assert_eq!(total, p.size);
        let last = p.part_len(PartNumber::new(p.part_count).unwrap()).unwrap();
        assert!(last <= p.part_size);
        assert!(last > 0 || p.size == 0);
    }

    #[test]
    fn empty_file_is_one_empty_part() {
        let p = plan(0);
        assert_eq!(p.part_count(), 1);
        assert_eq!(p.part_len(PartNumber::new(1).unwrap()), Some(0));
        assert_eq!(p.part_len(PartNumber::new(2).unwrap()), None);
        check_invariants(&p);
    }

    #[test]
    fn exactly_five_mib() {
        let p = PartPlan::new(ByteSize::new(5 * MIB).unwrap(), Some(5 * MIB), DEFAULT).unwrap();
        assert_eq!((p.part_count(), p.part_size()), (1, 5 * MIB));
        let p = PartPlan::new(ByteSize::new(5 * MIB + 1).unwrap(), Some(5 * MIB), DEFAULT).unwrap();
        assert_eq!(p.part_count(), 2);
        assert_eq!(p.part_len(PartNumber::new(2).unwrap()), Some(1));
        check_invariants(&p);
        let p = plan(5 * MIB);
        assert_eq!(p.part_count(), 1);
        check_invariants(&p);
    }

    #[test]
    fn largest_object_uses_all_parts_at_max_size() {
        let p = plan(S3_MAX_OBJECT_SIZE);
        assert_eq!(p.part_count(), 10_000);
        assert_eq!(p.part_size(), 5 * GIB);
        check_invariants(&p);
        let last = PartNumber::new(10_000).unwrap();
        assert_eq!(p.part_range(last), Some((9_999 * 5 * GIB, 5 * GIB)));
    }

    #[test]
    fn ten_thousand_parts_boundary() {
        // Exactly 10,000 parts of the default size, then one byte more.
        let p = plan(10_000 * DEFAULT);
        assert_eq!((p.part_count(), p.part_size()), (10_000, DEFAULT));
        let p = plan(10_000 * DEFAULT + 1);
        assert!(p.part_count() <= 10_000);
        assert_eq!(p.part_size(), DEFAULT + MIB);
        check_invariants(&p);
    }

    #[test]
    fn five_tib_fits() {
        let p = plan(5 * TIB);
        assert!(p.part_count() <= 10_000);
        assert_eq!(p.part_size() % MIB, 0);
        check_invariants(&p);
    }

    #[test]
    fn requested_part_size_validated() {
        let s = ByteSize::new(GIB).unwrap();
        assert!(PartPlan::new(s, Some(5 * MIB - 1), DEFAULT).is_err());
        assert!(PartPlan::new(s, Some(5 * GIB + 1), DEFAULT).is_err());
        assert_eq!(PartPlan::new(s, Some(8 * MIB), DEFAULT).unwrap().part_count(), 128);
        let big = ByteSize::new(10_000 * 5 * MIB + 1).unwrap();
        let e = PartPlan::new(big, Some(5 * MIB), DEFAULT).unwrap_err();
        assert_eq!(e.field, "part_size");
    }

    #[test]
    fn invariants_hold_on_a_sweep() {
        let mut s: u64 = 1;
        while s < S3_MAX_OBJECT_SIZE {
            check_invariants(&plan(s));
            check_invariants(&plan(s - 1));
            check_invariants(&plan(s + 1));
            s = s.saturating_mul(3);
        }
    }

    #[test]
    fn from_stored_round_trips() {
        let p = plan(3 * GIB + 7);
        assert_eq!(PartPlan::from_stored(p.size(), p.part_size(), p.part_count()), Some(p));
        assert_eq!(PartPlan::from_stored(p.size(), p.part_size(), p.part_count() + 1), None);
    }
}
