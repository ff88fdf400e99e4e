from __future__ import annotations

from dataclasses import replace
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from sqlalchemy.orm import Session

from anb.cache import ratelimit
from anb.cache.deps import CacheDep
from anb.core.db import run_db
from anb.core.deps import SettingsDep, VideoId
from anb.core.responses import error_responses
from anb.core.text import NO_NUL
from anb.public import service
from anb.public.cursors import CURSOR_MAX_CHARS
from anb.public.pages import (
    FILTER_MAX_CHARS,
    LIMIT_MAX,
    OFFSET_MAX,
    RANKED_PER_PAGE,
    RANKINGS_PATH,
    VIDEOS_PATH,
    VIDEOS_PER_PAGE,
    list_headers,
)
from anb.public.schemas import PublicVideo, RankingEntry, VoteRecorded
from anb.public.scopes import Scope
from anb.storage.deps import FileUrls
from anb.users.deps import CurrentCaller, OptionalCaller

PREFIX = "/api/public"
router = APIRouter(prefix=PREFIX, tags=["public"])

TOO_MANY_VOTES = "Demasiados votos seguidos; inténtalo de nuevo en {seconds} s."

City = Annotated[
    str | None,
    Query(max_length=FILTER_MAX_CHARS, pattern=NO_NUL, description="Case- and accent-insensitive"),
]
Country = Annotated[
    str | None,
    Query(max_length=FILTER_MAX_CHARS, pattern=NO_NUL, description="Case- and accent-insensitive"),
]
Limit = Annotated[int, Query(ge=1, le=LIMIT_MAX)]
Offset = Annotated[int, Query(ge=0, le=OFFSET_MAX)]
Cursor = Annotated[
    str | None,
    Query(
        max_length=CURSOR_MAX_CHARS,
        pattern=NO_NUL,
        description=(
            "Opaque: the `X-Next-Cursor` of the previous page (also in its `Link: rel=next`). "
            "The page after it, read at the same cost at any depth; only with the same "
            "`city` and `country`, and not with an `offset`."
        ),
    ),
]
LIST_HEADERS = {
    "X-Total-Count": ("integer", "Public videos in the filtered list"),
    "X-Next-Cursor": ("string", "The `cursor` of the next page; absent on the last page"),
    "Link": ("string", 'RFC 8288 `<…>; rel="next"`: the next page\'s URL; absent on the last page'),
}


@router.get(
    VIDEOS_PATH.removeprefix(PREFIX),
    summary="List the public (processed) videos",
    response_model=list[PublicVideo],
    responses={
        200: {
            "headers": {
                name: {"description": text, "schema": {"type": kind}}
                for name, (kind, text) in LIST_HEADERS.items()
            }
        },
        **error_responses(400, 401, 503),
    },
)
async def list_public_videos(
    request: Request,
    cache: CacheDep,
    urls: FileUrls,
    settings: SettingsDep,
    caller: OptionalCaller,
    city: City = None,
    country: Country = None,
    limit: Limit = VIDEOS_PER_PAGE,
    offset: Offset = 0,
    cursor: Cursor = None,
) -> Response:
    """Published videos, most recent first; the total is in `X-Total-Count`, the next
    page's cursor in `X-Next-Cursor` and `Link`. (A page this process has at hand is
    answered before routing: `anb.public.pages`.)"""
    scope = Scope.of(city, country)

    def read(session: Session) -> service.VideosPage:
        page = service.public_videos_page(
            session,
            cache=cache,
            scope=scope,
            limit=limit,
            offset=offset,
            cursor=cursor,
            url_for=urls,
            url_ttl_seconds=settings.url_ttl_seconds,
            base_url=settings.base_url_for(str(request.base_url)),
        )
        if caller is None:
            return page
        body = service.mark_voted_by(session, voter_id=caller.user_id, page=page.body)
        return replace(page, body=body)

    page = await run_db(read)
    return _json(page.body, headers=list_headers(page, city=city, country=country, limit=limit))


def _json(body: str, headers: dict[str, str] | None = None) -> Response:
    """An answer already serialized (and cached) in the shape of its response model."""
    return Response(body, media_type="application/json", headers=headers)


@router.post(
    "/videos/{video_id}/vote",
    summary="Vote for a public video (once per player)",
    response_model=VoteRecorded,
    responses=error_responses(400, 401, 404, 429, 503),
)
async def vote(
    video_id: VideoId, caller: CurrentCaller, cache: CacheDep, settings: SettingsDep
) -> VoteRecorded:
    def record(session: Session) -> None:
        ratelimit.enforce(
            cache,
            rule=settings.vote_rate_limit,
            subject=f"vote:{caller.user_id}",
            detail=TOO_MANY_VOTES,
        )
        service.vote(session, cache=cache, voter_id=caller.user_id, video_id=video_id)

    await run_db(record)
    return VoteRecorded(message="Voto registrado exitosamente.")


@router.get(
    RANKINGS_PATH.removeprefix(PREFIX),
    summary="Players ranked by their videos' votes",
    response_model=list[RankingEntry],
    responses=error_responses(400, 503),
)
async def rankings(
    cache: CacheDep,
    city: City = None,
    country: Country = None,
    limit: Limit = RANKED_PER_PAGE,
    offset: Offset = 0,
) -> Response:
    """Players by the votes of their public videos; ties share a position."""
    scope = Scope.of(city, country)
    page = await run_db(
        lambda session: service.rankings_page(
            session, cache=cache, scope=scope, limit=limit, offset=offset
        )
    )
    return _json(page)
