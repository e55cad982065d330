//! `hoist-dev serve` runs the local API; `hoist-dev token OWNER` prints a dev bearer token.

use std::time::Duration;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "hoist-dev", about = "Hoist's local dev server (dev-only: never deploy)")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Serve template.yaml's HTTP API on 127.0.0.1 with the real handlers.
    Serve {
        #[arg(long, env = "HOIST_API_PORT", default_value_t = 8787)]
        port: u16,
        #[arg(long, default_value = "template.yaml")]
        template: String,
        /// Janitor period in seconds (the template's schedule when not given).
        #[arg(long, env = "HOIST_DEV_JANITOR_SECONDS")]
        janitor_seconds: Option<u64>,
        /// The web uploader's built files (npm run build in web/).
        #[arg(long, default_value = "web/dist")]
        web_dir: String,
        /// Processing workers: pollers taking one message at a time, as Lambda instances do
        /// (the windows of a large file fan out over them). 0: no processing (benchmarks
        /// of the upload path alone).
        #[arg(long, env = "HOIST_DEV_WORKERS", default_value_t = 2)]
        workers: usize,
    },
    /// Print a dev bearer token for OWNER (signed with HOIST_DEV_JWT_SECRET).
    Token {
        owner: String,
        #[arg(long, default_value_t = 24 * 3600)]
        ttl_seconds: i64,
        /// Sign as the dev identity provider instead (EdDSA, for the authorizer under
        /// `sam local`, which checks tokens against the JWKS `hoist-dev jwks` prints).
        #[arg(long)]
        idp: bool,
    },
    /// Print the dev identity provider's JWKS document (derived from HOIST_DEV_JWT_SECRET).
    Jwks,
}

fn secret() -> Result<String, Box<dyn std::error::Error>> {
    std::env::var("HOIST_DEV_JWT_SECRET").map_err(|_| "HOIST_DEV_JWT_SECRET is not set (source scripts/env.sh)".into())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    match Cli::parse().cmd {
        Cmd::Token { owner, ttl_seconds, idp } => {
            shared::domain::Owner::parse(&owner)?;
            let issue = if idp { hoist_dev::jwt::idp::issue } else { hoist_dev::jwt::issue };
            println!("{}", issue(&secret()?, &owner, ttl_seconds, shared::now())?);
        }
        Cmd::Jwks => println!("{}", hoist_dev::jwt::idp::jwks(&secret()?)),
        Cmd::Serve { port, template, janitor_seconds, web_dir, workers } => {
            shared::telemetry::init("hoist-dev");
            let app = shared::App::from_env().await?;
            let text = std::fs::read_to_string(&template)?;
            let parsed = hoist_dev::routes::parse_template(&text)?;
            let state = std::sync::Arc::new(hoist_dev::server::DevState {
                web_dir: std::path::Path::new(&web_dir).is_dir().then(|| web_dir.clone().into()),
                ..hoist_dev::dev_state(app.clone(), &parsed, secret()?)
            });
            let every = janitor_seconds
                .or_else(|| parsed.schedules.iter().find(|s| s.binary == "janitor").map(|s| s.every_secs))
                .unwrap_or(900);
            hoist_dev::spawn_janitor(app.clone(), Duration::from_secs(every));
            let config = shared::config::ProcessConfig::from_env()?;
            let scanner = std::sync::Arc::new(shared::clamd::Clamd::from_config(&config));
            let processor = std::sync::Arc::new(process::Processor { app: app.clone(), scanner, config });
            let sqs = aws_sdk_sqs::Client::new(&aws_config::load_from_env().await);
            for _ in 0..workers {
                hoist_dev::sqs::spawn_poller(processor.clone(), sqs.clone(), app.config.queue_url.clone());
            }
            let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
            tracing::info!(port, routes = state.routes.len(), "hoist-dev listening on 127.0.0.1");
            eprintln!("hoist-dev: http://127.0.0.1:{port}/ ({} routes from {template})", state.routes.len());
            hoist_dev::server::serve(listener, state).await?;
        }
    }
    Ok(())
}
