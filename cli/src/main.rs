//! `hoist`: the command-line client of Hoist.

mod api;
mod get;
mod put;

use std::{
    io::IsTerminal,
    path::PathBuf,
    process::ExitCode,
    sync::{atomic::AtomicBool, Arc},
};

use clap::{Parser, Subcommand};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use api::{Api, CliError};

#[derive(Parser)]
#[command(name = "hoist", version, about = "Resumable, parallel, checksum-pinned uploads to Hoist")]
struct Cli {
    /// API base URL.
    #[arg(long, env = "HOIST_URL", global = true, default_value = "http://127.0.0.1:8787")]
    url: String,
    /// Bearer token.
    #[arg(long, env = "HOIST_TOKEN", global = true, hide_env_values = true, default_value = "")]
    token: String,
    /// Machine-readable output: one JSON document per line.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Upload files (resumes an interrupted upload of the same file).
    Put {
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Parts in flight at once, per file.
        #[arg(short = 'j', long, default_value_t = 8)]
        concurrency: usize,
        /// Part size in bytes (default: 16 MiB, grown to fit 10,000 parts).
        #[arg(long)]
        part_size: Option<u64>,
        /// Media type to declare (default: from the extension).
        #[arg(long)]
        content_type: Option<String>,
        /// Cap on upload bandwidth, e.g. 10M (bytes per second; K, M, G suffixes).
        #[arg(long, value_parser = parse_rate)]
        limit_rate: Option<u64>,
        /// Forget an interrupted upload of these files and start over.
        #[arg(long)]
        restart: bool,
        /// Also hash each whole file beside the sending and declare its SHA-256, for
        /// processing to verify the stored file against (a second SHA-256 pass over the
        /// file). Without it S3 still checks every part against its pinned SHA-256.
        #[arg(long = "sha256")]
        whole_sha256: bool,
    },
    /// Status of an upload or file.
    Status { id: String },
    /// List your files.
    Ls {
        /// Only files with this status (ready, quarantined, ...).
        #[arg(long)]
        status: Option<String>,
        /// Include deleted files.
        #[arg(long)]
        all: bool,
    },
    /// Print a signed download link.
    Link {
        id: String,
        /// Lifetime in seconds.
        #[arg(long)]
        expires_in: Option<u64>,
        /// Ask browsers to display rather than save.
        #[arg(long)]
        inline: bool,
    },
    /// Download a file (resumes; verifies SHA-256).
    Get {
        id: String,
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
    /// Delete a file (restorable for the retention period).
    Rm { id: String },
    /// Restore a deleted file.
    Restore { id: String },
}

fn parse_rate(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (num, mult) = match s.chars().last().map(|c| c.to_ascii_uppercase()) {
        Some('K') => (&s[..s.len() - 1], 1024),
        Some('M') => (&s[..s.len() - 1], 1024 * 1024),
        Some('G') => (&s[..s.len() - 1], 1024 * 1024 * 1024),
        _ => (s, 1),
    };
    num.parse::<u64>()
        .ok()
        .filter(|n| *n > 0)
        .map(|n| n * mult)
        .ok_or_else(|| format!("'{s}' is not a rate like 500K or 10M"))
}

fn bars(json: bool) -> MultiProgress {
    let mp = MultiProgress::new();
    if json || !std::io::stderr().is_terminal() {
        mp.set_draw_target(ProgressDrawTarget::hidden());
    }
    mp
}

fn byte_bar(mp: &MultiProgress) -> ProgressBar {
    let bar = mp.add(ProgressBar::new(0));
    bar.set_style(
        ProgressStyle::with_template(
            "{msg:30!} {bar:30.cyan/blue} {bytes:>10}/{total_bytes:<10} {binary_bytes_per_sec:>12} eta {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar
}

fn print(json: bool, value: &serde_json::Value, human: impl FnOnce() -> String) {
    if json {
        println!("{value}");
    } else {
        println!("{}", human());
    }
}

async fn run(cli: Cli, stop: Arc<AtomicBool>) -> Result<(), CliError> {
    if cli.token.is_empty() {
        return Err(CliError::Other("no token: set HOIST_TOKEN or pass --token".into()));
    }
    let api = Api::new(&cli.url, &cli.token)?;
    let json = cli.json;
    match cli.cmd {
        Cmd::Put { files, concurrency, part_size, content_type, limit_rate, restart, whole_sha256 } => {
            let mp = bars(json);
            let total: u64 = files.iter().filter_map(|f| std::fs::metadata(f).ok()).map(|m| m.len()).sum();
            let overall = if files.len() > 1 {
                let b = byte_bar(&mp);
                b.set_length(total);
                b.set_message(format!("{} files", files.len()));
                Some(b)
            } else {
                None
            };
            let opts = put::PutOptions {
                limit_rate: limit_rate.map(|r| Arc::new(put::RateLimit::new(r))),
                concurrency: concurrency.clamp(1, 64),
                part_size,
                restart,
                content_type,
                whole_sha256,
            };
            let mut failed = None;
            let mut done_before = 0u64;
            for f in &files {
                let bar = byte_bar(&mp);
                // The overall bar follows this file's bytes as they leave, not only its end.
                let follow = overall.clone().map(|o| {
                    let bar = bar.clone();
                    tokio::spawn(async move {
                        loop {
                            o.set_position(done_before + bar.position());
                            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                        }
                    })
                });
                let result = put::put_file(&api, f, &opts, bar.clone(), stop.clone()).await;
                if let Some(task) = follow {
                    task.abort();
                }
                match result {
                    Ok(r) => {
                        done_before += r.size;
                        if let Some(o) = &overall {
                            o.set_position(done_before);
                        }
                        let v = serde_json::to_value(&r).unwrap_or_default();
                        mp.suspend(|| {
                            print(json, &v, || {
                                format!(
                                    "{} → {} ({}{}, {:.1} MiB/s)",
                                    r.file,
                                    r.id,
                                    r.status,
                                    if r.resumed { ", resumed" } else { "" },
                                    r.size as f64 / 1048576.0 / r.seconds.max(0.001)
                                )
                            })
                        });
                    }
                    Err(CliError::Interrupted) => return Err(CliError::Interrupted),
                    Err(e) => {
                        bar.abandon_with_message(format!("{} ✗", f.display()));
                        mp.suspend(|| eprintln!("hoist: {}: {e}", f.display()));
                        failed = Some(e);
                    }
                }
            }
            if let Some(o) = overall {
                o.finish();
            }
            if let Some(e) = failed {
                return Err(e);
            }
        }
        Cmd::Status { id } => {
            let u = api.upload(&id).await?;
            let v = serde_json::to_value(&u).unwrap_or_default();
            print(json, &v, || {
                let missing: u32 = u.missing_parts.iter().map(|r| r[1] - r[0] + 1).sum();
                // A large file checked in windows says how far its checks are.
                let checks = u
                    .progress
                    .map(|p| {
                        format!(
                            "\n  checking: {:.0}% ({} of {} windows scanned, {} of {} bytes hashed)",
                            p.fraction() * 100.0,
                            p.windows_scanned,
                            p.windows_total,
                            p.bytes_hashed,
                            p.bytes_total
                        )
                    })
                    .unwrap_or_default();
                format!(
                    "{} {}: {} ({} of {} bytes, {} of {} parts{}){}{checks}",
                    u.id,
                    u.filename,
                    u.status,
                    u.bytes_done,
                    u.size,
                    u.parts_done,
                    u.part_count,
                    if missing > 0 { format!(", {missing} missing") } else { String::new() },
                    u.reason.map(|r| format!("\n  {r}")).unwrap_or_default()
                )
            });
        }
        Cmd::Ls { status, all } => {
            let mut cursor: Option<String> = None;
            loop {
                let mut q = vec!["limit=100".to_owned()];
                if let Some(s) = &status {
                    q.push(format!("status={s}"));
                }
                if all {
                    q.push("include_deleted=true".into());
                }
                if let Some(c) = &cursor {
                    q.push(format!("cursor={c}"));
                }
                let page = api.files(&format!("?{}", q.join("&"))).await?;
                for f in &page.files {
                    print(json, &serde_json::to_value(f).unwrap_or_default(), || {
                        format!(
                            "{}  {}  {:<11} {}{}",
                            f.id,
                            f.size,
                            f.status,
                            f.filename,
                            if f.deleted_at.is_some() { "  (deleted)" } else { "" }
                        )
                    });
                }
                match page.next_cursor {
                    Some(c) => cursor = Some(c),
                    None => break,
                }
            }
        }
        Cmd::Link { id, expires_in, inline } => {
            let l = api.link(&id, expires_in, inline).await?;
            print(json, &serde_json::to_value(&l).unwrap_or_default(), || l.url.clone());
        }
        Cmd::Get { id, output } => {
            let mp = bars(json);
            let path = get::get(&api, &id, output, byte_bar(&mp)).await?;
            print(json, &serde_json::json!({"id": id, "path": path}), || format!("{}", path.display()));
        }
        Cmd::Rm { id } => {
            let f = api.delete_file(&id).await?;
            let v = serde_json::to_value(&f).unwrap_or_default();
            print(json, &v, || format!("{} deleted (restorable with: hoist restore {})", f.filename, f.id));
        }
        Cmd::Restore { id } => {
            let f = api.restore_file(&id).await?;
            let v = serde_json::to_value(&f).unwrap_or_default();
            print(json, &v, || format!("{} restored ({})", f.filename, f.status));
        }
    }
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            // First Ctrl-C: finish recording what S3 accepted, save state, exit.
            flag.store(true, std::sync::atomic::Ordering::Relaxed);
            if tokio::signal::ctrl_c().await.is_ok() {
                std::process::exit(130);
            }
        }
    });
    match run(cli, stop).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(CliError::Interrupted) => {
            eprintln!("hoist: interrupted; run the same command again to resume");
            ExitCode::from(130)
        }
        Err(e) => {
            eprintln!("hoist: {e}");
            ExitCode::FAILURE
        }
    }
}
