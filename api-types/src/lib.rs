//! Hoist's wire contract, shared by the server (`shared`), the CLI and the end-to-end
//! tests, so a renamed field fails to compile instead of failing at run time.
//!
//! - [`uploads`], [`files`], [`companion`]: every request and response body;
//! - [`problem`]: the problem+json error shape (and Companion's `{error}`);
//! - [`plan`], [`ranges`], [`limits`]: how a file is cut into parts, compact part ranges,
//!   and S3's limits, which clients must compute exactly as the server does.
//!
//! Only serde here: no AWS, no HTTP stack.

pub mod companion;
pub mod files;
pub mod limits;
pub mod plan;
pub mod problem;
pub mod ranges;
pub mod uploads;

pub use limits::{ByteSize, Invalid, PartNumber};
pub use plan::PartPlan;
