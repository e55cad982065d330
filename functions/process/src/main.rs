#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    shared::telemetry::init(process::FUNCTION);
    let processor = std::sync::Arc::new(process::Processor {
        app: shared::App::from_env().await?,
        config: shared::pipeline::ProcessConfig::from_env()?,
    });
    lambda_runtime::run(lambda_runtime::service_fn(|ev| process::handle(processor.clone(), ev))).await
}
