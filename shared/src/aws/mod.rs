//! The AWS adapters: the only code that imports the AWS SDKs and knows table keys,
//! indexes, buckets and queues. Each implements a port of [`crate::ports`].

pub mod dynamodb;
pub mod s3;
pub mod sqs;

use std::sync::Arc;

use aws_sdk_s3::config::{RequestChecksumCalculation, ResponseChecksumValidation};

pub use dynamodb::DynamoRepo;
pub use s3::{PostPolicy, S3Store, STATUS_TAG};
pub use sqs::SqsQueue;

use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};

use crate::{config::Config, App, StartupError};

/// An SDK error as the service said it (`Ok((code, message))`), or, when there is no
/// service answer (a connection failure, a raw 412 without a body), its whole text.
fn service_error<E, R>(e: SdkError<E, R>) -> Result<(String, String), String>
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug,
{
    match e.as_service_error() {
        Some(se) => Ok((se.code().unwrap_or("Unknown").to_owned(), se.message().unwrap_or("").to_owned())),
        None => Err(aws_smithy_types::error::display::DisplayErrorContext(&e).to_string()),
    }
}

/// Builds the app on DynamoDB, S3 and SQS from the standard AWS configuration
/// (AWS_ENDPOINT_URL_* point the clients at the local stack in development).
pub fn app(config: Config, sdk: &aws_config::SdkConfig) -> Result<(App, Arc<DynamoRepo>), StartupError> {
    let local_s3 = local_endpoint("S3");
    let mut s3 = aws_sdk_s3::config::Builder::from(sdk);
    // Only when set: `set_endpoint_url(None)` would drop the endpoint AWS_ENDPOINT_URL_* gave.
    if local_s3.is_some() {
        s3.set_endpoint_url(local_s3.clone());
    }
    let s3 = s3
        // A local S3 (LocalStack) answers on one host: path-style addressing.
        .force_path_style(config.s3_force_path_style || local_s3.is_some())
        // Otherwise the presigner bakes a CRC32 of an empty body into part URLs.
        .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
        .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
        .build();
    let credentials = sdk.credentials_provider().ok_or(StartupError::NoCredentials)?;
    let objects = S3Store::new(aws_sdk_s3::Client::from_conf(s3), config.bucket.clone(), credentials);
    let mut dynamodb = aws_sdk_dynamodb::config::Builder::from(sdk);
    if let Some(url) = local_endpoint("DYNAMODB") {
        dynamodb.set_endpoint_url(Some(url));
    }
    let repo = Arc::new(DynamoRepo::new(aws_sdk_dynamodb::Client::from_conf(dynamodb.build()), config.table.clone()));
    let mut sqs = aws_sdk_sqs::config::Builder::from(sdk);
    if let Some(url) = local_endpoint("SQS") {
        sqs.set_endpoint_url(Some(url));
    }
    let jobs =
        SqsQueue::new(aws_sdk_sqs::Client::from_conf(sqs.build()), config.queue_url.clone(), config.job_delay_secs);
    Ok((App::new(config, repo.clone(), Arc::new(objects), Arc::new(jobs)), repo))
}

/// `sam local` only: the endpoint of the local stack's `service` (S3, SQS, DYNAMODB) as a
/// function container reaches it. SAM passes a container only the variables the template
/// declares, so template.yaml declares `HOIST_LOCAL_ENDPOINT_*` blank; in AWS they stay
/// blank and the SDK's own endpoints apply. (The SDK's `AWS_ENDPOINT_URL_*` cannot be
/// declared blank: the SDK would take the empty string for a URL.)
fn local_endpoint(service: &str) -> Option<String> {
    crate::config::var(&format!("HOIST_LOCAL_ENDPOINT_{service}"))
}

/// Reads the configuration and the AWS environment once, at cold start.
pub async fn app_from_env() -> Result<Arc<App>, StartupError> {
    let config = Config::from_env()?;
    let sdk = aws_config::load_from_env().await;
    let (app, repo) = app(config, &sdk)?;
    repo.warm_up().await;
    Ok(Arc::new(app))
}

/// The IAM actions each port method needs on AWS, by the name the in-memory fakes log
/// it under (`testing::Faults::log`). A function's policy in template.yaml must grant
/// the actions of every port method its handler calls; `devserver/tests/iam_policies.rs`
/// checks it by running every handler on the fakes.
pub fn iam_actions(port_method: &str) -> Option<&'static [&'static str]> {
    Some(match port_method {
        // DynamoDB (DynamoRepo). Transactions need the actions of their items.
        "repo.quota" | "repo.get" | "repo.window_recorded" => &["dynamodb:GetItem"],
        "repo.create" => &["dynamodb:PutItem", "dynamodb:UpdateItem"],
        "repo.put_parts" => &["dynamodb:BatchWriteItem"],
        "repo.parts" | "repo.list_files" | "repo.list_open" | "repo.recorded_windows" => &["dynamodb:Query"],
        "repo.begin_completion"
        | "repo.release_completion"
        | "repo.finish_completion"
        | "repo.close_open"
        | "repo.finish_processing"
        | "repo.soft_delete"
        | "repo.restore"
        | "repo.start_windows"
        | "repo.hash_advanced"
        | "repo.refused_write"
        | "repo.count_request"
        | "repo.count_signings"
        | "repo.watch_processing"
        | "repo.redrive"
        | "repo.redrive_picked_up"
        | "repo.await_scanner"
        | "repo.unwatch" => &["dynamodb:UpdateItem"],
        "repo.window_scanned" => &["dynamodb:PutItem", "dynamodb:UpdateItem"],
        "repo.due" | "repo.due_purges" => &["dynamodb:Query", "dynamodb:GetItem"],
        "repo.delete_upload" => &["dynamodb:Query", "dynamodb:BatchWriteItem"],
        // S3 (S3Store). Presigned requests act with the signer's rights.
        "s3.create_multipart" | "s3.presign_parts" | "s3.presign_post" | "s3.complete" => &["s3:PutObject"],
        // Reads, HEADs and tags name a version when one is pinned, and none otherwise.
        "s3.presign_get" | "s3.head" | "s3.read" | "s3.read_range" => &["s3:GetObject", "s3:GetObjectVersion"],
        "s3.list_parts" => &["s3:ListMultipartUploadParts"],
        "s3.abort" => &["s3:AbortMultipartUpload"],
        // Every version of the key, listed then deleted one by one.
        "s3.delete" => &["s3:ListBucketVersions", "s3:DeleteObjectVersion"],
        "s3.delete_version" => &["s3:DeleteObjectVersion"],
        "s3.delete_other_versions" => &["s3:ListBucketVersions", "s3:DeleteObjectVersion"],
        "s3.put" => &["s3:PutObject", "s3:PutObjectTagging"],
        "s3.tag_status" => &["s3:PutObjectTagging", "s3:PutObjectVersionTagging"],
        // SQS (SqsQueue).
        "queue.send" | "queue.send_windows" => &["sqs:SendMessage"],
        "queue.retry_in" => &["sqs:ChangeMessageVisibility"],
        // Not AWS.
        "scanner.start" => &[],
        _ => return None,
    })
}
