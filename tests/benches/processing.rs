//! Processing benchmark against the real local stack (LocalStack S3, moto, clamd):
//!
//! 1. scan throughput of our streaming pass (S3 GET → sniff + SHA-256 + clamd INSTREAM)
//!    against clamd's own INSTREAM throughput for an input of the same size sent
//!    straight from memory (target: ours >= 0.9 of it);
//! 2. peak memory (VmHWM) of a process that runs only the pass, for 100 MiB and 1 GiB;
//! 3. thumbnail time for a 24-megapixel JPEG.
//!
//! Run: `make bench` (needs `scripts/stack.sh start`). Sizes can be shrunk for a
//! quick look with HOIST_BENCH_MIB=64.

use std::time::Instant;

use hoist_e2e::{rand_like, unique, vm_hwm_kib, Harness};
use shared::{clamd::Instream, config::ProcessConfig, domain::ProcessJob, processing};

const MIB: usize = 1024 * 1024;

/// Child mode: run only the processing pass for one job and report peak memory.
async fn child(job_json: &str) {
    let job: ProcessJob = serde_json::from_str(job_json).expect("job");
    let h = Harness::start().await;
    let before = vm_hwm_kib();
    let started = Instant::now();
    let outcome = processing::process(&h.processor(5), &job, 1).await.expect("process");
    println!(
        "{{\"outcome\":\"{outcome:?}\",\"seconds\":{},\"vm_hwm_kib\":{},\"vm_hwm_before_kib\":{before}}}",
        started.elapsed().as_secs_f64(),
        vm_hwm_kib()
    );
}

/// Uploads `mib` MiB of fresh random bytes as text/plain-free octet-stream and returns its job.
async fn prepared_job(h: &Harness, owner: &str, mib: usize) -> ProcessJob {
    let data = rand_like::bytes(mib * MIB);
    let id = h.upload_file(owner, "bench.bin", "application/octet-stream", &data, None).await;
    let jobs = h.drain_jobs().await;
    let job = jobs.into_iter().find(|j| j["upload_id"] == id.as_str()).expect("job for the upload");
    serde_json::from_value(job).expect("job shape")
}

fn run_child(job: &ProcessJob) -> serde_json::Value {
    let exe = std::env::current_exe().expect("exe");
    let out = std::process::Command::new(exe)
        .arg("--child")
        .arg(serde_json::to_string(job).expect("json"))
        .output()
        .expect("spawn child");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.starts_with("{\"outcome\""))
        .unwrap_or_else(|| panic!("child said: {stdout} {}", String::from_utf8_lossy(&out.stderr)));
    serde_json::from_str(line).expect("child json")
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--child") {
        child(&args[i + 1]).await;
        return;
    }
    if !args.iter().any(|a| a == "--bench") {
        return; // Only `cargo bench` (which passes --bench) runs it; `cargo test --all-targets` just builds it.
    }
    let big = std::env::var("HOIST_BENCH_MIB").ok().and_then(|v| v.parse().ok()).unwrap_or(1024usize);
    let small = (big / 10).max(8);
    let h = Harness::start().await;
    let owner = unique("bench");
    let cfg = ProcessConfig::from_env().expect("config");

    println!(
        "## Processing benchmark ({big} MiB and {small} MiB inputs, {} cores)\n",
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0)
    );

    // 1. clamd's own INSTREAM throughput: fresh random bytes straight from memory.
    let baseline_data = rand_like::bytes(big * MIB);
    let started = Instant::now();
    let mut s = Instream::start(&cfg.clamd_addr).await.expect("clamd");
    for chunk in baseline_data.chunks(256 * 1024) {
        s.send(chunk).await.expect("send");
    }
    let reply = s.finish().await.expect("reply");
    let clamd_secs = started.elapsed().as_secs_f64();
    drop(baseline_data);
    let clamd_mibs = big as f64 / clamd_secs;

    // 2. Our pass over a different random input of the same size, read from S3, in a
    //    child process so its peak memory is the pass's alone.
    let job_big = prepared_job(&h, &owner, big).await;
    let ours = run_child(&job_big);
    let ours_secs = ours["seconds"].as_f64().unwrap_or(f64::NAN);
    let ours_mibs = big as f64 / ours_secs;
    let job_small = prepared_job(&h, &owner, small).await;
    let ours_small = run_child(&job_small);

    println!("| measurement | result |\n|---|---|");
    println!(
        "| clamd INSTREAM alone, {big} MiB from memory ({reply:?}) | {clamd_secs:.2} s, **{clamd_mibs:.1} MiB/s** |"
    );
    println!(
        "| our pass, {big} MiB from S3 (sniff + SHA-256 + INSTREAM) | {ours_secs:.2} s, **{ours_mibs:.1} MiB/s** |"
    );
    println!("| ratio ours / clamd alone | **{:.2}** (target ≥ 0.90) |", ours_mibs / clamd_mibs);
    println!("| outcome | {} |", ours["outcome"]);
    println!(
        "| peak RSS (VmHWM) of the pass process, {small} MiB | {:.1} MiB |",
        ours_small["vm_hwm_kib"].as_f64().unwrap_or(0.0) / 1024.0
    );
    println!(
        "| peak RSS (VmHWM) of the pass process, {big} MiB | {:.1} MiB |",
        ours["vm_hwm_kib"].as_f64().unwrap_or(0.0) / 1024.0
    );

    // 3. Thumbnail of a 24-megapixel JPEG (6000 x 4000).
    let img = image::RgbImage::from_fn(6000, 4000, |x, y| {
        image::Rgb([(x % 251) as u8, (y % 241) as u8, ((x ^ y) % 256) as u8])
    });
    let mut jpeg = std::io::Cursor::new(Vec::new());
    img.write_to(&mut jpeg, image::ImageFormat::Jpeg).expect("encode");
    let jpeg = jpeg.into_inner();
    let mut times = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        let thumb = shared::processing::thumbnail::make(&jpeg, 256).expect("thumbnail");
        times.push(t.elapsed().as_secs_f64());
        assert_eq!((thumb.width, thumb.height), (256, 171));
    }
    times.sort_by(f64::total_cmp);
    println!("| thumbnail of a 24 MP JPEG ({} bytes), median of 5 | {:.3} s |", jpeg.len(), times[2]);
}
