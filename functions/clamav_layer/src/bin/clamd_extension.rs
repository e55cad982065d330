//! The ClamAV layer's Lambda extension: runs clamd beside the process function.
//!
//! Lambda starts every executable in `/opt/extensions` before the function. This one
//! registers at once (for SHUTDOWN only: no cost per invocation) and, beside the
//! function's own init, loads the definitions (from S3, `HOIST_CLAMAV_DEFINITIONS`; a
//! directory; or, only under `sam local`, the layer's test signatures), starts the layer's
//! clamd through the layer's own loader and libraries (so it runs on Amazon Linux without
//! Debian's glibc) and keeps it running. Definitions that cannot be loaded are retried
//! with backoff and clamd is not started meanwhile: scans wait, then fail and are retried;
//! nothing is scanned with less than the configured definitions. On SHUTDOWN clamd stops.

use std::{
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use clamav_layer::{env, fetch_definitions, layer_command, layer_dir, log, s3_client, Definitions};
use lambda_extension::{service_fn, Error, Extension, LambdaEvent, NextEvent};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    process::Child,
    sync::Mutex,
};

const ADDR: &str = "127.0.0.1:3310";

/// clamd.conf in /tmp (the only writable place): the layer's settings and limits
/// (scanner/limits.conf) plus where the definitions and temporary files are.
fn write_config(layer: &Path, db: &Path) -> std::io::Result<PathBuf> {
    let run = Path::new("/tmp/clamav");
    std::fs::create_dir_all(run.join("tmp"))?;
    let base = std::fs::read_to_string(layer.join("etc/clamd.conf"))?;
    let conf =
        format!("{base}\nDatabaseDirectory {}\nTemporaryDirectory {}\n", db.display(), run.join("tmp").display());
    let path = run.join("clamd.conf");
    std::fs::write(&path, conf)?;
    Ok(path)
}

fn spawn_clamd(conf: &Path) -> std::io::Result<Child> {
    layer_command("sbin/clamd")?.arg(format!("--config-file={}", conf.display())).kill_on_drop(true).spawn()
}

async fn ping() -> bool {
    let Ok(Ok(mut s)) = tokio::time::timeout(Duration::from_secs(1), TcpStream::connect(ADDR)).await else {
        return false;
    };
    if s.write_all(b"zPING\0").await.is_err() {
        return false;
    }
    let mut buf = [0u8; 4];
    matches!(tokio::time::timeout(Duration::from_secs(1), s.read_exact(&mut buf)).await, Ok(Ok(_)) if &buf == b"PONG")
}

/// Where the definitions are, or why none can be used (the caller retries).
async fn definitions(started: Instant) -> Result<PathBuf, String> {
    if let Some(spec) = env("HOIST_CLAMAV_DEFINITIONS") {
        let into = PathBuf::from("/tmp/clamav/db");
        let from = Definitions::parse(&spec)?;
        let files = fetch_definitions(&s3_client().await, &from, &into).await?;
        log("INFO", &format!("{} definition files from {spec} in {} ms", files.len(), started.elapsed().as_millis()));
        return Ok(into);
    }
    if let Some(dir) = env("HOIST_CLAMAV_DB_DIR") {
        return Ok(PathBuf::from(dir));
    }
    // The layer's test signatures find only test files: never in AWS, where "clean" would
    // then mean nothing. Only under `sam local` or outside Lambda.
    let in_aws = env("AWS_LAMBDA_FUNCTION_NAME").is_some() && env("AWS_SAM_LOCAL").is_none();
    if in_aws {
        return Err("no definitions configured (HOIST_CLAMAV_DEFINITIONS)".into());
    }
    Ok(layer_dir().join("db"))
}

/// Loads the definitions (retrying with backoff until they can be: a bucket still empty
/// after the first deploy, S3 refusing for a while), starts clamd, and starts it again if
/// it exits, with backoff (a database clamd cannot load must not keep a CPU busy).
async fn supervise(child: Arc<Mutex<Option<Child>>>, stopping: Arc<AtomicBool>, started: Instant) {
    let mut pause = Duration::from_secs(1);
    let db = loop {
        match definitions(started).await {
            Ok(db) => break db,
            Err(e) => {
                log(
                    "ERROR",
                    &format!("definitions not loaded, clamd not started (retry in {} s): {e}", pause.as_secs()),
                );
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(60));
            }
        }
    };
    let conf = match write_config(&layer_dir(), &db) {
        Ok(c) => c,
        Err(e) => return log("ERROR", &format!("cannot write clamd.conf: {e}")),
    };
    let mut pause = Duration::from_millis(500);
    loop {
        let since = Instant::now();
        match spawn_clamd(&conf) {
            Ok(c) => *child.lock().await = Some(c),
            Err(e) => log("ERROR", &format!("cannot start clamd: {e}")),
        }
        let status = loop {
            tokio::time::sleep(Duration::from_millis(250)).await;
            if stopping.load(Ordering::SeqCst) {
                return;
            }
            let mut guard = child.lock().await;
            match guard.as_mut().map(|c| c.try_wait()) {
                Some(Ok(None)) => continue,
                Some(Ok(Some(status))) => break status.to_string(),
                Some(Err(e)) => break e.to_string(),
                None => break "not started".into(),
            }
        };
        // A clamd that ran a while before exiting starts again at once; one that keeps
        // failing waits longer each time (up to 30 s).
        if since.elapsed() > Duration::from_secs(60) {
            pause = Duration::from_millis(500);
        }
        log("ERROR", &format!("clamd exited ({status}); starting it again in {} ms", pause.as_millis()));
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(30));
    }
}

/// Whether this function scans with a clamd beside it (the process function names a
/// local address). Others with the layer (the definitions update) only use its programs;
/// a remote `ClamdAddress` needs none here.
fn runs_clamd_here() -> bool {
    env("HOIST_CLAMD_ADDR")
        .is_some_and(|a| a.starts_with("127.0.0.1:") || a.starts_with("localhost:") || a.starts_with("[::1]:"))
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let started = Instant::now();
    let child: Arc<Mutex<Option<Child>>> = Arc::new(Mutex::new(None));
    let stopping = Arc::new(AtomicBool::new(false));
    let on_event = {
        let (child, stopping) = (child.clone(), stopping.clone());
        move |event: LambdaEvent| {
            let (child, stopping) = (child.clone(), stopping.clone());
            async move {
                if let NextEvent::Shutdown(_) = event.next {
                    stopping.store(true, Ordering::SeqCst);
                    if let Some(mut c) = child.lock().await.take() {
                        let _ = c.kill().await;
                    }
                    log("INFO", "SHUTDOWN: clamd stopped");
                }
                Ok::<(), Error>(())
            }
        }
    };
    // Registered at once: Lambda starts the function's own init only when every
    // extension has registered. Loading happens beside it.
    let registered =
        Extension::new().with_events(&["SHUTDOWN"]).with_events_processor(service_fn(on_event)).register().await?;
    if runs_clamd_here() {
        tokio::spawn(supervise(child, stopping, started));
        // Until the first `next` Lambda holds the first invocation back: a small database
        // is ready in that time; a large one goes on loading during the first invocation,
        // whose scan waits for clamd (HOIST_CLAMD_START_SECONDS). Bounded (8 s, counted
        // from the start) because Lambda gives init 10 s.
        let wait = Duration::from_secs(env("HOIST_CLAMD_INIT_WAIT_SECONDS").and_then(|v| v.parse().ok()).unwrap_or(8));
        let ready = loop {
            if ping().await {
                break true;
            }
            if started.elapsed() > wait {
                break false;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        };
        if ready {
            log("INFO", &format!("clamd ready in {} ms", started.elapsed().as_millis()));
        } else {
            log("WARN", &format!("clamd not ready after {} s; it goes on loading", wait.as_secs()));
        }
    }
    registered.run().await
}
