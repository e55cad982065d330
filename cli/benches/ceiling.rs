//! The client's own ceiling (bench/put_ceiling.md): `hoist put` with SHA-256-pinned
//! parts against an S3 that costs next to nothing, so what bounds it is the client.
//!
//! LocalStack is Python: on these 2 cores it takes about a core for every ~200 MiB/s,
//! so against it every client measures LocalStack (bench/put_throughput.md). Here the
//! part URLs point at a minimal S3 written for this benchmark (below): it answers the
//! four calls an upload makes (CreateMultipartUpload, UploadPart, ListParts,
//! CompleteMultipartUpload), and for every part computes the SHA-256 of the streamed body
//! and refuses a mismatch with BadDigest, as S3 does; it keeps no bytes and checks no
//! signatures. (s3s-fs, the crate the issue suggests, was weighed: the version that
//! builds with this toolchain, 0.14.1, neither verifies part checksums nor lists them,
//! and writes every byte twice, so it would measure less, and our completion would
//! refuse its part list.)
//!
//! The API is the release `hoist-dev serve` as `make dev` runs it, on its own queue and
//! without processing workers; DynamoDB is moto as usual. Files: 256 MiB and 1 GiB of
//! random bytes (in the page cache) and a sparse 8 GiB file (zeros, read from no disk,
//! hashed like any bytes). 16 MiB parts, 8 in flight; RUNS rounds (default 5) in
//! rotating order. Reports wall clock, peak RSS, the CPU the client and the S3 used, and
//! one core's SHA-256 speed, which with the CPU split says what bounds the client.
//!
//! Run: `make bench` (needs the local stack and the release hoist-dev built).

use std::{
    collections::{BTreeMap, HashMap},
    path::Path,
    process::Command,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::Instant,
};

use axum::{
    body::Body,
    extract::State,
    http::{HeaderMap, Method, StatusCode, Uri},
    response::{IntoResponse, Response},
};
use base64::Engine as _;
use futures::StreamExt;
use serde_json::Value;
use sha2::{Digest, Sha256};

const MIB: u64 = 1024 * 1024;
const PART: u64 = 16 * MIB;
const CONCURRENCY: usize = 8;

#[derive(Clone)]
struct StoredPart {
    size: u64,
    etag: String,
    sha256: String,
}

/// The benchmark's S3: multipart uploads by id, each part's size, ETag and SHA-256.
#[derive(Default)]
struct Sink {
    uploads: Mutex<HashMap<String, BTreeMap<u32, StoredPart>>>,
    next_id: AtomicU64,
}

fn xml(status: StatusCode, body: String) -> Response {
    (status, [("content-type", "application/xml")], body).into_response()
}

fn s3_error(status: StatusCode, code: &str, message: &str) -> Response {
    xml(
        status,
        format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>{code}</Code><Message>{message}</Message></Error>"
        ),
    )
}

async fn s3(State(sink): State<Arc<Sink>>, method: Method, uri: Uri, headers: HeaderMap, body: Body) -> Response {
    let query: HashMap<&str, &str> = uri
        .query()
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| p.split_once('=').unwrap_or((p, "")))
        .collect();
    let (bucket, key) = uri.path().trim_start_matches('/').split_once('/').unwrap_or((uri.path(), ""));
    let upload_id = query.get("uploadId").map(|s| s.to_string());
    let part_number = query.get("partNumber").and_then(|n| n.parse::<u32>().ok());
    match (&method, upload_id, part_number) {
        (&Method::POST, None, None) if query.contains_key("uploads") => {
            let id = format!("bench{}", sink.next_id.fetch_add(1, Ordering::Relaxed));
            sink.uploads.lock().unwrap_or_else(|e| e.into_inner()).insert(id.clone(), BTreeMap::new());
            xml(StatusCode::OK, format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?><InitiateMultipartUploadResult><Bucket>{bucket}</Bucket><Key>{key}</Key><UploadId>{id}</UploadId></InitiateMultipartUploadResult>"))
        }
        (&Method::PUT, Some(id), Some(n)) => {
            let pinned = headers.get("x-amz-checksum-sha256").and_then(|v| v.to_str().ok()).map(str::to_owned);
            let mut hash = Sha256::new();
            let mut size = 0u64;
            let mut stream = body.into_data_stream();
            while let Some(chunk) = stream.next().await {
                let Ok(chunk) = chunk else { return s3_error(StatusCode::BAD_REQUEST, "IncompleteBody", "body cut") };
                hash.update(&chunk);
                size += chunk.len() as u64;
            }
            let digest = hash.finalize();
            let sha256 = base64::engine::general_purpose::STANDARD.encode(digest);
            if pinned.as_deref().is_some_and(|p| p != sha256) {
                return s3_error(
                    StatusCode::BAD_REQUEST,
                    "BadDigest",
                    "The SHA256 you specified did not match the calculated checksum.",
                );
            }
            let etag = format!("\"{}\"", &hex::encode(digest)[..32]);
            let mut uploads = sink.uploads.lock().unwrap_or_else(|e| e.into_inner());
            let Some(parts) = uploads.get_mut(&id) else {
                return s3_error(StatusCode::NOT_FOUND, "NoSuchUpload", "no such upload");
            };
            parts.insert(n, StoredPart { size, etag: etag.clone(), sha256: sha256.clone() });
            (StatusCode::OK, [("etag", etag), ("x-amz-checksum-sha256", sha256)]).into_response()
        }
        (&Method::GET, Some(id), None) => {
            let uploads = sink.uploads.lock().unwrap_or_else(|e| e.into_inner());
            let Some(parts) = uploads.get(&id) else {
                return s3_error(StatusCode::NOT_FOUND, "NoSuchUpload", "no such upload");
            };
            let listed: String = parts
                .iter()
                .map(|(n, p)| format!("<Part><PartNumber>{n}</PartNumber><ETag>{}</ETag><Size>{}</Size><ChecksumSHA256>{}</ChecksumSHA256></Part>", p.etag, p.size, p.sha256))
                .collect();
            xml(StatusCode::OK, format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?><ListPartsResult><Bucket>{bucket}</Bucket><Key>{key}</Key><UploadId>{id}</UploadId><IsTruncated>false</IsTruncated>{listed}</ListPartsResult>"))
        }
        (&Method::POST, Some(id), None) => {
            let Some(parts) = sink.uploads.lock().unwrap_or_else(|e| e.into_inner()).remove(&id) else {
                return s3_error(StatusCode::NOT_FOUND, "NoSuchUpload", "no such upload");
            };
            let etag = format!("\"{}-{}\"", &hex::encode(Sha256::digest(id.as_bytes()))[..32], parts.len());
            let result = format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?><CompleteMultipartUploadResult><Bucket>{bucket}</Bucket><Key>{key}</Key><ETag>{etag}</ETag></CompleteMultipartUploadResult>");
            (
                StatusCode::OK,
                [("content-type", "application/xml".to_owned()), ("x-amz-version-id", format!("v-{id}"))],
                result,
            )
                .into_response()
        }
        (&Method::DELETE, Some(id), None) => {
            sink.uploads.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
            StatusCode::NO_CONTENT.into_response()
        }
        _ => {
            eprintln!("ceiling S3: not implemented: {method} {uri}");
            s3_error(StatusCode::NOT_IMPLEMENTED, "NotImplemented", "not in the benchmark's S3")
        }
    }
}

struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// CPU seconds this process (the benchmark's S3) has used (Linux: /proc, USER_HZ = 100).
fn own_cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or("").split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

fn write_random(path: &Path, mib: u64) {
    use std::io::Write;
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).expect("create"));
    for _ in 0..mib {
        f.write_all(&hoist_e2e::rand_like::bytes(MIB as usize)).expect("write");
    }
    f.flush().expect("flush");
}

struct Run {
    seconds: f64,
    peak_mib: f64,
    client_cpu: f64,
    s3_cpu: f64,
    timings: Value,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[tokio::main]
async fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let runs: usize = std::env::var("RUNS").ok().and_then(|v| v.parse().ok()).unwrap_or(5);
    let target = std::env::var("CARGO_TARGET_DIR").expect("CARGO_TARGET_DIR (scripts/env.sh)");
    let dev = format!("{target}/release/hoist-dev"); // as `make dev` runs it
    let hoist = env!("CARGO_BIN_EXE_hoist");

    // The benchmark's S3, on this process's runtime.
    let sink = Arc::new(Sink::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let s3_port = listener.local_addr().expect("addr").port();
    let app = axum::Router::new().fallback(s3).with_state(sink.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });

    // Its own queue, so no job of this benchmark reaches another dev server's workers.
    let sqs = aws_sdk_sqs::Client::new(&aws_config::load_from_env().await);
    let queue = sqs.create_queue().queue_name("hoist-bench-ceiling").send().await.expect("queue");
    let queue_url = queue.queue_url().expect("queue url").to_owned();
    let api_port = std::net::TcpListener::bind("127.0.0.1:0").expect("port").local_addr().expect("addr").port();
    let api_log = std::fs::File::create(std::env::temp_dir().join("hoist-ceiling-api.log")).expect("log");
    let api = Command::new(&dev)
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
        .args(["serve", "--port", &api_port.to_string(), "--workers", "0"])
        .env("AWS_ENDPOINT_URL_S3", format!("http://127.0.0.1:{s3_port}"))
        .env("HOIST_QUEUE_URL", &queue_url)
        .stdout(api_log.try_clone().expect("log"))
        .stderr(api_log)
        .spawn()
        .expect("hoist-dev serve");
    // Stopped whichever way the benchmark ends (a failed run panics).
    let api = KillOnDrop(api);
    for _ in 0..300 {
        if std::net::TcpStream::connect(("127.0.0.1", api_port)).is_ok() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let owner = hoist_e2e::unique("ceiling");
    let token = String::from_utf8(Command::new(&dev).args(["token", &owner]).output().expect("token").stdout)
        .expect("utf-8")
        .trim()
        .to_owned();

    let dir = std::env::temp_dir().join(hoist_e2e::unique("hoist-ceiling"));
    std::fs::create_dir_all(&dir).expect("dir");
    let files: Vec<(String, std::path::PathBuf, u64)> = vec![
        ("256 MiB random".into(), dir.join("r256.bin"), 256),
        ("1 GiB random".into(), dir.join("r1024.bin"), 1024),
        ("8 GiB sparse".into(), dir.join("s8192.bin"), 8192),
    ];
    for (_, path, mib) in &files {
        if *mib == 8192 {
            std::fs::File::create(path).expect("sparse").set_len(mib * MIB).expect("set_len");
        } else {
            write_random(path, *mib);
        }
    }

    let mut results: Vec<Vec<Run>> = files.iter().map(|_| Vec::new()).collect();
    for round in 0..runs {
        for k in 0..files.len() {
            let i = (round + k) % files.len();
            let (_, path, _) = &files[i];
            let rss = dir.join("rss");
            let cpu_before = own_cpu_seconds();
            let started = Instant::now();
            let out = Command::new("/usr/bin/time")
                .args(["-f", "%M %U %S", "-o"])
                .arg(&rss)
                .arg(hoist)
                .args(["--json", "put", "-j", &CONCURRENCY.to_string(), "--part-size", &PART.to_string()])
                .arg(path)
                .env("HOIST_URL", format!("http://127.0.0.1:{api_port}"))
                .env("HOIST_TOKEN", &token)
                .env("HOIST_STATE_DIR", dir.join("state"))
                .output()
                .expect("hoist put");
            let seconds = started.elapsed().as_secs_f64();
            let s3_cpu = own_cpu_seconds() - cpu_before;
            assert!(out.status.success(), "hoist put failed: {}", String::from_utf8_lossy(&out.stderr));
            let result: Value = serde_json::from_slice(&out.stdout).expect("--json result");
            let usage = std::fs::read_to_string(&rss).expect("time output");
            let fields: Vec<f64> = usage.split_whitespace().rev().take(3).filter_map(|v| v.parse().ok()).collect();
            let (system, user, peak_kib) = (fields[0], fields[1], fields[2]);
            results[i].push(Run {
                seconds,
                peak_mib: peak_kib / 1024.0,
                client_cpu: user + system,
                s3_cpu,
                timings: result["timings"].clone(),
            });
            eprintln!("round {}: {} {seconds:.2} s", round + 1, files[i].0);
        }
    }
    drop(api);
    let _ = sqs.delete_queue().queue_url(&queue_url).send().await;
    std::fs::remove_dir_all(&dir).ok();

    // One core's SHA-256 speed, with the same crate the client uses.
    let buf = vec![7u8; 256 * MIB as usize];
    let started = Instant::now();
    std::hint::black_box(Sha256::digest(&buf));
    let sha_gib_s = 0.25 / started.elapsed().as_secs_f64();

    println!("## The client's ceiling: `hoist put` against an S3 that costs next to nothing\n");
    println!("{runs} rounds in rotating order; 16 MiB parts, {CONCURRENCY} in flight, SHA-256 of every part pinned and verified by the S3 (`hoist put`'s default: no whole-file hash); the release dev server (as `make dev` runs it) and moto for the API.\n");
    println!("| file | runs (s) | median s | min–max s | GiB/s (median) | peak RSS, max | client CPU-s | S3 CPU-s |");
    println!("|---|---|---|---|---|---|---|---|");
    for ((name, _, mib), runs) in files.iter().zip(&results) {
        let secs: Vec<f64> = runs.iter().map(|r| r.seconds).collect();
        let med = median(secs.clone());
        let (lo, hi) = (secs.iter().copied().fold(f64::MAX, f64::min), secs.iter().copied().fold(0.0, f64::max));
        let peak = runs.iter().map(|r| r.peak_mib).fold(0.0, f64::max);
        println!(
            "| {name} | {} | **{med:.2}** | {lo:.2}–{hi:.2} | **{:.2}** | {peak:.1} MiB | {:.2} | {:.2} |",
            secs.iter().map(|s| format!("{s:.2}")).collect::<Vec<_>>().join(", "),
            *mib as f64 / 1024.0 / med,
            median(runs.iter().map(|r| r.client_cpu).collect()),
            median(runs.iter().map(|r| r.s3_cpu).collect()),
        );
    }
    let keys = [
        "first_byte_ms",
        "part_hashing_ms",
        "whole_hash_ms",
        "whole_hash_wait_ms",
        "sign_calls",
        "sign_ms",
        "put_ms",
        "record_ms",
        "complete_ms",
    ];
    println!("\n`hoist put`'s own timings (medians, ms; parallel work adds up):\n");
    println!("| file | {} |", keys.join(" | "));
    println!("|---|{}", "---|".repeat(keys.len()));
    for ((name, _, _), runs) in files.iter().zip(&results) {
        let cells: Vec<String> = keys
            .iter()
            .map(|k| format!("{:.0}", median(runs.iter().map(|r| r.timings[*k].as_f64().unwrap_or(0.0)).collect())))
            .collect();
        println!("| {name} | {} |", cells.join(" | "));
    }
    println!("\nOne core's SHA-256 (the `sha2` crate, SHA-NI where the CPU has it): {sha_gib_s:.2} GiB/s.");
    let today = Command::new("date").args(["-u", "+%Y-%m-%d"]).output().map(|o| o.stdout).unwrap_or_default();
    println!(
        "machine: {} cores, {}, {}; the client, the S3, the dev server and moto share the cores",
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        std::env::consts::ARCH,
        String::from_utf8_lossy(&today).trim()
    );
}
