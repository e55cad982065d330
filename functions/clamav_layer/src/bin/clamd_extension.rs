//! The ClamAV layer's Lambda extension: runs clamd beside the process function.
//!
//! Lambda starts every executable in `/opt/extensions` before the function. This one
//! loads the definitions (from S3, `HOIST_CLAMAV_DEFINITIONS`; or a directory; or the
//! layer's test signatures), starts the layer's clamd through the layer's own loader and
//! libraries (so it runs on Amazon Linux without Debian's glibc), waits for it to answer
//! PING, and registers for SHUTDOWN only (no cost per invocation). A clamd that exits is
//! started again; on SHUTDOWN it is stopped.
//!
//! Waiting is bounded (`HOIST_CLAMD_INIT_WAIT_SECONDS`, 8 s, counted from the start):
//! Lambda gives init 10 s. The full official database loads slower; it goes on loading
//! during the first invocation, and the process function waits for clamd itself
//! (`HOIST_CLAMD_START_SECONDS`).

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

/// Where the definitions are. Configured but not loadable: None, and clamd is not
/// started, so nothing is ever scanned with less than the configured definitions (the
/// function's scans fail and the jobs are retried).
async fn definitions(started: Instant) -> Option<PathBuf> {
    match (env("HOIST_CLAMAV_DEFINITIONS"), env("HOIST_CLAMAV_DB_DIR")) {
        (Some(spec), _) => {
            let into = PathBuf::from("/tmp/clamav/db");
            let fetched = match Definitions::parse(&spec) {
                Ok(from) => fetch_definitions(&s3_client().await, &from, &into).await,
                Err(e) => Err(e),
            };
            match fetched {
                Ok(files) => {
                    log(
                        "INFO",
                        &format!(
                            "{} definition files from {spec} in {} ms",
                            files.len(),
                            started.elapsed().as_millis()
                        ),
                    );
                    Some(into)
                }
                Err(e) => {
                    log("ERROR", &format!("definitions not loaded, clamd not started: {e}"));
                    None
                }
            }
        }
        (None, Some(dir)) => Some(PathBuf::from(dir)),
        (None, None) => Some(layer_dir().join("db")),
    }
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let started = Instant::now();
    let child: Arc<Mutex<Option<Child>>> = Arc::new(Mutex::new(None));
    let stopping = Arc::new(AtomicBool::new(false));

    // Only the function that scans (it names clamd's address) runs clamd; others with the
    // layer (the definitions update) only use its programs.
    let scans = env("HOIST_CLAMD_ADDR").is_some();
    let db = if scans { definitions(started).await } else { None };
    if let Some(db) = db {
        let conf = write_config(&layer_dir(), &db)?;
        *child.lock().await = Some(spawn_clamd(&conf)?);
        // The supervisor: a clamd that exits is started again (until SHUTDOWN).
        let (child, stopping) = (child.clone(), stopping.clone());
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(500)).await;
                let mut guard = child.lock().await;
                if stopping.load(Ordering::SeqCst) {
                    return;
                }
                if let Some(status) = guard.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                    log("ERROR", &format!("clamd exited ({status}); starting it again"));
                    match spawn_clamd(&conf) {
                        Ok(c) => *guard = Some(c),
                        Err(e) => log("ERROR", &format!("cannot start clamd: {e}")),
                    }
                }
            }
        });
        // Counted from the start of init (a download included): Lambda gives init 10 s.
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

    let on_event = move |event: LambdaEvent| {
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
    };
    Extension::new().with_events(&["SHUTDOWN"]).with_events_processor(service_fn(on_event)).run().await
}
