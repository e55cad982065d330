//! Archives users bring, end to end with the real clamd and the project's limits
//! (scanner/limits.conf): many members, malware deep inside and nested, and bombs. A
//! limit is reported as "not fully scanned" (`unscanned`), never as malware.

use std::io::{Cursor, Write};

use api_types::uploads::UploadView;
use hoist_e2e::{rand_like, unique, Harness};

fn eicar() -> Vec<u8> {
    ["X5O!P%@AP[4\\PZX54(P^)7CC)7}$", "EICAR-STANDARD-ANTIVIRUS", "-TEST-FILE!$H+H*"].concat().into_bytes()
}

async fn status(h: &Harness, owner: &str, id: &str) -> UploadView {
    h.call_as(Some(owner), "GET", &format!("/uploads/{id}"), None, 200).await
}

/// A POSIX ustar archive of `(name, data)` members, written out by hand.
fn tar(members: impl IntoIterator<Item = (String, Vec<u8>)>) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, data) in members {
        let mut h = [0u8; 512];
        h[..name.len()].copy_from_slice(name.as_bytes());
        h[100..107].copy_from_slice(b"0000644");
        h[108..115].copy_from_slice(b"0001750");
        h[116..123].copy_from_slice(b"0001750");
        h[124..135].copy_from_slice(format!("{:011o}", data.len()).as_bytes());
        h[136..147].copy_from_slice(b"14723542020");
        h[156] = b'0';
        h[257..263].copy_from_slice(b"ustar\0");
        h[263..265].copy_from_slice(b"00");
        h[148..156].copy_from_slice(b"        ");
        let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
        h[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
        out.extend_from_slice(&h);
        out.extend_from_slice(&data);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    out.extend_from_slice(&[0u8; 1024]);
    out
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn zip_of(members: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = Cursor::new(Vec::new());
    {
        let mut z = zip::ZipWriter::new(&mut out);
        let opts = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
        for (name, data) in members {
            z.start_file(*name, opts).unwrap();
            z.write_all(data).unwrap();
        }
        z.finish().unwrap();
    }
    out.into_inner()
}

/// `n` small text members, like a documentation tree; `odd` replaces member `at`.
fn many_members(n: usize, odd: Option<(usize, Vec<u8>)>) -> Vec<(String, Vec<u8>)> {
    (0..n)
        .map(|i| match &odd {
            Some((at, data)) if *at == i => (format!("usr/share/doc/pkg{i}/odd"), data.clone()),
            _ => {
                (format!("usr/share/doc/pkg{i}/README"), format!("package {i}: some documentation text\n").into_bytes())
            }
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn archives_with_many_members_get_a_true_verdict() {
    let h = Harness::start().await;
    let owner = unique("arc");
    // 50,000 members: read through, not a limit.
    let big_tar = tar(many_members(50_000, None));
    let clean = h.upload_file(&owner, "docs.tar", "application/x-tar", &big_tar, None).await;
    // EICAR as member 30,000 of a gzipped tar: only unpacking finds it.
    let deep = gzip(&tar(many_members(50_000, Some((30_000, eicar())))));
    let deep = h.upload_file(&owner, "docs.tar.gz", "application/gzip", &deep, None).await;
    // EICAR in a (deflated) zip inside a tar.
    let inner = zip_of(&[("readme.txt", &rand_like::bytes(2000)), ("tools/eicar.com", &eicar().repeat(20))]);
    let nested = tar([("a.txt".to_owned(), b"hello".to_vec()), ("bundle.zip".to_owned(), inner)]);
    let nested = h.upload_file(&owner, "bundle.tar", "application/x-tar", &nested, None).await;
    assert_eq!(h.process_all().await, 3);

    let v = status(&h, &owner, &clean).await;
    assert_eq!(v.status, "ready", "{v:?}");
    for id in [&deep, &nested] {
        let v = status(&h, &owner, id).await;
        assert_eq!(v.status, "quarantined", "{v:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn archive_bombs_get_a_clear_verdict_not_malware() {
    let h = Harness::start().await;
    let owner = unique("bomb");
    // More members than the scanner opens (MaxFiles 100,000). Members of a few bytes do
    // not count (clamd skips them: nothing to scan), so each holds 200.
    let members: Vec<(String, Vec<u8>)> =
        (0..100_050).map(|i| (format!("f{i}"), format!("{i:0>200}").into_bytes())).collect();
    let wide = gzip(&tar(members));
    let wide = h.upload_file(&owner, "wide.tar.gz", "application/gzip", &wide, None).await;
    // A member that expands past the scanner's size limit (2 GiB of zeros in ~2 MB).
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let zeros = vec![0u8; 8 << 20];
    for _ in 0..256 {
        e.write_all(&zeros).unwrap();
    }
    let tall = e.finish().unwrap();
    assert!(tall.len() < 16 << 20, "{} bytes", tall.len());
    let tall = h.upload_file(&owner, "zeros.gz", "application/gzip", &tall, None).await;
    assert_eq!(h.process_all().await, 2);

    for (id, words) in [(&wide, "more files"), (&tall, "")] {
        let v = status(&h, &owner, id).await;
        assert_eq!(v.status, "unscanned", "{v:?}");
        let reason = v.reason.as_deref().unwrap();
        assert!(reason.contains("Not fully scanned") && reason.contains(words), "{reason}");
        assert!(!reason.contains("Malware"), "{reason}");
    }
}
