//! The ClamAV layer's Lambda extension: runs clamd beside the process function.
//!
//! Lambda starts every executable in `/opt/extensions` before the function. This one
//! registers (for SHUTDOWN only, so it costs nothing per invocation), starts the layer's
//! clamd through the layer's own dynamic loader and libraries (so it runs on Amazon Linux
//! without Debian's glibc), waits for it to answer PING, and keeps it running: a clamd that
//! dies is started again. On SHUTDOWN it stops clamd.
//!
//! Waiting is bounded (`HOIST_CLAMD_INIT_WAIT_SECONDS`, 8 s): Lambda gives init 10 s. A
//! definitions database that loads slower (the full official one takes longer) keeps
//! loading during the first invocation, and the process function waits for clamd itself
//! (`HOIST_CLAMD_START_SECONDS`).

use std::{
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use lambda_extension::{service_fn, Error, Extension, LambdaEvent, NextEvent};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    process::{Child, Command},
    sync::Mutex,
};

/// Where the layer is mounted.
const LAYER: &str = "/opt/clamav";
const ADDR: &str = "127.0.0.1:3310";

fn log(level: &str, message: &str) {
    // One JSON object per line, like the functions' own logs.
    let message = message.replace('\\', "\\\\").replace('"', "\\\"");
    eprintln!(r#"{{"level":"{level}","extension":"clamd","message":"{message}"}}"#);
}

fn env_secs(name: &str, default: u64) -> Duration {
    Duration::from_secs(std::env::var(name).ok().and_then(|v| v.trim().parse().ok()).unwrap_or(default))
}

/// The layer's dynamic loader (`ld-linux-x86-64.so.2` or `ld-linux-aarch64.so.1`).
fn loader(lib: &Path) -> std::io::Result<PathBuf> {
    std::fs::read_dir(lib)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("ld-linux")))
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, "no ld-linux loader in the layer"))
}

/// clamd.conf in /tmp (the only writable place): the layer's settings and limits
/// (scanner/limits.conf) plus where the definitions and temporary files are.
fn write_config(layer: &Path) -> std::io::Result<PathBuf> {
    let run = Path::new("/tmp/clamav");
    std::fs::create_dir_all(run.join("tmp"))?;
    let db = std::env::var("HOIST_CLAMAV_DB_DIR")
        .ok()
        .filter(|d| !d.trim().is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| layer.join("db"));
    let base = std::fs::read_to_string(layer.join("etc/clamd.conf"))?;
    let conf =
        format!("{base}\nDatabaseDirectory {}\nTemporaryDirectory {}\n", db.display(), run.join("tmp").display());
    let path = run.join("clamd.conf");
    std::fs::write(&path, conf)?;
    Ok(path)
}

fn spawn_clamd(layer: &Path, conf: &Path) -> std::io::Result<Child> {
    let lib = layer.join("lib");
    Command::new(loader(&lib)?)
        .arg("--library-path")
        .arg(&lib)
        .arg(layer.join("sbin/clamd"))
        .arg(format!("--config-file={}", conf.display()))
        .kill_on_drop(true)
        .spawn()
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

#[tokio::main]
async fn main() -> Result<(), Error> {
    let started = Instant::now();
    let layer = PathBuf::from(std::env::var("HOIST_CLAMAV_LAYER").unwrap_or_else(|_| LAYER.into()));
    let conf = write_config(&layer)?;
    let child = Arc::new(Mutex::new(Some(spawn_clamd(&layer, &conf)?)));
    let stopping = Arc::new(AtomicBool::new(false));

    // The supervisor: a clamd that exits is started again (until SHUTDOWN).
    {
        let (child, stopping, layer, conf) = (child.clone(), stopping.clone(), layer.clone(), conf.clone());
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(500)).await;
                let mut guard = child.lock().await;
                if stopping.load(Ordering::SeqCst) {
                    return;
                }
                let exited = match guard.as_mut() {
                    Some(c) => c.try_wait().ok().flatten(),
                    None => None,
                };
                if let Some(status) = exited {
                    log("ERROR", &format!("clamd exited ({status}); starting it again"));
                    match spawn_clamd(&layer, &conf) {
                        Ok(c) => *guard = Some(c),
                        Err(e) => log("ERROR", &format!("cannot start clamd: {e}")),
                    }
                }
            }
        });
    }

    let wait = env_secs("HOIST_CLAMD_INIT_WAIT_SECONDS", 8);
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
    Extension::new().with_events(&["SHUTDOWN"]).with_events_processor(service_fn(on_event)).run().await
}
