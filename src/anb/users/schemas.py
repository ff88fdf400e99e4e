from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, BaseModel, BeforeValidator, EmailStr, Field, StringConstraints

from anb.core.text import NO_NUL
from anb.users.emails import mixes_confusable_scripts

Name = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100, pattern=NO_NUL)
]


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("no puede estar en blanco")
    return value


def _strip(value: object) -> object:
    return value.strip() if isinstance(value, str) else value


def _not_look_alike(address: str) -> str:
    if mixes_confusable_scripts(address):
        raise ValueError(
            "la parte antes de @ mezcla letras latinas con cirílicas o griegas, como hacen las"
            " direcciones hechas para parecerse a otra"
        )
    return address


Password = Annotated[str, Field(min_length=8, max_length=128), AfterValidator(_not_blank)]
Email = Annotated[EmailStr, BeforeValidator(_strip), AfterValidator(_not_look_alike)]


class SignupRequest(BaseModel):
    first_name: Name
    last_name: Name
    email: Email
    password1: Password
    password2: Annotated[str, Field(min_length=1, max_length=128)]
    city: Name
    country: Name


class SignupResponse(BaseModel):
    message: str
    user_id: str


class LoginRequest(BaseModel):
    email: Annotated[
        str,
        StringConstraints(strip_whitespace=True, min_length=1, max_length=320, pattern=NO_NUL),
    ]
    password: Annotated[str, Field(min_length=1, max_length=128)]


class TokenResponse(BaseModel):
    access_token: str
    token_type: str = "Bearer"
    expires_in: int
