//! Hoist's local dev server: template.yaml's HTTP API on 127.0.0.1, with the
//! real function handlers, a dev-only JWT check and the scheduled janitor.

pub mod jwt;
pub mod routes;
pub mod server;
pub mod sqs;

use std::{sync::Arc, time::Duration};

use shared::App;

/// The server state for `app` and a parsed template.yaml; callers set the optional
/// parts (request log, web directory) with struct update syntax.
pub fn dev_state(app: Arc<App>, template: &routes::Template, jwt_secret: String) -> server::DevState {
    server::DevState {
        app,
        routes: template.routes.clone(),
        handlers: server::http_handlers(),
        auth: Arc::new(authorizer::Authorizer {
            verifier: shared::http::authn::Verifier::dev(&jwt_secret),
            policy: shared::http::authn::BrowserPolicy::from_env(),
        }),
        jwt_secret,
        request_log: None,
        web_dir: None,
    }
}

/// Runs the janitor every `every`, as the template's schedule does in AWS.
pub fn spawn_janitor(app: Arc<App>, every: Duration) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.tick().await;
        loop {
            tick.tick().await;
            let event = lambda_runtime::LambdaEvent::new(serde_json::json!({}), lambda_runtime::Context::default());
            if let Err(e) = janitor::handle(app.clone(), event).await {
                tracing::error!(error = %e, "janitor run failed");
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    /// template.yaml and the dev server's handler table must name the same functions.
    #[test]
    fn every_template_route_has_a_handler_and_every_handler_a_route() {
        let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../template.yaml")).unwrap();
        let t = crate::routes::parse_template(&text).unwrap();
        let handlers: BTreeSet<&str> = crate::server::http_handlers().keys().copied().collect();
        let routed: BTreeSet<&str> = t.routes.iter().map(|r| r.binary.as_str()).collect();
        assert_eq!(routed, handlers, "template routes vs dev-server handlers");
        let scheduled: BTreeSet<&str> = t
            .schedules
            .iter()
            .map(|s| s.binary.as_str())
            .filter(|b| !crate::server::NOT_RUN_LOCALLY.contains(b))
            .collect();
        let expected: BTreeSet<&str> = crate::server::SCHEDULED.iter().copied().collect();
        assert_eq!(scheduled, expected, "template schedules vs dev-server scheduled functions");
        let consumers: BTreeSet<&str> = t.queue_consumers.iter().map(String::as_str).collect();
        let expected: BTreeSet<&str> = crate::server::QUEUE_CONSUMERS.iter().copied().collect();
        assert_eq!(consumers, expected, "template SQS consumers vs dev-server pollers");
        // The dev server authorizes with the template's authorizer function's code.
        assert_eq!(t.authorizers, vec![authorizer::FUNCTION.to_owned()], "template authorizer vs dev server");
        // Every function in the template is routed, scheduled, fed by a queue or an authorizer.
        for b in &t.binaries {
            assert!(
                routed.contains(b.as_str())
                    || scheduled.contains(b.as_str())
                    || crate::server::NOT_RUN_LOCALLY.contains(&b.as_str())
                    || consumers.contains(b.as_str())
                    || t.authorizers.contains(b),
                "{b} has no route, schedule, queue or authorizer role"
            );
        }
        // Every binary is a crate under functions/ (the ClamAV layer's crate holds two).
        for b in &t.binaries {
            let functions = concat!(env!("CARGO_MANIFEST_DIR"), "/../functions");
            let found = std::path::Path::new(&format!("{functions}/{b}")).is_dir()
                || std::path::Path::new(&format!("{functions}/clamav_layer/src/bin/{b}.rs")).is_file();
            assert!(found, "{b}: no functions/{b} crate");
        }
    }

    /// docs/openapi.yaml documents exactly the template's routes.
    #[test]
    fn openapi_documents_every_route() {
        let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../template.yaml")).unwrap();
        let t = crate::routes::parse_template(&text).unwrap();
        let spec: serde_yaml::Value = serde_yaml::from_str(
            &std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/openapi.yaml")).unwrap(),
        )
        .unwrap();
        let mut documented = BTreeSet::new();
        for (path, item) in spec["paths"].as_mapping().unwrap() {
            for (method, _) in item.as_mapping().unwrap() {
                let m = method.as_str().unwrap();
                if m != "parameters" {
                    documented.insert(format!("{} {}", m.to_ascii_uppercase(), path.as_str().unwrap()));
                }
            }
        }
        let routed: BTreeSet<String> = t.routes.iter().map(|r| format!("{} {}", r.method, r.path)).collect();
        assert_eq!(documented, routed);
    }
}
