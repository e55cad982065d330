//! `DELETE /uploads/{id}`: aborts the multipart upload and frees the quota.
use std::sync::Arc;

use lambda_http::{http::StatusCode, Body, Request, Response};
use shared::{api, auth, uploads, App};

pub const FUNCTION: &str = "abort_upload";

pub async fn handle(app: Arc<App>, req: Request) -> Response<Body> {
    api::respond(
        async {
            let owner = auth::owner(&req)?;
            let id = uploads::parse_upload_id(api::path_param(&req, "id"))?;
            let aborted = uploads::abort(&app, &owner, &id, shared::now()).await?;
            api::json(StatusCode::OK, &aborted)
        }
        .await,
    )
}
