"""moto's health under Hoist's DynamoDB call pattern: stock moto_server against our
wrapper (scripts/moto_server.py), each on its own port, runs alternating.

Per upload, the calls Hoist makes: create (a transaction: the upload and its owner's
quota), record 8 parts (BatchWriteItem), a rate-limit counter (conditional UpdateItem),
status (GetItem, Query), complete (a transaction: status and quota), list (GSI Query,
Hoist's default page of 25). 20 owners, so from the 500th upload on every listing returns
a full page: what a call costs can then grow only with the table, not with its answer.
Prints a markdown report: peak RSS and median call latency per run; one long run of the
wrapper with each call's latency as the table grows; then reads only (status polls and
listings), which must leave memory where it was. Usage: bench_moto.py [uploads per run] [runs]
"""
import os
import statistics
import subprocess
import sys
import time
import uuid

import boto3

HERE = os.path.dirname(os.path.abspath(__file__))
PYTHON = sys.executable
STOCK = [os.path.join(os.path.dirname(PYTHON), "moto_server")]
OURS = [PYTHON, os.path.join(HERE, "moto_server.py")]
S = lambda v: {"S": v}  # noqa: E731
N = lambda v: {"N": str(v)}  # noqa: E731


def start(cmd, port):
    srv = subprocess.Popen(cmd + ["-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ddb = boto3.client("dynamodb", endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1",
                       aws_access_key_id="bench", aws_secret_access_key="bench")
    for _ in range(100):
        try:
            ddb.list_tables()
            break
        except Exception:  # noqa: BLE001 - not up yet
            time.sleep(0.1)
    attrs = [("pk", "S"), ("sk", "S"), ("gsi1pk", "S"), ("gsi1sk", "N"), ("gsi2pk", "S"), ("gsi2sk", "S")]
    ddb.create_table(
        TableName="t", BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": a, "AttributeType": k} for a, k in attrs],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        GlobalSecondaryIndexes=[
            {"IndexName": "gsi1", "KeySchema": [{"AttributeName": "gsi1pk", "KeyType": "HASH"}, {"AttributeName": "gsi1sk", "KeyType": "RANGE"}], "Projection": {"ProjectionType": "KEYS_ONLY"}},
            {"IndexName": "gsi2", "KeySchema": [{"AttributeName": "gsi2pk", "KeyType": "HASH"}, {"AttributeName": "gsi2sk", "KeyType": "RANGE"}], "Projection": {"ProjectionType": "ALL"}},
        ])
    ddb.update_time_to_live(TableName="t", TimeToLiveSpecification={"Enabled": True, "AttributeName": "ttl"})
    return srv, ddb


def rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS")) / 1024


OWNERS = 20
PAGE = 25  # Hoist's default page (shared/src/usecases/catalog.rs)


class Timed:
    """The client, with each call's latency kept by its kind."""

    def __init__(self, ddb):
        self.ddb, self.ms = ddb, {}

    def call(self, kind, name, **kw):
        t0 = time.perf_counter()
        out = getattr(self.ddb, name)(**kw)
        self.ms.setdefault(kind, []).append((time.perf_counter() - t0) * 1000)
        return out


def upload(ddb, i, t=None):
    t = t or Timed(ddb)
    owner, uid = f"o{i % OWNERS}", uuid.uuid4().hex
    t.call("create", "transact_write_items", TransactItems=[
        {"Put": {"TableName": "t", "ConditionExpression": "attribute_not_exists(pk)", "Item": {
            "pk": S("UPLOAD#" + uid), "sk": S("META"), "gsi1pk": S("OPEN"), "gsi1sk": N(i), "gsi2pk": S("OPENBY#" + owner),
            "gsi2sk": S(f"{i:015}#{uid}"), "status": S("uploading"), "filename": S("x" * 200)}}},
        {"Update": {"TableName": "t", "Key": {"pk": S("OWNER#" + owner), "sk": S("QUOTA")},
                    "UpdateExpression": "ADD open_uploads :one, bytes_in_flight :s", "ExpressionAttributeValues": {":one": N(1), ":s": N(100)}}}])
    t.call("record parts", "batch_write_item", RequestItems={"t": [{"PutRequest": {"Item": {"pk": S("UPLOAD#" + uid), "sk": S(f"PART#{p:05}"), "etag": S("e" * 32), "size": N(5), "ttl": N(9999999999)}}} for p in range(1, 9)]})
    t.call("rate counter", "update_item", TableName="t", Key={"pk": S("OWNER#" + owner), "sk": S(f"RATE#{i // 100}")}, UpdateExpression="ADD n :one SET #ttl = :ttl",
                    ConditionExpression="attribute_not_exists(n) OR n < :l", ExpressionAttributeNames={"#ttl": "ttl"},
                    ExpressionAttributeValues={":one": N(1), ":l": N(1000000), ":ttl": N(9999999999)})
    status(t, uid)
    t.call("complete", "transact_write_items", TransactItems=[
        {"Update": {"TableName": "t", "Key": {"pk": S("UPLOAD#" + uid), "sk": S("META")}, "UpdateExpression": "SET #s = :p, gsi2pk = :o REMOVE gsi1pk, gsi1sk",
                    "ConditionExpression": "#s = :u", "ExpressionAttributeNames": {"#s": "status"}, "ExpressionAttributeValues": {":p": S("processing"), ":u": S("uploading"), ":o": S("OWNER#" + owner)}}},
        {"Update": {"TableName": "t", "Key": {"pk": S("OWNER#" + owner), "sk": S("QUOTA")}, "UpdateExpression": "ADD open_uploads :m", "ExpressionAttributeValues": {":m": N(-1)}}}])
    listing(t, owner)
    return uid


def status(t, uid):
    t.call("status: get", "get_item", TableName="t", Key={"pk": S("UPLOAD#" + uid), "sk": S("META")}, ConsistentRead=True)
    t.call("status: parts", "query", TableName="t", KeyConditionExpression="pk = :p AND begins_with(sk, :s)",
           ExpressionAttributeValues={":p": S("UPLOAD#" + uid), ":s": S("PART#")})


def listing(t, owner):
    t.call("list (page of 25)", "query", TableName="t", IndexName="gsi2", KeyConditionExpression="gsi2pk = :o",
           ExpressionAttributeValues={":o": S("OWNER#" + owner)}, ScanIndexForward=False, Limit=PAGE)


def run(cmd, port, n, every=None, reads=0):
    """n uploads; with `every`, each call kind's median latency and the RSS every `every`
    uploads; then `reads` rounds of status and listing on the uploads made, RSS before
    and after."""
    srv, ddb = start(cmd, port)
    peak, samples, lat, uids = 0.0, [], [], []
    try:
        t = Timed(ddb)
        for i in range(n):
            t0 = time.perf_counter()
            uids.append(upload(ddb, i, t))
            lat.append((time.perf_counter() - t0) / 8 * 1000)  # per call, ms
            peak = max(peak, rss_mib(srv.pid)) if i % 10 == 0 else peak
            if every and (i + 1) % every == 0:
                kinds = {k: statistics.median(v) for k, v in t.ms.items()}
                samples.append((i + 1, rss_mib(srv.pid), statistics.median(lat[-every:]), kinds))
                t.ms = {}
        read = None
        if reads:
            before, r = rss_mib(srv.pid), Timed(ddb)
            for k in range(reads):
                status(r, uids[(k * 7919) % len(uids)])
                listing(r, f"o{k % OWNERS}")
            read = (before, rss_mib(srv.pid), {k: statistics.median(v) for k, v in r.ms.items()})
        return max(peak, rss_mib(srv.pid)), statistics.median(lat[-max(1, n // 5):]), samples, read
    finally:
        srv.terminate()
        srv.wait()


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 250
    runs = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    results = {"stock moto_server": [], "ours (scripts/moto_server.py)": []}
    for r in range(runs):
        order = list(results) if r % 2 == 0 else list(reversed(results))
        for name in order:
            cmd = STOCK if name.startswith("stock") else OURS
            results[name].append(run(cmd, 4590 + r, n)[:2])
    print(f"## moto under Hoist's DynamoDB calls: {n} uploads per run (8 calls each), {runs} runs, alternating")
    print()
    print("| server | peak RSS MiB, median (min–max) | call latency at the end, median ms (min–max) |")
    print("|---|---|---|")
    for name, rs in results.items():
        rss = [x for x, _ in rs]
        ms = [y for _, y in rs]
        print(f"| {name} | {statistics.median(rss):.0f} ({min(rss):.0f}–{max(rss):.0f}) | {statistics.median(ms):.1f} ({min(ms):.1f}–{max(ms):.1f}) |")
    # "A few thousand uploads": the table grows to ~10 items an upload.
    long_n, reads = 12 * n, 12 * n
    _, _, samples, (before, after, read_ms) = run(OURS, 4599, long_n, every=long_n // 6, reads=reads)
    kinds = list(samples[0][3])
    print()
    print(f"Ours through {long_n} uploads ({8 * long_n} calls): RSS and each call's median latency (ms) as the table grows")
    print()
    print("| uploads | items | RSS MiB | all calls | " + " | ".join(kinds) + " |")
    print("|---|---|---|---|" + "---|" * len(kinds))
    for i, r, m, k in samples:
        items = 9 * i + OWNERS + OWNERS * (i // 100 + 1)  # META + 8 parts an upload, quotas, rate counters
        print(f"| {i} | ~{items:,} | {r:.0f} | {m:.1f} | " + " | ".join(f"{k.get(x, 0):.1f}" for x in kinds) + " |")
    print()
    print(f"Then {reads} rounds of reads only (status: GetItem + parts Query; a listing) on that table: "
          f"RSS {before:.0f} → {after:.0f} MiB; median ms " + ", ".join(f"{k} {v:.1f}" for k, v in read_ms.items()))
    print()
    print(f"machine: {os.cpu_count()} cores; moto {__import__('moto').__version__}")


if __name__ == "__main__":
    main()
