"""Password hashing (argon2id) and access tokens (JWT, HS256 only)."""

from __future__ import annotations

import hashlib
import hmac
import time
from functools import lru_cache

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from anb.core.errors import Unauthorized
from anb.core.settings import get_settings

ALGORITHM = "HS256"
INVALID_TOKEN = "Token inválido o expirado."


@lru_cache
def _hasher() -> PasswordHasher:
    """argon2id at OWASP's recommended minimum (19 MiB, 2 passes, 1 lane; Password Storage
    Cheat Sheet): argon2-cffi's default of 64 MiB per hash would let a burst of concurrent
    logins take gigabytes from an API instance."""
    return PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)


def hash_password(password: str) -> str:
    return _hasher().hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    """Whether `password` matches; `password_hash` None (an unknown email) is checked against
    a dummy hash, so both failures take the same time. The dummy hash is made here, in the
    caller's thread (the password pool), and not where the account was looked up: made in a
    database thread, a burst of first logins would hash outside the pool's bound."""
    if password_hash is None:
        _verify(dummy_password_hash(), password)
        return False
    return _verify(password_hash, password)


def _verify(password_hash: str, password: str) -> bool:
    try:
        return _hasher().verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


@lru_cache
def dummy_password_hash() -> str:
    """Verified against for an unknown email (see `verify_password`)."""
    return hash_password("not-a-real-password")


def create_access_token(subject: str) -> str:
    settings = get_settings()
    now = int(time.time())
    claims = {"sub": subject, "iat": now, "exp": now + settings.jwt_ttl_seconds}
    return jwt.encode(claims, settings.signing_secret, algorithm=ALGORITHM)


def decode_access_token(token: str) -> str:
    """The token's subject (a user id); `Unauthorized` for anything tampered, expired or odd."""
    try:
        claims = jwt.decode(
            token,
            get_settings().signing_secret,
            algorithms=[ALGORITHM],
            options={"require": ["sub", "exp", "iat"]},
        )
    except jwt.PyJWTError as exc:
        raise Unauthorized(INVALID_TOKEN) from exc
    subject = claims["sub"]
    if not isinstance(subject, str) or not subject:
        raise Unauthorized(INVALID_TOKEN)
    return subject


def sign(message: str, *, purpose: str = "file-urls") -> str:
    """HMAC-SHA256 of `message` under a key derived from the signing secret for `purpose`
    (not the JWT key; a signature made for one purpose is worthless for another)."""
    secret = get_settings().signing_secret.encode()
    key = hashlib.sha256(f"anb-{purpose}:".encode() + secret).digest()
    return hmac.new(key, message.encode(), hashlib.sha256).hexdigest()


def signature_matches(message: str, signature: str, *, purpose: str = "file-urls") -> bool:
    return hmac.compare_digest(sign(message, purpose=purpose), signature)
