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
    first = errors[0] if errors else {"location": "body", "field": "body", "message": "inválido"}
    place = _PLACES.get(first["location"])
    if place:
        detail = f"Parámetro inválido {place}: {first['field']}"
    else:
        detail = f"{first['field']}: {first['message']}"
    return JSONResponse({"detail": detail, "errors": errors}, status_code=400)


def _describe(error: dict[str, Any]) -> dict[str, str]:
    location, *path = [str(part) for part in error.get("loc", ("body",))]
    if error.get("type") == "json_invalid":
        return {"location": location, "field": "body", "message": "el JSON no es válido"}
    field = ".".join(path) or location
    message = str(error.get("msg", "valor inválido"))
    if error.get("type") == "missing":
        message = "campo requerido"
    return {"location": location, "field": field, "message": message}


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
