#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    shared::lambda::run_http(complete_upload::FUNCTION, complete_upload::handle).await
}
