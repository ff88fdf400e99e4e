"""PublicService: the public video list, votes and the rankings.

Lists and rankings are read through the cache. Each filter scope (all, a city, a country,
both) has a generation counter in the cache and every cached entry is keyed by the current
generation of its scope; a vote (or a newly published video) bumps the generations of the
scopes it changes, so their next read recomputes from the database while other scopes keep
their entries.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from datetime import datetime

from sqlalchemy import Select, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from anb.cache import Cache
from anb.core.errors import InvalidInput, NotFound
from anb.core.text import search_key
from anb.public.models import Vote
from anb.users.models import User
from anb.videos.models import Video, VideoStatus

CACHE_TTL_SECONDS = 300


class PublicVideoNotFound(NotFound):
    def __init__(self) -> None:
        super().__init__("Video no encontrado.")


class AlreadyVoted(InvalidInput):
    def __init__(self) -> None:
        super().__init__("Ya has votado por este video.")


@dataclass(frozen=True)
class Scope:
    """A filter of the public views: folded city and country, empty meaning any."""

    city: str = ""
    country: str = ""

    @classmethod
    def of(cls, city: str | None, country: str | None) -> Scope:
        return cls(search_key(city or ""), search_key(country or ""))

    @property
    def digest(self) -> str:
        return hashlib.sha256(f"{self.city}\x00{self.country}".encode()).hexdigest()[:32]

    def cache_key(self, kind: str, cache: Cache) -> str:
        """The key of this scope's `kind` entry at the scope's current generation."""
        generation = cache.get(f"anb:gen:{self.digest}") or "0"
        return f"anb:{kind}:{self.digest}:{generation}"

    def bump(self, cache: Cache) -> None:
        cache.incr(f"anb:gen:{self.digest}")

    def where(self, query: Select) -> Select:
        if self.city:
            query = query.where(User.city_key == self.city)
        if self.country:
            query = query.where(User.country_key == self.country)
        return query


def scopes_of(user: User) -> list[Scope]:
    """Every scope whose views include this player's videos."""
    city, country = user.city_key, user.country_key
    return [Scope(), Scope(city=city), Scope(country=country), Scope(city, country)]


def invalidate_views_of(cache: Cache, owner: User) -> None:
    for scope in scopes_of(owner):
        scope.bump(cache)


@dataclass(frozen=True)
class PublicVideoRow:
    video_id: str
    title: str
    username: str
    city: str
    country: str
    processed_key: str | None
    votes: int
    processed_at: datetime


def list_public_videos(
    session: Session, *, cache: Cache, scope: Scope, limit: int, offset: int
) -> tuple[list[PublicVideoRow], int]:
    """A page of public videos, most recently published first, and the total count."""
    key = f"{scope.cache_key('videos', cache)}:{limit}:{offset}"

    def compute() -> str:
        rows, total = _query_public_videos(session, scope, limit, offset)
        page = {"rows": [asdict(row) for row in rows], "total": total}
        return json.dumps(page, default=datetime.isoformat)

    page = json.loads(cache.get_or_compute(key, compute, ttl_seconds=CACHE_TTL_SECONDS))
    rows = [
        PublicVideoRow(**{**row, "processed_at": datetime.fromisoformat(row["processed_at"])})
        for row in page["rows"]
    ]
    return rows, page["total"]


def _query_public_videos(
    session: Session, scope: Scope, limit: int, offset: int
) -> tuple[list[PublicVideoRow], int]:
    public = scope.where(
        select(Video, User).join(User, Video.owner_id == User.id)
        .where(Video.status == VideoStatus.processed)
    )  # fmt: skip
    total = session.scalar(select(func.count()).select_from(public.subquery())) or 0
    page = public.order_by(Video.processed_at.desc(), Video.id).limit(limit).offset(offset)
    rows = [
        PublicVideoRow(
            video_id=video.id,
            title=video.title,
            username=owner.full_name,
            city=owner.city,
            country=owner.country,
            processed_key=video.processed_key,
            votes=video.votes,
            processed_at=video.processed_at,
        )
        for video, owner in session.execute(page)
    ]
    return rows, total


def voted_by(session: Session, *, user: User | None, video_ids: list[str]) -> set[str]:
    if user is None or not video_ids:
        return set()
    query = select(Vote.video_id).where(Vote.user_id == user.id, Vote.video_id.in_(video_ids))
    return set(session.scalars(query))


def vote(session: Session, *, cache: Cache, voter: User, video_id: str) -> None:
    """Record one vote; the database's key on (user, video) refuses a second one."""
    found = session.execute(
        select(Video.status, User).join(User, Video.owner_id == User.id).where(Video.id == video_id)
    ).first()
    if found is None or found[0] != VideoStatus.processed:
        raise PublicVideoNotFound()
    owner = found[1]
    try:
        session.add(Vote(user_id=voter.id, video_id=video_id))
        session.flush()
    except IntegrityError as exc:
        session.rollback()
        raise AlreadyVoted() from exc
    session.execute(update(Video).where(Video.id == video_id).values(votes=Video.votes + 1))
    session.commit()
    invalidate_views_of(cache, owner)


@dataclass(frozen=True)
class Ranked:
    position: int
    username: str
    city: str
    votes: int


def rankings(
    session: Session, *, cache: Cache, scope: Scope, limit: int, offset: int
) -> list[Ranked]:
    """A page of the scope's ranking; positions count from its top, ties share one."""
    cached = cache.get_or_compute(
        scope.cache_key("rankings", cache),
        lambda: json.dumps(_compute_ranking(session, scope)),
        ttl_seconds=CACHE_TTL_SECONDS,
    )
    return [Ranked(*entry) for entry in json.loads(cached)[offset : offset + limit]]


def _compute_ranking(session: Session, scope: Scope) -> list[tuple[int, str, str, int]]:
    total_votes = func.sum(Video.votes).label("votes")
    query = scope.where(
        select(User.first_name, User.last_name, User.city, total_votes)
        .join(Video, Video.owner_id == User.id)
        .where(Video.status == VideoStatus.processed)
        .group_by(User.id, User.first_name, User.last_name, User.city)
        .order_by(total_votes.desc(), User.first_name, User.last_name, User.id)
    )
    ranking: list[tuple[int, str, str, int]] = []
    position = 0
    for index, (first, last, city, votes) in enumerate(session.execute(query), start=1):
        if not ranking or votes != ranking[-1][3]:
            position = index
        ranking.append((position, f"{first} {last}", city, int(votes)))
    return ranking
