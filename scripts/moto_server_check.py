"""scripts/moto_server.py answers Queries exactly as stock moto does: the same items, order
and pages for queries on the table (by partition, with a range condition, backwards, on
an absent partition) and on an index, with and without Limit (pages read from a window of
the partition, pages beyond it, ties, filters); and it expires items whose
TTL has passed (and only those), out of the table and its index; and reads leave its
memory where it was (stock moto keeps a copy of every item it ever answered with). Both
servers run on free ports of their own for the check; exits 1 on any difference."""
import boto3, os, random, subprocess, sys, time, json
def free_port():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


PORTS = (free_port(), free_port())
root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
py = sys.executable  # the moto venv's python (it has boto3)
ours_env = dict(os.environ, HOIST_MOTO_TTL_SWEEP_SECONDS="0.5")
procs = [subprocess.Popen([py, f"{root}/scripts/moto_server.py", "-p", str(PORTS[0])], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ours_env),
         subprocess.Popen([py, "-m", "moto.server", "-p", str(PORTS[1])], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
for port in PORTS:
    for _ in range(100):
        try:
            __import__("socket").create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.1)
try:
    out = []
    for port in PORTS:
        d = boto3.client("dynamodb", endpoint_url=f"http://127.0.0.1:{port}")
        d.create_table(TableName="t", BillingMode="PAY_PER_REQUEST",
            AttributeDefinitions=[{"AttributeName": a, "AttributeType": t} for a, t in [("pk","S"),("sk","S"),("g","S"),("gs","N")]],
            KeySchema=[{"AttributeName":"pk","KeyType":"HASH"},{"AttributeName":"sk","KeyType":"RANGE"}],
            GlobalSecondaryIndexes=[{"IndexName":"gsi1","KeySchema":[{"AttributeName":"g","KeyType":"HASH"},{"AttributeName":"gs","KeyType":"RANGE"}],"Projection":{"ProjectionType":"ALL"}}])
        rnd = random.Random(7)
        sks = {}
        for i in range(300):
            sks[i] = f"P#{rnd.randint(0, 999):05d}-{i}"
            item = {"pk": {"S": f"U#{i % 17}"}, "sk": {"S": sks[i]}, "v": {"N": str(i)}}
            if i % 3: item.update({"g": {"S": f"G{i % 4}"}, "gs": {"N": str(rnd.randint(0, 50))}})
            d.put_item(TableName="t", Item=item)
        d.query(TableName="t", IndexName="gsi1", KeyConditionExpression="g = :g", ExpressionAttributeValues={":g": {"S": "G1"}})
        # Writes that move items in and out of the index, and across its partitions:
        # in-place updates, removals, deletes, transactions (one of them refused).
        for i in range(0, 300, 5):
            key = {"pk": {"S": f"U#{i % 17}"}, "sk": {"S": sks[i]}}
            if i % 2:
                d.update_item(TableName="t", Key=key, UpdateExpression="SET g = :g, gs = :n",
                              ExpressionAttributeValues={":g": {"S": f"G{(i + 1) % 4}"}, ":n": {"N": str(i % 40)}})
            else:
                d.update_item(TableName="t", Key=key, UpdateExpression="REMOVE g")
        for i in range(1, 300, 7):
            d.delete_item(TableName="t", Key={"pk": {"S": f"U#{i % 17}"}, "sk": {"S": sks[i]}})
        d.transact_write_items(TransactItems=[
            {"Put": {"TableName": "t", "Item": {"pk": {"S": "U#3"}, "sk": {"S": "P#new"}, "g": {"S": "G1"}, "gs": {"N": "1"}}}},
            {"Update": {"TableName": "t", "Key": {"pk": {"S": "U#2"}, "sk": {"S": sks[2]}}, "UpdateExpression": "SET g = :g",
                        "ExpressionAttributeValues": {":g": {"S": "G2"}}}}])
        try:
            d.transact_write_items(TransactItems=[
                {"Put": {"TableName": "t", "Item": {"pk": {"S": "U#4"}, "sk": {"S": "P#refused"}, "g": {"S": "G1"}, "gs": {"N": "2"}}}},
                {"Update": {"TableName": "t", "Key": {"pk": {"S": "U#5"}, "sk": {"S": sks[5]}}, "UpdateExpression": "SET g = :g",
                            "ConditionExpression": "attribute_not_exists(pk)", "ExpressionAttributeValues": {":g": {"S": "G1"}}}}])
        except d.exceptions.TransactionCanceledException:
            pass
        # moto checks no GSI key types: a partition whose range values mix N and S must
        # not stop Queries of the others. And a GSI added later answers for every item.
        d.put_item(TableName="t", Item={"pk": {"S": "U#mixed"}, "sk": {"S": "a"}, "g": {"S": "G9"}, "gs": {"S": "x"}})
        d.put_item(TableName="t", Item={"pk": {"S": "U#mixed"}, "sk": {"S": "b"}, "g": {"S": "G9"}, "gs": {"N": "1"}})
        d.update_table(TableName="t", AttributeDefinitions=[{"AttributeName": "g", "AttributeType": "S"}, {"AttributeName": "v", "AttributeType": "N"}],
                       GlobalSecondaryIndexUpdates=[{"Create": {"IndexName": "late", "KeySchema": [{"AttributeName": "g", "KeyType": "HASH"}, {"AttributeName": "v", "KeyType": "RANGE"}],
                                                                "Projection": {"ProjectionType": "ALL"}}}])
        res = []
        for q in [dict(KeyConditionExpression="pk = :p", ExpressionAttributeValues={":p": {"S": "U#3"}}),
                  dict(KeyConditionExpression="pk = :p AND sk > :s", ExpressionAttributeValues={":p": {"S": "U#5"}, ":s": {"S": "P#00500"}}, ScanIndexForward=False),
                  dict(KeyConditionExpression="pk = :p", ExpressionAttributeValues={":p": {"S": "U#nope"}}),
                  dict(IndexName="gsi1", KeyConditionExpression="g = :g AND gs <= :n", ExpressionAttributeValues={":g": {"S": "G1"}, ":n": {"N": "30"}}),
                  dict(IndexName="gsi1", KeyConditionExpression="g = :g", ExpressionAttributeValues={":g": {"S": "G2"}}, ScanIndexForward=False),
                  dict(IndexName="gsi1", KeyConditionExpression="g = :g", ExpressionAttributeValues={":g": {"S": "G0"}}),
                  dict(IndexName="gsi1", KeyConditionExpression="g = :g", ExpressionAttributeValues={":g": {"S": "G3"}}, Limit=1000),
                  # Pages whose first items lie beyond a window of the partition, ties in the
                  # index's range key, backwards between bounds, and a filter after the Limit.
                  dict(IndexName="gsi1", KeyConditionExpression="g = :g AND gs >= :n", ExpressionAttributeValues={":g": {"S": "G1"}, ":n": {"N": "30"}}),
                  dict(IndexName="gsi1", KeyConditionExpression="g = :g AND gs BETWEEN :a AND :b", ExpressionAttributeValues={":g": {"S": "G2"}, ":a": {"N": "10"}, ":b": {"N": "20"}}, ScanIndexForward=False),
                  dict(IndexName="gsi1", KeyConditionExpression="g = :g", FilterExpression="v > :x", ExpressionAttributeValues={":g": {"S": "G3"}, ":x": {"N": "150"}}),
                  dict(IndexName="late", KeyConditionExpression="g = :g", ExpressionAttributeValues={":g": {"S": "G1"}}, ScanIndexForward=False)]:
            for limit in (None, 4):
                pages, start = [], None
                while True:
                    kw = dict(TableName="t", **q)
                    if limit: kw["Limit"] = limit
                    if start: kw["ExclusiveStartKey"] = start
                    r = d.query(**kw)
                    pages.append(r["Items"])
                    start = r.get("LastEvaluatedKey")
                    if not start: break
                res.append(pages)
        out.append(json.dumps(res, sort_keys=True))
    # TTL: ours forgets what has expired, from the table and from the index.
    d = boto3.client("dynamodb", endpoint_url=f"http://127.0.0.1:{PORTS[0]}")
    d.update_time_to_live(TableName="t", TimeToLiveSpecification={"Enabled": True, "AttributeName": "ttl"})
    now = int(time.time())
    for sk, ttl in [("T#past", now - 10), ("T#future", now + 3600)]:
        d.put_item(TableName="t", Item={"pk": {"S": "TTL"}, "sk": {"S": sk}, "g": {"S": "GT"}, "gs": {"N": "1"}, "ttl": {"N": str(ttl)}})
    time.sleep(2)
    left = sorted(i["sk"]["S"] for i in d.query(TableName="t", KeyConditionExpression="pk = :p", ExpressionAttributeValues={":p": {"S": "TTL"}})["Items"])
    in_index = sorted(i["sk"]["S"] for i in d.query(TableName="t", IndexName="gsi1", KeyConditionExpression="g = :g", ExpressionAttributeValues={":g": {"S": "GT"}})["Items"])
    expired_ok = left == ["T#future"] and in_index == ["T#future"]
    print(f"moto_server.py: expired items {'forgotten' if expired_ok else 'NOT forgotten as they should be'} ({left}, index {in_index})")
    # Reads only: GetItem and a Query of ~18 items, 1,500 times each. moto copies the items
    # it answers with; stock moto also keeps every copy (its dashboard's instance list).
    def rss_mib(pid):
        with open(f"/proc/{pid}/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmRSS")) / 1024
    grew = []
    for port, proc in zip(PORTS, procs):
        d = boto3.client("dynamodb", endpoint_url=f"http://127.0.0.1:{port}")
        for _ in range(50):  # warm up: the allocator's first arenas
            d.query(TableName="t", KeyConditionExpression="pk = :p", ExpressionAttributeValues={":p": {"S": "U#3"}})
        before = rss_mib(proc.pid)
        for k in range(1500):
            d.get_item(TableName="t", Key={"pk": {"S": "U#3"}, "sk": {"S": "P#new"}})
            d.query(TableName="t", KeyConditionExpression="pk = :p", ExpressionAttributeValues={":p": {"S": f"U#{k % 17}"}})
        grew.append(rss_mib(proc.pid) - before)
    reads_ok = grew[0] < 8
    print(f"moto_server.py: 3,000 reads {'left memory flat' if reads_ok else 'GREW memory'} (+{grew[0]:.1f} MiB; stock moto +{grew[1]:.1f} MiB)")
    same = out[0] == out[1] and expired_ok and reads_ok
    print(f"moto_server.py: {len(json.loads(out[0]))} queries {'answered as stock moto answers them' if out[0] == out[1] else 'DIFFER from stock moto'}")
    sys.exit(0 if same else 1)
finally:
    for p in procs: p.terminate()
