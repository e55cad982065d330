//! Everything a handler needs, built once per cold start and shared.

use std::sync::Arc;

use aws_sdk_s3::config::{RequestChecksumCalculation, ResponseChecksumValidation};

use crate::{config::Config, queue::Queue, storage::Storage, store::Store};

pub struct App {
    pub config: Config,
    pub storage: Storage,
    pub store: Store,
    pub queue: Queue,
}

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error("the AWS configuration has no credentials provider")]
    NoCredentials,
}

impl App {
    /// Reads configuration and builds the AWS clients from the standard environment
    /// (AWS_ENDPOINT_URL_* point them at the local stack in development).
    pub async fn from_env() -> Result<Arc<Self>, StartupError> {
        let config = Config::from_env()?;
        let sdk = aws_config::load_from_env().await;
        Ok(Arc::new(Self::with_sdk_config(config, &sdk)?))
    }

    pub fn with_sdk_config(config: Config, sdk: &aws_config::SdkConfig) -> Result<Self, StartupError> {
        let s3 = aws_sdk_s3::config::Builder::from(sdk)
            .force_path_style(config.s3_force_path_style)
            // Otherwise the presigner bakes a CRC32 of an empty body into part URLs.
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
            .build();
        let credentials = sdk.credentials_provider().ok_or(StartupError::NoCredentials)?;
        let storage = Storage::new(aws_sdk_s3::Client::from_conf(s3), config.bucket.clone(), credentials);
        let store = Store::new(aws_sdk_dynamodb::Client::new(sdk), config.table.clone());
        let queue = Queue::new(aws_sdk_sqs::Client::new(sdk), config.queue_url.clone(), config.job_delay_secs);
        Ok(Self { config, storage, store, queue })
    }
}
