"""Idempotently creates the local bucket, table and queues.

Mirrors template.yaml's resources (CORS, lifecycle, notifications, keys, GSI, TTL, DLQ redrive):
neither LocalStack nor moto keeps data across restarts, so this runs on every start.
"""
import json
import os

import boto3
from botocore.config import Config

region = os.environ["AWS_REGION"]
bucket = os.environ["HOIST_BUCKET"]
table = os.environ["HOIST_TABLE"]
queue = os.environ["HOIST_QUEUE_NAME"]
api_port = os.environ.get("HOIST_API_PORT", "8787")
cfg = Config(s3={"addressing_style": "path"}, retries={"max_attempts": 3})

s3 = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL_S3"], region_name=region, config=cfg)
try:
    s3.create_bucket(Bucket=bucket)
except s3.exceptions.BucketAlreadyOwnedByYou:
    pass
# Versioned, as in template.yaml: a later write to a key (a reused POST form) is a new
# version and never replaces the bytes that were scanned (docs/security.md).
s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
s3.put_bucket_cors(
    Bucket=bucket,
    CORSConfiguration={
        "CORSRules": [
            {
                # Dev only: any local port (tests run dev servers on ephemeral ports).
                # In AWS the template allows exactly the configured origins.
                "AllowedOrigins": [f"http://127.0.0.1:{api_port}", f"http://localhost:{api_port}", "http://127.0.0.1:*", "http://localhost:*"],
                # PUT: presigned parts; POST: single-request form uploads (/s3/params).
                "AllowedMethods": ["PUT", "POST", "GET", "HEAD"],
                # The headers our presigned part URLs sign and the browser must send.
                "AllowedHeaders": ["content-type", "x-amz-checksum-sha256", "x-amz-sdk-checksum-algorithm", "x-amz-content-sha256", "x-amz-date"],
                # Browsers may only read ETag if it is exposed: uploaders need it per part.
                "ExposeHeaders": ["ETag", "Location", "x-amz-checksum-sha256"],
                "MaxAgeSeconds": 3000,
            }
        ]
    },
)
s3.put_bucket_lifecycle_configuration(
    Bucket=bucket,
    LifecycleConfiguration={
        "Rules": [
            {
                "ID": "abort-incomplete-multipart-uploads",
                "Status": "Enabled",
                "Filter": {"Prefix": ""},
                "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 7},
            },
        ]
    },
)

ddb = boto3.client("dynamodb", endpoint_url=os.environ["AWS_ENDPOINT_URL_DYNAMODB"], region_name=region)
existing = ddb.list_tables()["TableNames"]
if table not in existing:
    ddb.create_table(
        TableName=table,
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "S"},
            {"AttributeName": "gsi1pk", "AttributeType": "S"},
            {"AttributeName": "gsi1sk", "AttributeType": "N"},
            {"AttributeName": "gsi2pk", "AttributeType": "S"},
            {"AttributeName": "gsi2sk", "AttributeType": "S"},
        ],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        GlobalSecondaryIndexes=[
            {
                "IndexName": "gsi1",
                "KeySchema": [{"AttributeName": "gsi1pk", "KeyType": "HASH"}, {"AttributeName": "gsi1sk", "KeyType": "RANGE"}],
                "Projection": {"ProjectionType": "KEYS_ONLY"},
            },
            {
                "IndexName": "gsi2",
                "KeySchema": [{"AttributeName": "gsi2pk", "KeyType": "HASH"}, {"AttributeName": "gsi2sk", "KeyType": "RANGE"}],
                "Projection": {"ProjectionType": "ALL"},
            },
        ],
    )
    ddb.update_time_to_live(TableName=table, TimeToLiveSpecification={"Enabled": True, "AttributeName": "ttl"})

sqs = boto3.client("sqs", endpoint_url=os.environ["AWS_ENDPOINT_URL_SQS"], region_name=region)
dlq_url = sqs.create_queue(QueueName=queue + "-dlq", Attributes={"MessageRetentionPeriod": "1209600"})["QueueUrl"]
dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
queue_url = sqs.create_queue(
    QueueName=queue,
    Attributes={
        "VisibilityTimeout": "120",
        "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "5"}),
    },
)["QueueUrl"]
queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
# Single-POST uploads end in S3: S3 tells the process function (template: NotificationConfiguration).
s3.put_bucket_notification_configuration(
    Bucket=bucket,
    NotificationConfiguration={
        "QueueConfigurations": [
            {
                "QueueArn": queue_arn,
                "Events": ["s3:ObjectCreated:Post"],
                "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": "uploads/"}]}},
            }
        ]
    },
)
print(f"seed: bucket {bucket}, table {table}, queue {queue} (+dlq) ready")
