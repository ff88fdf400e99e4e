from __future__ import annotations

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
from anb.public.pages import (
    FILTER_MAX_CHARS,
    LIMIT_MAX,
    OFFSET_MAX,
    RANKED_PER_PAGE,
    RANKINGS_PATH,
    VIDEOS_PATH,
    VIDEOS_PER_PAGE,
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


@router.get(
    VIDEOS_PATH.removeprefix(PREFIX),
    summary="List the public (processed) videos",
    response_model=list[PublicVideo],
    responses=error_responses(400, 401, 503),
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
) -> Response:
    """Published videos, most recent first; the total is in `X-Total-Count`. (A page this
    process has at hand is answered before routing: `anb.public.pages`.)"""
    scope = Scope.of(city, country)

    def read(session: Session) -> tuple[str, int]:
        page, total = service.public_videos_page(
            session,
            cache=cache,
            scope=scope,
            limit=limit,
            offset=offset,
            url_for=urls,
            url_ttl_seconds=settings.url_ttl_seconds,
            base_url=settings.base_url_for(str(request.base_url)),
        )
        if caller is not None:
            page = service.mark_voted_by(session, voter_id=caller.user_id, page=page)
        return page, total

    page, total = await run_db(read)
    return _json(page, headers={"X-Total-Count": str(total)})


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
