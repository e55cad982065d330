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
            let done = complete::complete_declared(&app, &owner, &id, shared::now()).await?;
            http::json(StatusCode::OK, &done)
        }
        .await,
    )
}
