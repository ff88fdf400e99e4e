"""Documented error responses, for the OpenAPI description of each route."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import BaseModel, PlainSerializer

_DESCRIPTIONS = {
    400: "Invalid request",
    401: "Missing, malformed or expired token",
    403: "Not yours",
    404: "Not found",
    503: "A dependency is unavailable",
}


class ErrorBody(BaseModel):
    detail: str


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    return {code: {"model": ErrorBody, "description": _DESCRIPTIONS[code]} for code in codes}


def _utc_iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


Timestamp = Annotated[datetime, PlainSerializer(_utc_iso, return_type=str)]
"""A datetime rendered as ISO 8601 in UTC with a `Z` suffix."""
