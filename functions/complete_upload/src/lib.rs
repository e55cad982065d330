//! `POST /uploads/{id}/complete`: assembles the object once and enqueues its processing job.
use std::sync::Arc;

use lambda_http::{http::StatusCode, Body, Request, Response};
use shared::{
    http::{self, auth},
    usecases::complete,
    App,
};

pub const FUNCTION: &str = "complete_upload";

pub async fn handle(app: Arc<App>, req: Request) -> Response<Body> {
    http::respond(
        async {
            let owner = auth::admitted_owner(&app, &req).await?;
            let id = http::upload_id(http::path_param(&req, "id"))?;
            // No body (or an empty one): the hash, if any, was declared at creation.
            let declared = if req.body().as_ref().iter().all(u8::is_ascii_whitespace) {
                None
            } else {
                complete::declared_sha256(&http::json_body(&req)?)?
            };
            let done = complete::complete_declared(&app, &owner, &id, declared, shared::now()).await?;
            http::json(StatusCode::OK, &done)
        }
        .await,
    )
}
