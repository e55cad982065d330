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

/// The public base URL of this API (for links it hands out): configured
/// (`HOIST_PUBLIC_BASE_URL`; the template sets it), else the domain API Gateway itself
/// says it served the request on. Never a client's `X-Forwarded-Host`: a link built
/// from it would send the victim's download to the attacker's host.
pub fn base_url(req: &Request, configured: Option<&str>) -> String {
    if let Some(c) = configured {
        return c.trim_end_matches('/').to_owned();
    }
    let domain = match req.request_context_ref() {
        Some(lambda_http::request::RequestContext::ApiGatewayV2(ctx)) => ctx.domain_name.clone(),
        _ => None,
    };
    let host = domain.unwrap_or_else(|| "localhost".to_owned());
    // Plain http only for the dev server on this machine.
    format!("{}://{host}", if is_loopback_host(&host) { "http" } else { "https" })
}

/// Whether a `Host` (with or without its port) names this machine: `localhost`, an
/// IPv4 loopback address or `[::1]`. Not a prefix match: `localhost.example.com` is not.
pub fn is_loopback_host(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(v6) => return v6.split(']').next() == Some("::1"),
        None => host.rsplit_once(':').map_or(host, |(name, _)| name),
    };
    name.eq_ignore_ascii_case("localhost") || name.parse::<std::net::Ipv4Addr>().is_ok_and(|a| a.is_loopback())
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

    fn request(domain: &str, forwarded_host: &str) -> Request {
        let event = serde_json::json!({
            "version": "2.0", "routeKey": "GET /files", "rawPath": "/files", "rawQueryString": "",
            "headers": {"host": domain, "x-forwarded-host": forwarded_host, "x-forwarded-proto": "http"},
            "isBase64Encoded": false,
            "requestContext": {"accountId": "1", "apiId": "a", "domainName": domain, "domainPrefix": "a",
                "requestId": "r", "routeKey": "GET /files", "stage": "$default", "time": "t", "timeEpoch": 0,
                "http": {"method": "GET", "path": "/files", "protocol": "HTTP/1.1", "sourceIp": "1.2.3.4", "userAgent": "t"}}
        });
        lambda_http::request::from_str(&event.to_string()).unwrap()
    }

    #[test]
    fn loopback_hosts_are_exact() {
        for host in ["localhost", "localhost:8787", "127.0.0.1:8787", "127.0.0.2", "[::1]:8787", "[::1]"] {
            assert!(is_loopback_host(host), "{host}");
        }
        for host in ["localhost.example.com", "127.0.0.1.example.com:80", "api.example.com", "[::2]:1", "10.0.0.1"] {
            assert!(!is_loopback_host(host), "{host}");
        }
    }

    /// Issue 11.7: link URLs never come from a header the client controls.
    #[test]
    fn base_url_ignores_forwarded_headers() {
        let req = request("abc.execute-api.eu-west-1.amazonaws.com", "evil.example");
        assert_eq!(base_url(&req, None), "https://abc.execute-api.eu-west-1.amazonaws.com");
        assert_eq!(base_url(&req, Some("https://files.example.com/")), "https://files.example.com");
        assert_eq!(base_url(&request("127.0.0.1:8787", "evil.example"), None), "http://127.0.0.1:8787");
    }

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
