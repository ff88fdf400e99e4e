"""Caches: in-process memory (embedded) or Redis."""

from __future__ import annotations

from functools import lru_cache

from anb.cache.base import Cache
from anb.cache.memory import MemoryCache
from anb.core.settings import get_settings

__all__ = ["Cache", "get_cache"]


@lru_cache
def get_cache() -> Cache:
    get_settings()  # validates ANB_CACHE_URL: only memory:// for now
    return MemoryCache()
