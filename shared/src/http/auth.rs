//! Who is calling. The one place that reads the owner from what API Gateway's
//! authorizer put in the request context: a JWT authorizer's `sub` claim, or a
//! Lambda request authorizer's `owner` context value.

use lambda_http::{request::RequestContext, Request, RequestExt};

use super::problem::ApiError;
use crate::domain::Owner;

/// The caller, counted against their request rate limit (429 with Retry-After past it).
pub async fn admitted_owner(app: &crate::App, req: &Request) -> Result<Owner, ApiError> {
    let owner = owner(req)?;
    crate::usecases::rate::admit(app, &owner, crate::now()).await?;
    Ok(owner)
}

pub fn owner(req: &Request) -> Result<Owner, ApiError> {
    let Some(RequestContext::ApiGatewayV2(ctx)) = req.request_context_ref() else {
        return Err(ApiError::Unauthorized);
    };
    let Some(authorizer) = ctx.authorizer.as_ref() else {
        return Err(ApiError::Unauthorized);
    };
    let from_jwt = authorizer.jwt.as_ref().and_then(|j| j.claims.get("sub")).map(String::as_str);
    let from_lambda = authorizer.fields.get("owner").and_then(|v| v.as_str());
    let raw = from_jwt.or(from_lambda).ok_or(ApiError::Unauthorized)?;
    Owner::parse(raw).map_err(|_| ApiError::Unauthorized)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req_with(ctx: serde_json::Value) -> Request {
        let event = serde_json::json!({
            "version": "2.0", "routeKey": "GET /x", "rawPath": "/x", "rawQueryString": "",
            "headers": {}, "isBase64Encoded": false,
            "requestContext": ctx,
        });
        lambda_http::request::from_str(&event.to_string()).unwrap()
    }

    fn base_ctx() -> serde_json::Value {
        serde_json::json!({
            "accountId": "1", "apiId": "a", "domainName": "d", "domainPrefix": "d", "requestId": "r",
            "routeKey": "GET /x", "stage": "$default", "time": "t", "timeEpoch": 0,
            "http": {"method": "GET", "path": "/x", "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1", "userAgent": "t"}
        })
    }

    #[test]
    fn jwt_sub_is_the_owner() {
        let mut ctx = base_ctx();
        ctx["authorizer"] = serde_json::json!({"jwt": {"claims": {"sub": "alice"}, "scopes": null}});
        assert_eq!(owner(&req_with(ctx)).unwrap().as_str(), "alice");
    }

    #[test]
    fn lambda_authorizer_owner() {
        let mut ctx = base_ctx();
        ctx["authorizer"] = serde_json::json!({"lambda": {"owner": "bob"}});
        assert_eq!(owner(&req_with(ctx)).unwrap().as_str(), "bob");
    }

    #[test]
    fn no_authorizer_is_401() {
        assert!(matches!(owner(&req_with(base_ctx())), Err(ApiError::Unauthorized)));
        let mut ctx = base_ctx();
        ctx["authorizer"] = serde_json::json!({"jwt": {"claims": {"sub": ""}}});
        assert!(matches!(owner(&req_with(ctx)), Err(ApiError::Unauthorized)));
    }
}
