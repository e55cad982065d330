#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    shared::http::lambda::run_http(complete_upload::FUNCTION, complete_upload::handle).await
}
