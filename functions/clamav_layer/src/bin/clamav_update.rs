//! The definitions update (template.yaml `ClamavUpdateFunction`, every 12 hours): keeps
//! ClamAV's official definitions current in S3, where the process function's extension
//! loads them at each cold start (they are too large for a layer).
//!
//! It starts from the files already in S3, so freshclam fetches only what changed (the
//! daily diffs), runs the layer's freshclam through the layer's own loader, and writes
//! back each file whose bytes changed. freshclam verifies every database's signature
//! (ClamAV's key) before it replaces a file, so nothing unsigned reaches S3 from here.

use std::path::Path;

use clamav_layer::{env, fetch_definitions, layer_command, s3_client, Definitions};
use lambda_runtime::{service_fn, Error, LambdaEvent};
use sha2::{Digest, Sha256};

async fn update(_event: LambdaEvent<serde_json::Value>) -> Result<serde_json::Value, Error> {
    let spec = std::env::var("HOIST_CLAMAV_DEFINITIONS").map_err(|_| "HOIST_CLAMAV_DEFINITIONS is not set")?;
    let target = Definitions::parse(&spec)?;
    let s3 = s3_client().await;
    let dir = Path::new("/tmp/clamav/update");
    std::fs::create_dir_all(dir)?;
    // Absent on the first run: freshclam then downloads everything.
    let before = fetch_definitions(&s3, &target, dir).await.unwrap_or_default();
    let conf = Path::new("/tmp/clamav/freshclam.conf");
    std::fs::write(
        conf,
        format!(
            "# Written by clamav_update.\nDatabaseDirectory {}\nDatabaseMirror {}\nForeground yes\n# Root only in a local container; in AWS the function is not root and this is unused.\nDatabaseOwner root\nScriptedUpdates yes\nConnectTimeout 30\nReceiveTimeout 120\n",
            dir.display(),
            // ClamAV's mirror network; tests point it at this machine (no traffic leaves it).
            env("HOIST_CLAMAV_MIRROR").unwrap_or_else(|| "database.clamav.net".into())
        ),
    )?;
    let out = layer_command("bin/freshclam")?
        .arg(format!("--config-file={}", conf.display()))
        .arg("--stdout")
        .output()
        .await?;
    let said = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        return Err(format!("freshclam failed ({}): {}", out.status, said.trim()).into());
    }
    let mut written = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()).map(str::to_owned) else { continue };
        if !name.ends_with(".cvd") && !name.ends_with(".cld") {
            continue;
        }
        let bytes = std::fs::read(&path)?;
        let digest = hex::encode(Sha256::digest(&bytes));
        if before.get(&name) == Some(&digest) {
            continue;
        }
        s3.put_object()
            .bucket(&target.bucket)
            .key(format!("{}{name}", target.prefix))
            .body(bytes.into())
            .send()
            .await
            .map_err(|e| format!("writing {name}: {}", aws_sdk_s3::error::DisplayErrorContext(e)))?;
        written.push(name);
    }
    Ok(serde_json::json!({"written": written, "freshclam": said.lines().last().unwrap_or_default()}))
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::run(service_fn(update)).await
}
