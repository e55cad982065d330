#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    shared::http::lambda::run_http(record_parts::FUNCTION, record_parts::handle).await
}
