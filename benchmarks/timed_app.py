"""The API with its server time on every answer: `Server-Timing: app;dur=<ms>`.

The time runs from the moment the ASGI app is called with the request until it starts the
answer (the public pages are written in one piece right after their start): the
application's own time, queueing for a database connection or a thread included, HTTP
parsing and the socket excluded. The API answers no such header itself, and the
implementation before a change would not either; wrapping the app from outside measures
both revisions the same way.

At start it writes which `anb` it imported to its standard output (the server's log), so a
benchmark can check that PYTHONPATH chose the revision it meant.

Usage: gunicorn -k uvicorn_worker.UvicornWorker 'benchmarks.timed_app:create_app()'
"""

from __future__ import annotations

import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

HEADER = b"server-timing"
SOURCE_LINE = "timed_app: anb from "


class ServerTiming:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()

        async def timed_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                ms = 1000 * (time.perf_counter() - started)
                message["headers"] = [*message.get("headers", []), (HEADER, b"app;dur=%.3f" % ms)]
            await send(message)

        await self.app(scope, receive, timed_send)


def create_app() -> ServerTiming:
    import anb
    from anb.api import create_app as create_api

    print(f"{SOURCE_LINE}{anb.__file__}", flush=True)
    return ServerTiming(create_api())


def server_ms(value: str | None) -> float | None:
    """The duration of a `Server-Timing: app;dur=<ms>` header, None without one."""
    if not value:
        return None
    for metric in value.split(","):
        name, _, params = metric.strip().partition(";")
        if name == "app" and params.startswith("dur="):
            return float(params.removeprefix("dur="))
    return None
