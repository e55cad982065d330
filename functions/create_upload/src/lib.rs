//! `POST /uploads`: validates the file, plans its parts, opens the S3 multipart upload.
use std::sync::Arc;

use lambda_http::{http::StatusCode, Body, Request, Response};
use shared::{
    http::{self, auth},
    usecases::create::{self, NewUpload},
    App,
};

pub const FUNCTION: &str = "create_upload";

pub async fn handle(app: Arc<App>, req: Request) -> Response<Body> {
    http::respond(
        async {
            let owner = auth::admitted_owner(&app, &req).await?;
            let body: api_types::uploads::CreateUploadRequest = http::json_body(&req)?;
            let new = NewUpload::parse(body, app.config.max_upload_size, &app.config.content_types)?;
            let created = create::create(&app, &owner, new, shared::now()).await?;
            http::json(StatusCode::CREATED, &created)
        }
        .await,
    )
}
