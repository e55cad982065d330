//! How many API calls (ours) and S3 requests a client makes to upload a file,
//! from the real part planner and the real batch limits. Prints a Markdown table.
//! Run: `cargo bench -p shared --bench api_calls`.

use shared::{
    config::{RECORD_BATCH_MAX, SIGN_BATCH_MAX},
    domain::{ByteSize, PartPlan, GIB, MIB, TIB},
};

fn main() {
    let default_part = 16 * MIB;
    // A just-in-time client signs and records in windows of this many parts, so no URL
    // waits long enough to expire (the CLI's default window).
    let window = 64u64;
    println!("| file size | part size | parts | fewest API calls (create + sign + record + complete) | API calls signing just in time, windows of {window} | S3 PUTs |");
    println!("|---|---|---|---|---|---|");
    for (label, size) in [
        ("100 MiB", 100 * MIB),
        ("1 GiB", GIB),
        ("10 GiB", 10 * GIB),
        ("100 GiB", 100 * GIB),
        ("1 TiB", TIB),
        ("5 TiB", 5 * TIB),
    ] {
        let plan = PartPlan::new(ByteSize::new(size).expect("size"), None, default_part).expect("plan");
        let parts = u64::from(plan.part_count());
        let sign = parts.div_ceil(SIGN_BATCH_MAX as u64);
        let record = parts.div_ceil(RECORD_BATCH_MAX as u64);
        let fewest = 1 + sign + record + 1;
        let jit = 1 + 2 * parts.div_ceil(window) + 1;
        println!(
            "| {label} | {} MiB | {parts} | {fewest} (1 + {sign} + {record} + 1) | {jit} | {parts} |",
            plan.part_size() / MIB
        );
    }
}
