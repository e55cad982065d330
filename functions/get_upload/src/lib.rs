//! `GET /uploads/{id}`: status, progress and the missing parts a client resumes with.
//! `GET /uploads`: the caller's open uploads and quotas (what to finish or abort).
//! `GET /uploads/{id}/parts`: the parts S3 holds for an open upload (resume).
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
            let owner = auth::admitted_owner(&app, &req).await?;
            if http::route_key(&req) == "GET /uploads" {
                let open = parts::list_open(&app, &owner, shared::now()).await?;
                return http::json(StatusCode::OK, &open);
            }
            let id = http::upload_id(http::path_param(&req, "id"))?;
            if http::route_key(&req) == "GET /uploads/{id}/parts" {
                let held = parts::held_parts(&app, &owner, &id, shared::now()).await?;
                return http::json(StatusCode::OK, &held);
            }
            let status = parts::status(&app, &owner, &id, shared::now()).await?;
            http::json(StatusCode::OK, &status)
        }
        .await,
    )
}
