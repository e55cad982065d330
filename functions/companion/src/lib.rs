//! Uppy's Companion S3 multipart routes under `/s3`, so `@uppy/aws-s3` can point at
//! this API and nothing else. One binary for the routes (one policy); API Gateway's
//! route key picks the action.
use std::sync::Arc;

use lambda_http::{http::StatusCode, Body, Request, Response};
use shared::{
    http::{self, auth, companion, ApiError},
    App,
};

pub const FUNCTION: &str = "companion";

pub async fn handle(app: Arc<App>, req: Request) -> Response<Body> {
    http::respond_companion(
        async {
            let owner = auth::admitted_owner(&app, &req).await?;
            let now = shared::now();
            let ids = || companion::parse_ids(http::path_param(&req, "uploadId"), http::query_param(&req, "key"));
            match http::route_key(&req).as_str() {
                "POST /s3/multipart" => {
                    let body: companion::CreateRequest = http::json_body(&req)?;
                    http::json(StatusCode::OK, &companion::create(&app, &owner, body, now).await?)
                }
                "GET /s3/multipart/{uploadId}" => {
                    http::json(StatusCode::OK, &companion::list_parts(&app, &owner, &ids()?, now).await?)
                }
                "GET /s3/multipart/{uploadId}/batch" => {
                    let parts = http::query_param(&req, "partNumbers");
                    http::json(StatusCode::OK, &companion::sign_batch(&app, &owner, &ids()?, parts, now).await?)
                }
                "GET /s3/multipart/{uploadId}/{partNumber}" => {
                    let n = http::path_param(&req, "partNumber").unwrap_or("");
                    http::json(StatusCode::OK, &companion::sign_one(&app, &owner, &ids()?, n, now).await?)
                }
                "POST /s3/multipart/{uploadId}/complete" => {
                    http::json(StatusCode::OK, &companion::complete(&app, &owner, &ids()?, now).await?)
                }
                "DELETE /s3/multipart/{uploadId}" => {
                    http::json(StatusCode::OK, &companion::abort(&app, &owner, &ids()?, now).await?)
                }
                "GET /s3/params" => {
                    let (filename, content_type) =
                        (http::query_param(&req, "filename"), http::query_param(&req, "type"));
                    http::json(StatusCode::OK, &companion::params(&app, &owner, filename, content_type, now).await?)
                }
                _ => Err(ApiError::NotFound("No such route.")),
            }
        }
        .await,
    )
}
