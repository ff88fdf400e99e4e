"""Every error leaves the API as `{"detail": ...}` with the right status and no internals."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.requests import ClientDisconnect

from anb.core.errors import DomainError

log = logging.getLogger(__name__)

DATABASE_UNAVAILABLE = "La base de datos no está disponible en este momento; inténtalo de nuevo."
DATABASE_RETRY_AFTER_SECONDS = 5
INTERNAL_ERROR = "Error interno del servidor."
_PLACES = {"query": "en la consulta", "path": "en la ruta", "header": "en los encabezados"}


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(DomainError, _domain_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(OperationalError, _database_unavailable)
    app.add_exception_handler(InterfaceError, _database_unavailable)
    app.add_exception_handler(PoolTimeout, _database_unavailable)
    # pg8000 lets the socket's own errors through when the server stops answering or drops
    # the connection; nothing else in a request talks to a socket without wrapping them.
    app.add_exception_handler(TimeoutError, _database_unavailable)
    app.add_exception_handler(ConnectionError, _database_unavailable)
    app.add_exception_handler(ClientDisconnect, _client_gone)
    app.add_exception_handler(Exception, _unexpected_error)


async def _domain_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, DomainError)
    headers = {}
    if exc.status_code == 401:
        headers["WWW-Authenticate"] = "Bearer"
    retry_after = getattr(exc, "retry_after", None)  # TooManyRequests, Overloaded
    if retry_after is not None:
        headers["Retry-After"] = str(retry_after)
    return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=headers)


async def _validation_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [_describe(error) for error in exc.errors()]
    first = errors[0] if errors else {"location": "body", "field": "body", "message": INVALID_VALUE}
    place = _PLACES.get(first["location"])
    if place:
        detail = f"Parámetro inválido {place}: {first['field']}"
    else:
        detail = f"{first['field']}: {first['message']}"
    return JSONResponse({"detail": detail, "errors": errors}, status_code=400)


def _describe(error: dict[str, Any]) -> dict[str, str]:
    location, *path = [str(part) for part in error.get("loc", ("body",))]
    if error.get("type") == "json_invalid":  # its path is a character offset, not a field
        return {"location": location, "field": "body", "message": _message(error)}
    return {"location": location, "field": ".".join(path) or location, "message": _message(error)}


INVALID_VALUE = "valor inválido"
"""For an error type without a translation: pydantic's own text is English."""

_MESSAGES = {
    "missing": "campo requerido",
    "extra_forbidden": "campo no permitido",
    "json_invalid": "el JSON no es válido",
    "json_type": "debe ser un texto JSON",
    "model_type": "debe ser un objeto JSON",
    "model_attributes_type": "debe ser un objeto JSON",
    "dict_type": "debe ser un objeto JSON",
    "mapping_type": "debe ser un objeto JSON",
    "list_type": "debe ser una lista",
    "tuple_type": "debe ser una lista",
    "set_type": "debe ser una lista",
    "iterable_type": "debe ser una lista",
    "too_short": "debe tener al menos {min_length} elementos",
    "too_long": "debe tener como máximo {max_length} elementos",
    "string_type": "debe ser un texto",
    "string_unicode": "debe ser un texto UTF-8 válido",
    "string_too_short": "debe tener al menos {min_length} caracteres",
    "string_too_long": "debe tener como máximo {max_length} caracteres",
    "string_pattern_mismatch": "contiene caracteres no permitidos",
    "bool_type": "debe ser true o false",
    "bool_parsing": "debe ser true o false",
    "int_type": "debe ser un número entero",
    "int_parsing": "debe ser un número entero",
    "int_from_float": "debe ser un número entero",
    "int_parsing_size": "es un número demasiado grande",
    "float_type": "debe ser un número",
    "float_parsing": "debe ser un número",
    "finite_number": "debe ser un número finito",
    "greater_than": "debe ser mayor que {gt}",
    "greater_than_equal": "debe ser mayor o igual que {ge}",
    "less_than": "debe ser menor que {lt}",
    "less_than_equal": "debe ser menor o igual que {le}",
    "multiple_of": "debe ser múltiplo de {multiple_of}",
    "literal_error": "debe ser uno de estos valores: {expected}",
    "enum": "debe ser uno de estos valores: {expected}",
    "none_required": "debe ser null",
    "uuid_type": "debe ser un UUID",
    "uuid_parsing": "debe ser un UUID",
    "url_type": "debe ser una URL",
    "url_parsing": "debe ser una URL válida",
    "date_type": "debe ser una fecha (AAAA-MM-DD)",
    "date_parsing": "debe ser una fecha (AAAA-MM-DD)",
    "datetime_type": "debe ser una fecha y hora ISO 8601",
    "datetime_parsing": "debe ser una fecha y hora ISO 8601",
}
"""Spanish for pydantic's error types, with its `ctx` values filled in: players read them."""

_EMAIL_ERROR = "value is not a valid email address"


def _message(error: dict[str, Any]) -> str:
    kind = error.get("type", "")
    context = error.get("ctx") or {}
    if kind in ("value_error", "assertion_error"):
        return _value_error(error, context)
    if kind in ("string_too_short", "too_short") and context.get("min_length") == 1:
        return "no puede estar vacío"
    if "expected" in context:  # literal_error and enum: "'a', 'b' or 'c'"
        context = {**context, "expected": str(context["expected"]).replace(" or ", " o ")}
    try:
        return _MESSAGES.get(kind, INVALID_VALUE).format_map(context)
    except (KeyError, IndexError, ValueError):  # a context without the expected values
        return INVALID_VALUE


def _value_error(error: dict[str, Any], context: dict[str, Any]) -> str:
    """Email addresses are refused by pydantic (in English); any other value error is raised
    by the API's own validators, whose message is written for players."""
    if str(error.get("msg", "")).startswith(_EMAIL_ERROR):
        return "no es una dirección de correo electrónico válida"
    reason = context.get("error")
    return str(reason) if reason else INVALID_VALUE


async def _database_unavailable(_request: Request, exc: Exception) -> JSONResponse:
    log.error("database unavailable: %s", type(exc).__name__)
    headers = {"Retry-After": str(DATABASE_RETRY_AFTER_SECONDS)}
    return JSONResponse({"detail": DATABASE_UNAVAILABLE}, status_code=503, headers=headers)


async def _client_gone(request: Request, _exc: Exception) -> Response:
    """The client hung up mid-request (an abandoned upload): one INFO line, since any client
    can cause it; the answer goes nowhere."""
    log.info("client disconnected during %s %s", request.method, request.url.path)
    return Response(status_code=400)


async def _unexpected_error(_request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error", exc_info=exc)
    return JSONResponse({"detail": INTERNAL_ERROR}, status_code=500)
