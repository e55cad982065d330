//! S3 access: multipart lifecycle and just-in-time presigned part URLs.

use std::time::Duration;

use aws_sdk_s3::{
    error::{ProvideErrorMetadata, SdkError},
    presigning::PresigningConfig,
    types::{ChecksumAlgorithm, CompletedMultipartUpload, CompletedPart},
    Client,
};
use serde::Serialize;

use crate::domain::{ETag, PartNumber, Sha256Digest};

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("s3 {op}: {code}: {message}")]
    Service { op: &'static str, code: String, message: String, throttled: bool },
    #[error("s3 {op}: {0}", op = .1)]
    Other(String, &'static str),
}

impl StorageError {
    pub fn is_throttling(&self) -> bool {
        matches!(self, StorageError::Service { throttled: true, .. })
    }
    fn code(&self) -> Option<&str> {
        match self {
            StorageError::Service { code, .. } => Some(code),
            StorageError::Other(..) => None,
        }
    }
}

fn map_err<E, R>(op: &'static str, e: SdkError<E, R>) -> StorageError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug,
{
    match e.as_service_error() {
        Some(se) => {
            let code = se.code().unwrap_or("Unknown").to_owned();
            let throttled = matches!(code.as_str(), "SlowDown" | "Throttling" | "ThrottlingException" | "RequestLimitExceeded");
            StorageError::Service { op, code, message: se.message().unwrap_or("").to_owned(), throttled }
        }
        None => {
            // Raw responses (e.g. 412 without a parsed body) keep their status in the debug form.
            let text = format!("{}", aws_smithy_types::error::display::DisplayErrorContext(&e));
            StorageError::Other(text, op)
        }
    }
}

/// A part as S3 holds it (ListParts).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredPart {
    pub number: u32,
    pub etag: String,
    pub size: u64,
    pub checksum_sha256: Option<String>,
}

/// What a client needs to PUT one part: the URL, the method and the headers to send verbatim.
#[derive(Debug, Clone, Serialize)]
pub struct PresignedPart {
    pub url: String,
    pub method: String,
    /// Signed headers the PUT must carry exactly (Content-Length excepted: clients send the
    /// body of `content_length` bytes and their HTTP stack sets it; it is signed all the same).
    pub headers: std::collections::BTreeMap<String, String>,
}

pub enum CompleteOutcome {
    Completed { etag: String },
    /// `If-None-Match: *` refused: an object already sits at the key.
    AlreadyExists,
    /// S3 no longer knows the multipart upload (completed or aborted earlier).
    NoSuchUpload,
    /// S3 refused the part list (e.g. InvalidPart, InvalidPartOrder, EntityTooSmall).
    Refused { code: String, message: String },
}

#[derive(Clone)]
pub struct Storage {
    client: Client,
    bucket: String,
}

impl Storage {
    pub fn new(client: Client, bucket: String) -> Self {
        Self { client, bucket }
    }

    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    pub async fn create_multipart(
        &self,
        key: &str,
        content_type: &str,
        sha256_parts: bool,
        metadata: &[(&str, String)],
    ) -> Result<String, StorageError> {
        let mut req = self.client.create_multipart_upload().bucket(&self.bucket).key(key).content_type(content_type);
        if sha256_parts {
            req = req.checksum_algorithm(ChecksumAlgorithm::Sha256);
        }
        for (k, v) in metadata {
            req = req.metadata(*k, v);
        }
        let out = req.send().await.map_err(|e| map_err("CreateMultipartUpload", e))?;
        out.upload_id().map(str::to_owned).ok_or_else(|| StorageError::Other("no UploadId in answer".into(), "CreateMultipartUpload"))
    }

    /// Presigns one UploadPart. Content-Length (and the SHA-256 when given) become
    /// signed headers, so S3 refuses a body of another length or other bytes.
    pub async fn presign_part(
        &self,
        key: &str,
        upload_id: &str,
        number: PartNumber,
        content_length: u64,
        sha256: Option<&Sha256Digest>,
        expires_in: Duration,
    ) -> Result<PresignedPart, StorageError> {
        let mut req = self
            .client
            .upload_part()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id)
            .part_number(number.get() as i32);
        // An empty part (only an empty file has one) is not length-pinned: HTTP clients
        // often omit `Content-Length: 0`, and completion checks every part's size anyway.
        if content_length > 0 {
            req = req.content_length(content_length as i64);
        }
        if let Some(d) = sha256 {
            // Only the value: setting checksum_algorithm too makes the SDK recompute it.
            req = req.checksum_sha256(d.to_base64());
        }
        let cfg = PresigningConfig::expires_in(expires_in).map_err(|e| StorageError::Other(e.to_string(), "presign"))?;
        let presigned = req.presigned(cfg).await.map_err(|e| map_err("presign UploadPart", e))?;
        let headers = presigned
            .headers()
            .filter(|(k, _)| !k.eq_ignore_ascii_case("content-length") && !k.eq_ignore_ascii_case("host"))
            .map(|(k, v)| (k.to_ascii_lowercase(), v.to_owned()))
            .collect();
        Ok(PresignedPart { url: presigned.uri().to_owned(), method: presigned.method().to_owned(), headers })
    }

    /// Every part S3 holds for the upload, all pages.
    pub async fn list_parts(&self, key: &str, upload_id: &str) -> Result<Option<Vec<StoredPart>>, StorageError> {
        let mut parts = Vec::new();
        let mut marker: Option<String> = None;
        loop {
            let mut req = self.client.list_parts().bucket(&self.bucket).key(key).upload_id(upload_id).max_parts(1000);
            if let Some(m) = &marker {
                req = req.part_number_marker(m);
            }
            let out = match req.send().await {
                Ok(o) => o,
                Err(e) => {
                    let err = map_err("ListParts", e);
                    if err.code() == Some("NoSuchUpload") {
                        return Ok(None);
                    }
                    return Err(err);
                }
            };
            for p in out.parts() {
                parts.push(StoredPart {
                    number: p.part_number().unwrap_or(0) as u32,
                    etag: p.e_tag().unwrap_or("").trim_matches('"').to_owned(),
                    size: p.size().unwrap_or(0).max(0) as u64,
                    checksum_sha256: p.checksum_sha256().map(str::to_owned),
                });
            }
            match (out.is_truncated(), out.next_part_number_marker()) {
                (Some(true), Some(m)) if Some(m) != marker.as_deref() => marker = Some(m.to_owned()),
                _ => break,
            }
        }
        Ok(Some(parts))
    }

    /// CompleteMultipartUpload that never overwrites (If-None-Match: *) and makes S3
    /// check the assembled size.
    pub async fn complete(
        &self,
        key: &str,
        upload_id: &str,
        parts: &[(PartNumber, ETag, Option<String>)],
        size: u64,
    ) -> Result<CompleteOutcome, StorageError> {
        let completed = CompletedMultipartUpload::builder()
            .set_parts(Some(
                parts
                    .iter()
                    .map(|(n, etag, sha)| {
                        CompletedPart::builder()
                            .part_number(n.get() as i32)
                            .e_tag(etag.quoted())
                            .set_checksum_sha256(sha.clone())
                            .build()
                    })
                    .collect(),
            ))
            .build();
        let res = self
            .client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id)
            .multipart_upload(completed)
            .if_none_match("*")
            .mpu_object_size(size as i64)
            .send()
            .await;
        match res {
            Ok(out) => Ok(CompleteOutcome::Completed { etag: out.e_tag().unwrap_or("").trim_matches('"').to_owned() }),
            Err(e) => {
                let status = e.raw_response().map(|r| r.status().as_u16());
                let err = map_err("CompleteMultipartUpload", e);
                match (status, err.code()) {
                    (Some(412), _) | (_, Some("PreconditionFailed")) => Ok(CompleteOutcome::AlreadyExists),
                    (_, Some("NoSuchUpload")) => Ok(CompleteOutcome::NoSuchUpload),
                    (_, Some(code @ ("InvalidPart" | "InvalidPartOrder" | "EntityTooSmall" | "InvalidRequest" | "BadDigest"))) => {
                        let code = code.to_owned();
                        let message = match &err {
                            StorageError::Service { message, .. } => message.clone(),
                            StorageError::Other(m, _) => m.clone(),
                        };
                        Ok(CompleteOutcome::Refused { code, message })
                    }
                    _ => Err(err),
                }
            }
        }
    }

    /// Size and ETag of an object, or None when absent.
    pub async fn head(&self, key: &str) -> Result<Option<(u64, String)>, StorageError> {
        match self.client.head_object().bucket(&self.bucket).key(key).send().await {
            Ok(o) => Ok(Some((o.content_length().unwrap_or(0).max(0) as u64, o.e_tag().unwrap_or("").trim_matches('"').to_owned()))),
            Err(e) => {
                if e.raw_response().map(|r| r.status().as_u16()) == Some(404) {
                    return Ok(None);
                }
                Err(map_err("HeadObject", e))
            }
        }
    }

    /// Aborts a multipart upload; one S3 no longer knows counts as done.
    pub async fn abort(&self, key: &str, upload_id: &str) -> Result<(), StorageError> {
        match self.client.abort_multipart_upload().bucket(&self.bucket).key(key).upload_id(upload_id).send().await {
            Ok(_) => Ok(()),
            Err(e) => {
                let err = map_err("AbortMultipartUpload", e);
                if err.code() == Some("NoSuchUpload") {
                    Ok(())
                } else {
                    Err(err)
                }
            }
        }
    }
}
