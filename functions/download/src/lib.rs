//! `GET /d/{id}?...`: public (no login; the HMAC signature is the authorization).
//! Verifies the link in constant time, checks the file may be served, and answers
//! 302 to a presigned S3 GET that lives seconds.
use std::sync::Arc;

use lambda_http::{http::header, http::StatusCode, Body, Request, Response};
use shared::{
    domain::links::LinkQuery,
    http::{self, ApiError},
    usecases::download,
    App,
};

pub const FUNCTION: &str = "download";

pub async fn handle(app: Arc<App>, req: Request) -> Response<Body> {
    http::respond(
        async {
            let q = LinkQuery {
                v: http::query_param(&req, "v"),
                e: http::query_param(&req, "e"),
                d: http::query_param(&req, "d"),
                g: http::query_param(&req, "g"),
                k: http::query_param(&req, "k"),
                s: http::query_param(&req, "s"),
            };
            let id = http::path_param(&req, "id").unwrap_or("");
            let redirect = download::download(&app, id, &q, shared::now()).await?;
            Response::builder()
                .status(StatusCode::FOUND)
                .header(header::LOCATION, redirect.location)
                .header(header::CACHE_CONTROL, "no-store")
                .header("referrer-policy", "no-referrer")
                .body(Body::Empty)
                .map_err(ApiError::internal)
        }
        .await,
    )
}
