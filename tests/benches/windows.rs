//! Time to verdict for large files scanned in windows, by number of workers, on the
//! local stack (LocalStack S3 + SQS, moto, clamd). Each worker is its own process
//! polling the queue one message at a time (as a Lambda instance with BatchSize 1), so
//! its peak memory is its own. The file is uploaded once per size; before each run its
//! record is reset to `processing` and its processing job re-sent. Runs alternate the
//! worker counts (1, 2, 4, 1, 2, 4, ...) and the report gives medians and spreads.
//!
//! The same bytes are scanned in every run, and clamd caches clean results by content
//! hash (a first run measured 21 s, the next ones 7 s). So the benchmark starts its own
//! clamd, with the project's configuration plus `DisableCache yes`, on its own port.
//!
//! `make bench` runs it; `HOIST_BENCH_SIZES_MIB=1024,4096,10240 HOIST_BENCH_WINDOW_MIB=256
//! HOIST_BENCH_RUNS=5 HOIST_BENCH_WORKERS=1,2,4` are the defaults (about an hour here;
//! the 10 GiB file needs ~30 GiB of free disk while LocalStack assembles it).

use std::process::Command;
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::AttributeValue;
use hoist_e2e::{unique, vm_hwm_kib, Harness};
use shared::domain::{ProcessJob, UploadId, UploadStatus};

const MIB: u64 = 1024 * 1024;

fn env_list(name: &str, default: &str) -> Vec<u64> {
    std::env::var(name).unwrap_or_else(|_| default.into()).split(',').filter_map(|v| v.trim().parse().ok()).collect()
}

/// Worker mode: poll the queue, one message at a time, until the upload has its verdict.
async fn worker(queue_url: &str, upload: &str) {
    let app = shared::App::from_env().await.expect("app");
    let config = shared::config::ProcessConfig::from_env().expect("process config");
    let scanner = std::sync::Arc::new(shared::clamd::Clamd::from_config(&config));
    let p = std::sync::Arc::new(process::Processor { app: app.clone(), scanner, config });
    let sqs = aws_sdk_sqs::Client::new(&aws_config::load_from_env().await);
    let id = UploadId::parse(upload).expect("id");
    let mut handled = 0;
    loop {
        let r = hoist_dev::sqs::poll(&p, &sqs, queue_url, 1, 1).await.expect("poll");
        handled += r.received;
        let status = app.repo.get(&id).await.expect("get").map(|u| u.status);
        if status != Some(UploadStatus::Processing) {
            break;
        }
    }
    println!("{{\"handled\":{handled},\"vm_hwm_kib\":{},\"cpu_s\":{}}}", vm_hwm_kib(), cpu_seconds("self"));
}

/// CPU seconds (user + system) process `pid` has used ("self": this one), 0 if gone.
/// Linux counts them in ticks of 1/100 s (USER_HZ on every architecture Hoist runs on).
fn cpu_seconds(pid: &str) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return 0.0 };
    let fields: Vec<&str> =
        stat.rsplit_once(')').map(|(_, rest)| rest.split_whitespace().collect()).unwrap_or_default();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

/// CPU seconds used so far by the local stack's LocalStack and moto processes.
fn stack_cpu() -> (f64, f64) {
    let (mut localstack, mut moto) = (0.0, 0.0);
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let pid = entry.file_name().to_string_lossy().into_owned();
        if !pid.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let cmd = String::from_utf8_lossy(&cmd);
        if cmd.contains("localstack") {
            localstack += cpu_seconds(&pid);
        } else if cmd.contains("moto_server") {
            moto += cpu_seconds(&pid);
        }
    }
    (localstack, moto)
}

/// One cell's runs: times, the largest worker RSS, and CPU seconds per component.
struct Cell {
    workers: u64,
    times: Vec<f64>,
    hwm_kib: u64,
    /// Per run: workers, clamd, LocalStack, moto.
    cpu: Vec<[f64; 4]>,
}

/// Puts the upload back to `processing` with no window started (markers deleted).
async fn reset(ddb: &aws_sdk_dynamodb::Client, table: &str, id: &str) {
    let pk = AttributeValue::S(format!("UPLOAD#{id}"));
    let markers = ddb
        .query()
        .table_name(table)
        .key_condition_expression("pk = :pk AND begins_with(sk, :w)")
        .expression_attribute_values(":pk", pk.clone())
        .expression_attribute_values(":w", AttributeValue::S("WIN#".into()))
        .projection_expression("pk, sk")
        .send()
        .await
        .expect("query markers");
    for item in markers.items() {
        ddb.delete_item().table_name(table).set_key(Some(item.clone())).send().await.expect("delete marker");
    }
    ddb.update_item()
        .table_name(table)
        .key("pk", pk)
        .key("sk", AttributeValue::S("META".into()))
        .update_expression(
            "SET #s = :p REMOVE windows_total, windows_done, hash_next, hash_state, scan_found, scan_gap, \
             type_rejection, processed_at, reason, content_sha256, detected_type, redrives, waiting_for_scanner",
        )
        .expression_attribute_names("#s", "status")
        .expression_attribute_values(":p", AttributeValue::S("processing".into()))
        .send()
        .await
        .expect("reset");
}

/// A clamd of the bench's own: the stack's configuration, on port 3399, with no cache.
struct UncachedClamd {
    child: std::process::Child,
    addr: String,
}

impl UncachedClamd {
    async fn start() -> Self {
        let run = std::env::var("HOIST_RUN")
            .unwrap_or_else(|_| format!("{}/.cache/hoist/run", std::env::var("HOME").unwrap_or_default()));
        let conf = std::fs::read_to_string(format!("{run}/clamd.conf")).expect("the stack's clamd.conf (make stack)");
        let conf: String = conf
            .lines()
            .filter(|l| !l.starts_with("TCPSocket") && !l.starts_with("Foreground"))
            .map(|l| format!("{l}\n"))
            .collect();
        let path = std::env::temp_dir().join("hoist-bench-clamd.conf");
        std::fs::write(&path, format!("{conf}Foreground yes\nTCPSocket 3399\nDisableCache yes\n")).expect("write conf");
        let child = Command::new("clamd")
            .arg(format!("--config-file={}", path.display()))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("clamd");
        // Owned from here: dropping it (a panic included) stops and reaps clamd.
        let clamd = Self { child, addr: "127.0.0.1:3399".to_owned() };
        for _ in 0..300 {
            if shared::clamd::ping(&clamd.addr).await {
                return clamd;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("the bench's clamd did not answer");
    }
}

impl Drop for UncachedClamd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--worker") {
        worker(&args[i + 1], &args[i + 2]).await;
        return;
    }
    if !args.iter().any(|a| a == "--bench") {
        return; // Only `cargo bench` runs it; `cargo test --all-targets` just builds it.
    }
    let sizes = env_list("HOIST_BENCH_SIZES_MIB", "1024,4096,10240");
    let window = env_list("HOIST_BENCH_WINDOW_MIB", "256")[0] * MIB;
    let runs = env_list("HOIST_BENCH_RUNS", "5")[0] as usize;
    let workers = env_list("HOIST_BENCH_WORKERS", "1,2,4");
    let clamd = UncachedClamd::start().await;
    let h = Harness::start().await;
    let owner = unique("winbench");
    let ddb = aws_sdk_dynamodb::Client::new(&aws_config::load_from_env().await);
    let cli = std::path::Path::new(&std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".into()))
        .join("release/hoist");
    println!(
        "## Time to verdict, windows of {} MiB ({} cores; {runs} runs per cell, worker counts alternating; clamd cache off)\n",
        window / MIB,
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0)
    );
    println!(
        "| file | windows | workers | median s | min–max s | MiB/s (median) | peak RSS per worker, max of runs \
         | CPU s per GiB: workers / clamd / LocalStack / moto (medians) | cores busy (median) |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for size_mib in sizes {
        // One random file per size, uploaded once with the CLI (not timed).
        let path = std::env::temp_dir().join(format!("hoist-winbench-{size_mib}.bin"));
        let status = Command::new("sh")
            .arg("-c")
            .arg(format!("head -c {} /dev/urandom > {}", size_mib * MIB, path.display()))
            .status()
            .expect("random file");
        assert!(status.success());
        let out = Command::new(&cli)
            .args(["put", "--json", "--content-type", "application/octet-stream"])
            .arg(&path)
            .env("HOIST_URL", &h.base)
            .env("HOIST_TOKEN", h.token(&owner))
            .env("HOIST_STATE_DIR", std::env::temp_dir().join(unique("winbench-state")))
            .output()
            .expect("hoist put (cargo build --release -p hoist-cli)");
        let line = String::from_utf8_lossy(&out.stdout).lines().last().unwrap_or_default().to_owned();
        let put: serde_json::Value = serde_json::from_str(&line)
            .unwrap_or_else(|_| panic!("hoist put said: {line} {}", String::from_utf8_lossy(&out.stderr)));
        let id = put["id"].as_str().expect("id").to_owned();
        let _ = std::fs::remove_file(&path);
        let job: ProcessJob = serde_json::from_value(
            h.drain_jobs().await.into_iter().find(|j| j["upload_id"] == id.as_str()).expect("job"),
        )
        .expect("job shape");
        let mut cells: Vec<Cell> =
            workers.iter().map(|&w| Cell { workers: w, times: Vec::new(), hwm_kib: 0, cpu: Vec::new() }).collect();
        let clamd_pid = clamd.child.id().to_string();
        for _ in 0..runs {
            for cell in cells.iter_mut() {
                reset(&ddb, &h.app.config.table, &id).await;
                // Nothing left over from the previous run.
                while !h.drain_jobs().await.is_empty() {}
                let (clamd_before, (ls_before, moto_before)) = (cpu_seconds(&clamd_pid), stack_cpu());
                let started = Instant::now();
                h.sqs
                    .send_message()
                    .queue_url(&h.queue_url)
                    .message_body(serde_json::to_string(&job).expect("json"))
                    .send()
                    .await
                    .expect("send job");
                let children: Vec<_> = (0..cell.workers)
                    .map(|_| {
                        Command::new(std::env::current_exe().expect("exe"))
                            .args(["--worker", &h.queue_url, &id])
                            .env("HOIST_QUEUE_URL", &h.queue_url)
                            .env("HOIST_SCAN_WINDOW_BYTES", window.to_string())
                            .env("HOIST_CLAMD_ADDR", &clamd.addr)
                            .env("RUST_LOG", "warn")
                            .stdout(std::process::Stdio::piped())
                            .spawn()
                            .expect("worker")
                    })
                    .collect();
                let verdict = loop {
                    let u = h.app.repo.get(&UploadId::parse(&id).unwrap()).await.unwrap().unwrap();
                    if u.status != UploadStatus::Processing {
                        break u;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                };
                let secs = started.elapsed().as_secs_f64();
                let (ls_after, moto_after) = stack_cpu();
                let mut cpu =
                    [0.0, cpu_seconds(&clamd_pid) - clamd_before, ls_after - ls_before, moto_after - moto_before];
                assert_eq!(verdict.status, UploadStatus::Ready, "{:?}", verdict.reason);
                for child in children {
                    let out = child.wait_with_output().expect("worker exit");
                    let text = String::from_utf8_lossy(&out.stdout);
                    let report: serde_json::Value = text
                        .lines()
                        .rev()
                        .find_map(|l| {
                            serde_json::from_str(l).ok().filter(|v: &serde_json::Value| v.get("vm_hwm_kib").is_some())
                        })
                        .unwrap_or_default();
                    cell.hwm_kib = cell.hwm_kib.max(report["vm_hwm_kib"].as_u64().unwrap_or(0));
                    cpu[0] += report["cpu_s"].as_f64().unwrap_or(0.0);
                }
                cell.times.push(secs);
                cell.cpu.push(cpu);
            }
        }
        let gib = size_mib as f64 / 1024.0;
        for mut cell in cells {
            let times = &mut cell.times;
            let (lo, hi) = (times.iter().copied().fold(f64::MAX, f64::min), times.iter().copied().fold(0.0, f64::max));
            let busy: Vec<f64> = cell.cpu.iter().zip(times.iter()).map(|(c, t)| c.iter().sum::<f64>() / t).collect();
            let m = median(times);
            let per_gib: Vec<String> = (0..4)
                .map(|k| format!("{:.1}", median(&mut cell.cpu.iter().map(|c| c[k] / gib).collect::<Vec<_>>())))
                .collect();
            println!(
                "| {size_mib} MiB | {} | {} | {m:.1} | {lo:.1}–{hi:.1} | {:.0} | {:.1} MiB | {} | {:.2} |",
                (size_mib * MIB).div_ceil(window),
                cell.workers,
                size_mib as f64 / m,
                cell.hwm_kib as f64 / 1024.0,
                per_gib.join(" / "),
                median(&mut busy.clone())
            );
        }
    }
}
