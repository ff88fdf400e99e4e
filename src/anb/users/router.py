from __future__ import annotations

from fastapi import APIRouter, status

from anb.core.deps import SessionDep, SettingsDep
from anb.users import service
from anb.users.schemas import LoginRequest, SignupRequest, SignupResponse, TokenResponse

router = APIRouter(prefix="/api/auth", tags=["auth"])


@router.post("/signup", status_code=status.HTTP_201_CREATED, response_model=SignupResponse)
def signup(data: SignupRequest, session: SessionDep) -> SignupResponse:
    user = service.signup(session, data=data)
    return SignupResponse(message="Usuario creado exitosamente.", user_id=user.id)


@router.post("/login", response_model=TokenResponse)
def login(data: LoginRequest, session: SessionDep, settings: SettingsDep) -> TokenResponse:
    token = service.login(session, email=data.email, password=data.password)
    return TokenResponse(access_token=token, expires_in=settings.jwt_ttl_seconds)
