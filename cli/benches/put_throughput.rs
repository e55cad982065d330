//! `hoist put` against the AWS CLI and a raw parallel-PUT ceiling, all on the same
//! local S3 (LocalStack) in one run, with the same part size and concurrency; then the
//! CLI's peak memory for a small and a large file.
//!
//! Run: `make bench` (needs the local stack and `AWS_CLI` pointing at an `aws` binary;
//! scripts/bench.sh installs one). HOIST_BENCH_MIB (default 1024) and
//! HOIST_BENCH_BIG_MIB (default 4096) set the sizes.

use std::{process::Command, sync::Arc, time::Instant};

use api_types::uploads::{CreateUploadRequest, SignPartItem, SignPartsRequest, SignPartsResponse};
use futures::StreamExt;
use hoist_e2e::{rand_like, to_json, unique, Harness};

const MIB: u64 = 1024 * 1024;
const PART: u64 = 16 * MIB;
const CONCURRENCY: usize = 8;

fn write_random(path: &std::path::Path, mib: u64) {
    use std::io::Write;
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).expect("create"));
    for _ in 0..mib {
        f.write_all(&rand_like::bytes(MIB as usize)).expect("write");
    }
    f.flush().expect("flush");
}

/// Runs a command under GNU time; returns (seconds, peak RSS in MiB).
async fn timed(mut c: Command) -> (f64, f64) {
    let started = Instant::now();
    let out = tokio::task::spawn_blocking(move || c.output().expect("run")).await.expect("join");
    let secs = started.elapsed().as_secs_f64();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "command failed: {err}");
    let rss_kib: f64 = err
        .lines()
        .rev()
        .find_map(|l| l.trim().strip_prefix("HOIST_MAXRSS_KIB="))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    (secs, rss_kib / 1024.0)
}

fn under_time(program: &str) -> Command {
    let mut c = Command::new("/usr/bin/time");
    c.args(["-f", "HOIST_MAXRSS_KIB=%M", program]);
    c
}

#[tokio::main]
async fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let mib: u64 = std::env::var("HOIST_BENCH_MIB").ok().and_then(|v| v.parse().ok()).unwrap_or(1024);
    let big_mib: u64 = std::env::var("HOIST_BENCH_BIG_MIB").ok().and_then(|v| v.parse().ok()).unwrap_or(4096);
    let aws = std::env::var("AWS_CLI").expect("AWS_CLI: path to the aws command (scripts/bench.sh sets it)");
    let h = Harness::start().await;
    let owner = unique("bench");
    let dir = std::env::temp_dir().join(unique("hoist-bench"));
    std::fs::create_dir_all(&dir).expect("dir");
    let file = dir.join("bench.bin");
    write_random(&file, mib);
    let hoist = env!("CARGO_BIN_EXE_hoist");

    // 1. hoist put.
    let mut c = under_time(hoist);
    c.args(["--json", "put", "-j", &CONCURRENCY.to_string(), "--part-size", &PART.to_string()])
        .arg(&file)
        .env("HOIST_URL", &h.base)
        .env("HOIST_TOKEN", h.token(&owner))
        .env("HOIST_STATE_DIR", dir.join("state"));
    let (hoist_secs, hoist_rss) = timed(c).await;
    h.drain_jobs().await;

    // 2. aws s3 cp, same part size and concurrency, same S3.
    let cfg = dir.join("aws-config");
    std::fs::write(
        &cfg,
        format!("[default]\nregion = us-east-1\ns3 =\n  multipart_threshold = 16MB\n  multipart_chunksize = 16MB\n  max_concurrent_requests = {CONCURRENCY}\n"),
    )
    .expect("aws config");
    let mut c = under_time(&aws);
    c.args(["s3", "cp", "--no-progress", "--endpoint-url", &std::env::var("AWS_ENDPOINT_URL_S3").expect("endpoint")])
        .arg(&file)
        .arg(format!("s3://{}/bench/{}", h.app.objects.bucket(), unique("awscli")))
        .env("AWS_CONFIG_FILE", &cfg);
    let (aws_secs, aws_rss) = timed(c).await;

    // 3. Ceiling: the same presigned, checksum-free part URLs PUT from memory, no disk, no hashing.
    let create = CreateUploadRequest {
        filename: "ceiling.bin".into(),
        size: (mib * MIB).into(),
        content_type: "application/octet-stream".into(),
        sha256: None,
        part_checksums: None,
        part_size: Some(PART.into()),
    };
    let id = h.post_upload(&owner, &create).await.id;
    let parts = (mib * MIB).div_ceil(PART) as u32;
    let body = Arc::new(bytes_of(PART as usize));
    let started = Instant::now();
    let mut signed = Vec::new();
    for chunk in (1..=parts).collect::<Vec<_>>().chunks(1000) {
        let req = SignPartsRequest {
            parts: chunk.iter().map(|&n| SignPartItem { number: n.into(), sha256: None }).collect(),
        };
        let s: SignPartsResponse =
            h.call_as(Some(&owner), "POST", &format!("/uploads/{id}/parts/sign"), Some(to_json(&req)), 200).await;
        signed.extend(s.parts);
    }
    let client = reqwest::Client::new();
    futures::stream::iter(signed)
        .map(|p| {
            let client = client.clone();
            let body = body.clone();
            async move {
                let len = p.content_length as usize;
                let r = client.put(&p.url).body(body[..len].to_vec()).send().await.expect("put");
                assert_eq!(r.status().as_u16(), 200);
            }
        })
        .buffer_unordered(CONCURRENCY)
        .collect::<Vec<_>>()
        .await;
    let ceiling_secs = started.elapsed().as_secs_f64();
    let _ = h.call(Some(&owner), "DELETE", &format!("/uploads/{id}"), None).await;

    // 4. Peak memory of hoist put: small vs large file.
    let small = dir.join("small.bin");
    write_random(&small, 256);
    let mut c = under_time(hoist);
    c.args(["put", "-j", &CONCURRENCY.to_string()])
        .arg(&small)
        .env("HOIST_URL", &h.base)
        .env("HOIST_TOKEN", h.token(&owner))
        .env("HOIST_STATE_DIR", dir.join("state"));
    let (_, small_rss) = timed(c).await;
    std::fs::remove_file(&file).ok();
    let big = dir.join("big.bin");
    write_random(&big, big_mib);
    let mut c = under_time(hoist);
    c.args(["put", "-j", &CONCURRENCY.to_string()])
        .arg(&big)
        .env("HOIST_URL", &h.base)
        .env("HOIST_TOKEN", h.token(&owner))
        .env("HOIST_STATE_DIR", dir.join("state"));
    let (big_secs, big_rss) = timed(c).await;
    h.drain_jobs().await;
    std::fs::remove_dir_all(&dir).ok();

    let rate = |s: f64| mib as f64 / s;
    println!(
        "## Upload throughput ({mib} MiB file, {} MiB parts, {CONCURRENCY} in flight, LocalStack S3)\n",
        PART / MIB
    );
    println!("| client | time | throughput | peak RSS |\n|---|---|---|---|");
    println!("| `hoist put` (hash pass + checksum-pinned parts + API calls) | {hoist_secs:.2} s | **{:.1} MiB/s** | {hoist_rss:.1} MiB |", rate(hoist_secs));
    println!("| `aws s3 cp` | {aws_secs:.2} s | {:.1} MiB/s | {aws_rss:.1} MiB |", rate(aws_secs));
    println!("| raw parallel PUT from memory (ceiling) | {ceiling_secs:.2} s | {:.1} MiB/s | – |", rate(ceiling_secs));
    println!("| **hoist / aws** | | **{:.2}x** (target ≥ 1.0) | |", aws_secs / hoist_secs);
    println!("\n## `hoist put` peak memory\n\n| file | peak RSS |\n|---|---|");
    println!("| 256 MiB | {small_rss:.1} MiB |");
    println!("| {big_mib} MiB ({big_secs:.1} s) | {big_rss:.1} MiB |");
}

fn bytes_of(n: usize) -> Vec<u8> {
    rand_like::bytes(n)
}
