"""Liveness (touches nothing) and readiness (every dependency answers)."""

from __future__ import annotations

import logging
from collections.abc import Callable

import anyio.to_thread
from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy import text

from anb.cache import get_cache
from anb.core.db import get_engine
from anb.queue import get_queue
from anb.storage import get_storage

router = APIRouter(tags=["health"])
log = logging.getLogger(__name__)


class Health(BaseModel):
    status: str


class Readiness(BaseModel):
    status: str
    components: dict[str, str]


@router.get("/health", response_model=Health, summary="Liveness, for the load balancer")
@router.get("/api/health", response_model=Health, summary="Liveness")
async def health() -> Health:
    """Liveness: answered by the event loop itself, never behind application work."""
    return Health(status="healthy")


def _check_database() -> None:
    with get_engine(pooled=False).connect() as connection:
        connection.execute(text("SELECT 1"))


CHECKS: dict[str, Callable[[], None]] = {
    "database": _check_database,
    "storage": lambda: get_storage().check(),
    "queue": lambda: get_queue().check(),
    "cache": lambda: get_cache().check(),
}


@router.get(
    "/api/health/ready",
    response_model=Readiness,
    responses={503: {"model": Readiness}},
    summary="Readiness: database, storage, queue and cache answer",
)
async def ready() -> JSONResponse:
    """Runs outside the request pools (a saturated pool must not read as a dependency down);
    each check is bounded by its client's own timeouts."""
    components = await anyio.to_thread.run_sync(_states)
    healthy = all(state == "ok" for state in components.values())
    body = Readiness(status="ready" if healthy else "unavailable", components=components)
    return JSONResponse(body.model_dump(), status_code=200 if healthy else 503)


def _states() -> dict[str, str]:
    return {name: _state(name, check) for name, check in CHECKS.items()}


def _state(name: str, check: Callable[[], None]) -> str:
    try:
        check()
    except Exception as exc:
        log.warning("readiness: %s is down: %s", name, type(exc).__name__)
        return "down"
    return "ok"
