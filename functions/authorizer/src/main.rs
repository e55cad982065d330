#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    shared::telemetry::init(authorizer::FUNCTION);
    let auth = std::sync::Arc::new(authorizer::Authorizer::from_env()?);
    shared::telemetry::ready(authorizer::FUNCTION);
    lambda_runtime::run(lambda_runtime::service_fn(|ev| authorizer::handle(auth.clone(), ev))).await
}
