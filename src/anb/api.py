"""The ASGI application."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi_offline import FastAPIOffline

from anb import health
from anb.core.handlers import install_error_handlers
from anb.core.middleware import install_middleware
from anb.core.responses import document_400_for_validation
from anb.core.settings import get_settings
from anb.public.pages import CachedPublicPages
from anb.public.router import router as public_router
from anb.storage.router import router as files_router
from anb.users.router import router as users_router
from anb.videos.router import router as videos_router

TITLE = "ANB Rising Stars Showcase API"
DESCRIPTION = """Players upload skill videos; the public votes; rankings by city pick who plays
the ANB Rising Stars Showcase. Sign in with `/api/auth/login` and send the token as
`Authorization: Bearer <token>`."""
DOCS_ASSETS = "/docs/assets"
"""Swagger UI's and ReDoc's scripts, served from the `fastapi-offline` package: the docs work
without internet (FastAPI's defaults load them from a CDN)."""

TAGS = [
    {"name": "auth", "description": "Sign up, and sign in for an access token."},
    {"name": "videos", "description": "The signed-in player's own videos."},
    {"name": "public", "description": "Processed videos, votes and rankings: open to all."},
    {"name": "health", "description": "Liveness and readiness, for load balancers and people."},
]
"""The docs' sections, in the order a client meets them."""


def create_app() -> FastAPI:
    app = FastAPIOffline(
        title=TITLE,
        version="1.0.0",
        description=DESCRIPTION,
        openapi_tags=TAGS,
        static_url=DOCS_ASSETS,
    )
    install_error_handlers(app)
    app.add_middleware(CachedPublicPages)  # innermost: the others' headers apply to it too
    install_middleware(app, get_settings())
    document_400_for_validation(app)
    # the public reads first: they are most of the traffic, and routes are matched in order
    for router in (health.router, public_router, users_router, videos_router, files_router):
        app.include_router(router)
    return app
