"""Documented error responses, for the OpenAPI description of each route."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import FastAPI
from pydantic import BaseModel, Field, PlainSerializer

_DESCRIPTIONS = {
    400: "Invalid request",
    401: "Missing, malformed or expired token",
    403: "Not yours",
    404: "Not found",
    429: "Too many requests: wait the seconds of Retry-After",
    503: "A dependency is unavailable",
}


class FieldError(BaseModel):
    location: str
    field: str
    message: str


class ErrorBody(BaseModel):
    detail: str
    errors: list[FieldError] | None = None
    """Present on validation errors: every field that was refused, and why."""


def document_400_for_validation(app: FastAPI) -> None:
    """Request validation answers 400 (see core.handlers): describe it so in OpenAPI,
    instead of FastAPI's default 422."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = FastAPI.openapi(app)  # kept as app.openapi_schema, and edited in place
            for operation in _operations(schema):
                if operation.get("responses", {}).pop("422", None) is not None:
                    operation["responses"].setdefault("400", _error_400())
            components = schema.get("components", {}).get("schemas", {})
            for unused in ("HTTPValidationError", "ValidationError"):
                components.pop(unused, None)
            components.setdefault("ErrorBody", ErrorBody.model_json_schema(ref_template=_REF))
            components.setdefault("FieldError", FieldError.model_json_schema(ref_template=_REF))
            return schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented way to extend it


_REF = "#/components/schemas/{model}"


def _operations(schema: dict[str, Any]) -> list[dict[str, Any]]:
    return [operation for path in schema.get("paths", {}).values() for operation in path.values()]


def _error_400() -> dict[str, Any]:
    return {
        "description": _DESCRIPTIONS[400],
        "content": {"application/json": {"schema": {"$ref": _REF.format(model="ErrorBody")}}},
    }


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    return {code: {"model": ErrorBody, "description": _DESCRIPTIONS[code]} for code in codes}


def _utc_iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


Timestamp = Annotated[datetime, PlainSerializer(_utc_iso, return_type=str)]
"""A datetime rendered as ISO 8601 in UTC with a `Z` suffix."""

ThumbnailUrl = Annotated[
    str | None,
    Field(
        description="The poster: a 1280x720 JPEG frame of the processed clip's footage, at an "
        "absolute, expiring URL like the clip's. Null until the video is processed."
    ),
]
"""A video's poster URL, in every shape that lists videos."""
