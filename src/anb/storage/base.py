"""The storage interface: objects addressed by key (never by a client's file name)."""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Protocol

CONTENT_TYPES = {".mp4": "video/mp4", ".jpg": "image/jpeg"}


def content_type(key: str) -> str:
    """The media type an object is served with, from its key's suffix (the keys are ours)."""
    return CONTENT_TYPES.get(PurePosixPath(key).suffix, "application/octet-stream")


class Storage(Protocol):
    def put_file(self, source: Path, key: str) -> None:
        """Store the file at `source` under `key`; the source may be moved away."""

    def get_file(self, key: str, target: Path) -> None:
        """Copy the object at `key` to the local path `target`."""

    def exists(self, key: str) -> bool: ...

    def delete(self, *keys: str) -> None:
        """Delete the objects; missing ones are ignored."""

    def size(self, key: str) -> int | None:
        """The object's size in bytes, or None when it does not exist."""

    def move(self, source_key: str, target_key: str) -> None:
        """Rename an object (within the storage)."""

    def keys(self, prefix: str) -> list[str]:
        """The keys of the objects under `prefix`."""

    def url(self, key: str, *, expires_in: int, base_url: str) -> str:
        """An absolute URL that downloads the object until it expires."""

    def upload_form(
        self, key: str, *, max_bytes: int, expires_in: int, base_url: str
    ) -> tuple[str, dict[str, str]]:
        """Where and how a client uploads an object directly: a URL and the form fields to
        send with the file (field `file`) in a multipart POST, valid until it expires."""

    def check(self) -> None:
        """Raise if the storage cannot be reached (readiness)."""
