//! The dev server: API Gateway's job, locally. Matches template.yaml's routes,
//! checks the bearer token like the JWT authorizer, builds the same HTTP API v2
//! event Lambda would receive, and calls the real handler.

use std::{collections::BTreeMap, future::Future, net::SocketAddr, pin::Pin, sync::Arc};

use axum::{
    body::{to_bytes, Body as AxBody},
    extract::{Request as AxRequest, State},
    response::Response as AxResponse,
    Router,
};
use base64::Engine as _;
use http::StatusCode;
use lambda_http::{Body, Request, Response};
use serde_json::json;
use shared::App;

use crate::routes::{match_route, Route};

pub type HttpHandler = fn(Arc<App>, Request) -> Pin<Box<dyn Future<Output = Response<Body>> + Send>>;

/// Every HTTP function the dev server can run, by binary name.
pub fn http_handlers() -> BTreeMap<&'static str, HttpHandler> {
    let mut m: BTreeMap<&'static str, HttpHandler> = BTreeMap::new();
    m.insert(create_upload::FUNCTION, |a, r| Box::pin(create_upload::handle(a, r)));
    m.insert(sign_parts::FUNCTION, |a, r| Box::pin(sign_parts::handle(a, r)));
    m.insert(record_parts::FUNCTION, |a, r| Box::pin(record_parts::handle(a, r)));
    m.insert(get_upload::FUNCTION, |a, r| Box::pin(get_upload::handle(a, r)));
    m.insert(complete_upload::FUNCTION, |a, r| Box::pin(complete_upload::handle(a, r)));
    m.insert(abort_upload::FUNCTION, |a, r| Box::pin(abort_upload::handle(a, r)));
    m.insert(catalog::FUNCTION, |a, r| Box::pin(catalog::handle(a, r)));
    m.insert(download::FUNCTION, |a, r| Box::pin(download::handle(a, r)));
    m.insert(companion::FUNCTION, |a, r| Box::pin(companion::handle(a, r)));
    m
}

/// Functions the dev server runs on a schedule rather than per request.
pub const SCHEDULED: &[&str] = &[janitor::FUNCTION];

/// Scheduled functions the dev server does not run: the ClamAV definitions update needs
/// ClamAV's mirror (locally clamd has the project's test signatures; `make sam-local`
/// runs the function's program from the layer).
pub const NOT_RUN_LOCALLY: &[&str] = &["clamav_update"];

/// Functions the dev server feeds from SQS, as Lambda's event source mapping does.
pub const QUEUE_CONSUMERS: &[&str] = &[process::FUNCTION];

/// API Gateway HTTP API's payload limit.
const MAX_BODY: usize = 10 * 1024 * 1024;

pub struct DevState {
    pub app: Arc<App>,
    pub routes: Vec<Route>,
    pub handlers: BTreeMap<&'static str, HttpHandler>,
    pub jwt_secret: String,
    /// Token verification and cookie rules: the authorizer's own code and settings.
    pub auth: Arc<authorizer::Authorizer>,
    /// Every routed request as (route key, body), for tests that assert what the
    /// server saw. Off unless a test turns it on.
    pub request_log: Option<Arc<std::sync::Mutex<Vec<LoggedRequest>>>>,
    /// Static files of the web uploader (web/dist), served for GETs no route takes.
    pub web_dir: Option<std::path::PathBuf>,
}

#[derive(Debug, Clone)]
pub struct LoggedRequest {
    pub route: String,
    pub path: String,
    pub body: Vec<u8>,
}

pub fn router(state: Arc<DevState>) -> Router {
    Router::new().fallback(dispatch).with_state(state)
}

pub async fn serve(listener: tokio::net::TcpListener, state: Arc<DevState>) -> std::io::Result<()> {
    axum::serve(listener, router(state).into_make_service_with_connect_info::<SocketAddr>()).await
}

fn plain(status: StatusCode, msg: &str) -> AxResponse {
    let body =
        json!({"type": "about:blank", "title": status.canonical_reason(), "status": status.as_u16(), "detail": msg});
    AxResponse::builder()
        .status(status)
        .header("content-type", "application/problem+json")
        .body(AxBody::from(body.to_string()))
        .unwrap_or_default()
}

/// An answer API Gateway gives itself (no function ran): its JSON body `{"message": ...}`;
/// `x-hoist-dev-reason` says why, for the developer (API Gateway says nothing more).
fn gateway(status: StatusCode, message: &str, reason: &str) -> AxResponse {
    AxResponse::builder()
        .status(status)
        .header("content-type", "application/json")
        .header("x-hoist-dev-reason", reason.replace(|c: char| !c.is_ascii() || c.is_ascii_control(), " "))
        .body(AxBody::from(json!({ "message": message }).to_string()))
        .unwrap_or_default()
}

/// The session cookie the web page authenticates with (shared with the authorizer).
pub const SESSION_COOKIE: &str = shared::http::authn::SESSION_COOKIE;

/// The owner, decided by the same code as the Lambda authorizer in AWS.
async fn authorize(
    st: &DevState,
    path: &str,
    headers: &http::HeaderMap,
) -> Result<shared::domain::Owner, shared::http::authn::Refusal> {
    let header = |name: http::header::HeaderName| headers.get(name).and_then(|v| v.to_str().ok());
    let caller = shared::http::authn::Caller {
        path,
        authorization: header(http::header::AUTHORIZATION),
        cookies: headers
            .get_all(http::header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .collect(),
        origin: header(http::header::ORIGIN),
        sec_fetch_site: header(http::header::HeaderName::from_static("sec-fetch-site")),
        host: header(http::header::HOST),
    };
    authorizer::decide(&st.auth, &caller).await
}

/// `GET /dev/login?owner=NAME` (dev server only): sets the session cookie for NAME and
/// goes to the page. In AWS the identity provider's login does this.
fn dev_login(st: &DevState, query: Option<&str>) -> AxResponse {
    let owner = query
        .and_then(|q| form_urlencoded::parse(q.as_bytes()).find(|(k, _)| k == "owner").map(|(_, v)| v.into_owned()))
        .unwrap_or_else(|| "alice".into());
    if shared::domain::Owner::parse(&owner).is_err() {
        return plain(StatusCode::BAD_REQUEST, "owner is not a usable name.");
    }
    let Ok(token) = crate::jwt::issue(&st.jwt_secret, &owner, 12 * 3600, shared::now()) else {
        return plain(StatusCode::INTERNAL_SERVER_ERROR, "could not issue a token");
    };
    // `__Host-` requires Secure; browsers accept Secure cookies from loopback origins.
    let cookie = format!("{SESSION_COOKIE}={token}; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age=43200");
    AxResponse::builder()
        .status(StatusCode::SEE_OTHER)
        .header("set-cookie", cookie)
        .header("location", "/")
        .body(AxBody::empty())
        .unwrap_or_default()
}

async fn static_file(dir: &std::path::Path, path: &str) -> Option<AxResponse> {
    let rel = format!("{}{}", path.trim_start_matches('/'), if path.ends_with('/') { "index.html" } else { "" });
    let rel = rel.as_str();
    if rel.is_empty() || rel.split('/').any(|seg| seg == ".." || seg.starts_with('.')) {
        return None;
    }
    let bytes = tokio::fs::read(dir.join(rel)).await.ok()?;
    let ct = match rel.rsplit('.').next().unwrap_or("") {
        "html" => "text/html; charset=utf-8",
        "js" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "map" | "json" => "application/json",
        "png" => "image/png",
        "svg" => "image/svg+xml",
        _ => "application/octet-stream",
    };
    AxResponse::builder()
        .header("content-type", ct)
        .header("x-content-type-options", "nosniff")
        .header("cache-control", "no-cache")
        .body(AxBody::from(bytes))
        .ok()
}

async fn dispatch(State(st): State<Arc<DevState>>, req: AxRequest) -> AxResponse {
    let (parts, body) = req.into_parts();
    let method = parts.method.as_str().to_owned();
    let path = parts.uri.path().to_owned();
    let Some((route, params)) = match_route(&st.routes, &method, &path) else {
        if method == "GET" && path == "/dev/login" {
            return dev_login(&st, parts.uri.query());
        }
        if let (true, Some(dir)) = (method == "GET", st.web_dir.as_deref()) {
            if let Some(resp) = static_file(dir, &path).await {
                return resp;
            }
        }
        return gateway(StatusCode::NOT_FOUND, "Not Found", "no route matches this method and path");
    };
    let Some(handler) = st.handlers.get(route.binary.as_str()).copied() else {
        return plain(StatusCode::NOT_IMPLEMENTED, "This route's function is not served by the dev server.");
    };
    let owner = if route.authorized {
        match authorize(&st, &route.path, &parts.headers).await {
            Ok(o) => Some(o),
            // What API Gateway answers when our authorizer says no, whatever the reason
            // (a missing, expired or forged token, a cross-site cookie): 403 and its own
            // body. The template names no identity source (a token may come in a header or
            // a cookie), so the authorizer always runs and there is no 401 from the gateway
            // (`make sam-local` checks both answer alike). The dev server adds which rule
            // refused, in a header.
            Err(why) => return gateway(StatusCode::FORBIDDEN, "Forbidden", &why.to_string()),
        }
    } else {
        None
    };
    let bytes = match to_bytes(body, MAX_BODY).await {
        Ok(b) => b,
        Err(_) => {
            return plain(StatusCode::PAYLOAD_TOO_LARGE, "Request bodies are limited to 10 MB (API Gateway's limit).")
        }
    };
    if let Some(log) = &st.request_log {
        if let Ok(mut l) = log.lock() {
            l.push(LoggedRequest {
                route: format!("{} {}", route.method, route.path),
                path: path.clone(),
                body: bytes.to_vec(),
            });
        }
    }
    let event = api_gateway_event(route, &params, &parts, &bytes, owner.as_ref());
    let request = match lambda_http::request::from_str(&event.to_string()) {
        Ok(r) => r,
        Err(e) => {
            return plain(
                StatusCode::BAD_REQUEST,
                &format!("The request could not be turned into an API Gateway event: {e}"),
            )
        }
    };
    to_axum(handler(st.app.clone(), request).await)
}

/// The HTTP API (payload v2.0) event API Gateway would send for this request.
pub fn api_gateway_event(
    route: &Route,
    params: &[(String, String)],
    parts: &http::request::Parts,
    body: &[u8],
    owner: Option<&shared::domain::Owner>,
) -> serde_json::Value {
    let mut headers: BTreeMap<String, String> = BTreeMap::new();
    let mut cookies = Vec::new();
    for (k, v) in &parts.headers {
        let v = String::from_utf8_lossy(v.as_bytes()).into_owned();
        if k == http::header::COOKIE {
            cookies.extend(v.split(';').map(|c| c.trim().to_owned()).filter(|c| !c.is_empty()));
            continue;
        }
        headers.entry(k.as_str().to_owned()).and_modify(|e| *e = format!("{e},{v}")).or_insert(v);
    }
    let raw_query = parts.uri.query().unwrap_or("").to_owned();
    let mut query: BTreeMap<String, String> = BTreeMap::new();
    for (k, v) in form_urlencoded::parse(raw_query.as_bytes()) {
        query.entry(k.into_owned()).and_modify(|e| *e = format!("{e},{v}")).or_insert_with(|| v.into_owned());
    }
    let now = time::OffsetDateTime::now_utc();
    // What API Gateway passes on from a Lambda authorizer's simple response.
    let authorizer = owner.map(|o| json!({"lambda": {"owner": o.as_str()}}));
    let mut ctx = json!({
        "accountId": "000000000000",
        "apiId": "local",
        "domainName": headers.get("host").cloned().unwrap_or_else(|| "127.0.0.1".into()),
        "domainPrefix": "local",
        "requestId": uuid_like(),
        "routeKey": format!("{} {}", route.method, route.path),
        "stage": "$default",
        "time": now.format(&time::format_description::well_known::Rfc2822).unwrap_or_default(),
        "timeEpoch": (now.unix_timestamp_nanos() / 1_000_000) as i64,
        "http": {
            "method": parts.method.as_str(),
            "path": parts.uri.path(),
            "protocol": "HTTP/1.1",
            "sourceIp": "127.0.0.1",
            "userAgent": headers.get("user-agent").cloned().unwrap_or_default(),
        },
    });
    if let Some(a) = authorizer {
        ctx["authorizer"] = a;
    }
    let path_params: BTreeMap<&str, &str> = params.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let mut ev = json!({
        "version": "2.0",
        "routeKey": format!("{} {}", route.method, route.path),
        "rawPath": parts.uri.path(),
        "rawQueryString": raw_query,
        "headers": headers,
        "requestContext": ctx,
        "isBase64Encoded": true,
        "body": base64::engine::general_purpose::STANDARD.encode(body),
    });
    if !cookies.is_empty() {
        ev["cookies"] = json!(cookies);
    }
    if !query.is_empty() {
        ev["queryStringParameters"] = json!(query);
    }
    if !path_params.is_empty() {
        ev["pathParameters"] = json!(path_params);
    }
    ev
}

fn uuid_like() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    format!("local-{:x}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}

fn to_axum(resp: Response<Body>) -> AxResponse {
    let (parts, body) = resp.into_parts();
    let bytes: Vec<u8> = match body {
        Body::Empty => Vec::new(),
        Body::Text(t) => t.into_bytes(),
        Body::Binary(b) => b,
        _ => Vec::new(),
    };
    AxResponse::from_parts(parts, AxBody::from(bytes))
}
