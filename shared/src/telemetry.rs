//! Structured JSON logs (tracing) and CloudWatch EMF metrics.

use std::time::{SystemTime, UNIX_EPOCH};

/// JSON logs to stdout, level from RUST_LOG (default info). Safe to call twice.
pub fn init(function: &'static str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_current_span(true)
        .with_span_list(false)
        .with_target(false)
        .try_init();
    let _ = STARTED.set(std::time::Instant::now());
    tracing::info!(function, "starting");
}

static STARTED: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();

/// Logs the end of init (clients built, connections warmed): `init_ms` since `init`, the
/// figure bench/sam_local.md reports per function.
pub fn ready(function: &'static str) {
    let init_ms = STARTED.get().map(|t| t.elapsed().as_secs_f64() * 1000.0).unwrap_or(0.0);
    tracing::info!(function, init_ms, "initialized");
}

/// One CloudWatch Embedded Metric Format line on stdout; CloudWatch turns it into
/// a metric with no API call. Namespace `Hoist`, dimension `function`.
pub fn metric(function: &str, name: &str, value: f64, unit: &str) {
    let ts = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0);
    let line = serde_json::json!({
        "_aws": {
            "Timestamp": ts,
            "CloudWatchMetrics": [{
                "Namespace": "Hoist",
                "Dimensions": [["function"]],
                "Metrics": [{"Name": name, "Unit": unit}]
            }]
        },
        "function": function,
        name: value,
    });
    println!("{line}");
}
