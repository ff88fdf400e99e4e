"""Domain exceptions. Each carries the player-facing `detail`; the API maps the family
(`NotFound`, `Forbidden`, ...) to a status code in one place, the worker to a failed item."""

from __future__ import annotations


class DomainError(Exception):
    status_code = 400

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class InvalidInput(DomainError):
    status_code = 400


class Unauthorized(DomainError):
    status_code = 401


class Forbidden(DomainError):
    status_code = 403


class NotFound(DomainError):
    status_code = 404


class Unavailable(DomainError):
    """A dependency (database, storage, queue) cannot be reached; worth retrying later."""

    status_code = 503


class TooManyRequests(DomainError):
    status_code = 429

    def __init__(self, detail: str, *, retry_after: int) -> None:
        super().__init__(detail)
        self.retry_after = retry_after
