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

/// File names loaded from S3: the official databases (`.cvd`, and `.cld` once freshclam
/// has applied diffs) and custom signature sets (such as the project's test set).
/// Never allowlists or ignore lists (`.fp`, `.sfp`, `.ign`, `.ign2`): whoever could write
/// one to the bucket could silently let files through.
pub const DATABASE_EXTENSIONS: &[&str] = &[
    "cvd", "cld", "cud", "ndb", "hdb", "hsb", "mdb", "msb", "ldb", "idb", "cdb", "ftm", "pdb", "wdb", "yar", "yara",
    "cbc",
];

/// The official databases: a set that has any must have all three.
pub const OFFICIAL: &[&str] = &["main", "daily", "bytecode"];

pub fn is_database(name: &str) -> bool {
    !name.is_empty()
        && !name.contains('/')
        && name.rsplit_once('.').is_some_and(|(_, ext)| DATABASE_EXTENSIONS.contains(&ext))
}

/// Which of the listed files to load (name, last modified in ms): every database file,
/// but of `X.cvd` and `X.cld` only the newer (freshclam turns one into the other; libclamav
/// would load both copies of main and bytecode). An official set missing one of main,
/// daily and bytecode is refused: never scan with less than the whole set.
pub fn choose(listed: &[(String, i64)]) -> Result<Vec<String>, String> {
    let mut chosen: Vec<(String, i64)> = Vec::new();
    for (name, modified) in listed.iter().filter(|(n, _)| is_database(n)) {
        let (stem, ext) = name.rsplit_once('.').unwrap_or((name, ""));
        if ext == "cvd" || ext == "cld" {
            if let Some(i) = chosen
                .iter()
                .position(|(n, _)| n.rsplit_once('.').is_some_and(|(s, e)| s == stem && (e == "cvd" || e == "cld")))
            {
                if *modified > chosen[i].1 {
                    chosen[i] = (name.clone(), *modified);
                }
                continue;
            }
        }
        chosen.push((name.clone(), *modified));
    }
    let official: Vec<&str> =
        chosen.iter().filter_map(|(n, _)| n.strip_suffix(".cvd").or_else(|| n.strip_suffix(".cld"))).collect();
    if !official.is_empty() {
        let missing: Vec<&&str> = OFFICIAL.iter().filter(|o| !official.contains(o)).collect();
        if !missing.is_empty() {
            return Err(format!("the official set is incomplete (no {missing:?})"));
        }
    }
    if chosen.is_empty() {
        return Err("no definitions".into());
    }
    Ok(chosen.into_iter().map(|(n, _)| n).collect())
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

/// Every file directly under the prefix: (name, last modified in ms).
pub async fn list(s3: &aws_sdk_s3::Client, from: &Definitions) -> Result<Vec<(String, i64)>, String> {
    let (bucket, prefix) = (&from.bucket, &from.prefix);
    let mut pages = s3.list_objects_v2().bucket(bucket).prefix(prefix).into_paginator().send();
    let mut listed = Vec::new();
    while let Some(page) = pages.next().await {
        let page =
            page.map_err(|e| format!("listing s3://{bucket}/{prefix}: {}", aws_sdk_s3::error::DisplayErrorContext(e)))?;
        for object in page.contents() {
            let Some(key) = object.key() else { continue };
            let modified = object.last_modified().map(|t| t.to_millis().unwrap_or(0)).unwrap_or(0);
            listed.push((key[prefix.len().min(key.len())..].to_owned(), modified));
        }
    }
    Ok(listed)
}

/// Downloads the definitions under the prefix into `into` (see [`choose`]); returns each
/// file's SHA-256 (hex) by name. Nothing usable is an error: clamd must not start then.
pub async fn fetch_definitions(
    s3: &aws_sdk_s3::Client,
    from: &Definitions,
    into: &Path,
) -> Result<HashMap<String, String>, String> {
    let (bucket, prefix) = (&from.bucket, &from.prefix);
    std::fs::create_dir_all(into).map_err(|e| e.to_string())?;
    let listed = list(s3, from).await?;
    let names = choose(&listed).map_err(|e| format!("s3://{bucket}/{prefix}: {e}"))?;
    let mut fetched = HashMap::new();
    for name in names {
        let key = format!("{prefix}{name}");
        let got = s3
            .get_object()
            .bucket(bucket)
            .key(&key)
            .send()
            .await
            .map_err(|e| format!("reading s3://{bucket}/{key}: {}", aws_sdk_s3::error::DisplayErrorContext(e)))?;
        let mut body = got.body;
        let mut file = tokio::fs::File::create(into.join(&name)).await.map_err(|e| e.to_string())?;
        let mut hash = Sha256::new();
        while let Some(chunk) = body.try_next().await.map_err(|e| format!("reading {key}: {e}"))? {
            hash.update(&chunk);
            file.write_all(&chunk).await.map_err(|e| format!("writing {name}: {e}"))?;
        }
        file.flush().await.map_err(|e| e.to_string())?;
        fetched.insert(name, hex::encode(hash.finalize()));
    }
    Ok(fetched)
}

/// SHA-256 (hex) of a file, read in chunks.
pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    use std::io::Read;
    let mut file = std::fs::File::open(path)?;
    let mut hash = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            return Ok(hex::encode(hash.finalize()));
        }
        hash.update(&buf[..n]);
    }
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
        // Allowlists never come from the bucket.
        assert!(!is_database("local.fp") && !is_database("a.sfp") && !is_database("x.ign2"));
    }

    #[test]
    fn the_newer_of_cvd_and_cld_and_only_complete_official_sets() {
        let l = |v: &[(&str, i64)]| v.iter().map(|(n, t)| (n.to_string(), *t)).collect::<Vec<_>>();
        let full = l(&[("main.cvd", 1), ("daily.cvd", 1), ("daily.cld", 5), ("bytecode.cld", 2), ("bytecode.cvd", 9)]);
        let mut got = choose(&full).unwrap();
        got.sort();
        assert_eq!(got, ["bytecode.cvd", "daily.cld", "main.cvd"]);
        assert!(choose(&l(&[("main.cvd", 1), ("bytecode.cvd", 1)])).unwrap_err().contains("daily"));
        // Custom signatures alone (the tests' set) are a set; nothing at all is not.
        assert_eq!(choose(&l(&[("hoist.ndb", 1), ("notes.txt", 1)])).unwrap(), ["hoist.ndb"]);
        assert!(choose(&l(&[("local.fp", 1)])).is_err());
    }
}
