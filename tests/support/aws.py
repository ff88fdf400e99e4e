"""Throwaway AWS credentials for moto, and the options of a boto3 client that uses them."""

from __future__ import annotations

AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def client_options(aws: dict[str, str]) -> dict[str, str]:
    """boto3 client keyword arguments from AWS_ENV plus AWS_ENDPOINT_URL."""
    return {
        "endpoint_url": aws["AWS_ENDPOINT_URL"],
        "region_name": aws["AWS_DEFAULT_REGION"],
        "aws_access_key_id": aws["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": aws["AWS_SECRET_ACCESS_KEY"],
    }
