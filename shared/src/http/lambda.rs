//! Runs an HTTP handler under Lambda: tracing and clients set up once.

use std::{future::Future, sync::Arc};

use lambda_http::{service_fn, Body, Error, Request, Response};

use crate::App;

/// The whole of a function's `main`: init logs, build the app, serve requests.
pub async fn run_http<F, Fut>(function: &'static str, handler: F) -> Result<(), Error>
where
    F: Fn(Arc<App>, Request) -> Fut,
    Fut: Future<Output = Response<Body>> + Send + 'static,
{
    crate::telemetry::init(function);
    let app = App::from_env().await?;
    crate::telemetry::ready(function);
    lambda_http::run(service_fn(|req: Request| {
        let fut = handler(app.clone(), req);
        async move { Ok::<_, std::convert::Infallible>(fut.await) }
    }))
    .await
}
