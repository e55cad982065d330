//! HTTP routes read from template.yaml: the one source of truth for what API
//! Gateway serves, so the dev server and the deployment cannot drift apart.

use serde_yaml::Value;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub method: String,
    /// API Gateway path pattern, e.g. `/uploads/{id}/parts/sign`.
    pub path: String,
    /// The function's binary (Metadata.BuildProperties.Binary).
    pub binary: String,
    /// False when the route opts out of the authorizer (`Auth: {Authorizer: NONE}`).
    pub authorized: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("template.yaml is not YAML: {0}")]
    Yaml(#[from] serde_yaml::Error),
    #[error("template.yaml: {0}")]
    Shape(String),
}

/// A scheduled function (janitor) and its rate in seconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    pub binary: String,
    pub every_secs: u64,
}

pub struct Template {
    pub routes: Vec<Route>,
    pub schedules: Vec<Schedule>,
    /// Functions fed by an SQS event source mapping.
    pub queue_consumers: Vec<String>,
    /// Functions the HTTP API runs as Lambda authorizers.
    pub authorizers: Vec<String>,
    pub binaries: Vec<String>,
}

fn rate_secs(expr: &str) -> Option<u64> {
    let inner = expr.strip_prefix("rate(")?.strip_suffix(')')?;
    let (n, unit) = inner.trim().split_once(' ')?;
    let n: u64 = n.parse().ok()?;
    let mult = match unit.trim_end_matches('s') {
        "minute" => 60,
        "hour" => 3600,
        "day" => 86400,
        _ => return None,
    };
    Some(n * mult)
}

pub fn parse_template(text: &str) -> Result<Template, TemplateError> {
    let doc: Value = serde_yaml::from_str(text)?;
    let resources =
        doc.get("Resources").and_then(Value::as_mapping).ok_or_else(|| TemplateError::Shape("no Resources".into()))?;
    let mut routes = Vec::new();
    let mut schedules = Vec::new();
    let mut binaries = Vec::new();
    let mut queue_consumers = Vec::new();
    for (name, res) in resources {
        if res.get("Type").and_then(Value::as_str) != Some("AWS::Serverless::Function") {
            continue;
        }
        let name = name.as_str().unwrap_or("?");
        let binary = res
            .get("Metadata")
            .and_then(|m| m.get("BuildProperties"))
            .and_then(|b| b.get("Binary"))
            .and_then(Value::as_str)
            .ok_or_else(|| TemplateError::Shape(format!("{name} has no Metadata.BuildProperties.Binary")))?
            .to_owned();
        binaries.push(binary.clone());
        let events = res.get("Properties").and_then(|p| p.get("Events")).and_then(Value::as_mapping);
        for (_, ev) in events.into_iter().flatten() {
            let props = ev.get("Properties");
            match ev.get("Type").and_then(Value::as_str) {
                Some("HttpApi") => {
                    let get = |k: &str| props.and_then(|p| p.get(k)).and_then(Value::as_str).map(str::to_owned);
                    let path = get("Path")
                        .ok_or_else(|| TemplateError::Shape(format!("{name}: HttpApi event without Path")))?;
                    let method = get("Method")
                        .ok_or_else(|| TemplateError::Shape(format!("{name}: HttpApi event without Method")))?;
                    let authorized =
                        props.and_then(|p| p.get("Auth")).and_then(|a| a.get("Authorizer")).and_then(Value::as_str)
                            != Some("NONE");
                    routes.push(Route {
                        method: method.to_ascii_uppercase(),
                        path,
                        binary: binary.clone(),
                        authorized,
                    });
                }
                Some("SQS") => queue_consumers.push(binary.clone()),
                Some("Schedule") | Some("ScheduleV2") => {
                    let expr = props
                        .and_then(|p| p.get("Schedule").or_else(|| p.get("ScheduleExpression")))
                        .and_then(Value::as_str)
                        .unwrap_or("");
                    let every_secs = rate_secs(expr).ok_or_else(|| {
                        TemplateError::Shape(format!("{name}: schedule '{expr}' is not rate(N unit)"))
                    })?;
                    schedules.push(Schedule { binary: binary.clone(), every_secs });
                }
                _ => {}
            }
        }
    }
    // Lambda authorizers: HttpApi Auth.Authorizers.*.FunctionArn = !GetAtt <Function>.Arn
    let mut authorizers = Vec::new();
    for (_, res) in resources {
        let auths = res
            .get("Properties")
            .and_then(|p| p.get("Auth"))
            .and_then(|a| a.get("Authorizers"))
            .and_then(Value::as_mapping);
        for (_, a) in auths.into_iter().flatten() {
            let target = match a.get("FunctionArn") {
                Some(Value::Tagged(t)) => t.value.as_str().map(str::to_owned),
                _ => None,
            };
            let Some(logical) = target.as_deref().and_then(|t| t.strip_suffix(".Arn")) else { continue };
            let binary = resources
                .get(logical)
                .and_then(|r| r.get("Metadata"))
                .and_then(|m| m.get("BuildProperties"))
                .and_then(|b| b.get("Binary"))
                .and_then(Value::as_str)
                .ok_or_else(|| TemplateError::Shape(format!("authorizer {logical} has no Binary")))?;
            authorizers.push(binary.to_owned());
        }
    }
    Ok(Template { routes, schedules, queue_consumers, authorizers, binaries })
}

/// Path parameters extracted by a match, in pattern order.
pub type PathParams = Vec<(String, String)>;

/// Matches a request path against API Gateway patterns; literal segments beat
/// `{param}` ones, as in API Gateway. Returns the route and its path parameters.
pub fn match_route<'a>(routes: &'a [Route], method: &str, path: &str) -> Option<(&'a Route, Vec<(String, String)>)> {
    let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let mut best: Option<(&Route, PathParams, usize)> = None;
    for r in routes.iter().filter(|r| r.method == method || r.method == "ANY") {
        let pat: Vec<&str> = r.path.trim_start_matches('/').split('/').collect();
        let mut params = Vec::new();
        let mut literals = 0;
        let mut ok = true;
        let mut i = 0;
        while i < pat.len() {
            let p = pat[i];
            if let Some(name) = p.strip_prefix('{').and_then(|p| p.strip_suffix("+}")) {
                if i >= segs.len() {
                    ok = false;
                    break;
                }
                params.push((name.to_owned(), segs[i..].join("/")));
                i = segs.len();
                break;
            }
            let Some(s) = segs.get(i) else {
                ok = false;
                break;
            };
            if let Some(name) = p.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
                if s.is_empty() {
                    ok = false;
                    break;
                }
                params.push((name.to_owned(), percent_decode(s)));
            } else if p == *s {
                literals += 1;
            } else {
                ok = false;
                break;
            }
            i += 1;
        }
        if ok && i == segs.len() && best.as_ref().is_none_or(|b| literals > b.2) {
            best = Some((r, params, literals));
        }
    }
    best.map(|(r, p, _)| (r, p))
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let Ok(b) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(method: &str, path: &str) -> Route {
        Route { method: method.into(), path: path.into(), binary: path.into(), authorized: true }
    }

    #[test]
    fn literal_segments_win() {
        let routes =
            vec![r("GET", "/s3/multipart/{uploadId}/{partNumber}"), r("GET", "/s3/multipart/{uploadId}/batch")];
        let (m, p) = match_route(&routes, "GET", "/s3/multipart/abc/batch").unwrap();
        assert_eq!(m.path, "/s3/multipart/{uploadId}/batch");
        assert_eq!(p, vec![("uploadId".to_owned(), "abc".to_owned())]);
        let (m, _) = match_route(&routes, "GET", "/s3/multipart/abc/7").unwrap();
        assert_eq!(m.path, "/s3/multipart/{uploadId}/{partNumber}");
    }

    #[test]
    fn methods_and_lengths() {
        let routes = vec![r("POST", "/uploads"), r("GET", "/uploads/{id}")];
        assert!(match_route(&routes, "GET", "/uploads").is_none());
        assert!(match_route(&routes, "GET", "/uploads/").is_none());
        assert!(match_route(&routes, "GET", "/uploads/a/b").is_none());
        assert_eq!(match_route(&routes, "GET", "/uploads/a%20b").unwrap().1[0].1, "a b");
    }

    #[test]
    fn rates() {
        assert_eq!(rate_secs("rate(15 minutes)"), Some(900));
        assert_eq!(rate_secs("rate(1 hour)"), Some(3600));
        assert_eq!(rate_secs("cron(0 * * * ? *)"), None);
    }
}
