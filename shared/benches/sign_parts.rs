//! Part-URL signing throughput: the cost of `POST /uploads/{id}/parts/sign` per URL,
//! without network (presigning is local computation). Target: >= 50,000 URLs/s/core.
//! Run: `make bench` (or `cargo bench -p shared --bench sign_parts`).

use std::time::Duration;

use aws_sdk_s3::config::{Credentials, Region, RequestChecksumCalculation, SharedCredentialsProvider};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use shared::{
    aws::S3Store,
    domain::{PartNumber, Sha256Digest},
    ports::ObjectStore,
};

fn storage() -> S3Store {
    let creds = Credentials::new("AKIDEXAMPLE", "bench-only-secret", None, None, "bench");
    let conf = aws_sdk_s3::Config::builder()
        .behavior_version_latest()
        .region(Region::new("us-east-1"))
        .credentials_provider(creds.clone())
        .endpoint_url("http://127.0.0.1:4566")
        .force_path_style(true)
        .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
        .build();
    S3Store::new(aws_sdk_s3::Client::from_conf(conf), "bench-bucket".into(), SharedCredentialsProvider::new(creds))
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let s = storage();
    let sha = Sha256Digest::from_bytes([7u8; 32]);
    let key = "uploads/0123456789abcdef0123456789abcdef";
    let upload_id = "c-sdUVhv5VqEjIww8qg9J2G8iofEwMUZVGkgRe5z8uf9YPBBdoT4kZUGiwG0X3v_9QltBzuVOJDJ4THzrqWWNl3E";
    let mut g = c.benchmark_group("sign_parts");
    g.throughput(Throughput::Elements(1000));
    g.bench_function("1000_urls_with_sha256", |b| {
        b.iter(|| {
            rt.block_on(s.presign_parts(
                key,
                upload_id,
                (1..=1000).map(|n| (PartNumber::new(n).expect("n"), 16 << 20, Some(sha))).collect(),
                Duration::from_secs(900),
            ))
            .expect("presign")
        })
    });
    g.bench_function("1000_urls_plain", |b| {
        b.iter(|| {
            rt.block_on(s.presign_parts(
                key,
                upload_id,
                (1..=1000).map(|n| (PartNumber::new(n).expect("n"), 16 << 20, None)).collect(),
                Duration::from_secs(900),
            ))
            .expect("presign")
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(Duration::from_secs(8));
    targets = bench
}
criterion_main!(benches);
