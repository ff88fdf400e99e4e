"""UserService: sign-up, login and who a token belongs to."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from anb.core import security
from anb.core.errors import InvalidInput, Unauthorized
from anb.core.text import search_key
from anb.users.models import User
from anb.users.schemas import SignupRequest

INVALID_CREDENTIALS = "Credenciales inválidas."


class EmailAlreadyRegistered(InvalidInput):
    def __init__(self, email: str) -> None:
        super().__init__(f"email: el correo {email} ya está registrado.")


class PasswordsDiffer(InvalidInput):
    def __init__(self) -> None:
        super().__init__("password2: las contraseñas no coinciden.")


def signup(session: Session, *, data: SignupRequest) -> User:
    if data.password1 != data.password2:
        raise PasswordsDiffer()
    email = data.email.lower()
    if _find_by_email(session, email) is not None:
        raise EmailAlreadyRegistered(email)
    user = User(
        email=email,
        password_hash=security.hash_password(data.password1),
        first_name=data.first_name,
        last_name=data.last_name,
        city=data.city,
        country=data.country,
        city_key=search_key(data.city),
        country_key=search_key(data.country),
    )
    session.add(user)
    try:
        session.commit()
    except IntegrityError as exc:  # a concurrent sign-up with the same email won the race
        session.rollback()
        raise EmailAlreadyRegistered(email) from exc
    return user


def login(session: Session, *, email: str, password: str) -> str:
    """An access token, or `Unauthorized` alike for an unknown email and a wrong password."""
    user = _find_by_email(session, email.strip().lower())
    password_hash = user.password_hash if user else security.dummy_password_hash()
    if not security.verify_password(password_hash, password) or user is None:
        raise Unauthorized(INVALID_CREDENTIALS)
    return security.create_access_token(user.id)


def user_for_token(session: Session, *, token: str) -> User:
    user = session.get(User, security.decode_access_token(token))
    if user is None:  # the account no longer exists
        raise Unauthorized(security.INVALID_TOKEN)
    return user


def _find_by_email(session: Session, email: str) -> User | None:
    """Emails are stored lower-cased, so an exact match on the unique index suffices."""
    return session.scalars(select(User).where(User.email == email)).first()
