//! Scheduled janitor: expires abandoned uploads (aborting their S3 multipart
//! uploads) and finishes completions whose caller died mid-way.
use std::sync::Arc;

use lambda_runtime::{Error, LambdaEvent};
use shared::{usecases::janitor, App};

pub const FUNCTION: &str = "janitor";

/// The event is EventBridge's scheduled event; its content does not matter.
pub async fn handle(app: Arc<App>, event: LambdaEvent<serde_json::Value>) -> Result<janitor::SweepReport, Error> {
    let report =
        janitor::sweep(&app, shared::now()).await.map_err(|e| Error::from(shared::http::problem::chain(&e)))?;
    tracing::info!(request_id = %event.context.request_id, ?report, "sweep done");
    Ok(report)
}
