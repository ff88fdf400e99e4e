"""The cache as a FastAPI dependency."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from anb.cache import Cache, get_cache


async def _cache() -> Cache:
    return get_cache()


CacheDep = Annotated[Cache, Depends(_cache)]
