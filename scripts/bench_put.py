#!/usr/bin/env python3
"""`hoist put` against the AWS CLI and rclone on the stack `make dev` runs
(bench/put_throughput.md).

Protocol (issue 13): one random file (HOIST_BENCH_MIB, default 1024 MiB) uploaded by each
tool RUNS times (default 5), 16 MiB parts and 8 in flight for all, in rotating order
(round r starts with the r-th tool), each to the same LocalStack: `hoist put`, `hoist put
--sha256` (also the whole-file hash), the AWS CLI, rclone, and two bounds (`put_oracle`):
S3's share of a SHA-256-pinned upload with nothing else, its parts hashed before the
clock, and the same with each part hashed inside the clock as any pinning client must.
HOIST_BENCH_TOOLS (e.g. `hoist,aws`) runs only some of them. The API is served as
`make dev` serves it: the release `hoist-dev serve` with its default processing workers.
Between runs: the processing of a hoist upload has finished, the object is deleted, and
the machine is idle again (under 25 % of both cores busy for a second). The file is
read once before the first round, so every tool reads it from the page cache.

Then `--capture` mode (run by scripts/bench.sh once, small file): every tool uploads
through a logging TCP relay, which records what each request carries (checksums, the
payload hash, signed headers, encodings), for the report's "what each tool sends".

Prints Markdown. Needs the local stack up, `AWS_CLI` (scripts/bench.sh installs the AWS
CLI in its own venv), rclone and GNU time (Debian packages), the release `hoist` and the
release `hoist-dev` built. Runs under a Python with boto3 ($HOIST_BOTO_PYTHON).
"""
import contextlib
import json
import shutil
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

import boto3

MIB = 1 << 20
SIZE_MIB = int(os.environ.get("HOIST_BENCH_MIB", "1024"))
RUNS = int(os.environ.get("RUNS", "5"))
PART_MIB, CONCURRENCY = 16, 8
PORT = int(os.environ.get("HOIST_BENCH_API_PORT", "8798"))
TARGET = os.environ["CARGO_TARGET_DIR"]
HOIST = os.path.join(TARGET, "release", "hoist")
DEV = os.path.join(TARGET, "release", "hoist-dev")  # as scripts/dev.sh runs it
S3_URL = os.environ["AWS_ENDPOINT_URL_S3"]
BUCKET = os.environ["HOIST_BUCKET"]
AWS = os.environ["AWS_CLI"]
s3 = boto3.client("s3", endpoint_url=S3_URL)


def start_api(port, env=None):
    log = open(os.path.join(tempfile.gettempdir(), f"hoist-bench-api-{port}.log"), "wb")
    p = subprocess.Popen([DEV, "serve", "--port", str(port)], stdout=log, stderr=log, env=env or os.environ)
    for _ in range(300):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return p
        except OSError:
            time.sleep(0.1)
    p.kill()
    sys.exit(f"the API did not start on {port}")


def token(owner):
    return subprocess.run([DEV, "token", owner], capture_output=True, text=True, check=True).stdout.strip()


def api_get(port, tok, path):
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers={"authorization": f"Bearer {tok}"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.load(r)


def cpu_busy(seconds=1.0):
    def sample():
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
        return sum(v), v[3] + v[4]
    t0, i0 = sample()
    time.sleep(seconds)
    t1, i1 = sample()
    return 1.0 - (i1 - i0) / max(1, t1 - t0)


def settle():
    """Waits until the machine is idle (or 60 s have passed)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and cpu_busy() > 0.25:
        pass


def delete_key(key):
    versions = s3.list_object_versions(Bucket=BUCKET, Prefix=key)
    for v in versions.get("Versions", []) + versions.get("DeleteMarkers", []):
        if v["Key"] == key:
            s3.delete_object(Bucket=BUCKET, Key=key, VersionId=v["VersionId"])


SERVERS = {"localstack_server.py": "LocalStack", "moto": "moto", "hoist-dev": "dev server", "clamd": "clamd"}
CPU = {}  # the last run's CPU seconds by component


def server_cpu():
    """CPU seconds used so far by each process of the stack, by pid."""
    out, tick = {}, os.sysconf("SC_CLK_TCK")
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmd = open(f"/proc/{pid}/cmdline", "rb").read().replace(b"\0", b" ").decode(errors="replace")
            stat = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # By its launcher: the venv path of the Python running this script says "localstack" too.
        name = next((n for k, n in SERVERS.items() if k in cmd), None) if int(pid) != os.getpid() else None
        if name:
            out[pid] = (name, (int(stat[11]) + int(stat[12])) / tick)
    return out


def timed(cmd, env):
    """Runs cmd under GNU time: (seconds, peak RSS MiB, stdout); CPU by component in CPU."""
    with tempfile.NamedTemporaryFile() as rss:
        before = server_cpu()
        t0 = time.monotonic()
        p = subprocess.run(["/usr/bin/time", "-f", "%M %U %S", "-o", rss.name] + cmd, env=env, capture_output=True,
                           text=True)
        secs = time.monotonic() - t0
        after = server_cpu()
        if p.returncode != 0:
            sys.exit(f"{cmd[0]} failed: {p.stderr[-2000:]}")
        peak_kib, user, system = open(rss.name).read().split()[-3:]
        CPU.clear()
        CPU["client"] = float(user) + float(system)
        for pid, (name, used) in after.items():
            CPU[name] = CPU.get(name, 0.0) + used - before.get(pid, (name, 0.0))[1]
        return secs, int(peak_kib) / 1024, p.stdout


def aws_env(tmp, endpoint):
    cfg = os.path.join(tmp, f"aws-config-{endpoint.rsplit(':', 1)[-1]}")
    with open(cfg, "w") as f:
        f.write("[default]\nregion = us-east-1\ns3 =\n"
                f"  multipart_threshold = {PART_MIB}MB\n  multipart_chunksize = {PART_MIB}MB\n"
                f"  max_concurrent_requests = {CONCURRENCY}\n")
    return dict(os.environ, AWS_CONFIG_FILE=cfg)


def rclone_env(endpoint):
    # The AWS SDK for Go that rclone uses refuses AWS_CA_BUNDLE with rclone's own HTTP
    # transport (some machines set it); the endpoint is plain HTTP anyway.
    env = {k: v for k, v in os.environ.items() if k != "AWS_CA_BUNDLE"}
    return dict(env, RCLONE_CONFIG_BENCH_TYPE="s3", RCLONE_CONFIG_BENCH_PROVIDER="Other",
                RCLONE_CONFIG_BENCH_ENDPOINT=endpoint, RCLONE_CONFIG_BENCH_ACCESS_KEY_ID=os.environ["AWS_ACCESS_KEY_ID"],
                RCLONE_CONFIG_BENCH_SECRET_ACCESS_KEY=os.environ["AWS_SECRET_ACCESS_KEY"],
                RCLONE_CONFIG_BENCH_REGION=os.environ["AWS_REGION"], RCLONE_CONFIG_BENCH_FORCE_PATH_STYLE="true")


class Tools:
    """The three uploaders, each given the same file, part size and concurrency."""

    def __init__(self, tmp, api_port, s3_endpoint):
        self.tmp, self.api_port, self.s3_endpoint = tmp, api_port, s3_endpoint
        self.owner = f"bench-{os.getpid()}-{api_port}"
        self.token = token(self.owner)

    def hoist(self, path, n, binary=HOIST, extra=()):
        env = dict(os.environ, HOIST_URL=f"http://127.0.0.1:{self.api_port}", HOIST_TOKEN=self.token,
                   HOIST_STATE_DIR=os.path.join(self.tmp, "state"))
        secs, rss, out = timed([binary, "--json", "put", "-j", str(CONCURRENCY), "--part-size",
                                str(PART_MIB * MIB), *extra, path], env)
        result = json.loads(out.strip().splitlines()[-1])
        # Processing (the windows of a large file) must be over before the next run.
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            status = api_get(self.api_port, self.token, f"/uploads/{result['id']}")["status"]
            if status not in ("completing", "processing"):
                break
            time.sleep(0.5)
        result["final_status"] = status
        delete_key(f"uploads/{result['id']}")
        return secs, rss, result

    def hoist_sha256(self, path, n):
        """`hoist put --sha256`: also the whole-file SHA-256, hashed beside the sending."""
        return self.hoist(path, n, extra=("--sha256",))

    def oracle(self, path, n, extra=()):
        """S3's share of a SHA-256-pinned upload alone (tests/benches/put_oracle.rs): the
        bound on what any such client can reach on this S3. Its own clock: the span from
        CreateMultipartUpload to CompleteMultipartUpload, file read and hashed before."""
        key = f"bench/oracle-{os.getpid()}-{n}{''.join(extra)}"
        _, rss, out = timed([oracle_binary(), path, key, *extra], os.environ)
        delete_key(key)
        return json.loads(out.strip().splitlines()[-1])["secs"], rss, None

    def oracle_hashing(self, path, n):
        """The bound for a client that hashes each part inside the clock, just before
        signing it, as every pinning client must (`put_oracle --hash-in-clock`)."""
        return self.oracle(path, n, extra=("--hash-in-clock",))

    def before(self, path, n):
        """An earlier build of the CLI (HOIST_BEFORE_BIN), to show what a change did."""
        return self.hoist(path, n, os.environ["HOIST_BEFORE_BIN"])

    def aws(self, path, n):
        key = f"bench/aws-{os.getpid()}-{n}"
        secs, rss, _ = timed([AWS, "s3", "cp", "--no-progress", "--endpoint-url", self.s3_endpoint, path,
                              f"s3://{BUCKET}/{key}"], aws_env(self.tmp, self.s3_endpoint))
        delete_key(key)
        return secs, rss, None

    def rclone(self, path, n):
        key = f"bench/rclone-{os.getpid()}-{n}"
        secs, rss, _ = timed(["rclone", "copyto", "--s3-chunk-size", f"{PART_MIB}M", "--s3-upload-concurrency",
                              str(CONCURRENCY), "--s3-upload-cutoff", f"{PART_MIB}M", path, f"bench:{BUCKET}/{key}"],
                             rclone_env(self.s3_endpoint))
        delete_key(key)
        return secs, rss, None


def oracle_binary():
    """The put_oracle bench, built once (release, as `cargo bench` builds it)."""
    if not ORACLE:
        out = subprocess.run(["cargo", "bench", "-q", "-p", "hoist-e2e", "--bench", "put_oracle", "--no-run",
                              "--message-format=json"], capture_output=True, text=True, check=True).stdout
        ORACLE.append(next(m["executable"] for m in map(json.loads, out.splitlines())
                           if m.get("reason") == "compiler-artifact" and m.get("executable")
                           and m["target"]["name"] == "put_oracle"))
    return ORACLE[0]


ORACLE = []


def random_file(tmp, mib):
    path = os.path.join(tmp, f"bench-{mib}.bin")
    with open(path, "wb") as f:
        for _ in range(mib):
            f.write(os.urandom(MIB))
    with open(path, "rb") as f:  # into the page cache, for every tool alike
        while f.read(8 * MIB):
            pass
    return path


@contextlib.contextmanager
def session(prefix, port, mib, s3_endpoint=S3_URL, env=None):
    """A dev server on `port` (as `make dev` runs it), the three tools and a random file
    of `mib` MiB in a temporary folder; all gone afterwards."""
    tmp = tempfile.mkdtemp(prefix=prefix)
    api = start_api(port, env)
    try:
        yield Tools(tmp, port, s3_endpoint), random_file(tmp, mib)
    finally:
        api.terminate()
        api.wait()
        shutil.rmtree(tmp, ignore_errors=True)


def spread(xs):
    return f"{min(xs):.2f}–{max(xs):.2f}"


def throughput():
    oracle_binary()  # built before the first round, not inside it
    with session("hoist-bench-put-", PORT, SIZE_MIB) as (tools, path):
        names = ["hoist", "hoist_sha256", "aws", "rclone", "oracle", "oracle_hashing"] + (["before"] if os.environ.get("HOIST_BEFORE_BIN") else [])
        # HOIST_BENCH_TOOLS=hoist,before,aws: a quicker comparison of a few of them.
        names = [n for n in names if n in os.environ.get("HOIST_BENCH_TOOLS", ",".join(names)).split(",")]
        runs = {n: [] for n in names}
        cpu = {n: [] for n in names}
        for r in range(RUNS):
            order = names[r % len(names):] + names[:r % len(names)]
            for name in order:
                settle()
                secs, rss, extra = getattr(tools, name)(path, r)
                runs[name].append((secs, rss, extra))
                cpu[name].append(dict(CPU))
                print(f"round {r + 1}: {name} {secs:.2f} s", file=sys.stderr)
    med = {n: statistics.median(s for s, _, _ in runs[n]) for n in names}
    label = {"hoist": "`hoist put` (SHA-256 of every part pinned)",
             "hoist_sha256": "`hoist put --sha256` (also the whole-file SHA-256, hashed beside the sending)",
             "oracle_hashing": "the bound for a pinning client: as the line above, each part hashed inside the "
                               "clock just before it is signed (`put_oracle --hash-in-clock`)",
             "before": f"`hoist put`, {os.environ.get('HOIST_BEFORE_LABEL', 'the earlier build')}",
             "aws": "`aws s3 cp` (awscli 1.46, botocore defaults)", "rclone": "`rclone copyto` (Debian's 1.60, defaults)",
             "oracle": "the bound: S3's share alone, SHA-256-pinned parts streamed from the file, hashed beforehand (`put_oracle`)"}
    print(f"## Upload throughput: {SIZE_MIB} MiB of random bytes, {PART_MIB} MiB parts, {CONCURRENCY} in flight\n")
    print(f"{RUNS} runs per tool in rotating order on the `make dev` stack (LocalStack S3, the release dev server "
          "with its 2 processing workers); processing finished and the machine idle between runs.\n")
    print("| tool | runs (s) | median s | min–max s | MiB/s (median) | peak RSS, median |")
    print("|---|---|---|---|---|---|")
    for n in names:
        secs = [s for s, _, _ in runs[n]]
        rss = statistics.median(m for _, m, _ in runs[n])
        print(f"| {label[n]} | {', '.join(f'{s:.2f}' for s in secs)} | **{med[n]:.2f}** | {spread(secs)} | "
              f"{SIZE_MIB / med[n]:.0f} | {rss:.1f} MiB |")
    def ratio(a, b):  # throughput of a over b, from the median times
        return f"{med[b] / med[a]:.2f}x" if a in med and b in med else "not run"
    if "before" in med:
        print(f"\nhoist / the earlier build: {ratio('hoist', 'before')}")
    print(f"\n**hoist / aws: {ratio('hoist', 'aws')}** (target ≥ 1.2); "
          f"**hoist / rclone: {ratio('hoist', 'rclone')}** (target ≥ 1.5): ratios of median throughput. "
          f"With `--sha256`: {ratio('hoist_sha256', 'aws')} the AWS CLI, {ratio('hoist_sha256', 'rclone')} rclone.\n")
    print(f"The bounds against the AWS CLI: S3's share alone (parts hashed before the clock) "
          f"{ratio('oracle', 'aws')}; with each part hashed inside the clock, as a pinning client must, "
          f"{ratio('oracle_hashing', 'aws')}. hoist / the second bound: {ratio('hoist', 'oracle_hashing')}. The "
          "bounds make no API calls, record nothing and time only the span from CreateMultipartUpload to "
          "CompleteMultipartUpload.\n")
    hoisted = [extra for n in ("hoist", "hoist_sha256") for _, _, extra in runs.get(n, [])]
    if hoisted:
        statuses = sorted({extra["final_status"] for extra in hoisted})
        print(f"Every hoist upload ended `{'`, `'.join(statuses)}` after processing.\n")
    keys = ["first_byte_ms", "create_ms", "part_hashing_ms", "whole_hash_ms", "whole_hash_wait_ms", "sign_calls",
            "sign_ms", "put_ms", "record_calls", "record_ms", "complete_ms"]
    print("`hoist put`'s own breakdown (`--json` timings; medians of the runs; work in parallel adds up, so sums "
          "exceed the wall clock):\n")
    print("| run | " + " | ".join(keys) + " |")
    print("|---|" + "---|" * len(keys))
    for n in ("hoist", "hoist_sha256"):
        if n in runs:
            print(f"| {n} | " + " | ".join(f"{statistics.median(e['timings'][k] for _, _, e in runs[n]):.0f}"
                                         for k in keys) + " |")
    parts = ["client"] + list(SERVERS.values())
    print("\nCPU seconds used during each run, by component (medians; 2 cores = 2 CPU-s per second of wall "
          "clock). The client's count is its own (user + system); the stack's is read from /proc:\n")
    print("| tool | wall s | " + " | ".join(parts) + " |")
    print("|---|---|" + "---|" * len(parts))
    for n in names:
        print(f"| {n} | {med[n]:.2f} | " + " | ".join(
            f"{statistics.median(c.get(k, 0.0) for c in cpu[n]):.2f}" for k in parts) + " |")
    print(f"\nmachine: {os.cpu_count()} cores, {os.uname().machine}, {time.strftime('%Y-%m-%d', time.gmtime())}; "
          "LocalStack, moto, clamd, the dev server and the client share the cores")


# --- what each tool sends ------------------------------------------------------------

HEAD = re.compile(rb"(PUT|POST|GET|HEAD|DELETE) (\S+) HTTP/1\.1\r\n((?:[^\r\n]+\r\n)*?)\r\n")
SHOWN = ("content-md5", "x-amz-content-sha256", "x-amz-checksum-", "x-amz-sdk-checksum-algorithm", "x-amz-trailer",
         "content-encoding", "transfer-encoding", "x-amz-decoded-content-length", "expect", "x-amz-meta-")


class Relay:
    """A TCP relay to LocalStack that records the head of every request sent through it."""

    def __init__(self, target_port):
        self.heads, self.target = [], ("127.0.0.1", target_port)
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self):
        while True:
            client, _ = self.sock.accept()
            upstream = socket.create_connection(self.target)
            threading.Thread(target=self.pipe, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self.pipe, args=(upstream, client, False), daemon=True).start()

    def pipe(self, src, dst, record):
        tail = b""
        try:
            while data := src.recv(1 << 16):
                dst.sendall(data)
                if record:
                    buf = tail + data
                    end = 0
                    for m in HEAD.finditer(buf):
                        self.heads.append((m.group(1).decode(), m.group(2).decode(), m.group(3).decode("latin-1")))
                        end = m.end()
                    tail = buf[max(end, len(buf) - 16384):]
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


def describe(heads):
    """One line per kind of request: how many, and what the part uploads carry."""
    kinds, part, create = {}, None, []
    for method, target, headers in heads:
        path, _, query = target.partition("?")
        if method == "POST" and query.startswith("uploads"):
            create = [ln for ln in headers.split("\r\n") if ln.lower().startswith(SHOWN)]
        is_part = method == "PUT" and "partNumber=" in query
        if is_part:
            kind = "UploadPart"
        else:
            what = f"?{query.split('=')[0]}" if query else ("object" if "/" in path.strip("/") else "bucket")
            kind = f"{method} {what}"
        kinds[kind] = kinds.get(kind, 0) + 1
        if is_part and part is None:
            shown = [ln for ln in headers.split("\r\n") if ln.lower().startswith(SHOWN)]
            signed = re.search(r"SignedHeaders=([^,\s&]+)", headers + "&" + query)
            signed = signed and urllib.request.unquote(signed.group(1)).replace(";", ", ")
            part = shown, signed
    return kinds, part, create


def capture():
    relay = Relay(int(S3_URL.rsplit(":", 1)[1]))
    endpoint = f"http://127.0.0.1:{relay.port}"
    # A dev server whose S3 endpoint is the relay: the part URLs it signs point there.
    env = dict(os.environ, AWS_ENDPOINT_URL_S3=endpoint)
    with session("hoist-bench-capture-", PORT + 1, 3 * PART_MIB - 8, endpoint, env) as (tools, path):
        print("## What each tool sends (one upload of 40 MiB = 3 parts through a logging relay)\n")
        for name in ["hoist", "aws", "rclone"]:
            relay.heads.clear()
            getattr(tools, name)(path, 0)
            kinds, part, create = describe(relay.heads)
            shown, signed = part or ([], None)
            print(f"- **{name}**: requests to S3 {', '.join(f'{k} x{v}' for k, v in sorted(kinds.items()))}")
            print(f"  - each UploadPart carries: {'; '.join(f'`{h}`' for h in shown) or 'no checksum headers'}")
            print(f"  - signed headers: {signed or 'none'}")
            if create:
                print(f"  - CreateMultipartUpload carries: {'; '.join(f'`{h}`' for h in create)}")
    print("\n(hoist's requests to S3 other than UploadPart are the dev server's own: create, list parts, complete,"
          " tagging, processing reads.)")


# --- where the time goes ----------------------------------------------------------------

def sha_ranges(binary):
    """Address ranges of `binary`'s SHA-256 code (the release binary is stripped: its
    SHA-256 is found by SHA-NI's instructions, clustered, with a little slack)."""
    out = subprocess.run(["objdump", "-d", "--no-show-raw-insn", binary], capture_output=True, text=True).stdout
    hits = sorted(int(line.split(":")[0], 16) for line in out.splitlines() if re.search(r"\bsha256(rnds2|msg1|msg2)\b", line))
    ranges = []
    for addr in hits:
        if ranges and addr - ranges[-1][1] < 0x1000:
            ranges[-1][1] = addr
        else:
            ranges.append([addr, addr])
    # perf names a stripped binary's samples by file offset: map the ranges back.
    segments = subprocess.run(["readelf", "-lW", binary], capture_output=True, text=True).stdout
    load = next(line.split() for line in segments.splitlines() if line.strip().startswith("LOAD") and " E " in line)
    shift = int(load[2], 16) - int(load[1], 16)
    return [(lo - shift - 0x200, hi - shift + 0x200) for lo, hi in ranges]


def profile():
    """perf on `hoist put` and py-spy on LocalStack during one 1 GiB upload."""
    with session("hoist-bench-profile-", PORT, SIZE_MIB) as (tools, path):
        tmp = os.path.dirname(path)
        localstack = next(pid for pid, (name, _) in server_cpu().items() if name == "LocalStack")
        spy_out = os.path.join(tmp, "localstack.txt")
        settle()
        spy = subprocess.Popen([os.environ["PY_SPY"], "record", "--pid", str(localstack), "--rate", "200", "--format",
                                "raw", "--nonblocking", "-o", spy_out], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(1)
        perf_out = os.path.join(tmp, "perf.data")
        env = dict(os.environ, HOIST_URL=f"http://127.0.0.1:{PORT}", HOIST_TOKEN=tools.token,
                   HOIST_STATE_DIR=os.path.join(tmp, "state"))
        run = subprocess.run(["perf", "record", "-e", "cpu-clock", "-F", "999", "-o", perf_out, HOIST, "--json", "put",
                              "-j", str(CONCURRENCY), "--part-size", str(PART_MIB * MIB), path], env=env,
                             capture_output=True, text=True, check=True)
        spy.send_signal(2)
        spy.wait(timeout=60)
        result = json.loads(run.stdout.strip().splitlines()[-1])
        report = subprocess.run(["perf", "report", "-i", perf_out, "--no-children", "--sort", "dso,sym", "--stdio"],
                                capture_output=True, text=True).stdout
        spied = open(spy_out).read().splitlines()
        delete_key(f"uploads/{result['id']}")
    ranges = sha_ranges(HOIST)
    split = {}
    for line in report.splitlines():
        m = re.match(r"\s+([\d.]+)%\s+(\S+)\s+\[(.)\]\s+(\S+)", line)
        if not m:
            continue
        pct, dso, kind, sym = float(m.group(1)), m.group(2), m.group(3), m.group(4)
        if kind == "k":
            what = {"_copy_to_iter": "kernel: copying file pages to the client (read)",
                    "_copy_from_iter": "kernel: copying into socket buffers (send)"}.get(sym, "kernel: other (TCP, scheduling, page cache)")
        elif dso == "hoist" and sym.startswith("0x") and any(a <= int(sym, 16) < b for a, b in ranges):
            what = "SHA-256 (sha2, SHA-NI): each part's"
        elif "memmove" in sym or "memcpy" in sym:
            what = "memcpy in user space"
        else:
            what = "other user space (HTTP, TLS-free hyper, tokio, JSON)"
        split[what] = split.get(what, 0.0) + pct
    print(f"## Where the time goes: one {SIZE_MIB} MiB `hoist put` on the `make dev` stack\n")
    print(f"Wall clock {result['seconds']:.2f} s. The client's CPU, sampled by `perf record -e cpu-clock`:\n")
    print("| share of the client's CPU | what |\n|---|---|")
    for what, pct in sorted(split.items(), key=lambda kv: -kv[1]):
        print(f"| {pct:.1f} % | {what} |")
    leaves = {}
    total = 0
    for line in spied:
        stack, _, count = line.rstrip().rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = stack.split(";")
        leaf = frames[-1]
        # Name a native call by the Python line that made it.
        leaves[leaf] = leaves.get(leaf, 0) + int(count)
        total += int(count)
    print("\nLocalStack during the same upload, sampled by py-spy (its busiest Python lines; native work such as "
          "hashing or a file write is counted on the line that calls it; idle threads waiting included):\n")
    print("| share of samples | line |\n|---|---|")
    for leaf, n in sorted(leaves.items(), key=lambda kv: -kv[1])[:12]:
        print(f"| {100 * n / max(1, total):.1f} % | `{leaf}` |")
    print(f"\n`hoist put`'s own timings for this run (ms): " + ", ".join(f"{k} {v:.0f}" for k, v in result["timings"].items()))


if __name__ == "__main__":
    {"--capture": capture, "--profile": profile}.get(next((a for a in sys.argv[1:] if a.startswith("--")), ""), throughput)()
