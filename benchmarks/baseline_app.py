"""The floor of the API's stack: a bare FastAPI app that answers recorded responses from memory.

Run under the same Gunicorn + Uvicorn settings as the API (benchmarks.api does it), it
costs what the stack costs without the application: HTTP parsing, routing, the response
bytes. Each route of the API that was recorded answers, for the same query string, the same
status, headers and body; a POST reads its whole request body first (an upload is received
in full, as the API receives it) and throws it away.

Environment: BASELINE_RESPONSES, a JSON file of recorded answers:
[{"method", "route" (a FastAPI path template), "query", "status", "headers": [[name, value]],
"body_b64"}]. An unrecorded query answers 404.

Usage: gunicorn -k uvicorn_worker.UvicornWorker 'benchmarks.baseline_app:create_app()'
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from fastapi import FastAPI, Request, Response

RESPONSES_ENV = "BASELINE_RESPONSES"


@dataclass(frozen=True)
class Recorded:
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes

    def response(self) -> Response:
        response = Response(content=self.body, status_code=self.status)
        response.raw_headers.extend(self.headers)
        return response


Answers = dict[bytes, Recorded]  # by raw query string


def load_recorded(path: Path) -> dict[tuple[str, str], Answers]:
    """The recorded answers by (method, route template), then by query string."""
    routes: dict[tuple[str, str], Answers] = {}
    for item in json.loads(path.read_text()):
        recorded = Recorded(
            status=item["status"],
            headers=[
                (name.encode("latin-1"), value.encode("latin-1")) for name, value in item["headers"]
            ],
            body=base64.b64decode(item["body_b64"]),
        )
        routes.setdefault((item["method"], item["route"]), {})[item["query"].encode()] = recorded
    return routes


def answering(answers: Answers, *, read_body: bool) -> Callable[[Request], Awaitable[Response]]:
    async def answer(request: Request) -> Response:
        if read_body:
            async for _chunk in request.stream():
                pass
        recorded = answers.get(request.scope["query_string"])
        return recorded.response() if recorded else Response(status_code=404)

    return answer


def create_app() -> FastAPI:
    app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)
    for (method, route), answers in load_recorded(Path(os.environ[RESPONSES_ENV])).items():
        endpoint = answering(answers, read_body=method in ("POST", "PUT", "PATCH"))
        app.add_api_route(route, endpoint, methods=[method])
    return app
