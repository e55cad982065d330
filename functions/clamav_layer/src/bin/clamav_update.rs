//! The definitions update (template.yaml `ClamavUpdateFunction`, every 3 hours): keeps
//! ClamAV's official definitions current in S3, where the process function's extension
//! loads them at each cold start (they are too large for a layer).
//!
//! It starts from the files S3 holds, so freshclam fetches only what changed (the daily
//! diffs), runs the layer's freshclam through the layer's own loader, writes back each
//! file whose bytes changed, then removes what freshclam replaced (`X.cvd` once it is
//! `X.cld`). freshclam verifies each database's signature (ClamAV's key) and test-loads it
//! before it replaces a file, so nothing unverified reaches S3 from here. The extension
//! loads only complete sets (main, daily, bytecode) and the newer of `.cvd`/`.cld`.

use std::path::Path;

use clamav_layer::{env, fetch_definitions, layer_command, log, s3_client, sha256_file, Definitions};
use lambda_runtime::{service_fn, Error, LambdaEvent};

/// Why an update failed, in words (Lambda reports the type's name and this text).
#[derive(Debug)]
struct UpdateFailed(String);

impl std::fmt::Display for UpdateFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UpdateFailed {}

impl From<UpdateFailed> for lambda_runtime::Diagnostic {
    fn from(e: UpdateFailed) -> Self {
        lambda_runtime::Diagnostic { error_type: "UpdateFailed".into(), error_message: e.0 }
    }
}

async fn update(event: LambdaEvent<serde_json::Value>) -> Result<serde_json::Value, UpdateFailed> {
    run(event).await.map_err(|e| UpdateFailed(e.to_string()))
}

async fn run(_event: LambdaEvent<serde_json::Value>) -> Result<serde_json::Value, Error> {
    let spec = env("HOIST_CLAMAV_DEFINITIONS").ok_or("HOIST_CLAMAV_DEFINITIONS is not set")?;
    let target = Definitions::parse(&spec)?;
    let s3 = s3_client().await;
    let dir = Path::new("/tmp/clamav/update");
    std::fs::create_dir_all(dir)?;
    // Nothing usable yet (the first run): freshclam downloads everything.
    let before = fetch_definitions(&s3, &target, dir).await.unwrap_or_default();
    let started_from = before.len();
    let mirror = env("HOIST_CLAMAV_MIRROR");
    // A test mirror: no DNS query for the current version either (freshclam asks
    // current.cvd.clamav.net by DNS otherwise), so nothing leaves the machine.
    let dns = if mirror.is_some() { "DNSDatabaseInfo no\n" } else { "" };
    let conf = Path::new("/tmp/clamav/freshclam.conf");
    std::fs::write(
        conf,
        format!(
            "# Written by clamav_update.\n{dns}DatabaseDirectory {}\nDatabaseMirror {}\nForeground yes\n\
             # Root only in a local container; in AWS the function is not root and this is unused.\n\
             DatabaseOwner root\nScriptedUpdates yes\nTestDatabases yes\nConnectTimeout 30\nReceiveTimeout 120\n",
            dir.display(),
            // ClamAV's mirror network; tests name this machine (no traffic leaves it).
            mirror.unwrap_or_else(|| "database.clamav.net".into())
        ),
    )?;
    let out = layer_command("bin/freshclam")?.arg(format!("--config-file={}", conf.display())).output().await?;
    let said = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        return Err(format!(
            "freshclam failed ({}), having started from {started_from} files from {spec}: {}",
            out.status,
            said.trim()
        )
        .into());
    }
    let mut written = Vec::new();
    let mut local = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()).map(str::to_owned) else { continue };
        if !name.ends_with(".cvd") && !name.ends_with(".cld") {
            continue;
        }
        local.push(name.clone());
        if before.get(&name) == Some(&sha256_file(&path)?) {
            continue;
        }
        // Streamed from the file: main.cvd alone is ~160 MB.
        s3.put_object()
            .bucket(&target.bucket)
            .key(format!("{}{name}", target.prefix))
            .body(aws_sdk_s3::primitives::ByteStream::from_path(&path).await?)
            .send()
            .await
            .map_err(|e| format!("writing {name}: {}", aws_sdk_s3::error::DisplayErrorContext(e)))?;
        written.push(name);
    }
    // What freshclam replaced (daily.cvd once it is daily.cld), after the new files are in.
    let mut removed = Vec::new();
    let stored = clamav_layer::list(&s3, &target).await?;
    for (name, _) in stored.iter().filter(|(n, _)| (n.ends_with(".cvd") || n.ends_with(".cld")) && !local.contains(n)) {
        s3.delete_object()
            .bucket(&target.bucket)
            .key(format!("{}{name}", target.prefix))
            .send()
            .await
            .map_err(|e| format!("removing {name}: {}", aws_sdk_s3::error::DisplayErrorContext(e)))?;
        removed.push(name.clone());
    }
    log("INFO", &format!("definitions: wrote {written:?}, removed {removed:?}"));
    Ok(serde_json::json!({"started_from": started_from, "written": written, "removed": removed}))
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::run(service_fn(update)).await
}
