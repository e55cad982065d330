#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    shared::lambda::run_http(get_upload::FUNCTION, get_upload::handle).await
}
