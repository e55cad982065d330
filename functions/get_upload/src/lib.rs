//! `GET /uploads/{id}`: status, progress and the missing parts a client resumes with.
use std::sync::Arc;

use lambda_http::{http::StatusCode, Body, Request, Response};
use shared::{api, auth, uploads, App};

pub const FUNCTION: &str = "get_upload";

pub async fn handle(app: Arc<App>, req: Request) -> Response<Body> {
    api::respond(
        async {
            let owner = auth::owner(&req)?;
            let id = uploads::parse_upload_id(api::path_param(&req, "id"))?;
            let status = uploads::status(&app, &owner, &id, shared::now()).await?;
            api::json(StatusCode::OK, &status)
        }
        .await,
    )
}
