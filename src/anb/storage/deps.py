"""The storage and its download URLs, as FastAPI dependencies."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, Request

from anb.core.deps import SettingsDep
from anb.storage import Storage, get_download_urls, get_storage


async def _storage() -> Storage:
    return get_storage()


StorageDep = Annotated[Storage, Depends(_storage)]


async def file_url_builder(
    request: Request, settings: SettingsDep
) -> Callable[[str | None], str | None]:
    """Turns a storage key into an absolute, expiring download URL (local files: on the
    API's public base URL), signed at most once per half of its lifetime (`anb.storage.urls`)."""
    base_url = settings.base_url_for(str(request.base_url))
    urls = get_download_urls()

    def url_for(key: str | None) -> str | None:
        if key is None:
            return None
        return urls.url(key, expires_in=settings.url_ttl_seconds, base_url=base_url)

    return url_for


FileUrls = Annotated[Callable[[str | None], str | None], Depends(file_url_builder)]
