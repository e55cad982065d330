//! API Gateway HTTP API Lambda request authorizer (simple responses): accepts the
//! bearer token from `Authorization`, or the `__Host-hoist_session` cookie under the
//! CSRF rules of [`BrowserPolicy`], and hands the owner to every route as
//! `requestContext.authorizer.lambda.owner`. The dev server calls [`decide`] too, so
//! local and deployed auth are the same code.
use std::sync::Arc;

use aws_lambda_events::event::apigw::{
    ApiGatewayV2CustomAuthorizerSimpleResponse, ApiGatewayV2CustomAuthorizerV2Request,
};
use lambda_runtime::{Error, LambdaEvent};
use shared::{
    domain::Owner,
    http::authn::{BrowserPolicy, Caller, Refusal, Verifier},
};

pub const FUNCTION: &str = "authorizer";

/// How requests are authenticated: the token check and the cookie rules.
pub struct Authorizer {
    pub verifier: Verifier,
    pub policy: BrowserPolicy,
}

impl Authorizer {
    pub fn from_env() -> Result<Self, shared::config::ConfigError> {
        Ok(Self { verifier: Verifier::from_env()?, policy: BrowserPolicy::from_env() })
    }
}

/// The owner a request is authorized as, or why not.
pub async fn decide(auth: &Authorizer, caller: &Caller<'_>) -> Result<Owner, Refusal> {
    auth.policy.authenticate(&auth.verifier, caller).await
}

pub async fn handle(
    auth: Arc<Authorizer>,
    event: LambdaEvent<ApiGatewayV2CustomAuthorizerV2Request>,
) -> Result<ApiGatewayV2CustomAuthorizerSimpleResponse, Error> {
    let req = event.payload;
    let header = |name: &str| req.headers.get(name).and_then(|v| v.to_str().ok());
    // The route's own path (`GET /files/{id}` → `/files/{id}`): unlike `rawPath`, it has
    // no stage or custom-domain base path in front.
    let path = req
        .route_key
        .as_deref()
        .and_then(|k| k.split_once(' ').map(|(_, p)| p))
        .or(req.raw_path.as_deref())
        .unwrap_or("");
    let caller = Caller {
        path,
        authorization: header("authorization"),
        cookies: req.cookies.iter().map(String::as_str).collect(),
        origin: header("origin"),
        sec_fetch_site: header("sec-fetch-site"),
        host: header("host"),
    };
    let mut resp = ApiGatewayV2CustomAuthorizerSimpleResponse::default();
    match decide(&auth, &caller).await {
        Ok(o) => {
            resp.is_authorized = true;
            resp.context = serde_json::json!({ "owner": o.as_str() });
        }
        Err(why) => {
            tracing::info!(route = req.route_key.as_deref().unwrap_or(""), reason = %why, "unauthorized request");
            resp.is_authorized = false;
            resp.context = serde_json::json!({});
        }
    }
    Ok(resp)
}
