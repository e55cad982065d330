//! The fastest any client that pins each part's SHA-256 can upload to this S3: the
//! bound behind `bench/put_throughput.md`'s "hoist / aws" target (issue 13.3).
//!
//! It does nothing but S3's share of the work, with every cost of its own taken out
//! before the clock starts: the file is read into memory and every part's SHA-256
//! computed beforehand; no API, no DynamoDB, no whole-file hash, no recording. Timed:
//! CreateMultipartUpload (SHA-256 parts, as Hoist creates them), presigning every part
//! as Hoist does (`S3Store::presign_part`: length and SHA-256 signed), the PUTs from
//! memory with `PART_MIB` parts and `CONCURRENCY` in flight, and CompleteMultipartUpload
//! with each part's checksum. What S3 does per request is then exactly what it does for
//! `hoist put`; a real client can only be slower.
//!
//! Usage (from scripts/bench_put.py): `put_oracle <file> <key>`; needs
//! `AWS_ENDPOINT_URL_S3`, `HOIST_BUCKET` and credentials in the environment. Prints one
//! JSON line: `{"secs": …}` (the timed span), and deletes nothing (the caller does).

use std::{sync::Arc, time::Instant};

use bytes::Bytes;
use futures::{stream, StreamExt, TryStreamExt};
use sha2::{Digest, Sha256};
use shared::{
    aws::S3Store,
    domain::{ETag, PartNumber, Sha256Digest},
    ports::{CompleteOutcome, ObjectStore},
};

const PART_MIB: usize = 16;
const CONCURRENCY: usize = 8;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    // `cargo bench` passes `--bench`; the script passes the file and key.
    let args: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    let [path, key] = args.as_slice() else {
        eprintln!("usage: put_oracle <file> <key> (run by scripts/bench_put.py)");
        return Ok(());
    };
    let bucket = std::env::var("HOIST_BUCKET")?;
    let sdk = aws_config::load_from_env().await;
    let client = aws_sdk_s3::Client::from_conf(aws_sdk_s3::config::Builder::from(&sdk).force_path_style(true).build());
    let credentials = sdk.credentials_provider().ok_or("no AWS credentials in the environment")?;
    let store = Arc::new(S3Store::new(client, bucket, credentials));

    // Untimed: the bytes and their hashes.
    let data = Bytes::from(std::fs::read(path)?);
    let parts: Vec<(PartNumber, Bytes, Sha256Digest)> = data
        .chunks(PART_MIB << 20)
        .enumerate()
        .map(|(i, chunk)| {
            let number = PartNumber::new(i as u32 + 1)?;
            let body = data.slice_ref(chunk);
            let digest = Sha256Digest::from_bytes(Sha256::digest(&body).into());
            Ok((number, body, digest))
        })
        .collect::<Result<_, BoxError>>()?;
    let http = reqwest::Client::new();

    let started = Instant::now();
    let upload_id = store.create_multipart(key, "application/octet-stream", true, &[]).await?;
    let done: Vec<(PartNumber, ETag, Option<String>)> = stream::iter(parts)
        .map(|(number, body, digest)| {
            let (store, http, key, upload_id) = (store.clone(), http.clone(), key.clone(), upload_id.clone());
            async move {
                let signed =
                    store.presign_part(&key, &upload_id, number, body.len() as u64, Some(&digest), ONE_HOUR).await?;
                let mut req = http.put(&signed.url).body(body);
                for (name, value) in &signed.headers {
                    req = req.header(name, value);
                }
                let resp = req.send().await?.error_for_status()?;
                let etag = resp.headers().get("etag").ok_or("no ETag")?.to_str()?;
                Ok::<_, BoxError>((number, ETag::parse(etag)?, Some(digest.to_base64())))
            }
        })
        .buffer_unordered(CONCURRENCY)
        .try_collect()
        .await?;
    let mut done = done;
    done.sort_by_key(|(n, _, _)| n.get());
    let outcome = store.complete(key, &upload_id, &done, data.len() as u64).await?;
    if !matches!(outcome, CompleteOutcome::Completed { .. }) {
        return Err(format!("S3 did not complete the upload: {outcome:?}").into());
    }
    println!("{{\"secs\": {:.3}}}", started.elapsed().as_secs_f64());
    Ok(())
}

const ONE_HOUR: std::time::Duration = std::time::Duration::from_secs(3600);
