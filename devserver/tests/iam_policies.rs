//! Least privilege, checked: every function's IAM policy in template.yaml grants what its
//! handler needs, learnt by running the real handlers on in-memory ports that log each
//! port call, and mapping those calls to AWS actions (`shared::aws::iam_actions`).
//! Needs no AWS and no local stack.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use hoist_dev::{routes, server};
use serde_json::{json, Value};
use shared::domain::{Owner, UploadId, UploadStatus};
use shared::testing::{Fakes, Fault};

const TEMPLATE: &str = include_str!("../../template.yaml");

/// Port calls made while each function ran.
#[derive(Default)]
struct Usage(BTreeMap<String, BTreeSet<&'static str>>);

struct Run {
    f: Fakes,
    template: routes::Template,
    usage: Usage,
    owner: Owner,
}

impl Run {
    fn new() -> Self {
        let template = routes::parse_template(TEMPLATE).expect("template parses");
        // The per-owner rate limit on, as deployed (it is one more repository call).
        let mut config = shared::testing::config();
        config.owner_requests_per_minute = 1_000_000;
        Run { f: Fakes::with_config(config), template, usage: Usage::default(), owner: Owner::parse("alice").unwrap() }
    }

    /// Attributes the port calls logged since the last call to `binary`.
    fn charge(&mut self, binary: &str) {
        let calls = self.f.faults.log();
        self.f.faults.clear_log();
        self.usage.0.entry(binary.to_owned()).or_default().extend(calls);
    }

    /// Sends one request through the route table to its real handler, as API Gateway would.
    async fn call(&mut self, method: &str, path_and_query: &str, body: Option<Value>) -> (u16, Value) {
        self.charge("(setup)");
        let path = path_and_query.split('?').next().unwrap_or_default();
        let (route, params) = routes::match_route(&self.template.routes, method, path).expect("route");
        let bytes = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
        let (parts, _) = http::Request::builder()
            .method(method)
            .uri(path_and_query)
            .header("content-type", "application/json")
            .header("host", "hoist.test")
            .body(())
            .unwrap()
            .into_parts();
        let event = server::api_gateway_event(route, &params, &parts, &bytes, Some(&self.owner));
        let request = lambda_http::request::from_str(&event.to_string()).expect("event");
        let handler = server::http_handlers()[route.binary.as_str()];
        let resp = handler(self.f.app.clone(), request).await;
        let status = resp.status().as_u16();
        let body = match resp.body() {
            lambda_http::Body::Text(t) => serde_json::from_str(t).unwrap_or(Value::Null),
            _ => Value::Null,
        };
        let binary = route.binary.clone();
        self.charge(&binary);
        if status >= 500 {
            eprintln!("{method} {path_and_query} -> {status}: {}", self.f.faults.log().join(","));
        }
        (status, body)
    }

    /// An upload of two 5 MiB parts, created, signed, sent, recorded.
    async fn sent_upload(&mut self) -> UploadId {
        let size = 10 * 1024 * 1024;
        let (s, v) = self
            .call(
                "POST",
                "/uploads",
                Some(json!({"filename": "a.bin", "size": size, "content_type": "application/octet-stream", "part_size": 5 * 1024 * 1024})),
            )
            .await;
        assert_eq!(s, 201, "{v}");
        let id = UploadId::parse(v["id"].as_str().unwrap()).unwrap();
        let (s, v) = self
            .call("POST", &format!("/uploads/{id}/parts/sign"), Some(json!({"parts": [{"number": 1}, {"number": 2}]})))
            .await;
        assert_eq!(s, 200, "{v}");
        let mpu = self.f.repo.upload(&id).unwrap().s3_upload_id;
        let part = vec![7u8; 5 * 1024 * 1024];
        let mut recorded = Vec::new();
        for n in [1u32, 2] {
            let etag = self.f.objects.upload_part(&mpu, n, &part).unwrap();
            recorded.push(json!({"number": n, "etag": etag, "size": part.len()}));
        }
        let (s, v) = self.call("PUT", &format!("/uploads/{id}/parts"), Some(json!({ "parts": recorded }))).await;
        assert_eq!(s, 200, "{v}");
        id
    }
}

/// Every action each function's policy grants (statements with Effect Allow).
fn granted(template: &str) -> BTreeMap<String, BTreeSet<String>> {
    let doc: serde_yaml::Value = serde_yaml::from_str(template).unwrap();
    let mut out = BTreeMap::new();
    for (_, res) in doc["Resources"].as_mapping().unwrap() {
        if res["Type"].as_str() != Some("AWS::Serverless::Function") {
            continue;
        }
        let binary = res["Metadata"]["BuildProperties"]["Binary"].as_str().unwrap().to_owned();
        let mut actions = BTreeSet::new();
        for policy in res["Properties"]["Policies"].as_sequence().into_iter().flatten() {
            for st in policy["Statement"].as_sequence().into_iter().flatten() {
                if st["Effect"].as_str() != Some("Allow") {
                    continue;
                }
                match &st["Action"] {
                    serde_yaml::Value::String(a) => {
                        actions.insert(a.clone());
                    }
                    serde_yaml::Value::Sequence(list) => {
                        actions.extend(list.iter().filter_map(|a| a.as_str().map(str::to_owned)));
                    }
                    _ => {}
                }
            }
        }
        out.insert(binary, actions);
    }
    out
}

#[tokio::test]
async fn every_function_policy_grants_what_its_handler_calls() {
    shared::telemetry::init("iam-test");
    let mut run = Run::new();

    // The upload routes, a refused and a retried completion included (so `complete`
    // also resolves an object S3 already assembled).
    let a = run.sent_upload().await;
    assert_eq!(run.call("GET", &format!("/uploads/{a}"), None).await.0, 200);
    assert_eq!(run.call("GET", "/uploads", None).await.0, 200);
    let held = run.sent_upload().await;
    assert_eq!(run.call("GET", &format!("/uploads/{held}/parts"), None).await.0, 200);
    let (s, v) = run.call("POST", &format!("/uploads/{a}/complete"), None).await;
    assert_eq!(s, 200, "{v}");
    let b = run.sent_upload().await;
    run.f.faults.on("queue.send", 1, Fault::Fail);
    assert_eq!(run.call("POST", &format!("/uploads/{b}/complete"), None).await.0, 500);
    assert_eq!(run.call("POST", &format!("/uploads/{b}/complete"), None).await.0, 200);
    let c = run.sent_upload().await;
    assert_eq!(run.call("DELETE", &format!("/uploads/{c}"), None).await.0, 200);
    // A create whose record cannot be stored gives its multipart upload back.
    run.f.faults.on("repo.create", 1, Fault::Fail);
    let new = json!({"filename": "z.bin", "size": 1, "content_type": "application/octet-stream"});
    assert_eq!(run.call("POST", "/uploads", Some(new)).await.0, 500);
    // Aborting a single POST deletes whatever S3 already received, on either route.
    let mut aborted_keys = Vec::new();
    for route in ["/uploads/{id}", "/s3/multipart/{id}?key=uploads/{id}"] {
        let (_, v) = run.call("GET", "/s3/params?filename=s.txt&type=text/plain", None).await;
        let key = v["fields"]["key"].as_str().unwrap().to_owned();
        run.f.objects.put_object(&key, b"sent");
        let path = route.replace("{id}", key.trim_start_matches("uploads/"));
        let (s, v) = run.call("DELETE", &path, None).await;
        assert_eq!(s, 200, "{path}: {v}");
        aborted_keys.push(key);
    }

    // Processing: the jobs, and S3's event for a single POST.
    let processor = Arc::new(run.f.processor());
    let (s, v) = run.call("GET", "/s3/params?filename=p.png&type=image/png", None).await;
    assert_eq!(s, 200, "{v}");
    let single = v["fields"]["key"].as_str().unwrap().to_owned();
    use base64::Engine as _;
    let png = base64::engine::general_purpose::STANDARD
        .decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==")
        .unwrap();
    run.f.objects.put_object(&single, &png);
    let mut records: Vec<Value> = run
        .f
        .jobs
        .sent()
        .iter()
        .enumerate()
        .map(|(i, job)| sqs_record(i, &serde_json::to_string(job).unwrap()))
        .collect();
    let bucket = run.f.app.config.bucket.clone();
    // S3's events: a single POST that completes, and one that lands after its abort.
    for (i, key) in [&single, &aborted_keys[0]].into_iter().enumerate() {
        run.f.objects.put_object(key, &png);
        let event = json!({"Records": [{"eventName": "ObjectCreated:Post", "s3": {"bucket": {"name": bucket}, "object": {"key": key}}}]});
        records.push(sqs_record(90 + i, &event.to_string()));
    }
    run.charge("(setup)");
    let response = process::handle(processor.clone(), lambda_event(json!({ "Records": records }))).await.unwrap();
    assert!(response.batch_item_failures.is_empty(), "{:?}", response.batch_item_failures);
    // The single POST's own job (queued by its event): a ready image gets its thumbnail.
    let job = run.f.jobs.sent().last().cloned().unwrap();
    process::handle(
        processor.clone(),
        lambda_event(json!({"Records": [sqs_record(98, &serde_json::to_string(&job).unwrap())]})),
    )
    .await
    .unwrap();
    run.charge("process");
    let single_id = UploadId::parse(single.trim_start_matches("uploads/")).unwrap();
    let processed = run.f.repo.upload(&single_id).unwrap();
    assert!(processed.thumbnail_key.is_some(), "{processed:?}");
    // The same form sent again after the verdict: that version is thrown away. (The
    // setup above wrote the key twice; the verdict already deleted the unpinned one.)
    let refused_before = run.f.repo.upload(&single_id).unwrap().refused_writes.unwrap_or(0);
    let again = run.f.objects.put_object(&single, b"later");
    let event = json!({"Records": [{"eventName": "ObjectCreated:Post", "s3": {"bucket": {"name": bucket},
        "object": {"key": single, "versionId": again.version}}}]});
    run.charge("(setup)");
    process::handle(processor.clone(), lambda_event(json!({"Records": [sqs_record(97, &event.to_string())]})))
        .await
        .unwrap();
    run.charge("process");
    assert_eq!(run.f.repo.upload(&single_id).unwrap().refused_writes, Some(refused_before + 1));
    // A job that comes before its status write is handed back in seconds.
    let early = run.sent_upload().await;
    let mut upload = run.f.repo.upload(&early).unwrap();
    upload.status = shared::domain::UploadStatus::Completing;
    run.f.repo.put_upload(upload.clone());
    let job = json!({"version": 1, "upload_id": early.as_str(), "owner": "alice", "bucket": bucket, "key": upload.s3_key,
        "size": upload.size, "etag": "x", "content_type": "application/octet-stream"});
    run.charge("(setup)");
    process::handle(processor.clone(), lambda_event(json!({"Records": [sqs_record(1, &job.to_string())]})))
        .await
        .unwrap();
    run.charge("process");
    // The scanner not there at the last delivery: the file waits for it (not failed).
    let waiting = run.sent_upload().await;
    assert_eq!(run.call("POST", &format!("/uploads/{waiting}/complete"), None).await.0, 200);
    let job = serde_json::to_string(&run.f.jobs.sent().last().cloned().unwrap()).unwrap();
    run.f.faults.on("scanner.start", 1, Fault::Fail);
    run.charge("(setup)");
    let last = sqs_delivery(1, &job, processor.config.max_receives);
    let response = process::handle(processor, lambda_event(json!({"Records": [last]}))).await.unwrap();
    assert!(response.batch_item_failures.is_empty(), "{:?}", response.batch_item_failures);
    run.charge("process");
    assert!(run.f.repo.upload(&waiting).unwrap().waiting_for_scanner);

    // A file larger than one scan window: fanned out, scanned and hashed window by window.
    let big = run.sent_upload().await;
    assert_eq!(run.call("POST", &format!("/uploads/{big}/complete"), None).await.0, 200);
    let mut windowed = run.f.processor();
    windowed.config.scan_window = 2 * 1024 * 1024;
    let windowed = Arc::new(windowed);
    let job = serde_json::to_string(&run.f.jobs.sent().last().cloned().unwrap()).unwrap();
    run.charge("(setup)");
    // Delivered twice: the second delivery resumes what is left (all of it, here).
    let mut records = vec![sqs_record(0, &job), sqs_delivery(1, &job, 2)];
    while !records.is_empty() {
        let response = process::handle(windowed.clone(), lambda_event(json!({ "Records": records }))).await.unwrap();
        assert!(response.batch_item_failures.is_empty(), "{:?}", response.batch_item_failures);
        let jobs = run.f.jobs.take_windows();
        records = jobs.iter().enumerate().map(|(i, j)| sqs_record(i, &serde_json::to_string(j).unwrap())).collect();
    }
    run.charge("process");
    assert_eq!(run.f.repo.upload(&big).unwrap().status, shared::domain::UploadStatus::Ready);

    // The catalog, links and a download, then delete and restore.
    let (s, v) = run.call("GET", "/files", None).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(run.call("GET", &format!("/files/{a}"), None).await.0, 200);
    let (s, link) = run.call("POST", &format!("/files/{a}/links"), Some(json!({}))).await;
    assert_eq!(s, 201, "{link}");
    let link = link["url"].as_str().unwrap().trim_start_matches("https://hoist.test").to_owned();
    assert_eq!(run.call("GET", &link, None).await.0, 302);
    assert_eq!(run.call("DELETE", &format!("/files/{a}"), None).await.0, 200);
    assert_eq!(run.call("POST", &format!("/files/{a}/restore"), None).await.0, 200);

    // Companion routes.
    let (s, v) =
        run.call("POST", "/s3/multipart", Some(json!({"filename": "u.bin", "type": "application/octet-stream"}))).await;
    assert_eq!(s, 200, "{v}");
    let (uid, key) = (v["uploadId"].as_str().unwrap().to_owned(), v["key"].as_str().unwrap().to_owned());
    let q = format!("key={key}");
    assert_eq!(run.call("GET", &format!("/s3/multipart/{uid}/1?{q}"), None).await.0, 200);
    assert_eq!(run.call("GET", &format!("/s3/multipart/{uid}/batch?{q}&partNumbers=1,2"), None).await.0, 200);
    // Every 16th URL signed, what the session parked is summed (ListParts).
    let batch: Vec<String> = (1..=16).map(|n| n.to_string()).collect();
    let batch = format!("/s3/multipart/{uid}/batch?{q}&partNumbers={}", batch.join(","));
    assert_eq!(run.call("GET", &batch, None).await.0, 200);
    let mpu = run.f.repo.upload(&UploadId::parse(&uid).unwrap()).unwrap().s3_upload_id;
    run.f.objects.upload_part(&mpu, 1, b"one part");
    assert_eq!(run.call("GET", &format!("/s3/multipart/{uid}?{q}"), None).await.0, 200);
    // Completed in S3, then the job could not be sent: the retry resolves the object itself.
    run.f.faults.on("queue.send", 1, Fault::Fail);
    let complete = format!("/s3/multipart/{uid}/complete?{q}");
    assert_eq!(run.call("POST", &complete, Some(json!({"parts": []}))).await.0, 500);
    assert_eq!(run.call("POST", &complete, Some(json!({"parts": []}))).await.0, 200);
    let (_, v) = run.call("POST", "/s3/multipart", Some(json!({"filename": "v.bin", "type": "text/plain"}))).await;
    let q = format!("key={}", v["key"].as_str().unwrap());
    assert_eq!(
        run.call("DELETE", &format!("/s3/multipart/{}?{q}", v["uploadId"].as_str().unwrap()), None).await.0,
        200
    );

    // The janitor: an expired upload, a stuck completion, a lost S3 event, a due purge.
    let expired = run.sent_upload().await;
    let stuck = run.sent_upload().await;
    let (_, v) = run.call("GET", "/s3/params?filename=q.txt&type=text/plain", None).await;
    let lost = UploadId::parse(v["fields"]["key"].as_str().unwrap().trim_start_matches("uploads/")).unwrap();
    run.f.objects.put_object(&format!("uploads/{lost}"), b"hello");
    for id in [&expired, &lost] {
        let mut u = run.f.repo.upload(id).unwrap();
        u.expires_at = 0;
        run.f.repo.put_upload(u);
    }
    let mut u = run.f.repo.upload(&stuck).unwrap();
    (u.status, u.lease_until) = (shared::domain::UploadStatus::Completing, Some(0));
    run.f.repo.put_upload(u);
    let mut u = run.f.repo.upload(&a).unwrap();
    (u.deleted_at, u.purge_at, u.thumbnail_key) = (Some(0), Some(0), Some(format!("thumbnails/{a}.jpg")));
    run.f.repo.put_upload(u);
    // Processing that stalled (sent again), stalled too often (set aside), still moves
    // (looked at later), and a verdict still in the janitor's watch (taken out).
    let now = shared::now();
    for (redrives, updated_at, status) in [
        (0, 0, UploadStatus::Processing),
        (9, 0, UploadStatus::Processing),
        (0, now, UploadStatus::Processing),
        (0, 0, UploadStatus::Ready),
    ] {
        let id = run.sent_upload().await;
        let mut u = run.f.repo.upload(&id).unwrap();
        (u.status, u.etag, u.redrives, u.updated_at) = (status, Some("e".into()), Some(redrives), updated_at);
        (u.stall_check_at, u.processed_at) = (Some(0), (status != UploadStatus::Processing).then_some(0));
        run.f.repo.put_upload(u);
    }
    run.charge("(setup)");
    let report = janitor::handle(run.f.app.clone(), lambda_event(json!({}))).await.unwrap();
    assert_eq!((report.expired, report.completed, report.purged), (1, 2, 1), "{report:?}");
    assert_eq!((report.redriven, report.set_aside), (1, 1), "{report:?}");
    run.charge("janitor");

    // Now compare.
    let granted = granted(TEMPLATE);
    let mut problems = Vec::new();
    for (binary, calls) in &run.usage.0 {
        if binary.starts_with('(') {
            continue;
        }
        let grants = granted.get(binary).cloned().unwrap_or_default();
        for call in calls {
            let Some(actions) = shared::aws::iam_actions(call) else {
                problems.push(format!("{binary}: port method {call} has no IAM mapping in shared::aws::iam_actions"));
                continue;
            };
            for action in actions {
                if !grants.contains(*action) {
                    problems.push(format!("{binary} calls {call}, which needs {action}: not in its policy"));
                }
            }
        }
        // Least privilege the other way: nothing granted that no call needs.
        let mut needed: BTreeSet<&str> =
            calls.iter().filter_map(|c| shared::aws::iam_actions(c)).flatten().copied().collect();
        needed.extend(LAYER_NEEDS.iter().filter(|(b, _)| b == binary).flat_map(|(_, a)| a.iter().copied()));
        for g in &grants {
            if !needed.contains(g.as_str()) {
                problems.push(format!("{binary} is granted {g}, which none of its port calls needs"));
            }
        }
    }
    // Every function with a policy was exercised.
    for binary in granted.keys() {
        if binary != "authorizer" && binary != "clamav_update" && !run.usage.0.contains_key(binary) {
            problems.push(format!("{binary} was not exercised by this test"));
        }
    }
    // The definitions update has no port calls: its policy is exactly what it does
    // (read what S3 holds, write back what freshclam changed, remove what it replaced,
    // list the prefix).
    let update = granted.get("clamav_update").cloned().unwrap_or_default();
    let expected: BTreeSet<String> = LAYER_NEEDS
        .iter()
        .filter(|(b, _)| *b == "clamav_update")
        .flat_map(|(_, a)| a.iter().map(|x| x.to_string()))
        .collect();
    if update != expected {
        problems.push(format!("clamav_update is granted {update:?}, expected {expected:?}"));
    }
    assert!(problems.is_empty(), "IAM policies vs port calls:\n  {}", problems.join("\n  "));
}

/// What the ClamAV layer's own code needs beside a function's port calls: the extension
/// (in `process`) lists and reads the definitions; the update reads and writes them.
const LAYER_NEEDS: &[(&str, &[&str])] = &[
    ("process", &["s3:ListBucket", "s3:GetObject"]),
    ("clamav_update", &["s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:ListBucket"]),
];

fn sqs_record(i: usize, body: &str) -> Value {
    sqs_delivery(i, body, 1)
}

/// A message on its `receive_count`th delivery.
fn sqs_delivery(i: usize, body: &str, receive_count: u32) -> Value {
    json!({"messageId": format!("m{i}"), "receiptHandle": format!("r{i}"), "body": body,
        "attributes": {"ApproximateReceiveCount": receive_count.to_string()}, "messageAttributes": {}, "eventSource": "aws:sqs"})
}

fn lambda_event<T: serde::de::DeserializeOwned>(payload: Value) -> lambda_runtime::LambdaEvent<T> {
    lambda_runtime::LambdaEvent::new(serde_json::from_value(payload).unwrap(), lambda_runtime::Context::default())
}

/// A template value as text: scalars as they are, intrinsics as `!Tag value`.
fn text(v: &serde_yaml::Value) -> String {
    match v {
        serde_yaml::Value::String(s) => s.clone(),
        serde_yaml::Value::Number(n) => n.to_string(),
        serde_yaml::Value::Tagged(t) => format!("{} {}", t.tag, text(&t.value)),
        serde_yaml::Value::Sequence(items) => items.iter().map(text).collect::<Vec<_>>().join(","),
        other => format!("{other:?}"),
    }
}

/// A template value that may be one item or a list, as texts.
fn texts(v: &serde_yaml::Value) -> Vec<String> {
    match v {
        serde_yaml::Value::Sequence(items) => items.iter().map(text).collect(),
        other => vec![text(other)],
    }
}

/// Issue 11.4: LocalStack does not enforce bucket policies, so the statement is
/// evaluated here, as IAM would, for each reader and each state of the status tag.
#[test]
fn the_bucket_policy_denies_reads_unless_ready() {
    let doc: serde_yaml::Value = serde_yaml::from_str(TEMPLATE).unwrap();
    let resources = &doc["Resources"];
    let bucket = &resources["UploadsBucket"]["Properties"];
    assert_eq!(text(&bucket["VersioningConfiguration"]["Status"]), "Enabled", "versions pin what was scanned");
    let logs = text(&bucket["LoggingConfiguration"]["DestinationBucketName"]);
    assert_eq!(logs, "!Ref AccessLogBucket", "access logs go to their own bucket");
    let statements =
        resources["UploadsBucketPolicy"]["Properties"]["PolicyDocument"]["Statement"].as_sequence().unwrap();
    let by_sid = |sid: &str| statements.iter().find(|s| text(&s["Sid"]) == sid).unwrap_or_else(|| panic!("{sid}"));
    assert_eq!(text(&by_sid("DenyOldTls")["Condition"]["NumericLessThan"]["s3:TlsVersion"]), "1.2");
    assert_eq!(text(&by_sid("DenyInsecureTransport")["Condition"]["Bool"]["aws:SecureTransport"]), "false");

    let deny = by_sid("DenyReadingUnlessReady");
    assert_eq!((text(&deny["Effect"]), text(&deny["Principal"])), ("Deny".into(), "*".into()));
    let actions = texts(&deny["Action"]);
    for a in ["s3:GetObject", "s3:GetObjectVersion"] {
        assert!(actions.contains(&a.to_owned()), "{a} not denied: {actions:?}");
    }
    let res = texts(&deny["Resource"]);
    for prefix in ["uploads/*", "thumbnails/*"] {
        assert!(res.iter().any(|r| r.ends_with(prefix)), "{prefix} not covered: {res:?}");
    }
    // IAM semantics: the statement applies when every condition holds; a negated
    // operator holds when the key is absent (an untagged version).
    let cond = deny["Condition"].as_mapping().unwrap();
    assert_eq!(cond.len(), 2, "exactly the tag rule and the exempt roles: {cond:?}");
    let tag_rule = texts(&deny["Condition"]["StringNotEquals"]["s3:ExistingObjectTag/hoist-status"]);
    let exempt = texts(&deny["Condition"]["ArnNotEquals"]["aws:PrincipalArn"]);
    let denied = |principal: &str, tag: Option<&str>| {
        let tag_differs = tag.is_none_or(|t| !tag_rule.iter().any(|r| r == t));
        let not_exempt = !exempt.iter().any(|e| e == &format!("!GetAtt {principal}.Arn"));
        tag_differs && not_exempt
    };
    // The download function signs the URLs anyone follows: only `ready` is readable.
    assert!(!denied("DownloadFunctionRole", Some("ready")));
    for tag in [None, Some("processing"), Some("quarantined"), Some("unscanned"), Some("failed")] {
        assert!(denied("DownloadFunctionRole", tag), "{tag:?} readable through a link");
        assert!(denied("SomeoneElse", tag), "{tag:?} readable by anyone");
    }
    // Processing must read what it has not judged yet; completion and the janitor HEAD it.
    for role in ["ProcessFunctionRole", "CompleteUploadFunctionRole", "CompanionFunctionRole", "JanitorFunctionRole"] {
        assert!(!denied(role, None), "{role} cannot read an unprocessed object");
    }
    // ...and nobody else is exempt.
    assert_eq!(exempt.len(), 4, "{exempt:?}");
}

/// Issue 11.6: processing is capped, the API and the authorizer keep capacity.
#[test]
fn the_template_caps_processing_and_reserves_the_api() {
    let doc: serde_yaml::Value = serde_yaml::from_str(TEMPLATE).unwrap();
    let r = &doc["Resources"];
    let process = &r["ProcessFunction"]["Properties"];
    assert_eq!(text(&process["ReservedConcurrentExecutions"]), "!Ref ProcessMaxConcurrency");
    assert_eq!(
        text(&process["Events"]["Jobs"]["Properties"]["ScalingConfig"]["MaximumConcurrency"]),
        "!Ref ProcessMaxConcurrency"
    );
    assert!(text(&doc["Globals"]["Function"]["ReservedConcurrentExecutions"]).contains("ApiReservedConcurrency"));
    assert!(text(&r["AuthorizerFunction"]["Properties"]["ReservedConcurrentExecutions"])
        .contains("AuthorizerReservedConcurrency"));
    // Every API function keeps the global reservation (none overrides it).
    for (name, res) in r.as_mapping().unwrap() {
        let events = res["Properties"]["Events"].as_mapping().cloned().unwrap_or_default();
        let is_api = events.values().any(|e| text(&e["Type"]) == "HttpApi");
        if is_api {
            assert!(res["Properties"]["ReservedConcurrentExecutions"].is_null(), "{} overrides it", text(name));
        }
    }
}
