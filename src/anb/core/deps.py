"""FastAPI dependencies: one `Annotated` alias per resource. Tests override the providers."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Annotated

from fastapi import Depends, Path, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from anb.cache import Cache, get_cache
from anb.core.db import session_scope
from anb.core.errors import Unauthorized
from anb.core.settings import Settings, get_settings
from anb.core.text import NO_NUL
from anb.queue import JobQueue, get_queue
from anb.storage import Storage, get_storage
from anb.users import service as users
from anb.users.models import User

NOT_AUTHENTICATED = "No autenticado: falta el token de acceso (Authorization: Bearer)."

_bearer = HTTPBearer(auto_error=False, description="The access token from /api/auth/login.")


def get_session() -> Iterator[Session]:
    with session_scope() as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
StorageDep = Annotated[Storage, Depends(get_storage)]
QueueDep = Annotated[JobQueue, Depends(get_queue)]
CacheDep = Annotated[Cache, Depends(get_cache)]
VideoId = Annotated[str, Path(max_length=64, pattern=NO_NUL, description="The video's id")]
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


def current_user(session: SessionDep, credentials: Credentials) -> User:
    if credentials is None:
        raise Unauthorized(NOT_AUTHENTICATED)
    return users.user_for_token(session, token=credentials.credentials)


def optional_user(session: SessionDep, request: Request, credentials: Credentials) -> User | None:
    """The caller when a token is sent (a bad one is still refused), else anonymous."""
    if credentials is None:
        if "authorization" in request.headers:
            raise Unauthorized(NOT_AUTHENTICATED)
        return None
    return users.user_for_token(session, token=credentials.credentials)


CurrentUser = Annotated[User, Depends(current_user)]
OptionalUser = Annotated[User | None, Depends(optional_user)]


def file_url_builder(request: Request, storage: StorageDep, settings: SettingsDep) -> Callable:
    """Turns a storage key into an absolute, expiring download URL for this request's host."""

    def url_for(key: str | None) -> str | None:
        if key is None:
            return None
        return storage.url(key, expires_in=settings.url_ttl_seconds, base_url=str(request.base_url))

    return url_for


FileUrls = Annotated[Callable[[str | None], str | None], Depends(file_url_builder)]
