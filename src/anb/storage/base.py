"""The storage interface: objects addressed by key (never by a client's file name)."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol


class Storage(Protocol):
    def put_file(self, source: Path, key: str) -> None:
        """Store the file at `source` under `key`; the source may be moved away."""

    def get_file(self, key: str, target: Path) -> None:
        """Copy the object at `key` to the local path `target`."""

    def exists(self, key: str) -> bool: ...

    def delete(self, *keys: str) -> None:
        """Delete the objects; missing ones are ignored."""

    def url(self, key: str, *, expires_in: int, base_url: str) -> str:
        """An absolute URL that downloads the object until it expires."""

    def check(self) -> None:
        """Raise if the storage cannot be reached (readiness)."""
