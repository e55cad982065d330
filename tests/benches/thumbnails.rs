//! Thumbnail time and peak memory for large images, ours against libvips'
//! `vipsthumbnail` (shrink-on-load) on the same files. Each measurement runs in a child
//! process (so its VmHWM is its own), 7 runs per tool in alternating order; the report
//! gives medians and spreads.
//!
//! `make bench` runs it (`scripts/bench.sh` installs Debian's libvips-tools for the peer).

use std::io::Cursor;
use std::process::Command;
use std::time::Instant;

use hoist_e2e::vm_hwm_kib;

const RUNS: usize = 7;

/// A photo-like 6000 x 4000 image: smooth gradients with grain, so encoders work as on
/// real photos (a flat pattern would compress unrealistically well).
fn photo(w: u32, h: u32) -> image::RgbImage {
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    image::RgbImage::from_fn(w, h, |px, py| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let grain = (x % 24) as i32 - 12;
        let c = |v: u32, d: u32| ((v * 255 / d) as i32 + grain).clamp(0, 255) as u8;
        image::Rgb([c(px, w), c(py, h), c((px + py) / 2, (w + h) / 2)])
    })
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Child mode: one thumbnail of `path`, by us; prints seconds and peak RSS.
fn one(path: &str) {
    let bytes = std::fs::read(path).expect("read");
    let started = Instant::now();
    let t = shared::processing::thumbnail::make(&bytes, 256).expect("thumbnail");
    let secs = started.elapsed().as_secs_f64();
    assert!(t.width == 256 || t.height == 256);
    println!("{secs} {}", vm_hwm_kib());
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--one") {
        return one(&args[i + 1]);
    }
    let dir = std::env::temp_dir().join(format!("hoist-thumbs-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let img = photo(6000, 4000);
    let mut files = Vec::new();
    for (name, fmt) in [
        ("photo.jpg", image::ImageFormat::Jpeg),
        ("photo.png", image::ImageFormat::Png),
        ("photo.webp", image::ImageFormat::WebP),
        ("photo.gif", image::ImageFormat::Gif),
    ] {
        let mut out = Cursor::new(Vec::new());
        let encoded = if fmt == image::ImageFormat::Gif {
            // GIF is for small animations; quantizing 24 MP would dominate the setup.
            image::DynamicImage::ImageRgb8(image::imageops::thumbnail(&img, 2000, 1333)).write_to(&mut out, fmt)
        } else {
            img.write_to(&mut out, fmt)
        };
        encoded.expect("encode");
        let path = dir.join(name);
        std::fs::write(&path, out.into_inner()).expect("write");
        files.push(path);
    }
    let exe = std::env::current_exe().expect("exe");
    let vips = Command::new("vipsthumbnail").arg("--vips-version").output().is_ok();
    println!("## Thumbnails (256 px), {RUNS} runs each, alternating ours / libvips");
    println!();
    println!("| file | bytes | ours median s | ours min–max s | ours peak RSS MiB | vipsthumbnail median s | vipsthumbnail min–max s | vips peak RSS MiB |");
    println!("|---|---|---|---|---|---|---|---|");
    for path in &files {
        let (mut ours, mut ours_rss, mut theirs, mut theirs_rss) = (Vec::new(), 0f64, Vec::new(), 0f64);
        for _ in 0..RUNS {
            let out = Command::new(&exe).arg("--one").arg(path).output().expect("child");
            let text = String::from_utf8_lossy(&out.stdout);
            let mut it = text.split_whitespace();
            ours.push(it.next().and_then(|v| v.parse().ok()).expect("seconds"));
            ours_rss = ours_rss.max(it.next().and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0) / 1024.0);
            if vips {
                // Wall time of the whole command (process start included, a few ms);
                // GNU time for its peak RSS.
                let target = dir.join("vips-out.jpg");
                let started = Instant::now();
                let out = Command::new("/usr/bin/time")
                    .args(["-f", "%M", "vipsthumbnail", "--size", "256"])
                    .arg(path)
                    .arg("-o")
                    .arg(&target)
                    .output()
                    .expect("vipsthumbnail");
                theirs.push(started.elapsed().as_secs_f64());
                let kib: f64 = String::from_utf8_lossy(&out.stderr)
                    .lines()
                    .last()
                    .and_then(|l| l.trim().parse().ok())
                    .unwrap_or(0.0);
                theirs_rss = theirs_rss.max(kib / 1024.0);
            }
        }
        let spread = |v: &[f64]| {
            let (lo, hi) = v.iter().fold((f64::MAX, 0f64), |(a, b), &x| (a.min(x), b.max(x)));
            format!("{lo:.3}–{hi:.3}")
        };
        let name = path.file_name().unwrap().to_string_lossy();
        let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        let vips_cols = if theirs.is_empty() {
            "n/a | n/a | n/a".to_owned()
        } else {
            format!("{:.3} | {} | {theirs_rss:.1}", median(theirs.clone()), spread(&theirs))
        };
        println!("| {name} | {size} | {:.3} | {} | {ours_rss:.1} | {vips_cols} |", median(ours.clone()), spread(&ours));
    }
    println!();
    println!("machine: {} cores, {}; images 6000 x 4000 (GIF 2000 x 1333)", num_cpus(), std::env::consts::ARCH);
    let _ = std::fs::remove_dir_all(&dir);
}

fn num_cpus() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}
