//! Bodies of Uppy's Companion S3 routes (`/s3/...`), in Companion's own casing.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// `POST /s3/multipart`. Unknown fields are tolerated: Uppy versions add some.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CreateRequest {
    pub filename: String,
    #[serde(rename = "type")]
    pub content_type: String,
    #[serde(default)]
    pub metadata: serde_json::Value,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Created {
    pub key: String,
    pub upload_id: String,
    pub bucket: String,
}

/// A part as Uppy expects it from the list-parts route.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct ListedPart {
    pub part_number: u32,
    #[serde(rename = "ETag")]
    pub etag: String,
    pub size: u64,
}

/// `GET /s3/multipart/{uploadId}/{partNumber}`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SignedOne {
    pub url: String,
    pub expires: u64,
}

/// `GET /s3/multipart/{uploadId}/batch`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct SignedBatch {
    pub presigned_urls: BTreeMap<String, String>,
}

/// `POST /s3/multipart/{uploadId}/complete`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Completed {
    pub location: String,
    pub key: String,
    pub bucket: String,
}

/// `GET /s3/params`: how to send a file in one request (Uppy's default below 100 MiB).
/// Uppy 5 reads `method`, `url`, `fields` and `headers`; Uppy 6 posts `fields` and the
/// file as a form to `url`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SingleUpload {
    pub method: String,
    pub url: String,
    pub fields: BTreeMap<String, String>,
    pub headers: BTreeMap<String, String>,
}
