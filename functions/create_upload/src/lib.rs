//! `POST /uploads`: validates the file, plans its parts, opens the S3 multipart upload.
use std::sync::Arc;

use lambda_http::{http::StatusCode, Body, Request, Response};
use shared::{api, auth, uploads, App};

pub const FUNCTION: &str = "create_upload";

pub async fn handle(app: Arc<App>, req: Request) -> Response<Body> {
    api::respond(
        async {
            let owner = auth::owner(&req)?;
            let body: uploads::CreateUploadRequest = api::json_body(&req)?;
            let new = uploads::NewUpload::parse(body, app.config.max_upload_size, &app.config.content_types)?;
            let created = uploads::create(&app, &owner, new, shared::now()).await?;
            api::json(StatusCode::CREATED, &created)
        }
        .await,
    )
}
