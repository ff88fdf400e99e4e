"""FastAPI dependencies: one `Annotated` alias per resource.

Every dependency here is a coroutine that does no blocking work, so resolving it costs no
thread and holds no database connection: endpoints run their database work as one unit
(`anb.core.db.run_db`), where the caller's account is loaded too (`Caller.user`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Path, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from anb.cache import Cache, get_cache
from anb.core.errors import Unauthorized
from anb.core.security import decode_access_token
from anb.core.settings import Settings, get_settings
from anb.core.text import NO_NUL
from anb.queue import JobQueue, get_queue
from anb.storage import Storage, get_storage
from anb.users import service as users
from anb.users.models import User

NOT_AUTHENTICATED = "No autenticado: falta el token de acceso (Authorization: Bearer)."

_bearer = HTTPBearer(auto_error=False, description="The access token from /api/auth/login.")


async def _settings() -> Settings:
    return get_settings()


async def _storage() -> Storage:
    return get_storage()


async def _queue() -> JobQueue:
    return get_queue()


async def _cache() -> Cache:
    return get_cache()


SettingsDep = Annotated[Settings, Depends(_settings)]
StorageDep = Annotated[Storage, Depends(_storage)]
QueueDep = Annotated[JobQueue, Depends(_queue)]
CacheDep = Annotated[Cache, Depends(_cache)]
VideoId = Annotated[str, Path(max_length=64, pattern=NO_NUL, description="The video's id")]
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


@dataclass(frozen=True)
class Caller:
    """Who sent a valid access token. Their account is loaded (and found to still exist)
    inside the endpoint's unit of work, with `user(session)`."""

    user_id: str

    def user(self, session: Session) -> User:
        return users.user_by_id(session, self.user_id)


async def current_caller(credentials: Credentials) -> Caller:
    if credentials is None:
        raise Unauthorized(NOT_AUTHENTICATED)
    return Caller(decode_access_token(credentials.credentials))


async def optional_caller(request: Request, credentials: Credentials) -> Caller | None:
    """The caller when a token is sent (a bad one is still refused), else anonymous."""
    if credentials is None:
        if "authorization" in request.headers:
            raise Unauthorized(NOT_AUTHENTICATED)
        return None
    return Caller(decode_access_token(credentials.credentials))


CurrentCaller = Annotated[Caller, Depends(current_caller)]
OptionalCaller = Annotated[Caller | None, Depends(optional_caller)]


async def file_url_builder(
    request: Request, storage: StorageDep, settings: SettingsDep
) -> Callable:
    """Turns a storage key into an absolute, expiring download URL (local files: on the
    API's public base URL)."""
    base_url = settings.base_url_for(str(request.base_url))

    def url_for(key: str | None) -> str | None:
        if key is None:
            return None
        return storage.url(key, expires_in=settings.url_ttl_seconds, base_url=base_url)

    return url_for


FileUrls = Annotated[Callable[[str | None], str | None], Depends(file_url_builder)]
