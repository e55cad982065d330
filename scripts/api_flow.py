#!/usr/bin/env python3
"""The API flow a client runs, end to end, through `sam local start-api` (the real
template's routes and authorizer, the functions as `sam build` built them, in SAM's Lambda
emulator) and then through the dev server, and a check that both answer identically.

The flow: create -> sign -> PUT each part straight to S3 (checksum-pinned) -> record ->
status -> complete -> processed -> status `ready` -> link -> download (bytes compared) ->
list; an EICAR upload ends `quarantined` and its link is refused; the Companion routes
Uppy uses (create, sign, list parts, complete) end in a processed file; and bad requests
get their problem+json (a path in the filename, no token, someone else's upload).

Processing: SAM has no SQS event source. Under SAM the jobs the queue really holds are
received here and handed to `sam local invoke ProcessFunction` as an SQS event (the
function's clamd is the ClamAV layer's, started by its extension); messages the function
does not report as failed are deleted, as Lambda's event source mapping does. Under the
dev server its own pollers do the same.

Each answer is reduced to what must match across the two servers (status code, content
type, the body's field names, problem `title`s, upload statuses); ids, URLs and times
differ by nature and are left out. Run with LocalStack's venv (boto3).
"""
import argparse
import base64
import hashlib
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

import boto3

EICAR = rb"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
PART = 5 * 1024 * 1024


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *a, **k):
        return None


OPENER = urllib.request.build_opener(NoRedirect)


def http(method, url, token=None, body=None, headers=None, raw=None):
    h = dict(headers or {})
    data = raw
    if body is not None:
        data = json.dumps(body).encode()
        h["content-type"] = "application/json"
    if token:
        h["authorization"] = f"Bearer {token}"
    req = urllib.request.Request(url, data=data, method=method, headers=h)
    try:
        with OPENER.open(req, timeout=120) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


class Flow:
    def __init__(self, name, base, token, process):
        self.name, self.base, self.token, self.process = name, base, token, process
        self.trace = []

    def call(self, step, method, path, body=None, token="own", expect=None):
        tok = self.token if token == "own" else token
        status, headers, data = http(method, self.base + path, tok, body)
        ctype = headers.get("Content-Type", headers.get("content-type", "")).split(";")[0]
        try:
            doc = json.loads(data) if data else None
        except ValueError:
            doc = None
        shape = {"status": status, "type": ctype}
        if isinstance(doc, dict):
            shape["fields"] = sorted(doc)
            if isinstance(doc.get("message"), str):  # API Gateway's own answers
                shape["body.message"] = doc["message"]
            for k in ("title", "status"):
                if isinstance(doc.get(k), (str, int)) and (k == "status" or ctype == "application/problem+json"):
                    shape[f"body.{k}"] = doc[k]
        elif isinstance(doc, list):
            shape["items"] = len(doc)
        self.trace.append((step, shape))
        if expect is not None and status != expect:
            raise SystemExit(f"[{self.name}] {step}: {method} {path} -> {status}, expected {expect}: {data[:400]!r}")
        return doc, headers

    def note(self, step, value):
        self.trace.append((step, value))

    def upload(self, label, payload):
        """create, sign, PUT, record, status, complete; returns the upload id."""
        parts = [payload[i:i + PART] for i in range(0, len(payload), PART)] or [b""]
        sums = [base64.b64encode(hashlib.sha256(p).digest()).decode() for p in parts]
        up, _ = self.call(f"{label}: create", "POST", "/uploads", {
            "filename": f"{label} résumé (final) v2.bin", "size": len(payload),
            "content_type": "application/octet-stream", "part_size": PART,
            "part_checksums": "SHA256", "sha256": hashlib.sha256(payload).hexdigest()}, expect=201)
        uid = up["id"]
        signed, _ = self.call(f"{label}: sign", "POST", f"/uploads/{uid}/parts/sign",
                              {"parts": [{"number": n + 1, "sha256": s} for n, s in enumerate(sums)]}, expect=200)
        recorded = []
        for p in signed["parts"]:
            n = p["number"]
            status, headers, _ = http("PUT", p["url"], raw=parts[n - 1],
                                      headers={"x-amz-checksum-sha256": sums[n - 1], **p.get("headers", {})})
            self.note(f"{label}: S3 PUT part {n}", status)
            if status != 200:
                raise SystemExit(f"[{self.name}] S3 refused part {n}: {status}")
            recorded.append({"number": n, "etag": headers.get("ETag", headers.get("etag")), "size": len(parts[n - 1])})
        self.call(f"{label}: record", "PUT", f"/uploads/{uid}/parts", {"parts": recorded}, expect=200)
        st, _ = self.call(f"{label}: status before complete", "GET", f"/uploads/{uid}", expect=200)
        self.note(f"{label}: missing parts", st.get("missing_parts"))
        self.call(f"{label}: complete", "POST", f"/uploads/{uid}/complete", expect=200)
        return uid

    def settle(self, label, uid, kind="uploads"):
        deadline = time.time() + 240
        while True:
            self.process()
            st, _ = self.call(f"{label}: status", "GET", f"/{kind}/{uid}", expect=200)
            self.trace.pop()  # polling answers vary in number; the final one is recorded below
            if st["status"] not in ("completing", "processing", "open"):
                self.call(f"{label}: final status", "GET", f"/{kind}/{uid}", expect=200)
                self.note(f"{label}: verdict", st["status"])
                return st
            if time.time() > deadline:
                raise SystemExit(f"[{self.name}] {label} still {st['status']} after 240 s")
            time.sleep(1)

    def run(self):
        clean = os.urandom(PART + 123_456)  # two parts
        cid = self.upload("clean", clean)
        st = self.settle("clean", cid)
        assert st["status"] == "ready", st
        link, _ = self.call("clean: link", "POST", f"/files/{cid}/links", {"expires_in": 600}, expect=201)
        status, headers, _ = http("GET", link["url"])
        self.note("clean: link answers", status)
        assert status == 302, (status, headers)
        location = headers.get("Location") or headers.get("location")
        got = urllib.request.urlopen(location, timeout=60).read()
        assert hashlib.sha256(got).digest() == hashlib.sha256(clean).digest(), "downloaded bytes differ"
        self.note("clean: downloaded bytes identical", True)
        files, _ = self.call("files: list", "GET", "/files", expect=200)
        self.note("files: the clean file is listed", any(f["id"] == cid for f in files["files"]))

        eid = self.upload("eicar", EICAR)
        st = self.settle("eicar", eid)
        assert st["status"] == "quarantined", st
        self.call("eicar: link refused", "POST", f"/files/{eid}/links", {"expires_in": 600})

        # Uppy's Companion routes (the web page's path).
        payload = os.urandom(PART + 4_321)
        created, _ = self.call("companion: create", "POST", "/s3/multipart",
                               {"filename": "photo 2026 (1).bin", "type": "application/octet-stream",
                                "metadata": {}}, expect=200)
        up, key = created["uploadId"], created["key"]
        q = "?key=" + urllib.request.quote(key, safe="")
        etags = []
        for n, chunk in enumerate([payload[:PART], payload[PART:]], start=1):
            signed, _ = self.call(f"companion: sign part {n}", "GET",
                                  f"/s3/multipart/{urllib.request.quote(up, safe='')}/{n}{q}", expect=200)
            status, headers, _ = http("PUT", signed["url"], raw=chunk)
            self.note(f"companion: S3 PUT part {n}", status)
            etags.append({"PartNumber": n, "ETag": headers.get("ETag", headers.get("etag"))})
        listed, _ = self.call("companion: list parts", "GET", f"/s3/multipart/{urllib.request.quote(up, safe='')}{q}",
                              expect=200)
        self.note("companion: parts listed", len(listed))
        self.call("companion: complete", "POST", f"/s3/multipart/{urllib.request.quote(up, safe='')}/complete{q}",
                  {"parts": etags}, expect=200)
        companion_id = key.rsplit("/", 1)[-1]
        st = self.settle("companion", companion_id)
        assert st["status"] == "ready", st

        # Bad input: clear errors, never a 500.
        self.call("bad: a path in the filename", "POST", "/uploads", {
            "filename": "../etc/passwd", "size": 10, "content_type": "application/octet-stream"}, expect=422)
        self.call("bad: no token", "GET", "/files", token=None, expect=403)
        other = self.other_token
        self.call("bad: someone else's upload", "GET", f"/uploads/{cid}", token=other, expect=404)
        self.call("bad: unknown route", "GET", "/nope")
        return self.trace


# Process invocations whose extension loaded the definitions from S3 (each is a cold start).
SAM_PROCESS_LOADED_FROM_S3 = []

# Where SAM's start-api answers otherwise than API Gateway (HTTP API); the dev server
# answers as API Gateway does. For a path no route matches, SAM runs the authorizer and
# answers 403; API Gateway answers 404 {"message":"Not Found"}.
SAM_DIFFERS = {
    # Both 403 with a JSON {"message"}: API Gateway (HTTP API) says "Forbidden", SAM says
    # what a REST API says.
    "bad: no token": {
        "sam": {"status": 403, "type": "application/json", "body.message": "User is not authorized to access this resource"},
        "dev": {"status": 403, "type": "application/json", "body.message": "Forbidden"},
    },
    "bad: unknown route": {
        "sam": {"status": 403},
        "dev": {"status": 404, "type": "application/json", "body.message": "Not Found"},
    },
}


def sam_processor(command, queue_url):
    """Receives the queue's real messages and runs them through `sam local invoke`."""
    sqs = boto3.client("sqs", endpoint_url=os.environ["AWS_ENDPOINT_URL_SQS"])
    attrs = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]
    loaded_from_s3 = SAM_PROCESS_LOADED_FROM_S3

    def process():
        got = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=1, WaitTimeSeconds=3,
                                  AttributeNames=["All"], MessageAttributeNames=["All"])
        for m in got.get("Messages", []):
            record = {
                "messageId": m["MessageId"], "receiptHandle": m["ReceiptHandle"], "body": m["Body"],
                "attributes": m.get("Attributes", {}), "messageAttributes": {},
                "md5OfBody": m["MD5OfBody"], "eventSource": "aws:sqs",
                "eventSourceARN": attrs["QueueArn"], "awsRegion": os.environ["AWS_REGION"],
            }
            with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
                json.dump({"Records": [record]}, f)
            out = subprocess.run(shlex.split(command) + ["-e", f.name], capture_output=True, text=True)
            os.unlink(f.name)
            if out.returncode != 0:
                raise SystemExit(f"sam local invoke ProcessFunction failed:\n{out.stderr[-3000:]}")
            answer = json.loads(out.stdout.strip().splitlines()[-1])
            if not answer.get("batchItemFailures"):
                sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=m["ReceiptHandle"])
            job = json.loads(m["Body"])
            said = [line.strip()[:300] for line in out.stderr.splitlines()
                    if '"processed"' in line or '"level":"WARN"' in line and "root CA" not in line
                    or '"level":"ERROR"' in line or "clamd ready" in line]
            print(f"  process {job.get('upload_id', m['Body'][:80])}: {answer}", file=sys.stderr)
            for line in said:
                print(f"    {line}", file=sys.stderr)
            # Each `sam local invoke` is a cold start: each must have loaded from S3.
            if "definition files from s3://" not in out.stderr:
                raise SystemExit(f"process did not load its definitions from S3:\n{out.stderr[-3000:]}")
            loaded_from_s3.append(m["MessageId"])
    return process


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sam", required=True, help="sam local start-api base URL")
    ap.add_argument("--sam-token", required=True)
    ap.add_argument("--sam-other-token", required=True)
    ap.add_argument("--process", required=True, help="the sam local invoke ProcessFunction command")
    ap.add_argument("--dev", required=True, help="dev server base URL")
    ap.add_argument("--dev-command", required=True, help="starts the dev server on that URL")
    ap.add_argument("--dev-log", required=True)
    ap.add_argument("--dev-token", required=True)
    ap.add_argument("--dev-other-token", required=True)
    a = ap.parse_args()
    queue = os.environ["HOIST_QUEUE_URL"]

    sam = Flow("sam", a.sam, a.sam_token, sam_processor(a.process, queue))
    sam.other_token = a.sam_other_token
    sam_trace = sam.run()
    if not SAM_PROCESS_LOADED_FROM_S3:
        raise SystemExit("api-flow: no process invocation loaded its ClamAV definitions from S3")
    print(f"api-flow: {len(sam_trace)} steps through sam local start-api passed "
          f"({len(SAM_PROCESS_LOADED_FROM_S3)} process cold starts loaded the definitions from S3)", file=sys.stderr)

    # Started only now: its pollers would take the jobs the SAM flow hands to SAM.
    server = subprocess.Popen(shlex.split(a.dev_command), stdout=subprocess.DEVNULL,
                              stderr=open(a.dev_log, "w"), start_new_session=True)
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(a.dev + "/files", timeout=1)
            except urllib.error.HTTPError:
                break
            except OSError:
                time.sleep(0.2)
        dev = Flow("dev", a.dev, a.dev_token, lambda: None)
        dev.other_token = a.dev_other_token
        dev_trace = dev.run()
    finally:
        os.killpg(server.pid, 15)
        server.wait()
    print(f"api-flow: {len(dev_trace)} steps through the dev server passed", file=sys.stderr)

    # Where SAM's emulator itself differs from API Gateway, each side is checked against
    # what it must answer, and the step is left out of the comparison.
    for step, want in SAM_DIFFERS.items():
        for name, trace in (("sam", sam_trace), ("dev", dev_trace)):
            got = dict(trace)[step]
            if {k: got.get(k) for k in want[name]} != want[name]:
                raise SystemExit(f"api-flow: {name} answered {step!r} with {got}, expected {want[name]}")
    sam_trace = [t for t in sam_trace if t[0] not in SAM_DIFFERS]
    dev_trace = [t for t in dev_trace if t[0] not in SAM_DIFFERS]
    differ = [(s, d) for s, d in zip(sam_trace, dev_trace) if s != d]
    if differ or len(sam_trace) != len(dev_trace):
        for s, d in differ:
            print(f"  differ at {s[0]!r}:\n    sam: {s[1]}\n    dev: {d[1]}", file=sys.stderr)
        raise SystemExit(f"api-flow: the two servers answered differently ({len(differ)} steps)")
    print(f"api-flow: sam local start-api and the dev server answered all {len(sam_trace)} steps identically",
          file=sys.stderr)


if __name__ == "__main__":
    main()
