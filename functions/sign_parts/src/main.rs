#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    shared::http::lambda::run_http(sign_parts::FUNCTION, sign_parts::handle).await
}
