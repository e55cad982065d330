//! `DELETE /uploads/{id}`: aborts the multipart upload and frees the quota.
use std::sync::Arc;

use lambda_http::{http::StatusCode, Body, Request, Response};
use shared::{
    http::{self, auth},
    usecases::abort,
    App,
};

pub const FUNCTION: &str = "abort_upload";

pub async fn handle(app: Arc<App>, req: Request) -> Response<Body> {
    http::respond(
        async {
            let owner = auth::admitted_owner(&app, &req).await?;
            let id = http::upload_id(http::path_param(&req, "id"))?;
            let aborted = abort::abort(&app, &owner, &id, shared::now()).await?;
            http::json(StatusCode::OK, &aborted)
        }
        .await,
    )
}
