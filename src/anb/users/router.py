from __future__ import annotations

from fastapi import APIRouter, Request, status

from anb.core import ratelimit, security
from anb.core.concurrency import password_pool
from anb.core.db import run_db
from anb.core.deps import CacheDep, SettingsDep
from anb.core.responses import error_responses
from anb.users import service
from anb.users.emails import normalized_email
from anb.users.schemas import LoginRequest, SignupRequest, SignupResponse, TokenResponse

router = APIRouter(prefix="/api/auth", tags=["auth"])

TOO_MANY_LOGINS = "Demasiados intentos de inicio de sesión; inténtalo de nuevo en {seconds} s."


@router.post(
    "/signup",
    status_code=status.HTTP_201_CREATED,
    response_model=SignupResponse,
    responses=error_responses(400, 503),
)
async def signup(data: SignupRequest) -> SignupResponse:
    service.check_passwords_match(data)
    password_hash = await password_pool().run(security.hash_password, data.password1)
    user = await run_db(
        lambda session: service.signup(session, data=data, password_hash=password_hash)
    )
    return SignupResponse(message="Usuario creado exitosamente.", user_id=user.id)


@router.post("/login", response_model=TokenResponse, responses=error_responses(400, 401, 429, 503))
async def login(
    data: LoginRequest, request: Request, settings: SettingsDep, cache: CacheDep
) -> TokenResponse:
    """Argon2id runs in a pool of its own, with no database connection held meanwhile."""
    client = request.client.host if request.client else "unknown"
    subject = f"login:{client}:{normalized_email(data.email)}"

    def find_candidate(session):
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
