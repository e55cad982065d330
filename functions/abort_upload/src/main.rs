#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    shared::http::lambda::run_http(abort_upload::FUNCTION, abort_upload::handle).await
}
