#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    shared::http::lambda::run_http(catalog::FUNCTION, catalog::handle).await
}
