//! Bodies of the file routes (`/files...`) and download links.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FileView {
    pub id: String,
    pub filename: String,
    pub size: u64,
    pub content_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detected_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub width: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub height: Option<u32>,
    /// A signed link to the thumbnail (valid one hour), for ready images.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thumbnail_url: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deleted_at: Option<String>,
    /// Until when a deleted file can be restored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restorable_until: Option<String>,
    /// While a large file is checked in windows: how far along the checks are.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<crate::uploads::ProcessingProgress>,
}

/// `GET /files`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FileList {
    pub files: Vec<FileView>,
    /// Pass as `cursor` for the next page; absent on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// `POST /files/{id}/links`.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct LinkRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_in: Option<serde_json::Number>,
    /// `"attachment"` (default) or `"inline"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disposition: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct LinkResponse {
    pub url: String,
    pub expires_at: String,
}
