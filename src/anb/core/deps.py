"""FastAPI dependencies that need nothing above `anb.core`: settings, path parameters and
the bearer credentials. Each adapter and domain keeps its own next to it (`anb.storage.deps`,
`anb.queue.deps`, `anb.cache.deps`, `anb.users.deps`).

Every dependency is a coroutine that does no blocking work, so resolving it costs no thread
and holds no database connection: endpoints run their database work as one unit
(`anb.core.db.run_db`).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Path
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from anb.core.settings import Settings, get_settings
from anb.core.text import NO_NUL

_bearer = HTTPBearer(auto_error=False, description="The access token from /api/auth/login.")


async def _settings() -> Settings:
    return get_settings()


SettingsDep = Annotated[Settings, Depends(_settings)]
VideoId = Annotated[str, Path(max_length=64, pattern=NO_NUL, description="The video's id")]
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
