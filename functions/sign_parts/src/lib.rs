//! `POST /uploads/{id}/parts/sign`: short-lived presigned part URLs, signed just in time.
use std::sync::Arc;

use lambda_http::{http::StatusCode, Body, Request, Response};
use shared::{
    http::{self, auth},
    usecases::parts,
    App,
};

pub const FUNCTION: &str = "sign_parts";

pub async fn handle(app: Arc<App>, req: Request) -> Response<Body> {
    http::respond(
        async {
            let owner = auth::admitted_owner(&app, &req).await?;
            let id = http::upload_id(http::path_param(&req, "id"))?;
            let body: api_types::uploads::SignPartsRequest = http::json_body(&req)?;
            let signed = parts::sign_parts(&app, &owner, &id, body, shared::now()).await?;
            http::json(StatusCode::OK, &signed)
        }
        .await,
    )
}
