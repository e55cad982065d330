//! The owner's catalog: `GET /files`, `GET /files/{id}`, `DELETE /files/{id}`,
//! `POST /files/{id}/restore`, `POST /files/{id}/links`. One binary for these routes
//! (they share one least-privilege policy); API Gateway's route key picks the action.
use std::sync::Arc;

use api_types::files::LinkRequest;
use lambda_http::{http::StatusCode, Body, Request, Response};
use shared::{
    http::{self, auth, ApiError},
    usecases::{catalog, links},
    App,
};

pub const FUNCTION: &str = "catalog";

pub async fn handle(app: Arc<App>, req: Request) -> Response<Body> {
    http::respond(
        async {
            let owner = auth::admitted_owner(&app, &req).await?;
            let base = http::base_url(&req, app.config.public_base_url.as_deref());
            let now = shared::now();
            let id = || http::file_id(http::path_param(&req, "id"));
            match http::route_key(&req).as_str() {
                "GET /files" => {
                    let q = catalog::ListQuery::parse(
                        http::query_param(&req, "status"),
                        http::query_param(&req, "include_deleted"),
                        http::query_param(&req, "limit"),
                        http::query_param(&req, "cursor"),
                    )?;
                    http::json(StatusCode::OK, &catalog::list(&app, &owner, q, &base, now).await?)
                }
                "GET /files/{id}" => http::json(StatusCode::OK, &catalog::get(&app, &owner, &id()?, &base, now).await?),
                "DELETE /files/{id}" => {
                    http::json(StatusCode::OK, &catalog::delete(&app, &owner, &id()?, &base, now).await?)
                }
                "POST /files/{id}/restore" => {
                    http::json(StatusCode::OK, &catalog::restore(&app, &owner, &id()?, &base, now).await?)
                }
                "POST /files/{id}/links" => {
                    let body: LinkRequest =
                        if req.body().is_empty() { LinkRequest::default() } else { http::json_body(&req)? };
                    http::json(StatusCode::CREATED, &links::create_link(&app, &owner, &id()?, body, &base, now).await?)
                }
                _ => Err(ApiError::NotFound("No such route.")),
            }
        }
        .await,
    )
}
