from __future__ import annotations

from fastapi import APIRouter, Request, status
from sqlalchemy.orm import Session

from anb.cache import ratelimit
from anb.cache.deps import CacheDep
from anb.core import security
from anb.core.concurrency import password_pool
from anb.core.db import run_db
from anb.core.deps import SettingsDep
from anb.core.responses import error_responses
from anb.users import service
from anb.users.emails import normalized_email
from anb.users.schemas import LoginRequest, SignupRequest, SignupResponse, TokenResponse

router = APIRouter(prefix="/api/auth", tags=["auth"])

TOO_MANY_LOGINS = "Demasiados intentos de inicio de sesión; inténtalo de nuevo en {seconds} s."
TOO_MANY_SIGNUPS = "Demasiados registros desde esta dirección; inténtalo de nuevo en {seconds} s."


@router.post(
    "/signup",
    summary="Create a player account",
    status_code=status.HTTP_201_CREATED,
    response_model=SignupResponse,
    responses=error_responses(400, 429, 503),
)
async def signup(
    data: SignupRequest, request: Request, settings: SettingsDep, cache: CacheDep
) -> SignupResponse:
    """Sign-ups are limited per client address (`ANB_SIGNUP_RATE_LIMIT`), counted before
    argon2id runs."""
    service.check_passwords_match(data)
    subject = f"signup:{_client_address(request)}"

    def limited_hash() -> str:
        rule = settings.signup_rate_limit
        ratelimit.enforce(cache, rule=rule, subject=subject, detail=TOO_MANY_SIGNUPS)
        return security.hash_password(data.password1)

    password_hash = await password_pool().run(limited_hash)
    user = await run_db(
        lambda session: service.signup(session, data=data, password_hash=password_hash)
    )
    return SignupResponse(message="Usuario creado exitosamente.", user_id=user.id)


def _client_address(request: Request) -> str:
    """The client's address (a trusted proxy's X-Forwarded-For applied, see
    ANB_TRUSTED_PROXIES)."""
    return request.client.host if request.client else "unknown"


@router.post(
    "/login",
    summary="Sign in: an access token for the Authorization header",
    response_model=TokenResponse,
    responses=error_responses(400, 401, 429, 503),
)
async def login(
    data: LoginRequest, request: Request, settings: SettingsDep, cache: CacheDep
) -> TokenResponse:
    """Argon2id runs in a pool of its own, with no database connection held meanwhile."""
    subject = f"login:{_client_address(request)}:{normalized_email(data.email)}"

    def find_candidate(session: Session) -> service.LoginCandidate:
        ratelimit.enforce(
            cache, rule=settings.login_rate_limit, subject=subject, detail=TOO_MANY_LOGINS
        )
        return service.login_candidate(session, email=data.email)

    candidate = await run_db(find_candidate)
    matches = await password_pool().run(
        security.verify_password, candidate.password_hash, data.password
    )
    token = service.login(candidate, password_matches=matches)
    return TokenResponse(access_token=token, expires_in=settings.jwt_ttl_seconds)
