//! S3's limits and the two numbers every client and the server agree on: byte sizes and
//! part numbers. Each newtype can only hold a valid value.

use std::fmt;

use serde::{Deserialize, Serialize};

pub const KIB: u64 = 1024;
pub const MIB: u64 = 1024 * KIB;
pub const GIB: u64 = 1024 * MIB;
pub const TIB: u64 = 1024 * GIB;

/// S3's smallest part (all parts but the last).
pub const S3_MIN_PART_SIZE: u64 = 5 * MIB;
/// S3's largest part.
pub const S3_MAX_PART_SIZE: u64 = 5 * GIB;
/// S3's part-number ceiling.
pub const S3_MAX_PARTS: u32 = 10_000;
/// S3's largest object: 10,000 parts of 5 GiB (about 48.8 TiB).
pub const S3_MAX_OBJECT_SIZE: u64 = S3_MAX_PARTS as u64 * S3_MAX_PART_SIZE;

/// Why a value was refused; `field` names the JSON field for the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{detail}")]
pub struct Invalid {
    pub field: &'static str,
    pub detail: String,
}

impl Invalid {
    pub fn new(field: &'static str, detail: impl Into<String>) -> Self {
        Self { field, detail: detail.into() }
    }
}

/// A byte count that never exceeds S3's largest object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "i128", into = "u64")]
pub struct ByteSize(u64);

impl ByteSize {
    pub fn new(bytes: u64) -> Result<Self, Invalid> {
        if bytes > S3_MAX_OBJECT_SIZE {
            return Err(Invalid::new(
                "size",
                format!(
                    "size {bytes} is larger than S3's largest object ({S3_MAX_OBJECT_SIZE} bytes, about 48.8 TiB)."
                ),
            ));
        }
        Ok(Self(bytes))
    }
    pub fn get(self) -> u64 {
        self.0
    }
}

impl TryFrom<i128> for ByteSize {
    type Error = Invalid;
    fn try_from(v: i128) -> Result<Self, Invalid> {
        if v < 0 {
            return Err(Invalid::new("size", "size must not be negative."));
        }
        ByteSize::new(u64::try_from(v).map_err(|_| Invalid::new("size", "size is far too large."))?)
    }
}

impl From<ByteSize> for u64 {
    fn from(b: ByteSize) -> u64 {
        b.0
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// An S3 part number, 1..=10,000.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "i64", into = "u32")]
pub struct PartNumber(u16);

impl PartNumber {
    pub fn new(n: u32) -> Result<Self, Invalid> {
        if n == 0 || n > S3_MAX_PARTS {
            return Err(Invalid::new("number", format!("part number {n} is outside S3's range 1..=10000.")));
        }
        Ok(Self(n as u16))
    }
    pub fn get(self) -> u32 {
        u32::from(self.0)
    }
}

impl TryFrom<i64> for PartNumber {
    type Error = Invalid;
    fn try_from(v: i64) -> Result<Self, Invalid> {
        if v <= 0 || v > i64::from(S3_MAX_PARTS) {
            return Err(Invalid::new("number", format!("part number {v} is outside S3's range 1..=10000.")));
        }
        PartNumber::new(v as u32)
    }
}

impl From<PartNumber> for u32 {
    fn from(p: PartNumber) -> u32 {
        p.get()
    }
}

impl fmt::Display for PartNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}
