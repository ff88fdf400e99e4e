"""UserService: sign-up, login and who a token belongs to."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from anb.core import security
from anb.core.errors import InvalidInput, Unauthorized
from anb.core.text import search_key
from anb.users.emails import normalized_email
from anb.users.models import User
from anb.users.schemas import SignupRequest

INVALID_CREDENTIALS = "Credenciales inválidas."


class EmailAlreadyRegistered(InvalidInput):
    def __init__(self, email: str) -> None:
        super().__init__(f"email: el correo {email} ya está registrado.")


class AccountGone(Unauthorized):
    """A valid token whose account no longer exists."""

    def __init__(self) -> None:
        super().__init__(security.INVALID_TOKEN)


class PasswordsDiffer(InvalidInput):
    def __init__(self) -> None:
        super().__init__("password2: las contraseñas no coinciden.")


def check_passwords_match(data: SignupRequest) -> None:
    if data.password1 != data.password2:
        raise PasswordsDiffer()


def signup(session: Session, *, data: SignupRequest, password_hash: str) -> User:
    """Record a new player whose password was hashed (`security.hash_password`) beforehand,
    so no connection is held while argon2 runs."""
    check_passwords_match(data)
    email = normalized_email(data.email)
    if _find_by_email(session, email) is not None:
        raise EmailAlreadyRegistered(email)
    user = User(
        email=email,
        password_hash=password_hash,
        first_name=data.first_name,
        last_name=data.last_name,
        city=data.city,
        country=data.country,
        city_key=search_key(data.city),
        country_key=search_key(data.country),
    )
    session.add(user)
    try:
        session.flush()
    except IntegrityError as exc:  # a concurrent sign-up with the same email won the race
        raise EmailAlreadyRegistered(email) from exc
    return user


@dataclass(frozen=True)
class LoginCandidate:
    """What a login checks the password against: the account's hash, or None for an unknown
    email (`security.verify_password` then checks a dummy hash, so both failures take the
    same time)."""

    user_id: str | None
    password_hash: str | None


def login_candidate(session: Session, *, email: str) -> LoginCandidate:
    user = _find_by_email(session, normalized_email(email))
    if user is None:
        return LoginCandidate(None, None)
    return LoginCandidate(user.id, user.password_hash)


def login(candidate: LoginCandidate, *, password_matches: bool) -> str:
    """An access token, or `Unauthorized` alike for an unknown email and a wrong password."""
    if not password_matches or candidate.user_id is None:
        raise Unauthorized(INVALID_CREDENTIALS)
    return security.create_access_token(candidate.user_id)


def user_by_id(session: Session, user_id: str) -> User:
    """The account a valid token names; `Unauthorized` if it no longer exists."""
    user = session.get(User, user_id)
    if user is None:
        raise AccountGone()
    return user


def _find_by_email(session: Session, email: str) -> User | None:
    """Emails are stored lower-cased, so an exact match on the unique index suffices."""
    return session.scalars(select(User).where(User.email == email)).first()
