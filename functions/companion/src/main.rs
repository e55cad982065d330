#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    shared::lambda::run_http(companion::FUNCTION, companion::handle).await
}
