"""Object storage: a local directory (embedded) or S3."""

from __future__ import annotations

from functools import lru_cache

from anb.core.settings import get_settings
from anb.storage.base import Storage
from anb.storage.local import LocalStorage
from anb.storage.urls import ReusedUrls

__all__ = ["Storage", "get_download_urls", "get_storage"]


@lru_cache
def get_storage() -> Storage:
    settings = get_settings()
    if settings.storage_url and settings.storage_url.startswith("s3://"):
        from anb.core.aws import client
        from anb.storage.s3 import S3Storage

        return S3Storage.from_url(settings.storage_url, client("s3"))
    return LocalStorage(settings.media_dir)


@lru_cache
def get_download_urls() -> ReusedUrls:
    """Download URLs of `get_storage()`, reused while they have time left (`anb.storage.urls`)."""
    return ReusedUrls(get_storage())
