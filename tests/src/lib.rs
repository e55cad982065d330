//! Test harness for end-to-end tests against the real local stack (LocalStack S3+SQS,
//! moto DynamoDB; started by `scripts/stack.sh start`). Each test gets its own dev
//! server (the real handlers, routes from template.yaml) on an ephemeral port, its own
//! SQS queue and its own owners, so tests run in parallel without seeing each other.

use std::sync::Arc;

use api_types::{
    problem::{CompanionError, Problem, PROBLEM_JSON},
    uploads::{
        CreateUploadRequest, RecordPartItem, RecordPartsRequest, RecordPartsResponse, SignPartItem, SignPartsRequest,
        SignPartsResponse, SignedPart, UploadView,
    },
};
use serde::{de::DeserializeOwned, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use shared::{config::Config, App};

pub struct Harness {
    pub base: String,
    pub http: reqwest::Client,
    pub app: Arc<App>,
    pub sqs: aws_sdk_sqs::Client,
    /// The test's own S3 client, to look at the bucket independently of the app's adapter.
    pub s3: aws_sdk_s3::Client,
    pub queue_url: String,
    pub secret: String,
    server: tokio::task::JoinHandle<()>,
    /// What the dev server received, in order.
    pub request_log: Arc<std::sync::Mutex<Vec<hoist_dev::server::LoggedRequest>>>,
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.server.abort();
    }
}

pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid_v4())
}

fn uuid_v4() -> String {
    use rand_like::next;
    format!("{:016x}{:016x}", next(), next())
}

/// A tiny xorshift source seeded from time and a counter: test data and names only.
pub mod rand_like {
    use std::sync::atomic::{AtomicU64, Ordering};
    static STATE: AtomicU64 = AtomicU64::new(0);
    pub fn next() -> u64 {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1);
        let mut x = STATE.fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed) ^ seed ^ 0xD1B5_4A32_D192_ED03;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    }
    /// `len` pseudo-random bytes (incompressible enough for S3 and checksums).
    pub fn bytes(len: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(len + 8);
        let mut x = next() | 1;
        while out.len() < len {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            out.extend_from_slice(&x.to_le_bytes());
        }
        out.truncate(len);
        out
    }
}

/// A real JPEG of `w` x `h` pixels (a gradient).
pub fn jpeg(w: u32, h: u32) -> Vec<u8> {
    let img = image::RgbImage::from_fn(w, h, |x, y| {
        image::Rgb([(x * 7 % 256) as u8, (y * 3 % 256) as u8, ((x + y) % 256) as u8])
    });
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Jpeg).expect("encode JPEG");
    out.into_inner()
}

/// Peak resident memory of this process so far (VmHWM), in KiB: what benchmarks report.
pub fn vm_hwm_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .map(|l| l.split_whitespace().nth(1).unwrap_or("0").parse().unwrap_or(0))
        })
        .unwrap_or(0)
}

pub fn sha256_hex(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

/// An answer's body as the wire type `T` (an `api_types` struct). Panics, naming the type
/// and showing the body, when the server's answer does not match the contract: a member
/// missing or of the wrong type, and also one the type does not know (the body must
/// serialize back to exactly what was received, absent members staying absent).
pub fn typed<T: DeserializeOwned + Serialize>(v: &Value) -> T {
    let t =
        T::deserialize(v).unwrap_or_else(|e| panic!("the answer is not a {}: {e}: {v}", std::any::type_name::<T>()));
    let again = to_json(&t);
    assert_eq!(
        &again,
        v,
        "the answer does not match {} exactly (a member it does not know?)",
        std::any::type_name::<T>()
    );
    t
}

/// An error answer as problem+json (RFC 9457).
pub fn problem(v: &Value) -> Problem {
    typed(v)
}

/// An error answer of a `/s3` route in Companion's `{"error": "..."}` shape.
pub fn companion_error(v: &Value) -> CompanionError {
    typed(v)
}

/// A typed request body (an `api_types` struct) as the JSON `Harness::call` sends.
pub fn to_json<T: Serialize>(body: &T) -> Value {
    serde_json::to_value(body).expect("request body serializes")
}

/// The `content-type` of an answer ("" when absent).
pub fn content_type(headers: &reqwest::header::HeaderMap) -> &str {
    headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("")
}

impl Harness {
    pub async fn start() -> Self {
        Self::with_config(|_| {}).await
    }

    /// Starts a dev server whose configuration `tweak` may change (short TTLs, small quotas).
    pub async fn with_config(tweak: impl FnOnce(&mut Config)) -> Self {
        Self::build(false, tweak).await
    }

    /// Like `with_config`, with a bucket of this test's own whose ObjectCreated:Post events
    /// go to this test's queue, as the template wires the real bucket to the real queue.
    pub async fn with_notifying_bucket(tweak: impl FnOnce(&mut Config)) -> Self {
        Self::build(true, tweak).await
    }

    /// Like `with_config`, with a DynamoDB table of this test's own (the shared one's
    /// schema): for a janitor sweep at a time far ahead, which in the shared table would
    /// act on every other test's uploads.
    pub async fn with_own_table(tweak: impl FnOnce(&mut Config)) -> Self {
        let sdk = aws_config::load_from_env().await;
        let table = own_table(&sdk).await;
        Self::build(false, |c| {
            c.table = table;
            tweak(c)
        })
        .await
    }

    async fn build(own_bucket: bool, tweak: impl FnOnce(&mut Config)) -> Self {
        let sdk = aws_config::load_from_env().await;
        let sqs = aws_sdk_sqs::Client::new(&sdk);
        let queue_url = sqs
            .create_queue()
            .queue_name(unique("hoist-test"))
            .send()
            .await
            .expect("create test queue (is the stack up? scripts/stack.sh start)")
            .queue_url
            .expect("queue url");
        let mut config = Config::from_env().expect("config from env (source scripts/env.sh)");
        config.queue_url = queue_url.clone();
        if own_bucket {
            config.bucket = notifying_bucket(&sdk, &sqs, &queue_url).await;
        }
        // Tests drain the queue right after `complete` has answered (so the status write
        // has landed): no delivery delay needed, and none to wait for.
        config.job_delay_secs = 0;
        tweak(&mut config);
        let app = Arc::new(shared::aws::app(config, &sdk).expect("app").0);
        let secret = std::env::var("HOIST_DEV_JWT_SECRET").expect("HOIST_DEV_JWT_SECRET");
        let template =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../template.yaml")).expect("template.yaml");
        let template = hoist_dev::routes::parse_template(&template).expect("template parses");
        let request_log = Arc::new(std::sync::Mutex::new(Vec::new()));
        let state = Arc::new(hoist_dev::server::DevState {
            request_log: Some(request_log.clone()),
            ..hoist_dev::dev_state(app.clone(), &template, secret.clone())
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let server = tokio::spawn(async move {
            let _ = hoist_dev::server::serve(listener, state).await;
        });
        let s3 = aws_sdk_s3::Client::from_conf(aws_sdk_s3::config::Builder::from(&sdk).force_path_style(true).build());
        Harness { base, http: reqwest::Client::new(), app, sqs, s3, queue_url, secret, server, request_log }
    }

    pub fn token(&self, owner: &str) -> String {
        hoist_dev::jwt::issue(&self.secret, owner, 3600, shared::now()).expect("token")
    }

    /// A request to our API as `owner` (None: no Authorization header).
    pub async fn call(
        &self,
        owner: Option<&str>,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value, reqwest::header::HeaderMap) {
        let mut rb = self.http.request(method.parse().expect("method"), format!("{}{}", self.base, path));
        if let Some(o) = owner {
            rb = rb.bearer_auth(self.token(o));
        }
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        let resp = rb.send().await.expect("request");
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let text = resp.text().await.expect("body");
        let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, value, headers)
    }

    /// `call`, expecting `status`, with the body parsed as the wire type `T`.
    pub async fn call_as<T: DeserializeOwned + Serialize>(
        &self,
        owner: Option<&str>,
        method: &str,
        path: &str,
        body: Option<Value>,
        status: u16,
    ) -> T {
        let (s, v, _) = self.call(owner, method, path, body).await;
        assert_eq!(s, status, "{method} {path}: {v}");
        typed(&v)
    }

    /// `call` for a request our authorizer refuses: API Gateway's own answer, 403 with
    /// `{"message":"Forbidden"}` (no function runs; `make sam-local` shows SAM's emulator
    /// answers the same). Returns the dev server's reason header, for the caller's message.
    pub async fn call_refused_by_gateway(
        &self,
        owner: Option<&str>,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> String {
        let (s, v, headers) = self.call(owner, method, path, body).await;
        let reason = headers.get("x-hoist-dev-reason").and_then(|r| r.to_str().ok()).unwrap_or("").to_owned();
        assert_eq!((s, v), (403, serde_json::json!({"message": "Forbidden"})), "{method} {path} ({reason})");
        assert_eq!(content_type(&headers), "application/json", "{method} {path}");
        reason
    }

    /// `call`, for a request that must fail: an error status, answered as
    /// `application/problem+json` whose `status` member agrees with the HTTP status.
    /// The caller checks which status.
    pub async fn call_problem(
        &self,
        owner: Option<&str>,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Problem, reqwest::header::HeaderMap) {
        let (s, v, headers) = self.call(owner, method, path, body).await;
        assert!(s >= 400, "{method} {path} must fail, got {s}: {v}");
        assert_eq!(content_type(&headers), PROBLEM_JSON, "{method} {path} -> {s}: {v}");
        let p = problem(&v);
        assert_eq!(p.status, s, "the problem's status is the HTTP status: {v}");
        (s, p, headers)
    }

    /// `call` to a `/s3` route that must fail: an error status, answered in Companion's
    /// `{"error": "..."}` shape as `application/json`. The caller checks which status.
    pub async fn call_companion_error(
        &self,
        owner: Option<&str>,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> (u16, CompanionError) {
        let (s, v, headers) = self.call(owner, method, path, body).await;
        assert!(s >= 400, "{method} {path} must fail, got {s}: {v}");
        assert_eq!(content_type(&headers), "application/json", "{method} {path} -> {s}: {v}");
        (s, companion_error(&v))
    }

    /// Sends a raw body (for malformed JSON tests).
    pub async fn call_raw(
        &self,
        owner: &str,
        method: &str,
        path: &str,
        content_type: &str,
        body: &'static [u8],
    ) -> (u16, Value, String) {
        let resp = self
            .http
            .request(method.parse().expect("method"), format!("{}{}", self.base, path))
            .bearer_auth(self.token(owner))
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .expect("request");
        let status = resp.status().as_u16();
        let ct = resp.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
        let text = resp.text().await.expect("body");
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)), ct)
    }

    /// Creates an upload of `data` (declared SHA-256, the given part size, part checksums
    /// pinned when `checksums`); the created upload.
    pub async fn create(
        &self,
        owner: &str,
        filename: &str,
        data: &[u8],
        part_size: u64,
        checksums: bool,
    ) -> UploadView {
        let body = CreateUploadRequest {
            filename: filename.to_owned(),
            size: data.len().into(),
            content_type: "application/octet-stream".into(),
            sha256: Some(sha256_hex(data)),
            part_checksums: checksums.then(|| "SHA256".to_owned()),
            part_size: Some(part_size.into()),
        };
        self.post_upload(owner, &body).await
    }

    /// `POST /uploads`, expecting 201; the created upload.
    pub async fn post_upload(&self, owner: &str, body: &CreateUploadRequest) -> UploadView {
        self.call_as(Some(owner), "POST", "/uploads", Some(to_json(body)), 201).await
    }

    /// Signs parts (with their SHA-256 when `checksums`), as the API returns them.
    pub async fn sign(
        &self,
        owner: &str,
        id: &str,
        data: &[u8],
        part_size: usize,
        numbers: &[u32],
        checksums: bool,
    ) -> Vec<SignedPart> {
        let parts = numbers
            .iter()
            .map(|&n| SignPartItem {
                number: n.into(),
                sha256: checksums.then(|| sha256_hex(chunk(data, part_size, n))),
            })
            .collect();
        let body = to_json(&SignPartsRequest { parts });
        let signed: SignPartsResponse =
            self.call_as(Some(owner), "POST", &format!("/uploads/{id}/parts/sign"), Some(body), 200).await;
        let mut got: Vec<u32> = signed.parts.iter().map(|p| p.number).collect();
        let mut asked = numbers.to_vec();
        got.sort_unstable();
        asked.sort_unstable();
        assert_eq!(got, asked, "one signed URL per part asked for");
        signed.parts
    }

    /// PUTs one body to a signed part URL, sending its headers verbatim. Returns status, ETag, body text.
    pub async fn put_part(&self, signed: &SignedPart, body: Vec<u8>) -> (u16, Option<String>, String) {
        let mut rb = self.http.put(&signed.url);
        for (k, v) in &signed.headers {
            rb = rb.header(k, v);
        }
        let resp = rb.body(body).send().await.expect("PUT to S3");
        let status = resp.status().as_u16();
        let etag = resp.headers().get("etag").and_then(|v| v.to_str().ok()).map(str::to_owned);
        (status, etag, resp.text().await.unwrap_or_default())
    }

    /// Signs, PUTs (in parallel) and records the given parts. Returns how many PUTs were sent.
    pub async fn upload_parts(
        &self,
        owner: &str,
        id: &str,
        data: &[u8],
        part_size: usize,
        numbers: &[u32],
        checksums: bool,
    ) -> usize {
        let signed = self.sign(owner, id, data, part_size, numbers, checksums).await;
        let puts = signed.iter().map(|s| {
            let body = chunk(data, part_size, s.number).to_vec();
            async move {
                let len = body.len();
                let (st, etag, text) = self.put_part(s, body).await;
                assert_eq!(st, 200, "part {} PUT: {text}", s.number);
                RecordPartItem {
                    number: s.number.into(),
                    etag: etag.expect("ETag exposed"),
                    size: len.into(),
                    sha256: None,
                }
            }
        });
        let parts: Vec<RecordPartItem> = futures::future::join_all(puts).await;
        let count = parts.len();
        let body = to_json(&RecordPartsRequest { parts });
        let recorded: RecordPartsResponse =
            self.call_as(Some(owner), "PUT", &format!("/uploads/{id}/parts"), Some(body), 200).await;
        assert_eq!(recorded.recorded as usize, count, "every part sent was recorded");
        count
    }

    /// The object's bytes in S3.
    pub async fn object_bytes(&self, id: &str) -> Vec<u8> {
        let out = self
            .s3
            .get_object()
            .bucket(self.app.objects.bucket())
            .key(format!("uploads/{id}"))
            .send()
            .await
            .expect("GetObject");
        out.body.collect().await.expect("body").into_bytes().to_vec()
    }

    /// Part numbers the server was asked to sign for `upload_id`, in order.
    pub fn signed_part_numbers(&self, upload_id: &str) -> Vec<u32> {
        let log = self.request_log.lock().expect("log");
        log.iter()
            .filter(|r| r.route == "POST /uploads/{id}/parts/sign" && r.path.contains(upload_id))
            .flat_map(|r| {
                let req: Option<SignPartsRequest> = serde_json::from_slice(&r.body).ok();
                req.map(|q| q.parts).unwrap_or_default().into_iter().filter_map(|p| u32::try_from(p.number).ok())
            })
            .collect()
    }

    pub fn clear_request_log(&self) {
        self.request_log.lock().expect("log").clear();
    }

    /// A processor over this harness's app (the real process handler).
    pub fn processor(&self, max_receives: u32) -> Arc<process::Processor> {
        self.processor_with(|c| c.max_receives = max_receives)
    }

    /// A processor with its settings (from the environment) changed by `tweak`.
    pub fn processor_with(&self, tweak: impl FnOnce(&mut shared::config::ProcessConfig)) -> Arc<process::Processor> {
        let mut config = shared::config::ProcessConfig::from_env().expect("process config");
        tweak(&mut config);
        let config = config.checked().expect("window fits the scanner's stream limit");
        let scanner = Arc::new(shared::clamd::Clamd::from_config(&config));
        Arc::new(process::Processor { app: self.app.clone(), scanner, config })
    }

    /// Feeds every job on this test's queue to the process handler, as Lambda's
    /// event source mapping would, until the queue is empty.
    pub async fn process_all(&self) -> usize {
        self.drain(&self.processor(5)).await
    }

    /// Like `process_all`, scanning files above `scan_window` bytes in windows of it.
    pub async fn process_all_in_windows(&self, scan_window: u64) -> usize {
        self.drain(&self.processor_with(|c| c.scan_window = scan_window)).await
    }

    /// Feeds the queue to `p` until it is empty; answers how many messages it handled.
    pub async fn drain(&self, p: &Arc<process::Processor>) -> usize {
        let mut total = 0;
        loop {
            let r = hoist_dev::sqs::poll_once(p, &self.sqs, &self.queue_url, 1).await.expect("poll");
            if r.received == 0 {
                return total;
            }
            total += r.received;
        }
    }

    /// Uploads `data` through the API (one or more parts) and completes it.
    /// `declared_sha256` overrides the declared whole-file checksum.
    pub async fn upload_file(
        &self,
        owner: &str,
        filename: &str,
        content_type: &str,
        data: &[u8],
        declared_sha256: Option<String>,
    ) -> String {
        let body = CreateUploadRequest {
            filename: filename.to_owned(),
            size: data.len().into(),
            content_type: content_type.to_owned(),
            sha256: Some(declared_sha256.unwrap_or_else(|| sha256_hex(data))),
            part_checksums: Some("SHA256".into()),
            part_size: None,
        };
        let created = self.post_upload(owner, &body).await;
        let parts: Vec<u32> = (1..=created.part_count).collect();
        self.upload_parts(owner, &created.id, data, created.part_size as usize, &parts, true).await;
        let done: UploadView =
            self.call_as(Some(owner), "POST", &format!("/uploads/{}/complete", created.id), None, 200).await;
        assert_eq!(done.id, created.id);
        created.id
    }

    /// The parts S3 holds for an open upload, read from S3 itself (not through the API).
    pub async fn s3_parts(&self, id: &str) -> Vec<aws_sdk_s3::types::Part> {
        let rec =
            self.app.repo.get(&shared::domain::UploadId::parse(id).expect("id")).await.expect("get").expect("upload");
        let listed = self
            .s3
            .list_parts()
            .bucket(self.app.objects.bucket())
            .key(&rec.s3_key)
            .upload_id(&rec.s3_upload_id)
            .max_parts(1000)
            .send()
            .await
            .expect("ListParts");
        listed.parts().to_vec()
    }

    /// The object's `hoist-status` tag.
    pub async fn status_tag(&self, key: &str) -> Option<String> {
        let out = self.s3.get_object_tagging().bucket(self.app.objects.bucket()).key(key).send().await.ok()?;
        out.tag_set().iter().find(|t| t.key() == "hoist-status").map(|t| t.value().to_owned())
    }

    /// Every message on this test's queue (drains it).
    pub async fn drain_jobs(&self) -> Vec<Value> {
        let mut out = Vec::new();
        for _ in 0..5 {
            let r = self
                .sqs
                .receive_message()
                .queue_url(&self.queue_url)
                .max_number_of_messages(10)
                .wait_time_seconds(1)
                .send()
                .await
                .expect("receive");
            let msgs = r.messages.unwrap_or_default();
            if msgs.is_empty() {
                break;
            }
            for m in msgs {
                out.push(serde_json::from_str(m.body().unwrap_or("null")).unwrap_or(Value::Null));
                if let Some(h) = m.receipt_handle() {
                    let _ = self.sqs.delete_message().queue_url(&self.queue_url).receipt_handle(h).send().await;
                }
            }
        }
        out
    }
}

/// A new table with the schema of the configured one (keys and indexes).
async fn own_table(sdk: &aws_config::SdkConfig) -> String {
    use aws_sdk_dynamodb::types::{BillingMode, GlobalSecondaryIndex};
    let ddb = aws_sdk_dynamodb::Client::new(sdk);
    let shared = Config::from_env().expect("config from env (source scripts/env.sh)").table;
    let described = ddb.describe_table().table_name(&shared).send().await.expect("describe the shared table");
    let t = described.table.expect("table description");
    let indexes: Vec<GlobalSecondaryIndex> = t
        .global_secondary_indexes()
        .iter()
        .map(|g| {
            GlobalSecondaryIndex::builder()
                .index_name(g.index_name().unwrap_or_default())
                .set_key_schema(Some(g.key_schema().to_vec()))
                .set_projection(g.projection().cloned())
                .build()
                .expect("index")
        })
        .collect();
    let name = unique("hoist-test-t");
    ddb.create_table()
        .table_name(&name)
        .set_key_schema(Some(t.key_schema().to_vec()))
        .set_attribute_definitions(Some(t.attribute_definitions().to_vec()))
        .set_global_secondary_indexes(Some(indexes))
        .billing_mode(BillingMode::PayPerRequest)
        .send()
        .await
        .expect("create the test's own table");
    // DynamoDB creates tables asynchronously (moto at once): wait until it is ACTIVE.
    for _ in 0..120 {
        let t = ddb.describe_table().table_name(&name).send().await.expect("describe the test's table");
        if t.table.and_then(|t| t.table_status).is_some_and(|s| s == aws_sdk_dynamodb::types::TableStatus::Active) {
            return name;
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    panic!("the test's own table {name} did not become ACTIVE");
}

/// A new bucket that sends `s3:ObjectCreated:Post` events under `uploads/` to the queue
/// (scripts/seed.py and template.yaml configure the real ones the same way).
async fn notifying_bucket(sdk: &aws_config::SdkConfig, sqs: &aws_sdk_sqs::Client, queue_url: &str) -> String {
    use aws_sdk_s3::types::{
        Event, FilterRule, FilterRuleName, NotificationConfiguration, NotificationConfigurationFilter,
        QueueConfiguration, S3KeyFilter,
    };
    let s3 = aws_sdk_s3::Client::from_conf(aws_sdk_s3::config::Builder::from(sdk).force_path_style(true).build());
    let bucket = unique("hoist-test-b");
    s3.create_bucket().bucket(&bucket).send().await.expect("create test bucket");
    s3.put_bucket_versioning()
        .bucket(&bucket)
        .versioning_configuration(
            aws_sdk_s3::types::VersioningConfiguration::builder()
                .status(aws_sdk_s3::types::BucketVersioningStatus::Enabled)
                .build(),
        )
        .send()
        .await
        .expect("bucket versioning");
    let attrs = sqs
        .get_queue_attributes()
        .queue_url(queue_url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
        .send()
        .await
        .expect("queue arn");
    let arn = attrs
        .attributes()
        .and_then(|a| a.get(&aws_sdk_sqs::types::QueueAttributeName::QueueArn))
        .expect("queue arn")
        .clone();
    let rule = FilterRule::builder().name(FilterRuleName::Prefix).value("uploads/").build();
    let queue = QueueConfiguration::builder()
        .queue_arn(arn)
        .events(Event::from("s3:ObjectCreated:Post"))
        .filter(
            NotificationConfigurationFilter::builder().key(S3KeyFilter::builder().filter_rules(rule).build()).build(),
        )
        .build()
        .expect("queue configuration");
    s3.put_bucket_notification_configuration()
        .bucket(&bucket)
        .notification_configuration(NotificationConfiguration::builder().queue_configurations(queue).build())
        .send()
        .await
        .expect("bucket notification");
    // S3 announces a new notification with an `s3:TestEvent`: wait for it (proof of the
    // wiring) and take it off the queue, so tests count only their own messages.
    for _ in 0..10 {
        let got = sqs.receive_message().queue_url(queue_url).wait_time_seconds(1).send().await.expect("receive");
        for m in got.messages.unwrap_or_default() {
            if m.body().is_some_and(|b| b.contains("s3:TestEvent")) {
                if let Some(h) = m.receipt_handle() {
                    sqs.delete_message().queue_url(queue_url).receipt_handle(h).send().await.expect("delete");
                }
                return bucket;
            }
        }
    }
    panic!("no s3:TestEvent arrived on {queue_url}: bucket notifications are not wired");
}

/// Bytes of part `n` (1-based) of `data` cut in `part_size` pieces.
pub fn chunk(data: &[u8], part_size: usize, n: u32) -> &[u8] {
    let start = (n as usize - 1) * part_size;
    &data[start.min(data.len())..(start + part_size).min(data.len())]
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn typed_takes_an_exact_answer() {
        assert_eq!(typed::<RecordPartsResponse>(&json!({"recorded": 2})), RecordPartsResponse { recorded: 2 });
        let p = problem(&json!({"type": "urn:hoist:problem:conflict", "title": "Conflict", "status": 409,
            "detail": "Part 2 is missing.", "missing_parts": [[2, 2]]}));
        assert_eq!((p.slug(), p.status, &p.extra["missing_parts"]), ("conflict", 409, &json!([[2, 2]])));
    }

    #[test]
    #[should_panic(expected = "does not match")]
    fn typed_refuses_members_the_contract_lacks() {
        typed::<RecordPartsResponse>(&json!({"recorded": 2, "surprise": true}));
    }

    #[test]
    #[should_panic(expected = "the answer is not a")]
    fn typed_refuses_a_wrong_shape() {
        typed::<RecordPartsResponse>(&json!({"recorded": "2"}));
    }
}
