from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response

from anb.core import ratelimit
from anb.core.deps import (
    CacheDep,
    CurrentUser,
    FileUrls,
    OptionalUser,
    SessionDep,
    SettingsDep,
    VideoId,
)
from anb.core.responses import error_responses
from anb.core.text import NO_NUL
from anb.public import service
from anb.public.schemas import PublicVideo, RankingEntry, VoteRecorded

router = APIRouter(prefix="/api/public", tags=["public"])

TOO_MANY_VOTES = "Demasiados votos seguidos; inténtalo de nuevo en {seconds} s."

City = Annotated[
    str | None,
    Query(max_length=100, pattern=NO_NUL, description="Case- and accent-insensitive"),
]
Country = Annotated[
    str | None,
    Query(max_length=100, pattern=NO_NUL, description="Case- and accent-insensitive"),
]
Offset = Annotated[int, Query(ge=0, le=1_000_000)]


@router.get("/videos", response_model=list[PublicVideo], responses=error_responses(400, 401))
def list_public_videos(
    response: Response,
    session: SessionDep,
    cache: CacheDep,
    urls: FileUrls,
    user: OptionalUser,
    city: City = None,
    country: Country = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    offset: Offset = 0,
) -> list[PublicVideo]:
    """Published videos, most recent first; the total is in `X-Total-Count`."""
    scope = service.Scope.of(city, country)
    rows, total = service.list_public_videos(
        session, cache=cache, scope=scope, limit=limit, offset=offset
    )
    voted = service.voted_by(session, user=user, video_ids=[row.video_id for row in rows])
    response.headers["X-Total-Count"] = str(total)
    return [
        PublicVideo(
            video_id=row.video_id,
            title=row.title,
            username=row.username,
            city=row.city,
            country=row.country,
            processed_url=urls(row.processed_key),
            votes=row.votes,
            processed_at=row.processed_at,
            voted=row.video_id in voted,
        )
        for row in rows
    ]


@router.post(
    "/videos/{video_id}/vote",
    response_model=VoteRecorded,
    responses=error_responses(400, 401, 404, 429),
)
def vote(
    video_id: VideoId,
    user: CurrentUser,
    session: SessionDep,
    cache: CacheDep,
    settings: SettingsDep,
) -> VoteRecorded:
    ratelimit.enforce(
        cache, rule=settings.vote_rate_limit, subject=f"vote:{user.id}", detail=TOO_MANY_VOTES
    )
    service.vote(session, cache=cache, voter=user, video_id=video_id)
    return VoteRecorded(message="Voto registrado exitosamente.")


@router.get("/rankings", response_model=list[RankingEntry], responses=error_responses(400))
def rankings(
    session: SessionDep,
    cache: CacheDep,
    city: City = None,
    country: Country = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 10,
    offset: Offset = 0,
) -> list[RankingEntry]:
    """Players by the votes of their public videos; ties share a position."""
    scope = service.Scope.of(city, country)
    ranked = service.rankings(session, cache=cache, scope=scope, limit=limit, offset=offset)
    return [RankingEntry(**vars(entry)) for entry in ranked]
