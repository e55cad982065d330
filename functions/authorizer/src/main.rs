#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    shared::telemetry::init(authorizer::FUNCTION);
    let verifier = std::sync::Arc::new(shared::http::authn::Verifier::from_env()?);
    lambda_runtime::run(lambda_runtime::service_fn(|ev| authorizer::handle(verifier.clone(), ev))).await
}
