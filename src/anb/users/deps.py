"""Who is calling: the account behind a valid access token, as FastAPI dependencies."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from anb.core.deps import Credentials
from anb.core.errors import Unauthorized
from anb.core.security import decode_access_token
from anb.users import service as users
from anb.users.models import User

NOT_AUTHENTICATED = "No autenticado: falta el token de acceso (Authorization: Bearer)."


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
