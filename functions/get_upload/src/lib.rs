//! `GET /uploads/{id}`: status, progress and the missing parts a client resumes with.
use std::sync::Arc;

use lambda_http::{http::StatusCode, Body, Request, Response};
use shared::{
    http::{self, auth},
    usecases::parts,
    App,
};

pub const FUNCTION: &str = "get_upload";

pub async fn handle(app: Arc<App>, req: Request) -> Response<Body> {
    http::respond(
        async {
            let owner = auth::owner(&req)?;
            let id = http::upload_id(http::path_param(&req, "id"))?;
            let status = parts::status(&app, &owner, &id, shared::now()).await?;
            http::json(StatusCode::OK, &status)
        }
        .await,
    )
}
