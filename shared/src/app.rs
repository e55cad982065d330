//! Everything a handler needs, built once per cold start and shared: the configuration
//! and the ports (AWS adapters in Lambda, in-memory fakes in unit tests).

use std::sync::Arc;

use crate::config::Config;
use crate::ports::{JobQueue, ObjectStore, UploadRepo};

pub struct App {
    pub config: Config,
    pub repo: Arc<dyn UploadRepo>,
    pub objects: Arc<dyn ObjectStore>,
    pub jobs: Arc<dyn JobQueue>,
}

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error("the AWS configuration has no credentials provider")]
    NoCredentials,
}

impl App {
    pub fn new(
        config: Config,
        repo: Arc<dyn UploadRepo>,
        objects: Arc<dyn ObjectStore>,
        jobs: Arc<dyn JobQueue>,
    ) -> Self {
        Self { config, repo, objects, jobs }
    }

    /// The app on AWS, from the environment (see [`crate::aws::app_from_env`]).
    pub async fn from_env() -> Result<Arc<Self>, StartupError> {
        crate::aws::app_from_env().await
    }
}
