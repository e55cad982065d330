//! The processing pipeline end to end: upload through the API, complete (which
//! enqueues the job on a real LocalStack queue), then feed the queue to the real
//! process handler (as Lambda's SQS mapping does) with a real clamd scanning.
//! Needs `scripts/stack.sh start` (LocalStack, moto, clamd).

use std::io::{Cursor, Write};

use api_types::uploads::{CreateUploadRequest, UploadView};
use hoist_e2e::{jpeg, rand_like, sha256_hex, unique, Harness};

/// The EICAR anti-virus test file, assembled at run time so it is never committed.
fn eicar() -> Vec<u8> {
    ["X5O!P%@AP[4\\PZX54(P^)7CC)7}$", "EICAR-STANDARD-ANTIVIRUS", "-TEST-FILE!$H+H*"].concat().into_bytes()
}

async fn status(h: &Harness, owner: &str, id: &str) -> UploadView {
    h.call_as(Some(owner), "GET", &format!("/uploads/{id}"), None, 200).await
}

/// The reason an upload was given (panics when there is none).
fn reason(v: &UploadView) -> &str {
    v.reason.as_deref().unwrap_or_else(|| panic!("no reason: {v:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clean_jpeg_becomes_ready_with_a_thumbnail() {
    let h = Harness::start().await;
    let owner = unique("pam");
    let data = jpeg(1200, 800);
    let id = h.upload_file(&owner, "beach.jpg", "image/jpeg", &data, None).await;
    assert_eq!(status(&h, &owner, &id).await.status, "processing");
    assert_eq!(h.process_all().await, 1);
    let v = status(&h, &owner, &id).await;
    assert_eq!(v.status, "ready", "{v:?}");
    assert_eq!(v.detected_type.as_deref(), Some("image/jpeg"));
    assert_eq!((v.width, v.height), (Some(1200), Some(800)));
    assert!(v.has_thumbnail, "{v:?}");
    assert_eq!(h.status_tag(&format!("uploads/{id}")).await.as_deref(), Some("ready"));
    let thumb =
        h.s3.get_object().bucket(h.app.objects.bucket()).key(format!("thumbnails/{id}.jpg")).send().await.unwrap();
    assert_eq!(thumb.content_type(), Some("image/jpeg"));
    let bytes = thumb.body.collect().await.unwrap().into_bytes();
    let t = image::load_from_memory(&bytes).unwrap();
    assert_eq!((t.width(), t.height()), (256, 171), "thumbnail fits 256 and keeps the aspect ratio");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eicar_alone_and_zipped_is_quarantined() {
    let h = Harness::start().await;
    let owner = unique("quinn");
    let alone = h.upload_file(&owner, "notes.txt", "text/plain", &eicar(), None).await;
    let mut zipped = Cursor::new(Vec::new());
    {
        let mut z = zip::ZipWriter::new(&mut zipped);
        let opts = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
        z.start_file("readme.txt", opts).unwrap();
        z.write_all(&rand_like::bytes(10_000)).unwrap();
        z.start_file("inner/eicar.com", opts).unwrap();
        // Repeated so deflate really transforms it: the scanner must unpack to find it.
        z.write_all(&eicar().repeat(40)).unwrap();
        z.finish().unwrap();
    }
    let zipped = zipped.into_inner();
    assert!(!zipped.windows(8).any(|w| w == b"EICAR-ST"), "the zip really compresses the payload");
    let in_zip = h.upload_file(&owner, "bundle.zip", "application/zip", &zipped, None).await;
    h.process_all().await;
    for id in [&alone, &in_zip] {
        let v = status(&h, &owner, id).await;
        assert_eq!(v.status, "quarantined", "{v:?}");
        assert!(reason(&v).contains("Hoist.Test.EICAR"), "{v:?}");
        assert_eq!(h.status_tag(&format!("uploads/{id}")).await.as_deref(), Some("quarantined"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spoofed_types_are_rejected() {
    let h = Harness::start().await;
    let owner = unique("rob");
    let mut elf = b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0\x02\0\x3e\0\x01\0\0\0".to_vec();
    elf.extend(rand_like::bytes(4000));
    let mut pe = b"MZ\x90\0\x03\0\0\0\x04\0\0\0\xff\xff\0\0".to_vec();
    pe.extend(rand_like::bytes(4000));
    let html = b"<!DOCTYPE html><html><body><script>alert(1)</script></body></html>".to_vec();
    let elf_id = h.upload_file(&owner, "photo.jpg", "image/jpeg", &elf, None).await;
    let pe_id = h.upload_file(&owner, "photo2.jpg", "image/jpeg", &pe, None).await;
    let html_id = h.upload_file(&owner, "pixel.png", "image/png", &html, None).await;
    h.process_all().await;
    for (id, detected) in [
        (&elf_id, "application/x-executable"),
        (&pe_id, "application/vnd.microsoft.portable-executable"),
        (&html_id, "text/html"),
    ] {
        let v = status(&h, &owner, id).await;
        assert_eq!(v.status, "rejected", "{v:?}");
        assert_eq!(v.detected_type.as_deref(), Some(detected), "{v:?}");
        assert_eq!(h.status_tag(&format!("uploads/{id}")).await.as_deref(), Some("rejected"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_declared_checksum_is_corrupt() {
    let h = Harness::start().await;
    let owner = unique("sue");
    let data = rand_like::bytes(100_000);
    let id =
        h.upload_file(&owner, "data.bin", "application/octet-stream", &data, Some(sha256_hex(b"something else"))).await;
    h.process_all().await;
    let v = status(&h, &owner, &id).await;
    assert_eq!(v.status, "corrupt", "{v:?}");
    assert!(reason(&v).contains(&sha256_hex(&data)), "{v:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decompression_bomb_png_is_not_decoded() {
    let h = Harness::start().await;
    let owner = unique("tom");
    // A valid PNG header claiming 20000 x 20000 (1.2 GB of pixels), no pixel data.
    let mut ihdr = b"IHDR".to_vec();
    ihdr.extend_from_slice(&20_000u32.to_be_bytes());
    ihdr.extend_from_slice(&20_000u32.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    for (kind, data) in [(&b"IHDR"[..], ihdr[4..].to_vec()), (b"IDAT", rand_like::bytes(2_000)), (b"IEND", Vec::new())]
    {
        png.extend_from_slice(&(data.len() as u32).to_be_bytes());
        let mut chunk = kind.to_vec();
        chunk.extend_from_slice(&data);
        png.extend_from_slice(&chunk);
        png.extend_from_slice(&crc32fast::hash(&chunk).to_be_bytes());
    }
    let id = h.upload_file(&owner, "huge.png", "image/png", &png, None).await;
    let started = std::time::Instant::now();
    h.process_all().await;
    let v = status(&h, &owner, &id).await;
    assert_eq!(v.status, "ready", "{v:?}");
    assert!(!v.has_thumbnail, "{v:?}");
    assert_eq!((v.width, v.height), (Some(20_000), Some(20_000)));
    assert!(reason(&v).contains("decoding limit"), "{v:?}");
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_that_always_fails_reaches_the_dlq_and_its_batch_neighbours_succeed() {
    let h = Harness::start().await;
    let owner = unique("uma");
    let good = h.upload_file(&owner, "good.txt", "text/plain", b"hello, plain text", None).await;
    let doomed = h.upload_file(&owner, "doomed.txt", "text/plain", b"this one will never be read", None).await;
    let jobs = h.drain_jobs().await;
    assert_eq!(jobs.len(), 2);
    // A queue pair like the template's, with a short visibility timeout and 2 receives.
    let dlq_url = h.sqs.create_queue().queue_name(unique("hoist-test-dlq")).send().await.unwrap().queue_url.unwrap();
    let dlq_arn = h
        .sqs
        .get_queue_attributes()
        .queue_url(&dlq_url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
        .send()
        .await
        .unwrap()
        .attributes
        .unwrap()[&aws_sdk_sqs::types::QueueAttributeName::QueueArn]
        .clone();
    let queue_url = h
        .sqs
        .create_queue()
        .queue_name(unique("hoist-test-redrive"))
        .attributes(aws_sdk_sqs::types::QueueAttributeName::VisibilityTimeout, "1")
        .attributes(
            aws_sdk_sqs::types::QueueAttributeName::RedrivePolicy,
            serde_json::json!({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "2"}).to_string(),
        )
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    // Processing reads the object the record names (never the job's word for it): with
    // the doomed upload's object gone (every version of it), every delivery of its job fails.
    h.app.objects.delete(&format!("uploads/{doomed}")).await.unwrap();
    for job in &jobs {
        h.sqs.send_message().queue_url(&queue_url).message_body(job.to_string()).send().await.unwrap();
    }
    h.sqs.send_message().queue_url(&queue_url).message_body("{not json").send().await.unwrap();

    let p = h.processor(2);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(40);
    let mut in_dlq = 0;
    while std::time::Instant::now() < deadline {
        hoist_dev::sqs::poll_once(&p, &h.sqs, &queue_url, 1).await.unwrap();
        let attrs = h
            .sqs
            .get_queue_attributes()
            .queue_url(&dlq_url)
            .attribute_names(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages)
            .send()
            .await
            .unwrap();
        in_dlq = attrs.attributes.unwrap()[&aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages]
            .parse()
            .unwrap();
        if in_dlq >= 2 {
            break;
        }
    }
    assert_eq!(in_dlq, 2, "the failing job and the unreadable message are on the DLQ");
    assert_eq!(status(&h, &owner, &good).await.status, "ready", "its neighbour succeeded");
    let v = status(&h, &owner, &doomed).await;
    assert_eq!(v.status, "failed", "{v:?}");
    assert!(reason(&v).contains("failed 2 times"), "{v:?}");
    // The cause (here S3's NoSuchKey, with the bucket's address) stays in the logs.
    assert!(!reason(&v).contains("NoSuchKey") && !reason(&v).contains("127.0.0.1"), "{v:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_job_twice_leaves_one_consistent_record() {
    let h = Harness::start().await;
    let owner = unique("vic");
    let id = h.upload_file(&owner, "twice.txt", "text/plain", b"delivered at least once", None).await;
    let jobs = h.drain_jobs().await;
    assert_eq!(jobs.len(), 1);
    for _ in 0..2 {
        h.sqs.send_message().queue_url(&h.queue_url).message_body(jobs[0].to_string()).send().await.unwrap();
    }
    assert_eq!(h.process_all().await, 2);
    let first = status(&h, &owner, &id).await;
    assert_eq!(first.status, "ready");
    // A third, late delivery changes nothing.
    h.sqs.send_message().queue_url(&h.queue_url).message_body(jobs[0].to_string()).send().await.unwrap();
    h.process_all().await;
    let again = status(&h, &owner, &id).await;
    assert_eq!(again, first);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_that_arrives_while_its_upload_is_still_completing_is_retried_not_dropped() {
    let h = Harness::start().await;
    let owner = unique("early");
    let data = b"racing the status write".to_vec();
    let body = CreateUploadRequest {
        filename: "early.txt".into(),
        size: data.len().into(),
        content_type: "text/plain".into(),
        sha256: None,
        part_checksums: None,
        part_size: None,
    };
    let v = h.post_upload(&owner, &body).await;
    let id = shared::domain::UploadId::parse(&v.id).unwrap();
    // Hold the completion lease, as a `complete` call does between sending the job and
    // moving the status to processing.
    assert!(h.app.repo.begin_completion(&id, shared::now(), std::time::Duration::from_secs(120)).await.unwrap());
    let job = serde_json::json!({
        "version": 1, "upload_id": id.as_str(), "owner": owner, "bucket": h.app.objects.bucket(),
        "key": format!("uploads/{id}"), "size": data.len(), "etag": "0123", "content_type": "text/plain",
    });
    h.sqs.send_message().queue_url(&h.queue_url).message_body(job.to_string()).send().await.unwrap();
    let report = hoist_dev::sqs::poll_once(&h.processor(1), &h.sqs, &h.queue_url, 2).await.unwrap();
    assert_eq!((report.received, report.failed), (1, 1), "handed back to SQS, not deleted");
    let rec = h.app.repo.get(&id).await.unwrap().unwrap();
    assert_eq!(rec.status.as_str(), "completing", "not marked failed even on its last allowed delivery");
    // It comes back within seconds, not after the queue's visibility timeout (30 s here).
    let started = std::time::Instant::now();
    let mut back = false;
    while started.elapsed() < std::time::Duration::from_secs(15) && !back {
        let got = h.sqs.receive_message().queue_url(&h.queue_url).wait_time_seconds(2).send().await.unwrap();
        back = !got.messages.unwrap_or_default().is_empty();
    }
    assert!(back, "the early job is visible again within 15 s");
}

/// A zip of one member.
fn one_member_zip(name: &str, data: &[u8], method: zip::CompressionMethod) -> Vec<u8> {
    let mut out = Cursor::new(Vec::new());
    {
        let mut z = zip::ZipWriter::new(&mut out);
        let opts = zip::write::SimpleFileOptions::default().compression_method(method);
        z.start_file(name, opts).unwrap();
        z.write_all(data).unwrap();
        z.finish().unwrap();
    }
    out.into_inner()
}

/// Marks every entry of a zip as encrypted (general purpose flag bit 0, in the local and
/// the central headers), as a password-protected archive has it.
fn mark_encrypted(mut zip: Vec<u8>) -> Vec<u8> {
    let mut i = 0;
    while i + 4 <= zip.len() {
        match &zip[i..i + 4] {
            [0x50, 0x4b, 0x03, 0x04] => zip[i + 6] |= 1,
            [0x50, 0x4b, 0x01, 0x02] => zip[i + 8] |= 1,
            _ => {}
        }
        i += 1;
    }
    zip
}

/// What the scanner cannot read is `unscanned` with the reason in words, never malware,
/// and is not served (the default policy, block).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_and_encryption_are_unscanned_never_malware() {
    let h = Harness::start().await;
    let owner = unique("lim");
    // A password-protected zip: its contents cannot be read.
    let encrypted =
        mark_encrypted(one_member_zip("secret.txt", &rand_like::bytes(4096), zip::CompressionMethod::Stored));
    let enc = h.upload_file(&owner, "secret.zip", "application/zip", &encrypted, None).await;
    // Archives nested deeper than the scanner follows (MaxRecursion 16 in scanner/limits.conf),
    // with EICAR at the bottom, and the same nested shallow enough to be followed. Deflated,
    // so only unpacking reveals it (stored, its bytes would be in plain sight).
    let nest = |depth: usize| {
        (0..depth).fold(eicar(), |inner, i| {
            one_member_zip(&format!("level{i}.zip"), &inner, zip::CompressionMethod::Deflated)
        })
    };
    let deep = h.upload_file(&owner, "deep.zip", "application/zip", &nest(24), None).await;
    let shallow = h.upload_file(&owner, "shallow.zip", "application/zip", &nest(4), None).await;
    assert_eq!(h.process_all().await, 3);

    let v = status(&h, &owner, &enc).await;
    assert_eq!(v.status, "unscanned", "{v:?}");
    assert!(reason(&v).contains("encrypted") && !reason(&v).contains("Malware"), "{v:?}");
    let v = status(&h, &owner, &deep).await;
    assert_eq!(v.status, "unscanned", "{v:?}");
    assert!(reason(&v).contains("nested deeper"), "{v:?}");
    assert_eq!(status(&h, &owner, &shallow).await.status, "quarantined", "within the limits EICAR is found");
    // Not served: no link, and the object is tagged so the bucket refuses it too.
    let (s, p, _) = h.call_problem(Some(&owner), "POST", &format!("/files/{enc}/links"), None).await;
    assert_eq!(s, 403, "{p:?}");
    assert!(p.detail.contains("could not be scanned"), "{p:?}");
    assert_eq!(h.status_tag(&format!("uploads/{deep}")).await.as_deref(), Some("unscanned"));
}
