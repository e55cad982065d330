//! The owner's catalog: `GET /files`, `GET /files/{id}`, `DELETE /files/{id}`,
//! `POST /files/{id}/restore`, `POST /files/{id}/links`. One binary for these routes
//! (they share one least-privilege policy); API Gateway's route key picks the action.
use std::sync::Arc;

use lambda_http::{http::StatusCode, Body, Request, Response};
use shared::{api, api::ApiError, auth, files, App};

pub const FUNCTION: &str = "catalog";

pub async fn handle(app: Arc<App>, req: Request) -> Response<Body> {
    api::respond(
        async {
            let owner = auth::owner(&req)?;
            let base = api::base_url(&req, app.config.public_base_url.as_deref());
            let now = shared::now();
            let id = || files::parse_file_id(api::path_param(&req, "id"));
            match api::route_key(&req).as_str() {
                "GET /files" => {
                    let q = files::ListQuery::parse(
                        api::query_param(&req, "status"),
                        api::query_param(&req, "include_deleted"),
                        api::query_param(&req, "limit"),
                        api::query_param(&req, "cursor"),
                    )?;
                    api::json(StatusCode::OK, &files::list(&app, &owner, q, &base, now).await?)
                }
                "GET /files/{id}" => api::json(StatusCode::OK, &files::get(&app, &owner, &id()?, &base, now).await?),
                "DELETE /files/{id}" => {
                    api::json(StatusCode::OK, &files::delete(&app, &owner, &id()?, &base, now).await?)
                }
                "POST /files/{id}/restore" => {
                    api::json(StatusCode::OK, &files::restore(&app, &owner, &id()?, &base, now).await?)
                }
                "POST /files/{id}/links" => {
                    let body: files::LinkRequest =
                        if req.body().is_empty() { files::LinkRequest::default() } else { api::json_body(&req)? };
                    api::json(StatusCode::CREATED, &files::create_link(&app, &owner, &id()?, body, &base, now).await?)
                }
                _ => Err(ApiError::NotFound("No such route.")),
            }
        }
        .await,
    )
}
