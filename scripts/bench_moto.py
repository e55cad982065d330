"""moto's health under Hoist's DynamoDB call pattern: stock moto_server against our
wrapper (scripts/moto_server.py), each on its own port, runs alternating.

Per upload, the calls Hoist makes: create (a transaction: the upload and its owner's
quota), record 8 parts (BatchWriteItem), a rate-limit counter (conditional UpdateItem),
status (GetItem, Query), complete (a transaction: status and quota), list (GSI Query).
Prints a markdown report: peak RSS and median call latency per run, then one long run
of the wrapper to show both stay flat. Usage: bench_moto.py [uploads per run] [runs]
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


def upload(ddb, i):
    owner, uid = f"o{i % 50}", uuid.uuid4().hex
    ddb.transact_write_items(TransactItems=[
        {"Put": {"TableName": "t", "ConditionExpression": "attribute_not_exists(pk)", "Item": {
            "pk": S("UPLOAD#" + uid), "sk": S("META"), "gsi1pk": S("OPEN"), "gsi1sk": N(i), "gsi2pk": S("OPENBY#" + owner),
            "gsi2sk": S(f"{i:015}#{uid}"), "status": S("uploading"), "filename": S("x" * 200)}}},
        {"Update": {"TableName": "t", "Key": {"pk": S("OWNER#" + owner), "sk": S("QUOTA")},
                    "UpdateExpression": "ADD open_uploads :one, bytes_in_flight :s", "ExpressionAttributeValues": {":one": N(1), ":s": N(100)}}}])
    ddb.batch_write_item(RequestItems={"t": [{"PutRequest": {"Item": {"pk": S("UPLOAD#" + uid), "sk": S(f"PART#{p:05}"), "etag": S("e" * 32), "size": N(5), "ttl": N(9999999999)}}} for p in range(1, 9)]})
    ddb.update_item(TableName="t", Key={"pk": S("OWNER#" + owner), "sk": S(f"RATE#{i // 100}")}, UpdateExpression="ADD n :one SET #ttl = :ttl",
                    ConditionExpression="attribute_not_exists(n) OR n < :l", ExpressionAttributeNames={"#ttl": "ttl"},
                    ExpressionAttributeValues={":one": N(1), ":l": N(1000000), ":ttl": N(9999999999)})
    ddb.get_item(TableName="t", Key={"pk": S("UPLOAD#" + uid), "sk": S("META")}, ConsistentRead=True)
    ddb.query(TableName="t", KeyConditionExpression="pk = :p AND begins_with(sk, :s)", ExpressionAttributeValues={":p": S("UPLOAD#" + uid), ":s": S("PART#")})
    ddb.transact_write_items(TransactItems=[
        {"Update": {"TableName": "t", "Key": {"pk": S("UPLOAD#" + uid), "sk": S("META")}, "UpdateExpression": "SET #s = :p, gsi2pk = :o REMOVE gsi1pk, gsi1sk",
                    "ConditionExpression": "#s = :u", "ExpressionAttributeNames": {"#s": "status"}, "ExpressionAttributeValues": {":p": S("processing"), ":u": S("uploading"), ":o": S("OWNER#" + owner)}}},
        {"Update": {"TableName": "t", "Key": {"pk": S("OWNER#" + owner), "sk": S("QUOTA")}, "UpdateExpression": "ADD open_uploads :m", "ExpressionAttributeValues": {":m": N(-1)}}}])
    ddb.query(TableName="t", IndexName="gsi2", KeyConditionExpression="gsi2pk = :o", ExpressionAttributeValues={":o": S("OWNER#" + owner)}, ScanIndexForward=False, Limit=50)


def run(cmd, port, n, every=None):
    srv, ddb = start(cmd, port)
    peak, samples, lat = 0.0, [], []
    try:
        for i in range(n):
            t0 = time.perf_counter()
            upload(ddb, i)
            lat.append((time.perf_counter() - t0) / 8 * 1000)  # per call, ms
            peak = max(peak, rss_mib(srv.pid)) if i % 10 == 0 else peak
            if every and (i + 1) % every == 0:
                samples.append((i + 1, rss_mib(srv.pid), statistics.median(lat[-every:])))
        return max(peak, rss_mib(srv.pid)), statistics.median(lat[-max(1, n // 5):]), samples
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
    long_n = 12 * n
    _, _, samples = run(OURS, 4599, long_n, every=long_n // 6)
    print()
    print(f"Ours through {long_n} uploads ({8 * long_n} calls): RSS and median call latency as they go")
    print()
    print("| uploads | RSS MiB | median ms per call |")
    print("|---|---|---|")
    for i, r, m in samples:
        print(f"| {i} | {r:.0f} | {m:.1f} |")
    print()
    print(f"machine: {os.cpu_count()} cores; moto {__import__('moto').__version__}")


if __name__ == "__main__":
    main()
