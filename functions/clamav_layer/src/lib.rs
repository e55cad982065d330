//! The ClamAV layer's own code: the extension that runs clamd beside the process function
//! (`clamd_extension`), the scheduled definitions update (`clamav_update`), and what both
//! need: the layer's programs run through the layer's own loader, and the definitions in S3.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
};

use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

/// Where Lambda mounts the layer (`HOIST_CLAMAV_LAYER` overrides it for tests).
pub fn layer_dir() -> PathBuf {
    PathBuf::from(std::env::var("HOIST_CLAMAV_LAYER").unwrap_or_else(|_| "/opt/clamav".into()))
}

/// A set, non-blank environment variable.
pub fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// One JSON object per line, like the functions' own logs.
pub fn log(level: &str, message: &str) {
    println!("{}", serde_json::json!({"level": level, "component": "clamav", "message": message}));
}

/// A program of the layer (`sbin/clamd`, `bin/freshclam`), started through the layer's
/// own dynamic loader with only the layer's libraries: it uses nothing of the OS it runs
/// on (Lambda's is Amazon Linux 2023; the binaries are Debian's).
pub fn layer_command(program: &str) -> std::io::Result<tokio::process::Command> {
    let layer = layer_dir();
    let lib = layer.join("lib");
    let loader = std::fs::read_dir(&lib)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("ld-linux")))
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, "no ld-linux loader in the layer"))?;
    let mut command = tokio::process::Command::new(loader);
    command.arg("--library-path").arg(&lib).arg(layer.join(program));
    // Debian's libcurl looks for Debian's CA bundle; Amazon Linux keeps it elsewhere.
    for bundle in ["/etc/pki/tls/certs/ca-bundle.crt", "/etc/ssl/certs/ca-certificates.crt"] {
        if Path::new(bundle).exists() {
            command.env("CURL_CA_BUNDLE", bundle);
            break;
        }
    }
    Ok(command)
}

/// `s3://bucket/prefix/`: where the definitions live.
#[derive(Debug, Clone, PartialEq)]
pub struct Definitions {
    pub bucket: String,
    pub prefix: String,
}

impl Definitions {
    pub fn parse(spec: &str) -> Result<Self, String> {
        let rest = spec.trim().strip_prefix("s3://").ok_or_else(|| format!("'{spec}' is not s3://bucket/prefix/"))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(format!("'{spec}' names no bucket"));
        }
        Ok(Self { bucket: bucket.into(), prefix: prefix.into() })
    }
}

/// File names ClamAV loads as signature databases (`.cvd`/`.cld` are the official ones;
/// the others are custom signatures, such as the project's test set).
pub const DATABASE_EXTENSIONS: &[&str] = &[
    "cvd", "cld", "cud", "ndb", "hdb", "hsb", "mdb", "msb", "ldb", "idb", "cdb", "fp", "sfp", "ign2", "ftm", "pdb",
    "wdb", "yar", "yara", "cbc",
];

pub fn is_database(name: &str) -> bool {
    !name.is_empty()
        && !name.contains('/')
        && name.rsplit_once('.').is_some_and(|(_, ext)| DATABASE_EXTENSIONS.contains(&ext))
}

/// An S3 client from the standard environment; under `sam local` on the local stack's
/// address (`HOIST_LOCAL_ENDPOINT_S3`, as the functions do).
pub async fn s3_client() -> aws_sdk_s3::Client {
    let sdk = aws_config::load_from_env().await;
    let mut conf = aws_sdk_s3::config::Builder::from(&sdk);
    if let Some(url) = env("HOIST_LOCAL_ENDPOINT_S3") {
        conf.set_endpoint_url(Some(url));
        conf.set_force_path_style(Some(true));
    }
    aws_sdk_s3::Client::from_conf(conf.build())
}

/// Downloads every database file under the prefix into `into`; returns each file's
/// SHA-256 (hex) by name. No files at all is an error: clamd must not start without them.
pub async fn fetch_definitions(
    s3: &aws_sdk_s3::Client,
    from: &Definitions,
    into: &Path,
) -> Result<HashMap<String, String>, String> {
    let (bucket, prefix) = (&from.bucket, &from.prefix);
    std::fs::create_dir_all(into).map_err(|e| e.to_string())?;
    let mut pages = s3.list_objects_v2().bucket(bucket).prefix(prefix).into_paginator().send();
    let mut fetched = HashMap::new();
    while let Some(page) = pages.next().await {
        let page =
            page.map_err(|e| format!("listing s3://{bucket}/{prefix}: {}", aws_sdk_s3::error::DisplayErrorContext(e)))?;
        for object in page.contents() {
            let Some(key) = object.key() else { continue };
            let name = &key[prefix.len().min(key.len())..];
            if !is_database(name) {
                continue;
            }
            let got =
                s3.get_object().bucket(bucket).key(key).send().await.map_err(|e| {
                    format!("reading s3://{bucket}/{key}: {}", aws_sdk_s3::error::DisplayErrorContext(e))
                })?;
            let mut body = got.body;
            let mut file = tokio::fs::File::create(into.join(name)).await.map_err(|e| e.to_string())?;
            let mut hash = Sha256::new();
            while let Some(chunk) = body.try_next().await.map_err(|e| format!("reading {key}: {e}"))? {
                hash.update(&chunk);
                file.write_all(&chunk).await.map_err(|e| format!("writing {name}: {e}"))?;
            }
            file.flush().await.map_err(|e| e.to_string())?;
            fetched.insert(name.to_owned(), hex::encode(hash.finalize()));
        }
    }
    if fetched.is_empty() {
        return Err(format!("no definitions under s3://{bucket}/{prefix}"));
    }
    Ok(fetched)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn definitions_locations_and_database_names() {
        assert_eq!(
            Definitions::parse("s3://defs/clamav/").unwrap(),
            Definitions { bucket: "defs".into(), prefix: "clamav/".into() }
        );
        assert!(Definitions::parse("https://defs/clamav/").is_err());
        assert!(Definitions::parse("s3:///clamav/").is_err());
        assert!(is_database("daily.cvd") && is_database("hoist-test.ndb"));
        assert!(!is_database("notes.txt") && !is_database("sub/daily.cvd") && !is_database(""));
    }
}
