"""Object storage: a local directory (embedded) or S3."""

from __future__ import annotations

from functools import lru_cache

from anb.core.settings import get_settings
from anb.storage.base import Storage
from anb.storage.local import LocalStorage

__all__ = ["Storage", "get_storage"]


@lru_cache
def get_storage() -> Storage:
    return LocalStorage(get_settings().media_dir)
