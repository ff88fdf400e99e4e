"""Lambda entry point of the API: API Gateway HTTP API (payload 2.0) and ALB events.

Mangum translates each event into an ASGI request for the FastAPI app. The app is built
once per execution environment, at import (the cold start); engines and clients are created
lazily at first use, so no ASGI lifespan is needed (Mangum would run it on every call).
The objects made by then are frozen out of the garbage collector's walks (`anb.core.heap`)."""

from mangum import Mangum

from anb.api import create_app
from anb.core.heap import freeze_startup_objects

handler = Mangum(create_app(), lifespan="off")
freeze_startup_objects()
