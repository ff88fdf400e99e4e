"""AWS clients that fail fast: a service that stops answering costs a request seconds, not
botocore's default of minutes (60 s connect and read timeouts, retried)."""

from __future__ import annotations

from typing import Any

CONNECT_TIMEOUT = 2
READ_TIMEOUT = 4
ATTEMPTS = 2  # the first try and one retry (botocore's standard mode, with backoff)
LONG_POLL_READ_TIMEOUT = 30  # more than SQS's longest wait (20 s)


def client(service: str, *, read_timeout: int = READ_TIMEOUT, **options: Any) -> Any:
    import boto3
    from botocore.config import Config

    config = Config(
        connect_timeout=CONNECT_TIMEOUT,
        read_timeout=read_timeout,
        retries={"mode": "standard", "total_max_attempts": ATTEMPTS},
        # S3's presigned URLs and POST policies in SigV4 (botocore may still pick SigV2 in
        # us-east-1, which AWS deprecated); the other services sign with SigV4 anyway
        signature_version="s3v4" if service == "s3" else None,
    )
    return boto3.client(service, config=config, **options)
