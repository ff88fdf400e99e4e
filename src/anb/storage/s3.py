"""Storage in an S3 bucket (optionally under a prefix), with presigned URLs and forms."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from boto3.s3.transfer import TransferConfig
from botocore.exceptions import ClientError

from anb.storage.base import content_type

if TYPE_CHECKING:  # boto3-stubs' S3 types: for the type checker only
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import CopySourceTypeDef, ObjectIdentifierTypeDef

MIB = 1024 * 1024
# Multipart from disk in 8 MiB parts, two at a time: bounded memory in the API process.
TRANSFER = TransferConfig(
    multipart_threshold=8 * MIB, multipart_chunksize=8 * MIB, max_concurrency=2
)


class S3Storage:
    def __init__(self, bucket: str, prefix: str, client: S3Client) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.client = client

    @classmethod
    def from_url(cls, url: str, client: S3Client) -> S3Storage:
        bucket, _, prefix = url.removeprefix("s3://").partition("/")
        return cls(bucket, prefix, client)

    def _object(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def put_file(self, source: Path, key: str) -> None:
        self.client.upload_file(
            str(source), self.bucket, self._object(key),
            ExtraArgs={"ContentType": content_type(key)}, Config=TRANSFER,
        )  # fmt: skip

    def get_file(self, key: str, target: Path) -> None:
        self.client.download_file(self.bucket, self._object(key), str(target), Config=TRANSFER)

    def exists(self, key: str) -> bool:
        return self.size(key) is not None

    def size(self, key: str) -> int | None:
        try:
            head = self.client.head_object(Bucket=self.bucket, Key=self._object(key))
        except ClientError as error:
            if error.response["Error"]["Code"] in ("404", "NoSuchKey", "NotFound"):
                return None
            raise
        return int(head["ContentLength"])

    def move(self, source_key: str, target_key: str) -> None:
        source: CopySourceTypeDef = {"Bucket": self.bucket, "Key": self._object(source_key)}
        self.client.copy(source, self.bucket, self._object(target_key), Config=TRANSFER)
        self.delete(source_key)

    def keys(self, prefix: str) -> list[str]:
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=self._object(prefix)
        )
        strip = len(self.prefix) + 1 if self.prefix else 0
        return sorted(item["Key"][strip:] for page in pages for item in page.get("Contents", []))

    def delete(self, *keys: str) -> None:
        if keys:
            objects: list[ObjectIdentifierTypeDef] = [{"Key": self._object(key)} for key in keys]
            self.client.delete_objects(
                Bucket=self.bucket, Delete={"Objects": objects, "Quiet": True}
            )

    def url(self, key: str, *, expires_in: int, base_url: str) -> str:
        return self.client.generate_presigned_url(
            "get_object",
            Params={"Bucket": self.bucket, "Key": self._object(key)},
            ExpiresIn=expires_in,
        )

    def upload_form(
        self, key: str, *, max_bytes: int, expires_in: int, base_url: str
    ) -> tuple[str, dict[str, str]]:
        post = self.client.generate_presigned_post(
            Bucket=self.bucket,
            Key=self._object(key),
            Conditions=[["content-length-range", 1, max_bytes]],
            ExpiresIn=expires_in,
        )
        return post["url"], post["fields"]

    def check(self) -> None:
        self.client.head_bucket(Bucket=self.bucket)
