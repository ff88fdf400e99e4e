"""Caches: in-process memory (embedded) or Redis."""

from __future__ import annotations

from functools import lru_cache

from anb.cache.base import Cache
from anb.cache.memory import MemoryCache
from anb.core.settings import get_settings

__all__ = ["Cache", "get_cache"]


@lru_cache
def get_cache() -> Cache:
    url = get_settings().cache_url
    if url.startswith(("redis://", "rediss://")):
        from anb.cache.redis import RedisCache
        from anb.cache.tiered import TieredCache

        return TieredCache(RedisCache.from_url(url))
    return MemoryCache()
