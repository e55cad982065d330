#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    shared::http::lambda::run_http(companion::FUNCTION, companion::handle).await
}
