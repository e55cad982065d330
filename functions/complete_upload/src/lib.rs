//! `POST /uploads/{id}/complete`: assembles the object once and enqueues its processing job.
use std::sync::Arc;

use lambda_http::{http::StatusCode, Body, Request, Response};
use shared::{api, auth, uploads, App};

pub const FUNCTION: &str = "complete_upload";

pub async fn handle(app: Arc<App>, req: Request) -> Response<Body> {
    api::respond(
        async {
            let owner = auth::owner(&req)?;
            let id = uploads::parse_upload_id(api::path_param(&req, "id"))?;
            let done = uploads::complete(&app, &owner, &id, shared::now()).await?;
            api::json(StatusCode::OK, &done)
        }
        .await,
    )
}
