"""PublicService: the public video list, votes and the rankings.

Lists and rankings are read through the cache. Each filter scope (all, a city, a country,
both) has a generation counter in the cache and every cached page is keyed by the current
generation of its scope; a vote (or a newly published video) bumps the generations of the
scopes it changes, so their next read recomputes while other scopes keep their entries.
The public list is keyed by a second counter, the scope's membership, which only a
publication bumps (the list is ordered by publication: a vote moves nothing in it): its total
count, its pages (one index range each, `_query_public_videos`, kept a second since their
vote counts change) and the anchors that start a deep page near its offset.
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
from sqlalchemy import Select, Subquery, bindparam, func, insert, select, tuple_, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from anb.cache import Cache
from anb.cache.base import fresh_value, get_or_refresh
from anb.core.db import UTCDateTime, after_commit, utcnow
from anb.core.errors import InvalidInput, NotFound
from anb.public import ranking
from anb.public.cursors import InvalidCursor, Position
from anb.public.models import Vote
from anb.public.schemas import PublicVideo, RankingEntry
from anb.public.scopes import Scope
from anb.storage.urls import reuse_seconds
from anb.users.models import User, display_name
from anb.users.service import AccountGone
from anb.videos.models import Video, VideoStatus

CACHE_TTL_SECONDS = 300
COUNT_TTL_SECONDS = 300  # a count changed outside the API (a row deleted by hand) shows by then
LIST_PAGE_FRESH_SECONDS = 1.0
"""How long a page of the public list is taken as fresh. Its videos change only with a
publication (the page is keyed by the membership) but its vote counts change with every
vote, which does not bump it, so that votes every few milliseconds do not have every read of
the first page query the database: one reader refreshes it each second while the others
answer what they have (`get_or_refresh`). An anonymous reader sees a count at most about
2 s late (this, then the second an API process keeps what it read at hand); a signed-in
reader's counts are read with their `voted` marks, so a voter sees their own vote at once."""
ANCHOR_STRIDE = 1000
"""A deep offset page starts from the anchor at or before it (the position of every
ANCHOR_STRIDE-th video of the scope, cached per membership) and skips fewer than this many
index entries, instead of all the entries before it (`_anchored`)."""


class PublicVideoNotFound(NotFound):
    def __init__(self) -> None:
        super().__init__("Video no encontrado.")


class AlreadyVoted(InvalidInput):
    def __init__(self) -> None:
        super().__init__("Ya has votado por este video.")


def invalidate_views_of(cache: Cache, owner: User) -> None:
    """A video of `owner` was published: the player enters the boards (with 0 votes if
    new), and every scope whose views include the player's videos is bumped, its membership
    (the list's count) with it."""
    ranking.record_publication(cache.leaderboard(), ranking.Player.of(owner))
    _invalidate_scopes(cache, owner.city_key, owner.country_key, members=True)


def _invalidate_scopes(cache: Cache, city: str, country: str, *, members: bool = False) -> None:
    """Bump the pages of the scopes of a player of `city` and `country` (a vote), and their
    membership too when a video entered them (`members`). The membership goes first: a page
    read at the new generation finds the new count."""
    scopes = Scope.containing(city, country)
    counters = [scope.members_key for scope in scopes] if members else []
    cache.incr_all(counters + [scope.generation_key for scope in scopes])


_PUBLIC_PAGE = TypeAdapter(list[PublicVideo])
_RANKING_PAGE = TypeAdapter(list[RankingEntry])
_LIST_ORDER = (Video.processed_at.desc(), Video.id.desc())
"""Newest first; the id orders videos published in the same microsecond (a cursor names
both). Both descending: the scope's index is read backwards."""


@dataclass(frozen=True)
class VideosPage:
    """A page of the public list as the API answers it."""

    body: str  # the JSON array, `voted` false
    total: int  # videos in the scope
    next_cursor: str | None  # where the next page starts; None on the last page


def public_videos_page(
    session: Session,
    *,
    cache: Cache,
    scope: Scope,
    limit: int,
    offset: int = 0,
    cursor: str | None = None,
    url_for: Callable[[str | None], str | None],
    url_ttl_seconds: int,
    base_url: str,
) -> VideosPage:
    """A page of public videos, most recently published first, at `offset` or after
    `cursor` (not both: `InvalidCursor`), with the scope's total and the next page's cursor.

    The total is cached per scope and membership: votes leave it alone. An offset page is
    cached per scope and membership, refreshed each LIST_PAGE_FRESH_SECONDS for its counts,
    with its signed URLs (per `base_url`, the host local file URLs point to) for at most
    `page_ttl_seconds`. A cursor page is read each time: each cursor is
    read by one client, and its read costs the same at any depth."""
    after = _start_after(cursor, scope=scope, offset=offset)
    members = scope.membership(cache)
    total = _public_count(session, cache, scope, members)
    if after is not None:
        items, last = _query_public_videos(session, scope, limit, 0, after, url_for)
        return VideosPage(_PUBLIC_PAGE.dump_json(items).decode(), total, _cursor(last, scope))
    key = _videos_page_key(scope.entry_key("videos", members), limit, offset, base_url)

    def compute() -> str:
        start, skip = _anchored(session, cache, scope, members, offset)
        items, last = _query_public_videos(session, scope, limit, skip, start, url_for)
        return f"{_cursor(last, scope) or ''}:{_PUBLIC_PAGE.dump_json(items).decode()}"

    cached = get_or_refresh(
        cache,
        key,
        compute,
        fresh_seconds=LIST_PAGE_FRESH_SECONDS,
        ttl_seconds=page_ttl_seconds(url_ttl_seconds),
    )
    return _page_of(cached, total)


def page_ttl_seconds(url_ttl_seconds: int) -> int:
    """How long a page of the public list keeps its URLs: with the time they may have been
    reused before (`anb.storage.urls`), at most half their lifetime and CACHE_TTL_SECONDS."""
    return int(min(CACHE_TTL_SECONDS, url_ttl_seconds // 2) - reuse_seconds(url_ttl_seconds))


def peek_public_videos_page(
    cache: Cache, *, scope: Scope, limit: int, offset: int, base_url: str
) -> VideosPage | None:
    """`public_videos_page` at `offset` if this process has it at hand (no I/O) and fresh,
    else None (a stale page is refreshed by the API's path)."""
    members = scope.peeked_membership(cache)
    if members is None:
        return None
    entry = cache.peek(
        _videos_page_key(scope.entry_key("videos", members), limit, offset, base_url)
    )
    total = cache.peek(scope.entry_key("count", members))
    if entry is None or total is None:
        return None
    cached = fresh_value(entry, fresh_seconds=LIST_PAGE_FRESH_SECONDS)
    return None if cached is None else _page_of(cached, int(total))


def _start_after(cursor: str | None, *, scope: Scope, offset: int) -> Position | None:
    if cursor is None:
        return None
    if offset:  # a cursor says where the page starts: an offset too would be a second answer
        raise InvalidCursor()
    return Position.decode(cursor, scope)


def _cursor(last: Position | None, scope: Scope) -> str | None:
    return None if last is None else last.encode(scope)


def _videos_page_key(scope_key: str, limit: int, offset: int, base_url: str) -> str:
    digest = hashlib.sha256(base_url.encode()).hexdigest()[:16]
    return f"{scope_key}:{limit}:{offset}:{digest}"


def _page_of(cached: str, total: int) -> VideosPage:
    """A cached page entry, `next cursor:body` (a cursor has no colon), with its total."""
    next_cursor, _, body = cached.partition(":")
    return VideosPage(body, total, next_cursor or None)


def _public_count(session: Session, cache: Cache, scope: Scope, members: str) -> int:
    """The scope's public videos, counted once per membership (`members`): an index-only
    range of the scope's index (the global count reads all 200 000 entries: ~40 ms)."""

    def count() -> str:
        public = (
            select(func.count()).select_from(Video).where(Video.status == VideoStatus.processed)
        )
        return str(session.scalar(scope.where(public, keys=Video)) or 0)

    key = scope.entry_key("count", members)
    return int(cache.get_or_compute(key, count, ttl_seconds=COUNT_TTL_SECONDS))


def _anchored(
    session: Session, cache: Cache, scope: Scope, members: str, offset: int
) -> tuple[Position | None, int]:
    """Where the page at `offset` starts: after the last anchor at or before it (None: from
    the top), and how many videos after that are skipped."""
    passed = offset // ANCHOR_STRIDE
    if not passed:
        return None, offset
    anchors = _anchors(session, cache, scope, members)
    passed = min(passed, len(anchors))
    if not passed:  # the list is shorter than its first anchor: an empty page
        return None, offset
    return Position.parse(anchors[passed - 1]), offset - passed * ANCHOR_STRIDE


def _anchors(session: Session, cache: Cache, scope: Scope, members: str) -> list[str]:
    """The positions (`Position.text`) of every ANCHOR_STRIDE-th video of the scope in the
    list's order, read once per membership (`members`): one pass over the scope's index."""

    def compute() -> str:
        number = func.row_number().over(order_by=_LIST_ORDER).label("number")
        public = select(Video.processed_at, Video.id, number).where(
            Video.status == VideoStatus.processed
        )
        listed = scope.where(public, keys=Video).subquery("listed")
        every = select(listed.c.processed_at, listed.c.id).where(
            listed.c.number % ANCHOR_STRIDE == 0
        )
        rows = session.execute(every.order_by(listed.c.number))
        return " ".join(Position(at, video_id).text for at, video_id in rows)

    key = scope.entry_key("anchors", members)
    return cache.get_or_compute(key, compute, ttl_seconds=COUNT_TTL_SECONDS).split()


def _query_public_videos(
    session: Session,
    scope: Scope,
    limit: int,
    offset: int,
    after: Position | None,
    url_for: Callable[[str | None], str | None],
) -> tuple[list[PublicVideo], Position | None]:
    """The page, and the position of its last video when more follow. The page's ids come
    from the scope's index alone (one range, read backwards, past `offset` index entries or
    from `after`); only those rows and their owners are then read, so an offset no longer
    fetches and joins every row it skips."""
    listed = scope.where(select(Video.id).where(Video.status == VideoStatus.processed), keys=Video)
    if after is not None:
        start = tuple_(
            bindparam("after_at", after.processed_at, type_=UTCDateTime),
            bindparam("after_id", after.video_id),
        )
        listed = listed.where(tuple_(Video.processed_at, Video.id) < start)
    ids = listed.order_by(*_LIST_ORDER).limit(limit + 1).offset(offset).subquery("page")
    rows = session.execute(_page_rows(ids)).all()
    items = [
        PublicVideo(
            video_id=row.id,
            title=row.title,
            username=display_name(row.first_name, row.last_name),
            city=row.city,
            country=row.country,
            processed_url=url_for(row.processed_key),
            thumbnail_url=url_for(row.thumbnail_key),
            votes=row.votes,
            processed_at=row.processed_at,
            voted=False,
        )
        for row in rows[:limit]
    ]
    if len(rows) <= limit:
        return items, None
    last = rows[limit - 1]
    assert last.processed_at is not None  # a public video is processed
    return items, Position(last.processed_at, last.id)


def _page_rows(ids: Subquery) -> Select[*tuple[Any, ...]]:
    """The page's rows: only the columns a page shows, not whole videos and users (a page
    read as entities parsed three timestamps per row and built two objects: 9 ms of CPU per
    page at 100 000 players, against 4 ms read this way)."""
    shown = (Video.title, Video.processed_key, Video.thumbnail_key, Video.votes)
    owner = (User.first_name, User.last_name, User.city, User.country)
    return (
        select(Video.id, *shown, Video.processed_at, *owner)
        .join(ids, Video.id == ids.c.id)
        .join(User, Video.owner_id == User.id)
        .order_by(*_LIST_ORDER)
    )


def mark_voted_by(session: Session, *, voter_id: str, page: str) -> str:
    """The page JSON as the voter sees it: `voted` true on the videos they voted for, and
    every count read now, so that their own vote shows at once (`AccountGone`, 401, if the
    account no longer exists)."""
    items = json.loads(page)
    seen = seen_by(session, voter_id=voter_id, video_ids=[item["video_id"] for item in items])
    for item in items:
        item["votes"], item["voted"] = seen.get(item["video_id"], (item["votes"], False))
    return json.dumps(items, ensure_ascii=False, separators=(",", ":"))


def seen_by(
    session: Session, *, voter_id: str, video_ids: list[str]
) -> dict[str, tuple[int, bool]]:
    """Each video's (votes, whether the voter voted for it), read with the account in one
    query: `AccountGone` (401) if the account no longer exists."""
    on_page = Video.id.in_(video_ids)
    voters_vote = (Vote.user_id == User.id) & (Vote.video_id == Video.id)
    query = (
        select(User.id, Video.id, Video.votes, Vote.video_id)
        .select_from(User)
        .outerjoin(Video, on_page)
        .outerjoin(Vote, voters_vote)
        .where(User.id == voter_id)
    )
    rows = session.execute(query).all()
    if not rows:
        raise AccountGone()
    return {
        video_id: (votes, voted is not None)
        for _, video_id, votes, voted in rows
        if video_id is not None
    }


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
        name = display_name(self.first_name, self.last_name)
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
