"""PublicService: the public video list, votes and the rankings.

Lists and rankings are read through the cache. Each filter scope (all, a city, a country,
both) has a generation counter in the cache and every cached entry is keyed by the current
generation of its scope; a vote (or a newly published video) bumps the generations of the
scopes it changes, so their next read recomputes while other scopes keep their entries.
A ranking page is read from the scope's leaderboard, which the vote updated (see
`anb.public.ranking`), or from one SQL query without one.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import TypeAdapter
from sqlalchemy import Select, bindparam, func, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from anb.cache import Cache
from anb.core.db import UTCDateTime, after_commit, utcnow
from anb.core.errors import InvalidInput, NotFound
from anb.public import ranking
from anb.public.models import Vote
from anb.public.schemas import PublicVideo, RankingEntry
from anb.public.scopes import Scope
from anb.users.models import User
from anb.users.service import AccountGone
from anb.videos.models import Video, VideoStatus

CACHE_TTL_SECONDS = 300


class PublicVideoNotFound(NotFound):
    def __init__(self) -> None:
        super().__init__("Video no encontrado.")


class AlreadyVoted(InvalidInput):
    def __init__(self) -> None:
        super().__init__("Ya has votado por este video.")


def invalidate_views_of(cache: Cache, owner: User) -> None:
    """A video of `owner` was published: the player enters the boards (with 0 votes if
    new), and every scope whose views include the player's videos is bumped."""
    ranking.record_publication(cache.leaderboard(), ranking.Player.of(owner))
    _invalidate_scopes(cache, owner.city_key, owner.country_key)


def _invalidate_scopes(cache: Cache, city: str, country: str) -> None:
    cache.incr_all([scope.generation_key for scope in Scope.containing(city, country)])


_PUBLIC_PAGE = TypeAdapter(list[PublicVideo])
_RANKING_PAGE = TypeAdapter(list[RankingEntry])


def public_videos_page(
    session: Session,
    *,
    cache: Cache,
    scope: Scope,
    limit: int,
    offset: int,
    url_for: Callable[[str | None], str | None],
    url_ttl_seconds: int,
    base_url: str,
) -> tuple[str, int]:
    """A page of public videos, most recently published first, as the JSON the API answers
    (`voted` false), and the total count. The page is cached with its signed URLs (per
    `base_url`, the host local file URLs point to), so the entry lives at most half as long
    as they do."""
    key = _videos_page_key(scope.cache_key("videos", cache), limit, offset, base_url)

    def compute() -> str:
        items, total = _query_public_videos(session, scope, limit, offset, url_for)
        return f"{total}:{_PUBLIC_PAGE.dump_json(items).decode()}"

    ttl = min(CACHE_TTL_SECONDS, url_ttl_seconds // 2)
    return _split_page(cache.get_or_compute(key, compute, ttl_seconds=ttl))


def peek_public_videos_page(
    cache: Cache, *, scope: Scope, limit: int, offset: int, base_url: str
) -> tuple[str, int] | None:
    """`public_videos_page` if this process has it at hand (no I/O), else None."""
    scope_key = scope.peeked_cache_key("videos", cache)
    if scope_key is None:
        return None
    cached = cache.peek(_videos_page_key(scope_key, limit, offset, base_url))
    return None if cached is None else _split_page(cached)


def _videos_page_key(scope_key: str, limit: int, offset: int, base_url: str) -> str:
    digest = hashlib.sha256(base_url.encode()).hexdigest()[:16]
    return f"{scope_key}:{limit}:{offset}:{digest}"


def _split_page(cached: str) -> tuple[str, int]:
    total, _, body = cached.partition(":")
    return body, int(total)


def _query_public_videos(
    session: Session,
    scope: Scope,
    limit: int,
    offset: int,
    url_for: Callable[[str | None], str | None],
) -> tuple[list[PublicVideo], int]:
    public = scope.where(
        select(Video, User).join(User, Video.owner_id == User.id)
        .where(Video.status == VideoStatus.processed)
    )  # fmt: skip
    total = session.scalar(select(func.count()).select_from(public.subquery())) or 0
    page = public.order_by(Video.processed_at.desc(), Video.id).limit(limit).offset(offset)
    items = [
        PublicVideo(
            video_id=video.id,
            title=video.title,
            username=owner.full_name,
            city=owner.city,
            country=owner.country,
            processed_url=url_for(video.processed_key),
            thumbnail_url=url_for(video.thumbnail_key),
            votes=video.votes,
            processed_at=video.processed_at,
            voted=False,
        )
        for video, owner in session.execute(page)
    ]
    return items, total


def mark_voted_by(session: Session, *, voter_id: str, page: str) -> str:
    """The page JSON with `voted` true on the videos the voter voted for (`AccountGone`,
    401, if the account no longer exists)."""
    items = json.loads(page)
    voted = voted_by(session, voter_id=voter_id, video_ids=[item["video_id"] for item in items])
    if not voted:
        return page
    for item in items:
        item["voted"] = item["video_id"] in voted
    return json.dumps(items, ensure_ascii=False, separators=(",", ":"))


def voted_by(session: Session, *, voter_id: str, video_ids: list[str]) -> set[str]:
    """Which of these videos the voter voted for, read with the account in one query:
    `AccountGone` (401) if the account no longer exists."""
    on_page = (Vote.user_id == User.id) & Vote.video_id.in_(video_ids)
    query = select(User.id, Vote.video_id).outerjoin(Vote, on_page).where(User.id == voter_id)
    rows = session.execute(query).all()
    if not rows:
        raise AccountGone()
    return {video_id for _, video_id in rows if video_id is not None}


def vote(session: Session, *, cache: Cache, voter_id: str, video_id: str) -> None:
    """Record one vote; the database's key on (user, video) refuses a second one. The
    voter's account is checked in the same query as the video (`AccountGone`, 401, if gone).
    On PostgreSQL the checks, the vote and the count are one statement."""
    postgresql = session.get_bind().dialect.name == "postgresql"
    count = _count_in_one_statement if postgresql else _count_step_by_step
    ballot = count(session, voter_id, video_id)
    if ballot is not None and not ballot.voter_exists:
        raise AccountGone()
    if ballot is None or ballot.status != VideoStatus.processed:
        raise PublicVideoNotFound()
    if not ballot.counted:
        raise AlreadyVoted()
    after_commit(session, lambda: _count_on_the_views(cache, ballot.owner))


def _count_on_the_views(cache: Cache, owner: ranking.Player) -> None:
    """After the vote's commit: one more on the owner's boards (before the scopes are
    bumped, so a page read at the new generation finds it there), then the bump."""
    ranking.record_vote(cache.leaderboard(), owner)
    _invalidate_scopes(cache, owner.city_key, owner.country_key)


@dataclass(frozen=True)
class _Ballot:
    """A vote's target as the database found it, and whether the vote was counted."""

    status: VideoStatus
    owner_id: str
    name_key: str
    first_name: str
    last_name: str
    city: str
    city_key: str
    country_key: str
    voter_exists: bool
    counted: bool

    @property
    def owner(self) -> ranking.Player:
        name = f"{self.first_name} {self.last_name}"
        return ranking.Player(
            self.owner_id, self.name_key, name, self.city, self.city_key, self.country_key
        )


_OWNER_FIELDS = ("owner_id", "name_key", "first_name", "last_name", "city")
_BALLOT_FIELDS = ("status", *_OWNER_FIELDS, "city_key", "country_key", "voter_exists")


def _ballot_query() -> Select[*tuple[Any, ...]]:
    """The video (`:video_id`), its owner (as ranked), and whether the voter exists."""
    voter_exists = select(User.id).where(User.id == bindparam("voter_id")).exists()
    owner = (User.name_key, User.first_name, User.last_name, User.city)
    return (
        select(Video.id, Video.status, Video.owner_id, *owner, User.city_key, User.country_key)
        .add_columns(voter_exists.label("voter_exists"))
        .join(User, Video.owner_id == User.id)
        .where(Video.id == bindparam("video_id"))
    )


def _vote_in_one_statement() -> Select[*tuple[Any, ...]]:
    """The ballot, the vote (a second one does nothing) and the video's count, as one
    statement: PostgreSQL runs the INSERT and the UPDATE of its WITH clause with the query."""
    target = _ballot_query().cte("target")
    countable = (target.c.status == VideoStatus.processed) & target.c.voter_exists
    ballot = select(bindparam("voter_id"), target.c.id, bindparam("now", type_=UTCDateTime))
    inserted = (
        pg_insert(Vote)
        .from_select(["user_id", "video_id", "created_at"], ballot.where(countable))
        .on_conflict_do_nothing()
        .returning(Vote.video_id)
        .cte("inserted")
    )
    bumped = (
        update(Video)
        .where(Video.id.in_(select(inserted.c.video_id)))
        .values(votes=Video.votes + 1)
        .returning(Video.id)
        .cte("bumped")
    )
    counted = select(bumped.c.id).exists().label("counted")
    return select(*(target.c[name] for name in _BALLOT_FIELDS), counted)


_BALLOT = _ballot_query()
_VOTE_IN_ONE_STATEMENT = _vote_in_one_statement()  # built once: building costs more than running


def _count_step_by_step(session: Session, voter_id: str, video_id: str) -> _Ballot | None:
    found = session.execute(_BALLOT, {"voter_id": voter_id, "video_id": video_id}).first()
    if found is None:
        return None
    counted = found.voter_exists and found.status == VideoStatus.processed
    if counted:
        try:
            session.execute(insert(Vote).values(user_id=voter_id, video_id=video_id))
        except IntegrityError:  # voted already (vote() refuses it; the unit rolls back)
            counted = False
        else:
            bump = Video.votes + 1
            session.execute(update(Video).where(Video.id == video_id).values(votes=bump))
    fields = found._mapping
    return _Ballot(**{name: fields[name] for name in _BALLOT_FIELDS}, counted=counted)


def _count_in_one_statement(session: Session, voter_id: str, video_id: str) -> _Ballot | None:
    params = {"voter_id": voter_id, "video_id": video_id, "now": utcnow()}
    found = session.execute(_VOTE_IN_ONE_STATEMENT, params).first()
    return None if found is None else _Ballot(**found._mapping)


def rankings_page(session: Session, *, cache: Cache, scope: Scope, limit: int, offset: int) -> str:
    """A page of the scope's ranking as the JSON the API answers; positions count from its
    top, ties share one. Read from the scope's leaderboard (one Redis round trip, kept at
    hand here for a moment) or, when there is none to read, from one SQL query, cached."""
    page_key = _ranking_page_key(scope.cache_key("rankings", cache), limit, offset)
    at_hand = cache.peek(page_key)
    if at_hand is not None:
        return at_hand
    entries = ranking.board_page(cache.leaderboard(), scope=scope, limit=limit, offset=offset)
    if entries is not None:
        page = _RANKING_PAGE.dump_json(entries).decode()
        cache.remember(page_key, page)
        return page

    def compute_page() -> str:
        entries = ranking.sql_page(session, scope=scope, limit=limit, offset=offset)
        return _RANKING_PAGE.dump_json(entries).decode()

    return cache.get_or_compute(page_key, compute_page, ttl_seconds=CACHE_TTL_SECONDS)


def peek_rankings_page(cache: Cache, *, scope: Scope, limit: int, offset: int) -> str | None:
    """`rankings_page` if this process has it at hand (no I/O), else None."""
    ranking_key = scope.peeked_cache_key("rankings", cache)
    return (
        None if ranking_key is None else cache.peek(_ranking_page_key(ranking_key, limit, offset))
    )


def _ranking_page_key(ranking_key: str, limit: int, offset: int) -> str:
    return f"{ranking_key}:page:{limit}:{offset}"
