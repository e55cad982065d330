//! `hoist get`: downloads through a signed link, resumable with Range into
//! `<out>.hoist-part`, verified against the file's SHA-256 before it takes its name.

use std::path::{Path, PathBuf};

use api_types::problem::Problem;
use futures::StreamExt;
use indicatif::ProgressBar;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::api::{backoff, Api, CliError, MAX_ATTEMPTS};

/// A safe local name from the file's display name: its last path component, no leading dots.
pub fn local_name(display: &str) -> String {
    let base = display.rsplit(['/', '\\']).next().unwrap_or("").trim_start_matches('.');
    let clean: String = base.chars().filter(|c| !c.is_control()).collect();
    if clean.is_empty() {
        "download".into()
    } else {
        clean
    }
}

async fn sha256_of(path: &Path) -> Result<String, CliError> {
    let mut f = tokio::fs::File::open(path).await?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1024 * 1024];
    loop {
        let n = f.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

pub async fn get(api: &Api, id: &str, out: Option<PathBuf>, bar: ProgressBar) -> Result<PathBuf, CliError> {
    let info = api.file(id).await?;
    if info.status != "ready" {
        return Err(CliError::Source(format!(
            "{} is {}, not downloadable{}",
            info.filename,
            info.status,
            info.reason.map(|r| format!(": {r}")).unwrap_or_default()
        )));
    }
    let out = out.unwrap_or_else(|| PathBuf::from(local_name(&info.filename)));
    let partial = PathBuf::from(format!("{}.hoist-part", out.display()));
    bar.set_length(info.size);
    bar.set_message(info.filename.clone());
    let mut attempt = 0;
    loop {
        let have = tokio::fs::metadata(&partial).await.map(|m| m.len()).unwrap_or(0);
        if have > info.size {
            tokio::fs::remove_file(&partial).await?;
            continue;
        }
        bar.set_position(have);
        if have < info.size {
            match fetch_from(api, id, &partial, have, info.size, &bar).await {
                Ok(()) => {}
                Err(e) if attempt + 1 < MAX_ATTEMPTS && !matches!(e, CliError::Api { .. } | CliError::Io(_)) => {
                    attempt += 1;
                    tokio::time::sleep(backoff(attempt)).await;
                    continue;
                }
                Err(e) => return Err(e),
            }
        }
        break;
    }
    let actual = sha256_of(&partial).await?;
    if let Some(expected) = &info.sha256 {
        if &actual != expected {
            tokio::fs::remove_file(&partial).await?;
            return Err(CliError::Source(format!(
                "the downloaded bytes hash to {actual}, not the file's {expected}; the partial download was removed, run again"
            )));
        }
    }
    tokio::fs::rename(&partial, &out).await?;
    bar.finish_with_message(format!("{} ✓", out.display()));
    Ok(out)
}

/// Appends bytes `from..size` to `partial` (a fresh link each time: links are cheap).
async fn fetch_from(
    api: &Api,
    id: &str,
    partial: &Path,
    from: u64,
    size: u64,
    bar: &ProgressBar,
) -> Result<(), CliError> {
    let link = api.link(id, Some(600), false).await?;
    let mut req = api.http.get(&link.url);
    if from > 0 {
        req = req.header(reqwest::header::RANGE, format!("bytes={from}-"));
    }
    let resp = req.send().await.map_err(|e| CliError::Unreachable(e.to_string()))?;
    let status = resp.status().as_u16();
    let append = match (from, status) {
        (0, 200) => false,
        (_, 206) => true,
        (_, 200) => false, // server ignored the range: start over
        (_, s) => {
            let text = resp.text().await.unwrap_or_default();
            let detail = serde_json::from_str::<Problem>(&text)
                .map(|p| p.detail)
                .unwrap_or_else(|_| text.chars().take(200).collect());
            return Err(CliError::Api { status: s, detail });
        }
    };
    let mut file =
        tokio::fs::OpenOptions::new().create(true).write(true).append(append).truncate(!append).open(partial).await?;
    if !append {
        bar.set_position(0);
    }
    let mut body = resp.bytes_stream();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| CliError::Unreachable(e.to_string()))?;
        file.write_all(&chunk).await?;
        bar.inc(chunk.len() as u64);
    }
    file.flush().await?;
    let now = tokio::fs::metadata(partial).await?.len();
    if now != size {
        return Err(CliError::Unreachable(format!("connection ended at byte {now} of {size}")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_names_are_safe() {
        assert_eq!(local_name("../../etc/passwd"), "passwd");
        assert_eq!(local_name(".bashrc"), "bashrc");
        assert_eq!(local_name(".."), "download");
        assert_eq!(local_name("Résumé.pdf"), "Résumé.pdf");
    }
}
