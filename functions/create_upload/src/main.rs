#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    shared::http::lambda::run_http(create_upload::FUNCTION, create_upload::handle).await
}
