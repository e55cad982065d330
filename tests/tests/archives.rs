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

/// Issue 10.2: archives larger than one scan window are unpacked member by member (zip
/// by its central directory read in ranges, gzip inflated, tar walked by its headers),
/// each member its own clamd stream, fanned out beside the raw windows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn archives_larger_than_a_window_are_scanned_member_by_member() {
    const W: u64 = 4 * 1024 * 1024;
    let h = Harness::start().await;
    let owner = unique("bigarc");
    let filler = || rand_like::bytes(6 * W as usize / 4);
    // EICAR as member 30,000 of a tar.gz of 50,000 members, made larger than a window
    // by incompressible members: raw windows see only compressed bytes.
    let mut members = many_members(50_000, Some((30_000, eicar())));
    members.insert(100, ("data/a.bin".into(), filler()));
    members.insert(40_000, ("data/b.bin".into(), filler()));
    let deep_tgz = gzip(&tar(members.clone()));
    assert!(deep_tgz.len() as u64 > 2 * W, "{}", deep_tgz.len());
    let deep_tgz = h.upload_file(&owner, "docs.tar.gz", "application/gzip", &deep_tgz, None).await;
    let odd = members.iter().position(|(name, _)| name.ends_with("/odd")).unwrap();
    members[odd].1 = b"no longer odd\n".to_vec();
    let clean_tgz = h.upload_file(&owner, "clean.tar.gz", "application/gzip", &gzip(&tar(members)), None).await;
    // EICAR in a deflated zip inside a large zip, between incompressible members.
    let inner = zip_of(&[("readme.txt", &rand_like::bytes(2000)), ("tools/eicar.com", &eicar().repeat(20))]);
    let (a, b, c) = (filler(), filler(), filler());
    let nested_zip = zip_of(&[("a.bin", &a), ("b.bin", &b), ("nested/bundle.zip", &inner), ("c.bin", &c)]);
    let nested_zip = h.upload_file(&owner, "bundle.zip", "application/zip", &nested_zip, None).await;
    // A clean large zip.
    let clean_zip = zip_of(&[("a.bin", &a), ("b.bin", &b), ("c.bin", &c)]);
    let clean_zip = h.upload_file(&owner, "clean.zip", "application/zip", &clean_zip, None).await;
    // A zip inside a large tar, straddling the first window boundary: raw windows cut it.
    let straddling = tar([
        ("a.bin".to_owned(), rand_like::bytes(W as usize - 1500)),
        ("bundle.zip".to_owned(), inner.clone()),
        ("b.bin".to_owned(), filler()),
    ]);
    let straddling = h.upload_file(&owner, "bundle.tar", "application/x-tar", &straddling, None).await;
    // An encrypted member in a large zip: its contents cannot be read.
    let locked = {
        let mut out = Cursor::new(Vec::new());
        let mut z = zip::ZipWriter::new(&mut out);
        let plain = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
        z.start_file("a.bin", plain).unwrap();
        z.write_all(&a).unwrap();
        z.start_file("secret.txt", plain).unwrap();
        z.write_all(b"the plans").unwrap();
        z.start_file("b.bin", plain).unwrap();
        z.write_all(&b).unwrap();
        z.finish().unwrap();
        let mut bytes = out.into_inner();
        // Mark the member encrypted (general purpose flag bit 0) in its local header
        // (name at +30, flags at +6) and its central directory entry (+46, +8), as a
        // password-protecting zip tool would.
        let at: Vec<usize> =
            bytes.windows(10).enumerate().filter(|(_, w)| w == b"secret.txt").map(|(i, _)| i).collect();
        assert_eq!(at.len(), 2);
        bytes[at[0] - 30 + 6] |= 1;
        bytes[at[1] - 46 + 8] |= 1;
        bytes
    };
    let locked = h.upload_file(&owner, "locked.zip", "application/zip", &locked, None).await;
    h.process_all_in_windows(W).await;

    for id in [&deep_tgz, &nested_zip, &straddling] {
        let v = status(&h, &owner, id).await;
        assert_eq!(v.status, "quarantined", "{v:?}");
    }
    for id in [&clean_tgz, &clean_zip] {
        let v = status(&h, &owner, id).await;
        assert_eq!(v.status, "ready", "{v:?}");
        assert!(v.reason.as_deref().unwrap_or("").contains("member by member"), "{v:?}");
    }
    let v = status(&h, &owner, &locked).await;
    assert_eq!(v.status, "unscanned", "{v:?}");
    assert!(v.reason.as_deref().unwrap().contains("encrypted"), "{v:?}");
}
