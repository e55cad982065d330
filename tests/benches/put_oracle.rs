//! The fastest any client that pins each part's SHA-256 can upload to this S3: the
//! bound behind `bench/put_throughput.md`'s "hoist / aws" target (issue 13.3).
//!
//! It does nothing but S3's share of the work, with the client's own costs taken out:
//! every part's SHA-256 is computed before the clock starts (with `--hash-in-clock`, each
//! part's just before it is signed, inside the clock: the bound for a client, which must
//! read and hash what it pins); no API, no DynamoDB, no whole-file hash, no recording.
//! Timed: CreateMultipartUpload (SHA-256 parts, as Hoist creates them), presigning every
//! part as the API does (`S3Store::presign_part`: length and SHA-256 signed), the PUTs
//! streamed from the file as `hoist put` streams them, 16 MiB parts and `CONCURRENCY` in
//! flight, and CompleteMultipartUpload with each part's checksum. What S3 is asked per request is then exactly what it is asked for `hoist put`.
//!
//! Usage (from scripts/bench_put.py): `put_oracle <file> <key> [--hash-in-clock]`; needs
//! `AWS_ENDPOINT_URL_S3`, `HOIST_BUCKET` and credentials in the environment. Prints one
//! JSON line: `{"secs": …}` (the timed span), and deletes nothing (the caller does).

use std::{sync::Arc, time::Instant};

use aws_sdk_s3::config::{RequestChecksumCalculation, ResponseChecksumValidation};
use futures::{stream, StreamExt, TryStreamExt};
use sha2::{Digest, Sha256};
use shared::{
    aws::S3Store,
    domain::{ETag, PartNumber, Sha256Digest},
    ports::{CompleteOutcome, ObjectStore},
};
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio_util::io::ReaderStream;

const PART: usize = 16 << 20;
const CONCURRENCY: usize = 8;
const READ_BUF: usize = 256 * 1024; // cli/src/put.rs

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
    // As the API builds its client (shared/src/aws/mod.rs).
    let client = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&sdk)
            .force_path_style(true)
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
            .build(),
    );
    let credentials = sdk.credentials_provider().ok_or("no AWS credentials in the environment")?;
    let store = Arc::new(S3Store::new(client, bucket, credentials));

    // With --hash-in-clock each part is hashed inside the clock, just before it is signed,
    // as any pinning client must (the bound for such a client); else before the clock.
    let hash_in_clock = std::env::args().any(|a| a == "--hash-in-clock");
    let size = std::fs::metadata(path)?.len();
    let mut parts = Vec::new();
    let mut offset = 0u64;
    while offset < size {
        let len = (size - offset).min(PART as u64);
        let digest = if hash_in_clock { None } else { Some(hash_part(path, offset, len)?) };
        parts.push((PartNumber::new(parts.len() as u32 + 1)?, offset, len, digest));
        offset += len;
    }
    let http = reqwest::Client::new();

    let started = Instant::now();
    let upload_id = store.create_multipart(key, "application/octet-stream", true, &[]).await?;
    let done: Vec<(PartNumber, ETag, Option<String>)> = stream::iter(parts)
        .map(|(number, offset, len, digest)| {
            let (store, http, key, upload_id) = (store.clone(), http.clone(), key.clone(), upload_id.clone());
            async move {
                let digest = match digest {
                    Some(d) => d,
                    None => {
                        let file = path.clone();
                        tokio::task::spawn_blocking(move || hash_part(&file, offset, len)).await??
                    }
                };
                let signed = store.presign_part(&key, &upload_id, number, len, Some(&digest), ONE_HOUR).await?;
                // Streamed from the file in the CLI's read size, as `hoist put` sends a part
                // (cli/src/put.rs send_part), so S3 sees the same requests.
                let mut f = tokio::fs::File::open(path).await?;
                f.seek(std::io::SeekFrom::Start(offset)).await?;
                let body = ReaderStream::with_capacity(f.take(len), READ_BUF);
                let mut req = http
                    .put(&signed.url)
                    .header(reqwest::header::CONTENT_LENGTH, len)
                    .body(reqwest::Body::wrap_stream(body));
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
    let outcome = store.complete(key, &upload_id, &done, size).await?;
    if !matches!(outcome, CompleteOutcome::Completed { .. }) {
        return Err(format!("S3 did not complete the upload: {outcome:?}").into());
    }
    println!("{{\"secs\": {:.3}}}", started.elapsed().as_secs_f64());
    Ok(())
}

/// One part's SHA-256, read from the file in the CLI's read size (cli/src/put.rs hash_part).
fn hash_part(path: &str, offset: u64, len: u64) -> std::io::Result<Sha256Digest> {
    use std::io::{Read, Seek};
    let mut f = std::fs::File::open(path)?;
    f.seek(std::io::SeekFrom::Start(offset))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; READ_BUF];
    let mut left = len;
    while left > 0 {
        let n = f.read(&mut buf[..left.min(READ_BUF as u64) as usize])?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        h.update(&buf[..n]);
        left -= n as u64;
    }
    Ok(Sha256Digest::from_bytes(h.finalize().into()))
}

const ONE_HOUR: std::time::Duration = std::time::Duration::from_secs(3600);
