from __future__ import annotations

from fastapi import APIRouter, Request, status

from anb.core import ratelimit
from anb.core.deps import CacheDep, SessionDep, SettingsDep
from anb.core.responses import error_responses
from anb.users import service
from anb.users.schemas import LoginRequest, SignupRequest, SignupResponse, TokenResponse

router = APIRouter(prefix="/api/auth", tags=["auth"])

TOO_MANY_LOGINS = "Demasiados intentos de inicio de sesión; inténtalo de nuevo en {seconds} s."


@router.post(
    "/signup",
    status_code=status.HTTP_201_CREATED,
    response_model=SignupResponse,
    responses=error_responses(400),
)
def signup(data: SignupRequest, session: SessionDep) -> SignupResponse:
    user = service.signup(session, data=data)
    return SignupResponse(message="Usuario creado exitosamente.", user_id=user.id)


@router.post("/login", response_model=TokenResponse, responses=error_responses(400, 401, 429))
def login(
    data: LoginRequest,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    cache: CacheDep,
) -> TokenResponse:
    client = request.client.host if request.client else "unknown"
    ratelimit.enforce(
        cache,
        rule=settings.login_rate_limit,
        subject=f"login:{client}:{data.email.strip().lower()}",
        detail=TOO_MANY_LOGINS,
    )
    token = service.login(session, email=data.email, password=data.password)
    return TokenResponse(access_token=token, expires_in=settings.jwt_ttl_seconds)
