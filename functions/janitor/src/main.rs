#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    shared::telemetry::init(janitor::FUNCTION);
    let app = shared::App::from_env().await?;
    shared::telemetry::ready(janitor::FUNCTION);
    lambda_runtime::run(lambda_runtime::service_fn(|ev| janitor::handle(app.clone(), ev))).await
}
