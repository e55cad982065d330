//! Request parsing at the edge: JSON bodies (media type, size, syntax vs shape), path
//! and query parameters, the API's public base URL, and the matched route.

use http::header;
use lambda_http::{Request, RequestExt};
use serde::de::DeserializeOwned;

use super::problem::ApiError;

/// Largest JSON body we parse (a full sign/record batch of 1,000 parts fits easily).
pub const MAX_JSON_BODY: usize = 1024 * 1024;

/// Parses a JSON body into `T`, refusing unknown fields (T's serde attributes),
/// wrong media types and oversized bodies with a sentence saying which.
/// The media type must be said, and be JSON: a body without it is what a cross-site
/// form or `fetch` "simple request" sends (no CORS preflight), so it is refused (CSRF).
pub fn json_body<T: DeserializeOwned>(req: &Request) -> Result<T, ApiError> {
    let Some(ct) = req.headers().get(header::CONTENT_TYPE) else {
        return Err(ApiError::UnsupportedMediaType(
            "Send the request body as application/json, with a Content-Type header saying so.".into(),
        ));
    };
    let ct = ct.to_str().unwrap_or("").to_ascii_lowercase();
    let essence = ct.split(';').next().unwrap_or("").trim();
    if essence != "application/json" && !essence.ends_with("+json") {
        return Err(ApiError::UnsupportedMediaType(format!(
            "Send the request body as application/json, not '{essence}'."
        )));
    }
    let bytes: &[u8] = req.body().as_ref();
    if bytes.len() > MAX_JSON_BODY {
        return Err(ApiError::PayloadTooLarge(format!(
            "The request body is {} bytes; at most {MAX_JSON_BODY} are accepted.",
            bytes.len()
        )));
    }
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::BadRequest("The request body is empty; a JSON object was expected.".into()));
    }
    parse_json(bytes)
}

/// Parses JSON bytes: syntax errors are 400, well-formed JSON of the wrong shape 422.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(bytes).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => {
            ApiError::Invalid { field: None, detail: format!("The request body does not fit this route: {e}.") }
        }
        _ => ApiError::BadRequest(format!("The request body is not valid JSON: {e}.")),
    })
}

/// The public base URL of this API (for links it hands out): configured, or the
/// request's own scheme and host as API Gateway forwards them.
pub fn base_url(req: &Request, configured: Option<&str>) -> String {
    if let Some(c) = configured {
        return c.trim_end_matches('/').to_owned();
    }
    let header = |n: &str| req.headers().get(n).and_then(|v| v.to_str().ok());
    let host = header("x-forwarded-host").or_else(|| header("host")).unwrap_or("localhost");
    let proto = header("x-forwarded-proto")
        .unwrap_or(if host.starts_with("127.0.0.1") || host.starts_with("localhost") { "http" } else { "https" });
    format!("{proto}://{host}")
}

/// The route API Gateway matched, e.g. `GET /files/{id}` (for binaries serving several).
pub fn route_key(req: &Request) -> String {
    match req.request_context_ref() {
        Some(lambda_http::request::RequestContext::ApiGatewayV2(ctx)) => ctx.route_key.clone().unwrap_or_default(),
        _ => String::new(),
    }
}

/// A path parameter as API Gateway extracted it.
pub fn path_param<'r>(req: &'r Request, name: &str) -> Option<&'r str> {
    req.path_parameters_ref().and_then(|p| p.first(name))
}

/// A query-string parameter.
pub fn query_param<'r>(req: &'r Request, name: &str) -> Option<&'r str> {
    req.query_string_parameters_ref().and_then(|q| q.first(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_errors_are_classified() {
        #[derive(serde::Deserialize, Debug)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct T {
            a: u32,
        }
        assert_eq!(parse_json::<T>(b"{").unwrap_err().status(), 400);
        assert_eq!(parse_json::<T>(b"{\"a\":1,\"b\":2}").unwrap_err().status(), 422);
        assert_eq!(parse_json::<T>(b"{\"a\":-1}").unwrap_err().status(), 422);
        assert!(parse_json::<T>(b"{\"a\":1}").is_ok());
    }
}
