"""AWS clients that fail fast: a service that stops answering costs a request seconds, not
botocore's default of minutes (60 s connect and read timeouts, retried)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal, overload

if TYPE_CHECKING:  # boto3-stubs' service types: for the type checker only, not a runtime need
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sqs import SQSClient

CONNECT_TIMEOUT = 2
READ_TIMEOUT = 4
ATTEMPTS = 2  # the first try and one retry (botocore's standard mode, with backoff)
LONG_POLL_READ_TIMEOUT = 30  # more than SQS's longest wait (20 s)


@overload
def client(service: Literal["s3"], *, read_timeout: int = ..., **options: Any) -> S3Client: ...
@overload
def client(service: Literal["sqs"], *, read_timeout: int = ..., **options: Any) -> SQSClient: ...
def client(
    service: Literal["s3", "sqs"], *, read_timeout: int = READ_TIMEOUT, **options: Any
) -> S3Client | SQSClient:
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
