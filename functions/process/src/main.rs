#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    shared::telemetry::init(process::FUNCTION);
    let config = shared::config::ProcessConfig::from_env()?;
    let scanner = std::sync::Arc::new(shared::clamd::Clamd::from_config(&config));
    let processor =
        std::sync::Arc::new(shared::processing::Processor { app: shared::App::from_env().await?, scanner, config });
    shared::telemetry::ready(process::FUNCTION);
    lambda_runtime::run(lambda_runtime::service_fn(|ev| process::handle(processor.clone(), ev))).await
}
