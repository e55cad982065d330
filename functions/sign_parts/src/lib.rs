//! `POST /uploads/{id}/parts/sign`: short-lived presigned part URLs, signed just in time.
use std::sync::Arc;

use lambda_http::{http::StatusCode, Body, Request, Response};
use shared::{api, auth, uploads, App};

pub const FUNCTION: &str = "sign_parts";

pub async fn handle(app: Arc<App>, req: Request) -> Response<Body> {
    api::respond(
        async {
            let owner = auth::owner(&req)?;
            let id = uploads::parse_upload_id(api::path_param(&req, "id"))?;
            let body: uploads::SignPartsRequest = api::json_body(&req)?;
            let signed = uploads::sign_parts(&app, &owner, &id, body, shared::now()).await?;
            api::json(StatusCode::OK, &signed)
        }
        .await,
    )
}
