//! API Gateway HTTP API Lambda request authorizer (simple responses): accepts the
//! bearer token from `Authorization` or from the `hoist_session` cookie, and hands the
//! owner to every route as `requestContext.authorizer.lambda.owner`. The dev server
//! calls [`decide`] too, so local and deployed auth are the same code.
use std::sync::Arc;

use aws_lambda_events::event::apigw::{
    ApiGatewayV2CustomAuthorizerSimpleResponse, ApiGatewayV2CustomAuthorizerV2Request,
};
use lambda_runtime::{Error, LambdaEvent};
use shared::{domain::Owner, http::authn::Verifier};

pub const FUNCTION: &str = "authorizer";

/// The owner a request is authorized as, from its Authorization header and cookies.
pub async fn decide<'a>(
    verifier: &Verifier,
    authorization: Option<&'a str>,
    cookies: impl IntoIterator<Item = &'a str>,
) -> Option<Owner> {
    let token = shared::http::authn::token_from(authorization, cookies)?;
    verifier.owner_of(token).await
}

pub async fn handle(
    verifier: Arc<Verifier>,
    event: LambdaEvent<ApiGatewayV2CustomAuthorizerV2Request>,
) -> Result<ApiGatewayV2CustomAuthorizerSimpleResponse, Error> {
    let req = event.payload;
    let authorization = req.headers.get("authorization").and_then(|v| v.to_str().ok());
    let owner = decide(&verifier, authorization, req.cookies.iter().map(String::as_str)).await;
    let mut resp = ApiGatewayV2CustomAuthorizerSimpleResponse::default();
    match owner {
        Some(o) => {
            resp.is_authorized = true;
            resp.context = serde_json::json!({ "owner": o.as_str() });
        }
        None => {
            tracing::info!(route = req.route_key.as_deref().unwrap_or(""), "unauthorized request");
            resp.is_authorized = false;
            resp.context = serde_json::json!({});
        }
    }
    Ok(resp)
}
