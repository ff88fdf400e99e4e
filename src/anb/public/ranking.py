"""The ranking of players by the votes their public videos received.

With Redis, every filter scope has a leaderboard (`anb.cache.leaderboard`) that each vote
and each publication update after their commit, and a page is one range read: the cost of a
vote or a page no longer grows with the number of players. PostgreSQL stays the source of
truth. Boards found missing (a flushed or new Redis) are rebuilt from it in the background,
once, under a lock, while pages are answered by SQL; `reconcile` compares the boards with
the database and repairs what differs (a vote committed while Redis was unreachable).

Without Redis (embedded, or Redis down) a page is one SQL query: RANK() over the players'
totals, with LIMIT/OFFSET in the database.

Ties share a position (1 + the players with more votes) and are listed in the order of
`users.name_key`, then the id, compared bytewise: by the database and by Redis alike.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.orm import InstrumentedAttribute, Session

from anb.cache.leaderboard import Contents, Correction, RedisLeaderboard
from anb.core.db import get_engine
from anb.public.schemas import RankingEntry
from anb.public.scopes import Scope
from anb.users.models import User, display_name
from anb.videos.models import Video, VideoStatus

log = logging.getLogger(__name__)

REBUILD_LOCK_SECONDS = 300  # longest a rebuild may hold the lock (50 000 players: a few s)
REBUILD_RETRY_SECONDS = 5.0  # a process tries again at most this often (Redis down, …)
SETTLE_SECONDS = 1.0  # time for votes committed but not yet on the boards to land


@dataclass(frozen=True)
class Player:
    """A ranked player as the boards know them."""

    user_id: str
    name_key: str
    username: str
    city: str
    city_key: str
    country_key: str

    @classmethod
    def of(cls, user: User) -> Player:
        return cls(user.id, user.name_key, user.full_name, user.city, user.city_key,
                   user.country_key)  # fmt: skip

    @property
    def member(self) -> str:
        """The player on a board: ties are listed in byte order of this."""
        return member_of(self.name_key, self.user_id)

    @property
    def label(self) -> str:
        return json.dumps([self.username, self.city], ensure_ascii=False)

    @property
    def boards(self) -> list[str]:
        return [board_of(scope) for scope in Scope.containing(self.city_key, self.country_key)]


def member_of(name_key: str, user_id: str) -> str:
    return f"{name_key}\x00{user_id}"  # NUL sorts first: (name, id) order, bytewise


def board_of(scope: Scope) -> str:
    return scope.digest


# --- reading a page ----------------------------------------------------------------------


def board_page(
    leaderboard: RedisLeaderboard | None, *, scope: Scope, limit: int, offset: int
) -> list[RankingEntry] | None:
    """The page from the scope's board, or None when there is no complete board to read
    (then a rebuild is started if none runs, and the caller answers from SQL)."""
    if leaderboard is None:
        return None
    rows = leaderboard.page(board_of(scope), offset=offset, limit=limit)
    if rows is None:
        rebuild_in_background(leaderboard)
        return None
    entries = []
    for row in rows:
        username, city = json.loads(row.label) if row.label else ("", "")
        entries.append(
            RankingEntry(position=row.position, username=username, city=city, votes=row.score)
        )
    return entries


def sql_page(session: Session, *, scope: Scope, limit: int, offset: int) -> list[RankingEntry]:
    """The page in one query: the filtered players' totals ranked by RANK(), sorted and cut
    by the database (20 000 players on PostgreSQL: ~100 ms for all, ~25 ms for a city)."""
    votes = func.sum(Video.votes)
    query = scope.where(
        select(
            func.rank().over(order_by=votes.desc()),
            User.first_name,
            User.last_name,
            User.city,
            votes,
        )
        .join(Video, (Video.owner_id == User.id) & (Video.status == VideoStatus.processed))
        .group_by(User.id, User.first_name, User.last_name, User.city, User.name_key)
        .order_by(votes.desc(), _bytewise(session, User.name_key), User.id)
        .limit(limit)
        .offset(offset)
    )
    return [
        RankingEntry(
            position=position, username=display_name(first, last), city=city, votes=int(total)
        )
        for position, first, last, city, total in session.execute(query)
    ]


def _bytewise(session: Session, column: InstrumentedAttribute[str]) -> ColumnElement[str]:
    """`column` compared byte by byte, as Redis compares members (SQLite always does)."""
    if session.get_bind().dialect.name == "postgresql":
        return column.collate("C")
    return column.expression


# --- keeping the boards up to date -------------------------------------------------------


def record_vote(leaderboard: RedisLeaderboard | None, player: Player) -> None:
    """One more vote for `player` (after the vote's commit), with the label set too: a
    player whose publication missed the boards (Redis unreachable then) gets a name."""
    if leaderboard is not None:
        leaderboard.add(player.boards, player.member, 1, label=player.label)


def record_publication(leaderboard: RedisLeaderboard | None, player: Player) -> None:
    """`player` has a public video: on the boards with 0 votes if not there yet."""
    if leaderboard is not None:
        leaderboard.add(player.boards, player.member, 0, label=player.label)


def players(session: Session) -> Iterator[tuple[Player, int]]:
    """Every player with a public video, and their total votes: what the boards must hold."""
    votes = func.sum(Video.votes)
    query = (
        select(
            User.id,
            User.name_key,
            User.first_name,
            User.last_name,
            User.city,
            User.city_key,
            User.country_key,
            votes,
        )
        .join(Video, (Video.owner_id == User.id) & (Video.status == VideoStatus.processed))
        .group_by(User.id)
    )
    for user_id, key, first, last, city, city_key, country_key, total in session.execute(query):
        player = Player(user_id, key, display_name(first, last), city, city_key, country_key)
        yield player, int(total)


@dataclass
class Expected:
    """The boards as the database says they must be."""

    boards: dict[str, dict[str, int]] = field(default_factory=lambda: defaultdict(dict))
    labels: dict[str, str] = field(default_factory=dict)

    @classmethod
    def read(cls, session: Session) -> Expected:
        expected = cls()
        for player, total in players(session):
            for board in player.boards:
                expected.boards[board][player.member] = total
            expected.labels[player.member] = player.label
        return expected


def _read_expected() -> Expected:
    """What the boards must hold, read on a connection of its own (read only, so outside a
    unit of work): a rebuild runs beside the requests, and with the database unreachable it
    held one of their pooled connections for its 10 s timeout, which made them wait 20 s."""
    with Session(get_engine(pooled=False)) as session:
        return Expected.read(session)


def rebuild(leaderboard: RedisLeaderboard, *, settle_seconds: float = SETTLE_SECONDS) -> int:
    """Replace the boards by what the database holds, then repair the votes committed
    between the database read and the swap (after `settle_seconds`). Answers how many
    players are ranked. Raises `RedisError` when Redis fails."""
    expected = _read_expected()
    leaderboard.replace(expected.boards, expected.labels)
    reconcile(leaderboard, repair=True, settle_seconds=settle_seconds)
    return len(expected.labels)


_rebuilding = threading.Lock()
_last_attempt = 0.0
_running: threading.Thread | None = None


def rebuild_in_background(leaderboard: RedisLeaderboard) -> threading.Thread | None:
    """Start a rebuild in a thread of this process, unless one runs here, one was tried
    less than REBUILD_RETRY_SECONDS ago, or another process holds the lock."""
    global _last_attempt, _running
    with _rebuilding:
        if time.monotonic() - _last_attempt < REBUILD_RETRY_SECONDS:
            return None
        _last_attempt = time.monotonic()
        release = leaderboard.lock(timeout_seconds=REBUILD_LOCK_SECONDS)
        if release is None:
            return None
        _running = threading.Thread(
            target=_rebuild_then_release, args=(leaderboard, release), daemon=True
        )
        _running.start()
        return _running


def finish_rebuilds(*, timeout_seconds: float = 30) -> None:
    """Wait for this process's rebuild, if one runs, and allow the next at once (tests,
    before they point the process at other services)."""
    global _last_attempt
    with _rebuilding:
        running, _last_attempt = _running, 0.0
    if running is not None:
        running.join(timeout_seconds)


def _rebuild_then_release(leaderboard: RedisLeaderboard, release: Callable[[], None]) -> None:
    started = time.monotonic()
    try:
        count = rebuild(leaderboard)
        log.info("leaderboard rebuilt: %d players in %.2f s", count, time.monotonic() - started)
    except Exception:
        log.exception("rebuilding the leaderboard failed; rankings are answered by SQL")
    finally:
        release()


# --- reconciling --------------------------------------------------------------------------


@dataclass(frozen=True)
class Difference:
    """A player's score on a board: what Redis holds and what the database says."""

    board: str
    member: str
    redis: int | None
    database: int | None

    def describe(self, scopes: dict[str, str]) -> str:
        name, _, user_id = self.member.partition("\x00")
        where = scopes.get(self.board, f"board {self.board}")
        held = "absent" if self.redis is None else f"{self.redis} votes"
        wanted = "absent" if self.database is None else f"{self.database} votes"
        return f"{where}: {name} ({user_id}): Redis {held}, database {wanted}"


@dataclass(frozen=True)
class Reconciliation:
    ready: bool
    players: int  # ranked, by the database
    differences: list[Difference]
    labels: dict[str, str | None]  # labels to set (None: to delete)
    repaired: int = 0

    @property
    def agrees(self) -> bool:
        return self.ready and not self.differences and not self.labels


def reconcile(
    leaderboard: RedisLeaderboard, *, repair: bool, settle_seconds: float = SETTLE_SECONDS
) -> Reconciliation:
    """Compare the boards with the database (Redis read first: a vote reaches Redis after
    its commit, so a board in step is never ahead of the database). A difference counts only
    if it is still there `settle_seconds` later (votes in flight have landed by then).
    With `repair`, each differing score is set to the database's, unless a vote changed it
    meanwhile (the next reconciliation sees it again). Raises `RedisError`."""
    first = _compare(leaderboard)
    if first.agrees:
        return first
    time.sleep(settle_seconds)
    second = _compare(leaderboard)
    lasting = {(d.board, d.member) for d in first.differences}
    found = Reconciliation(
        ready=second.ready,
        players=second.players,
        differences=[d for d in second.differences if (d.board, d.member) in lasting],
        labels=second.labels,
    )
    if not repair:
        return found
    corrections = [Correction(d.board, d.member, d.redis, d.database) for d in found.differences]
    repaired = leaderboard.correct(corrections, found.labels)
    return Reconciliation(found.ready, found.players, found.differences, found.labels, repaired)


def _compare(leaderboard: RedisLeaderboard) -> Reconciliation:
    held = leaderboard.contents()
    expected = _read_expected()
    return Reconciliation(
        ready=held.ready,
        players=len(expected.labels),
        differences=list(_score_differences(held, expected)),
        labels=_label_differences(held, expected),
    )


def _score_differences(held: Contents, expected: Expected) -> Iterator[Difference]:
    for board in sorted(held.boards.keys() | expected.boards.keys()):
        mine, theirs = held.boards.get(board, {}), expected.boards.get(board, {})
        for member in sorted(mine.keys() | theirs.keys()):
            if mine.get(member) != theirs.get(member):
                yield Difference(board, member, mine.get(member), theirs.get(member))


def _label_differences(held: Contents, expected: Expected) -> dict[str, str | None]:
    changes: dict[str, str | None] = {
        member: label
        for member, label in expected.labels.items()
        if held.labels.get(member) != label
    }
    changes.update({member: None for member in held.labels.keys() - expected.labels.keys()})
    return changes


def scope_names(session: Session) -> dict[str, str]:
    """Each board's scope in words ("city 'cali', country 'colombia'"), for reports."""
    names = {board_of(Scope()): "all players"}
    query = select(User.city_key, User.country_key).distinct()
    for city, country in session.execute(query):
        names[board_of(Scope(city=city))] = f"city {city!r}"
        names[board_of(Scope(country=country))] = f"country {country!r}"
        names[board_of(Scope(city, country))] = f"city {city!r}, country {country!r}"
    return names
