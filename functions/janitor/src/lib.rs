//! Scheduled janitor: expires abandoned uploads (aborting their S3 multipart
//! uploads) and finishes completions whose caller died mid-way.
use std::sync::Arc;

use lambda_runtime::{Error, LambdaEvent};
use shared::{uploads, App};

pub const FUNCTION: &str = "janitor";

/// The event is EventBridge's scheduled event; its content does not matter.
pub async fn handle(app: Arc<App>, event: LambdaEvent<serde_json::Value>) -> Result<uploads::SweepReport, Error> {
    let report = uploads::sweep(&app, shared::now()).await.map_err(|e| Error::from(e.to_string()))?;
    tracing::info!(request_id = %event.context.request_id, ?report, "sweep done");
    Ok(report)
}
