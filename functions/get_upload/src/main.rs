#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    shared::http::lambda::run_http(get_upload::FUNCTION, get_upload::handle).await
}
