//! Uppy's Companion S3 multipart routes under `/s3`, so `@uppy/aws-s3` can point at
//! this API and nothing else. One binary for the routes (one policy); API Gateway's
//! route key picks the action.
use std::sync::Arc;

use lambda_http::{http::StatusCode, Body, Request, Response};
use shared::{api, api::ApiError, auth, companion, App};

pub const FUNCTION: &str = "companion";

pub async fn handle(app: Arc<App>, req: Request) -> Response<Body> {
    api::respond_companion(
        async {
            let owner = auth::owner(&req)?;
            let now = shared::now();
            let ids = || companion::parse_ids(api::path_param(&req, "uploadId"), api::query_param(&req, "key"));
            match api::route_key(&req).as_str() {
                "POST /s3/multipart" => {
                    let body: companion::CreateRequest = api::json_body(&req)?;
                    api::json(StatusCode::OK, &companion::create(&app, &owner, body, now).await?)
                }
                "GET /s3/multipart/{uploadId}" => {
                    api::json(StatusCode::OK, &companion::list_parts(&app, &owner, &ids()?, now).await?)
                }
                "GET /s3/multipart/{uploadId}/batch" => {
                    let parts = api::query_param(&req, "partNumbers");
                    api::json(StatusCode::OK, &companion::sign_batch(&app, &owner, &ids()?, parts, now).await?)
                }
                "GET /s3/multipart/{uploadId}/{partNumber}" => {
                    let n = api::path_param(&req, "partNumber").unwrap_or("");
                    api::json(StatusCode::OK, &companion::sign_one(&app, &owner, &ids()?, n, now).await?)
                }
                "POST /s3/multipart/{uploadId}/complete" => {
                    api::json(StatusCode::OK, &companion::complete(&app, &owner, &ids()?, now).await?)
                }
                "DELETE /s3/multipart/{uploadId}" => {
                    api::json(StatusCode::OK, &companion::abort(&app, &owner, &ids()?, now).await?)
                }
                "GET /s3/params" => {
                    let (filename, content_type) = (api::query_param(&req, "filename"), api::query_param(&req, "type"));
                    api::json(StatusCode::OK, &companion::params(&app, &owner, filename, content_type, now).await?)
                }
                _ => Err(ApiError::NotFound("No such route.")),
            }
        }
        .await,
    )
}
