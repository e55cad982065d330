//! Large files in windows, on in-memory ports: every byte scanned, boundaries covered by
//! the overlap, one verdict however jobs are repeated or reordered, the whole-file hash
//! carried window to window, and no job reading more than one window and its overlap.

use sha2::{Digest, Sha256};

use crate::domain::{
    ByteSize, ContentType, FileName, Owner, Sha256Digest, UploadId, UploadStatus, WindowJob, MIB, WINDOW_OVERLAP,
};
use crate::processing::{self, JobOutcome, PipelineError, Processor};
use crate::testing::{Fakes, Fault, EICAR_MARKER};
use crate::usecases::{
    complete::complete,
    create::{create, NewUpload},
};

const T0: i64 = 1_800_000_000;
const WINDOW: u64 = 2 * MIB;

pub(super) fn processor(f: &Fakes) -> Processor {
    let mut p = f.processor();
    p.config.scan_window = WINDOW;
    p
}

pub(super) fn bytes(len: u64, markers: &[u64]) -> Vec<u8> {
    let mut v: Vec<u8> = (0..len).map(|i| (i * 131 % 253) as u8).collect();
    for &at in markers {
        v[at as usize..at as usize + EICAR_MARKER.len()].copy_from_slice(EICAR_MARKER);
    }
    v
}

/// Uploads `data` as one part and completes it: its processing job is queued.
async fn completed(f: &Fakes, data: &[u8], declared: Option<[u8; 32]>, content_type: &str) -> UploadId {
    completed_at(f, data, declared, content_type, T0).await
}

/// [`completed`], at `now`.
pub(super) async fn completed_at(
    f: &Fakes,
    data: &[u8],
    declared: Option<[u8; 32]>,
    content_type: &str,
    now: i64,
) -> UploadId {
    let who = Owner::parse("wes").unwrap();
    let new = NewUpload {
        filename: FileName::parse("big.bin").unwrap(),
        size: ByteSize::new(data.len() as u64).unwrap(),
        content_type: ContentType::parse(content_type).unwrap(),
        sha256: declared.map(Sha256Digest::from_bytes),
        part_checksums: false,
        part_size: Some(data.len().max(5 * MIB as usize) as u64),
    };
    let v = create(&f.app, &who, new, now).await.unwrap();
    let id = UploadId::parse(&v.id).unwrap();
    let mpu = f.repo.upload(&id).unwrap().s3_upload_id;
    let etag = f.objects.upload_part(&mpu, 1, data).unwrap();
    let parts =
        vec![api_types::uploads::RecordPartItem { number: 1, etag, size: (data.len() as u64).into(), sha256: None }];
    crate::usecases::parts::record_parts(&f.app, &who, &id, api_types::uploads::RecordPartsRequest { parts }, now)
        .await
        .unwrap();
    complete(&f.app, &who, &id, now).await.unwrap();
    id
}

/// Runs the processing job, then every window job as it is queued, delivering each
/// `copies` times and each batch in reverse order. Returns the final status.
async fn run_all(f: &Fakes, p: &Processor, copies: usize) -> UploadStatus {
    let job = f.jobs.sent().last().cloned().unwrap();
    let fanned = processing::process(p, &job, 1).await.unwrap();
    assert!(matches!(fanned, JobOutcome::FannedOut { .. }), "{fanned:?}");
    loop {
        let mut batch = f.jobs.take_windows();
        if batch.is_empty() {
            break;
        }
        batch.reverse();
        for job in &batch {
            for _ in 0..copies {
                processing::process_window(p, job, 1).await.unwrap();
            }
        }
    }
    f.repo.upload(&job.upload_id).unwrap().status
}

#[tokio::test]
async fn a_clean_large_file_is_scanned_in_windows_and_its_whole_hash_verified() {
    let f = Fakes::new();
    let p = processor(&f);
    let data = bytes(9 * MIB + 5, &[]);
    let id = completed(&f, &data, Some(Sha256::digest(&data).into()), "application/octet-stream").await;
    assert_eq!(run_all(&f, &p, 1).await, UploadStatus::Ready);
    let u = f.repo.upload(&id).unwrap();
    assert_eq!(u.windows_total, Some(5));
    assert_eq!(u.content_sha256.as_deref(), Some(hex::encode(Sha256::digest(&data)).as_str()));
    assert!(u.reason.as_deref().unwrap().contains("5 windows"), "{u:?}");
    assert!(f.objects.longest_read() <= WINDOW + WINDOW_OVERLAP, "one job read {} bytes", f.objects.longest_read());
    assert_eq!(f.objects.status_tag(&u.s3_key).as_deref(), Some("ready"));
}

#[tokio::test]
async fn malware_deep_inside_or_straddling_a_window_boundary_is_found() {
    // Inside window 3; and across the boundary between windows 1 and 2 (at 4 MiB), where
    // only window 2's overlap sees the whole signature.
    for at in [7 * MIB - 1000, 2 * WINDOW - 4] {
        let f = Fakes::new();
        let p = processor(&f);
        let data = bytes(9 * MIB, &[at]);
        let id = completed(&f, &data, None, "application/octet-stream").await;
        assert_eq!(run_all(&f, &p, 1).await, UploadStatus::Quarantined, "marker at {at}");
        assert!(f.repo.upload(&id).unwrap().reason.unwrap().contains("Malware found"));
    }
}

#[tokio::test]
async fn a_wrong_declared_hash_of_a_windowed_file_is_corrupt() {
    let f = Fakes::new();
    let p = processor(&f);
    let data = bytes(5 * MIB, &[]);
    let id = completed(&f, &data, Some([7; 32]), "application/octet-stream").await;
    assert_eq!(run_all(&f, &p, 1).await, UploadStatus::Corrupt);
    assert!(f.repo.upload(&id).unwrap().reason.unwrap().contains("not the declared"));
}

#[tokio::test]
async fn the_type_is_read_once_from_the_first_window() {
    let f = Fakes::new();
    let p = processor(&f);
    let data = bytes(5 * MIB, &[]);
    let id = completed(&f, &data, None, "image/png").await;
    assert_eq!(run_all(&f, &p, 1).await, UploadStatus::Rejected);
    assert!(f.repo.upload(&id).unwrap().reason.unwrap().contains("do not look like image/png"));
}

#[tokio::test]
async fn repeated_and_reordered_window_jobs_change_nothing() {
    let f = Fakes::new();
    let p = processor(&f);
    let data = bytes(9 * MIB, &[]);
    let id = completed(&f, &data, Some(Sha256::digest(&data).into()), "application/octet-stream").await;
    assert_eq!(run_all(&f, &p, 3).await, UploadStatus::Ready);
    let done = f.repo.upload(&id).unwrap();
    assert_eq!(done.windows_done, Some(5), "each window counted once");
    // Late repeats of any job, and of the processing job itself, after the verdict.
    let owner = done.owner.clone();
    for index in 0..5 {
        for job in [
            WindowJob::Scan { upload_id: id.clone(), owner: owner.clone(), index },
            WindowJob::Hash { upload_id: id.clone(), owner: owner.clone(), index },
        ] {
            assert_eq!(processing::process_window(&p, &job, 1).await.unwrap(), JobOutcome::Skipped);
        }
    }
    assert_eq!(processing::process(&p, &f.jobs.sent()[0], 1).await.unwrap(), JobOutcome::Skipped);
    assert_eq!(f.repo.upload(&id).unwrap(), done);
    assert!(f.jobs.take_windows().is_empty());
}

#[tokio::test]
async fn a_window_job_before_its_fan_out_is_retried_and_progress_is_reported() {
    let f = Fakes::new();
    let p = processor(&f);
    let data = bytes(9 * MIB, &[]);
    let id = completed(&f, &data, None, "application/octet-stream").await;
    let owner = f.repo.upload(&id).unwrap().owner;
    let early = WindowJob::Scan { upload_id: id.clone(), owner: owner.clone(), index: 2 };
    assert!(matches!(processing::process_window(&p, &early, 1).await, Err(PipelineError::NotYet)));
    processing::process(&p, &f.jobs.sent()[0], 1).await.unwrap();
    let jobs = f.jobs.take_windows();
    assert_eq!(jobs.len(), 6, "five scans and the first hash");
    for job in jobs.iter().filter(|j| matches!(j, WindowJob::Scan { .. })).take(2) {
        processing::process_window(&p, job, 1).await.unwrap();
    }
    let view = crate::usecases::parts::status(&f.app, &owner, &id, T0).await.unwrap();
    let progress = view.progress.expect("progress while processing");
    assert_eq!((progress.windows_scanned, progress.windows_total), (2, 5));
    assert!(progress.fraction() > 0.0 && progress.fraction() < 1.0, "{progress:?}");
}

#[tokio::test]
async fn a_hash_link_that_died_before_queueing_the_next_is_nudged_on_redelivery() {
    let f = Fakes::new();
    let p = processor(&f);
    let data = bytes(9 * MIB, &[]);
    let id = completed(&f, &data, Some(Sha256::digest(&data).into()), "application/octet-stream").await;
    processing::process(&p, &f.jobs.sent()[0], 1).await.unwrap();
    let jobs = f.jobs.take_windows();
    let hash0 = jobs.iter().find(|j| matches!(j, WindowJob::Hash { .. })).unwrap().clone();
    // The chain advances past window 0, then queueing link 1 fails.
    f.faults.on("queue.send_windows", 1, Fault::Fail);
    assert!(processing::process_window(&p, &hash0, 1).await.is_err());
    assert_eq!(f.repo.upload(&id).unwrap().hash_next, Some(1));
    // SQS redelivers link 0: it queues link 1 instead of stalling the chain.
    processing::process_window(&p, &hash0, 2).await.unwrap();
    let mut pending: Vec<WindowJob> = jobs.into_iter().filter(|j| matches!(j, WindowJob::Scan { .. })).collect();
    pending.extend(f.jobs.take_windows());
    while let Some(job) = pending.pop() {
        processing::process_window(&p, &job, 1).await.unwrap();
        pending.extend(f.jobs.take_windows());
    }
    assert_eq!(f.repo.upload(&id).unwrap().status, UploadStatus::Ready);
}

#[tokio::test]
async fn the_verdict_waits_for_every_window_and_the_whole_hash() {
    let f = Fakes::new();
    let p = processor(&f);
    let data = bytes(9 * MIB, &[MIB]);
    let id = completed(&f, &data, None, "application/octet-stream").await;
    processing::process(&p, &f.jobs.sent()[0], 1).await.unwrap();
    let (mut hashes, mut scans): (Vec<_>, Vec<_>) =
        f.jobs.take_windows().into_iter().partition(|j| matches!(j, WindowJob::Hash { .. }));
    // The whole hash chain first, then every scan but the one window with the marker.
    while let Some(job) = hashes.pop() {
        processing::process_window(&p, &job, 1).await.unwrap();
        hashes.extend(f.jobs.take_windows());
    }
    let marked = scans.remove(0);
    assert!(matches!(marked, WindowJob::Scan { index: 0, .. }));
    for job in &scans {
        processing::process_window(&p, job, 1).await.unwrap();
    }
    assert_eq!(f.repo.upload(&id).unwrap().status, UploadStatus::Processing, "one window is still unscanned");
    processing::process_window(&p, &marked, 1).await.unwrap();
    assert_eq!(f.repo.upload(&id).unwrap().status, UploadStatus::Quarantined);
}

#[tokio::test]
async fn a_compressed_file_whose_members_are_not_unpacked_is_never_called_clean() {
    use crate::processing::UnscannedPolicy;
    for (policy, expected) in
        [(UnscannedPolicy::Block, UploadStatus::Unscanned), (UnscannedPolicy::Allow, UploadStatus::Ready)]
    {
        let f = Fakes::new();
        let mut p = processor(&f);
        p.config.unscanned_policy = policy;
        // A 7z archive: its members are not unpacked here.
        let mut data = bytes(5 * MIB, &[]);
        data[..6].copy_from_slice(b"7z\xBC\xAF\x27\x1C");
        let id = completed(&f, &data, None, "application/x-7z-compressed").await;
        assert_eq!(run_all(&f, &p, 1).await, expected);
        let reason = f.repo.upload(&id).unwrap().reason.unwrap();
        assert!(reason.contains("7z archive larger than one scan window"), "{reason}");
    }
}

/// Incompressible bytes (a xorshift stream), so archives of them stay large.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// A zip of `members` (name, bytes, deflated?).
fn zip_of(members: &[(&str, Vec<u8>, bool)]) -> Vec<u8> {
    use std::io::Write;
    let mut out = std::io::Cursor::new(Vec::new());
    let mut z = zip::ZipWriter::new(&mut out);
    for (name, data, deflate) in members {
        let method = if *deflate { zip::CompressionMethod::Deflated } else { zip::CompressionMethod::Stored };
        let opts = zip::write::SimpleFileOptions::default().compression_method(method).large_file(false);
        z.start_file(*name, opts).unwrap();
        z.write_all(data).unwrap();
    }
    z.finish().unwrap();
    out.into_inner()
}

/// A tar of `members` (name, bytes).
fn tar_of(members: &[(&str, Vec<u8>)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in members {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, name, data.as_slice()).unwrap();
    }
    b.into_inner().unwrap()
}

fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// The marker, deflated inside a small zip: invisible in the raw bytes.
fn hidden_marker() -> Vec<u8> {
    let mut inner = b"nothing to see here, then: ".repeat(100);
    inner.extend_from_slice(EICAR_MARKER);
    let z = zip_of(&[("readme.txt", inner, true)]);
    assert!(!z.windows(EICAR_MARKER.len()).any(|w| w == EICAR_MARKER), "deflate hides it");
    z
}

async fn verdict_of(data: &[u8], content_type: &str) -> (UploadStatus, String, u32) {
    let f = Fakes::new();
    let p = processor(&f);
    let id = completed(&f, data, Some(Sha256::digest(data).into()), content_type).await;
    let status = run_all(&f, &p, 2).await;
    let u = f.repo.upload(&id).unwrap();
    (status, u.reason.unwrap_or_default(), u.windows_total.unwrap_or(0))
}

#[tokio::test]
async fn a_large_zip_is_scanned_member_by_member_and_a_deflated_nested_marker_is_found() {
    // Members across three windows; in the middle one, a zip holding the marker deflated.
    let mut members: Vec<(String, Vec<u8>, bool)> =
        (0..9).map(|i| (format!("part{i}.bin"), noise(600 * 1024, i), true)).collect();
    members.insert(5, ("nested/inner.zip".into(), hidden_marker(), false));
    let refs: Vec<(&str, Vec<u8>, bool)> = members.iter().map(|(n, d, z)| (n.as_str(), d.clone(), *z)).collect();
    let data = zip_of(&refs);
    assert!(data.len() as u64 > 2 * WINDOW, "{}", data.len());
    let (status, reason, total) = verdict_of(&data, "application/zip").await;
    assert_eq!(status, UploadStatus::Quarantined, "{reason}");
    assert_eq!(total, 2 * (data.len() as u64).div_ceil(WINDOW) as u32, "raw windows and as many member steps");

    // The same without the marker is ready, and says it went member by member.
    members.remove(5);
    let refs: Vec<(&str, Vec<u8>, bool)> = members.iter().map(|(n, d, z)| (n.as_str(), d.clone(), *z)).collect();
    let (status, reason, _) = verdict_of(&zip_of(&refs), "application/zip").await;
    assert_eq!(status, UploadStatus::Ready, "{reason}");
    assert!(reason.contains("member by member"), "{reason}");
}

#[tokio::test]
async fn a_large_tar_gz_is_unpacked_and_a_deep_member_is_found() {
    // 2,000 small members and incompressible filler; the marker in member 1,500.
    let mut members: Vec<(String, Vec<u8>)> = (0..2000).map(|i| (format!("docs/{i}.txt"), noise(300, i))).collect();
    members.insert(1000, ("filler.bin".into(), noise(5 * MIB as usize, 99)));
    members[1500].1.extend_from_slice(EICAR_MARKER);
    let refs: Vec<(&str, Vec<u8>)> = members.iter().map(|(n, d)| (n.as_str(), d.clone())).collect();
    let data = gzip(&tar_of(&refs));
    assert!(data.len() as u64 > WINDOW);
    let (status, reason, _) = verdict_of(&data, "application/gzip").await;
    assert_eq!(status, UploadStatus::Quarantined, "{reason}");
    members[1500].1.truncate(300);
    let refs: Vec<(&str, Vec<u8>)> = members.iter().map(|(n, d)| (n.as_str(), d.clone())).collect();
    let (status, reason, _) = verdict_of(&gzip(&tar_of(&refs)), "application/gzip").await;
    assert_eq!(status, UploadStatus::Ready, "{reason}");
}

#[tokio::test]
async fn a_zip_inside_a_large_tar_across_a_window_boundary_is_unpacked() {
    // The nested zip starts just before the 2 MiB boundary: raw windows cut it.
    let pad = 2 * MIB as usize - 512 * 3 - 700;
    let data =
        tar_of(&[("a.bin", noise(pad, 1)), ("inner.zip", hidden_marker()), ("b.bin", noise(3 * MIB as usize, 2))]);
    let (status, reason, _) = verdict_of(&data, "application/x-tar").await;
    assert_eq!(status, UploadStatus::Quarantined, "{reason}");
}

#[tokio::test]
async fn a_large_zip_with_an_encrypted_or_unreadable_directory_is_not_fully_scanned() {
    // "PK" and noise: no central directory to read.
    let mut data = noise(5 * MIB as usize, 7);
    data[..4].copy_from_slice(b"PK\x03\x04");
    let (status, reason, _) = verdict_of(&data, "application/zip").await;
    assert_eq!(status, UploadStatus::Unscanned, "{reason}");
    assert!(reason.contains("zip directory cannot be read"), "{reason}");
}

#[tokio::test]
async fn a_verdict_that_failed_to_write_after_the_last_hash_link_is_written_on_redelivery() {
    let f = Fakes::new();
    let p = processor(&f);
    let data = bytes(5 * MIB, &[]);
    let id = completed(&f, &data, Some(Sha256::digest(&data).into()), "application/octet-stream").await;
    processing::process(&p, &f.jobs.sent()[0], 1).await.unwrap();
    let (mut hashes, scans): (Vec<_>, Vec<_>) =
        f.jobs.take_windows().into_iter().partition(|j| matches!(j, WindowJob::Hash { .. }));
    for job in &scans {
        processing::process_window(&p, job, 1).await.unwrap();
    }
    // The chain runs to its last link, whose verdict write fails (tagging the object).
    let mut last = None;
    while let Some(job) = hashes.pop() {
        if let WindowJob::Hash { index: 2, .. } = job {
            f.faults.on("s3.tag_status", 1, Fault::Fail);
            assert!(processing::process_window(&p, &job, 1).await.is_err());
            last = Some(job);
            continue;
        }
        processing::process_window(&p, &job, 1).await.unwrap();
        hashes.extend(f.jobs.take_windows());
    }
    assert_eq!(f.repo.upload(&id).unwrap().status, UploadStatus::Processing);
    // SQS brings the last link back: the hash is done, so it writes the verdict.
    processing::process_window(&p, &last.unwrap(), 2).await.unwrap();
    assert_eq!(f.repo.upload(&id).unwrap().status, UploadStatus::Ready);
}

#[tokio::test]
async fn a_window_job_outside_the_plan_is_dropped_without_harm() {
    let f = Fakes::new();
    let p = processor(&f);
    let data = bytes(5 * MIB, &[]);
    let id = completed(&f, &data, None, "application/octet-stream").await;
    processing::process(&p, &f.jobs.sent()[0], 1).await.unwrap();
    let owner = f.repo.upload(&id).unwrap().owner;
    for job in [
        WindowJob::Scan { upload_id: id.clone(), owner: owner.clone(), index: 99 },
        WindowJob::Hash { upload_id: id.clone(), owner: owner.clone(), index: u32::MAX },
    ] {
        // Even on the last allowed delivery: the upload is not failed by a stray message.
        assert_eq!(processing::process_window(&p, &job, 5).await.unwrap(), JobOutcome::Skipped);
    }
    assert_eq!(f.repo.upload(&id).unwrap().status, UploadStatus::Processing);
    assert_eq!(run_rest(&f, &p).await, UploadStatus::Ready);
}

/// Runs the window jobs already queued (and those they queue) to the end.
async fn run_rest(f: &Fakes, p: &Processor) -> UploadStatus {
    let mut pending = f.jobs.take_windows();
    let id = pending[0].upload_id().clone();
    while let Some(job) = pending.pop() {
        processing::process_window(p, &job, 1).await.unwrap();
        pending.extend(f.jobs.take_windows());
    }
    f.repo.upload(&id).unwrap().status
}

#[tokio::test]
async fn a_hash_link_reads_its_window_in_pieces_at_once() {
    let f = Fakes::new();
    let p = processor(&f);
    let data = bytes(5 * MIB, &[]);
    let id = completed(&f, &data, None, "application/octet-stream").await;
    processing::process(&p, &f.jobs.sent()[0], 1).await.unwrap();
    let link0 = f.jobs.take_windows().into_iter().find(|j| matches!(j, WindowJob::Hash { .. })).unwrap();
    assert_eq!(f.objects.most_open_reads(), 1, "the fan-out reads one range");
    processing::process_window(&p, &link0, 1).await.unwrap();
    assert_eq!(f.objects.most_open_reads(), super::windows::HASH_READS_IN_FLIGHT);
    assert_eq!(f.repo.upload(&id).unwrap().hash_next, Some(1));
}

#[test]
fn hash_pieces_tile_the_range() {
    use super::windows::hash_pieces;
    for (start, end) in [(0, 100), (0, 2 * MIB), (256 * MIB, 512 * MIB), (5, 5 * MIB + 3)] {
        let pieces = hash_pieces(start, end);
        assert_eq!(pieces.first().unwrap().0, start);
        assert_eq!(pieces.last().unwrap().1, end);
        assert!(pieces.windows(2).all(|w| w[0].1 == w[1].0), "{pieces:?}");
        assert!(pieces.iter().all(|(a, b)| b - a <= 4 * MIB));
    }
    assert_eq!(hash_pieces(0, 256 * MIB).len(), 64);
    assert_eq!(hash_pieces(0, 2 * MIB).len(), 4);
}
