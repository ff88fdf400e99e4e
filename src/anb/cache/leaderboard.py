"""Leaderboards in Redis: boards (sorted sets) of members by score, read a page at a time.

Scores are stored negated, so that ZRANGE (ascending) lists the highest first and players
tied on a score in ascending byte order of their member: the order of a bytewise SQL
`ORDER BY votes DESC, member`. Each member has a label (what a page shows of it) in one
hash. The boards are complete only while the `ready` marker exists: without it (Redis
flushed, never built) nothing is read from them and increments are skipped until `replace`
has rebuilt them from the source of truth. Every key shares the hash tag `{lb}`, so the
scripts that touch several keys also run on a Redis cluster.

Like the cache, the boards are an accelerator: when Redis cannot be reached, reads answer
None (the caller uses its source of truth) and writes are skipped with a warning.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any, cast

import redis

from anb.cache.outages import RedisOutages

log = logging.getLogger(__name__)

PREFIX = "anb:{lb}:"
READY = PREFIX + "ready"
LABELS = PREFIX + "labels"
BOARDS = PREFIX + "boards"  # the board keys, so a rebuild drops boards that became empty
LOCK = PREFIX + "lock"
TEMPORARY_SECONDS = 3600  # a rebuild's keys, until the swap (or forever, had it died)
WRITE_CHUNK = 5000  # members per ZADD/HSET of a rebuild
# How long a rebuild or a reconciliation waits for one answer. The cache's own timeout (0.5 s,
# right for a vote or a page) is too short for them: at 100 000 players, writing the boards
# aside or reading them all took longer on a busy 2-core machine and failed the command.
BULK_TIMEOUT_SECONDS = 60.0

# KEYS: ready, boards, labels, board…; ARGV: member, delta, label ('' for none)
_ADD = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
for i = 4, #KEYS do
  if ARGV[2] == '0' then
    redis.call('ZADD', KEYS[i], 'NX', 0, ARGV[1])
  else
    redis.call('ZINCRBY', KEYS[i], -tonumber(ARGV[2]), ARGV[1])
  end
  redis.call('SADD', KEYS[2], KEYS[i])
end
if ARGV[3] ~= '' then redis.call('HSET', KEYS[3], ARGV[1], ARGV[3]) end
return 1
"""

# KEYS: ready, board, labels; ARGV: start, stop. Each row: member, score, members ahead, label.
_PAGE = """
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
local rows = redis.call('ZRANGE', KEYS[2], ARGV[1], ARGV[2], 'WITHSCORES')
local page, last, ahead = {}, nil, 0
for i = 1, #rows, 2 do
  local member, score = rows[i], rows[i + 1]
  if score ~= last then
    ahead = redis.call('ZCOUNT', KEYS[2], '-inf', '(' .. score)
    last = score
  end
  table.insert(page, member)
  table.insert(page, score)
  table.insert(page, ahead)
  table.insert(page, redis.call('HGET', KEYS[3], member))
end
return page
"""

# KEYS: ready, boards, labels, new labels, then (new board, board) pairs; ARGV: marker
_SWAP = """
for _, board in ipairs(redis.call('SMEMBERS', KEYS[2])) do redis.call('DEL', board) end
redis.call('DEL', KEYS[2], KEYS[3])
if redis.call('EXISTS', KEYS[4]) == 1 then
  redis.call('RENAME', KEYS[4], KEYS[3])
  redis.call('PERSIST', KEYS[3])
end
for i = 5, #KEYS, 2 do
  if redis.call('EXISTS', KEYS[i]) == 1 then
    redis.call('RENAME', KEYS[i], KEYS[i + 1])
    redis.call('PERSIST', KEYS[i + 1])
    redis.call('SADD', KEYS[2], KEYS[i + 1])
  end
end
redis.call('SET', KEYS[1], ARGV[1])
return 1
"""

# KEYS: boards, board…; ARGV: (member, score seen or '', score wanted or '') per board.
# Applied only where the board still holds what was seen: a vote landing meanwhile wins.
_CORRECT = """
local applied = 0
for i = 2, #KEYS do
  local member, seen, wanted = ARGV[3 * i - 5], ARGV[3 * i - 4], ARGV[3 * i - 3]
  local now = redis.call('ZSCORE', KEYS[i], member)
  local same = (now == false and seen == '') or (now ~= false and seen ~= ''
    and tonumber(now) == tonumber(seen))
  if same then
    if wanted == '' then
      redis.call('ZREM', KEYS[i], member)
    else
      redis.call('ZADD', KEYS[i], wanted, member)
      redis.call('SADD', KEYS[1], KEYS[i])
    end
    applied = applied + 1
  end
end
return applied
"""


@dataclass(frozen=True)
class Ranked:
    """One row of a board's page."""

    position: int  # 1 + the number of members with a higher score
    member: str
    score: int
    label: str | None


@dataclass(frozen=True)
class Correction:
    """Set `member`'s score on `board` to `wanted` (None: remove it), provided the board
    still holds `seen` (None: absent) for it."""

    board: str
    member: str
    seen: int | None
    wanted: int | None


@dataclass(frozen=True)
class Contents:
    """Everything the boards hold: whether they are complete, scores per board, labels."""

    ready: bool
    boards: dict[str, dict[str, int]]
    labels: dict[str, str]


class RedisLeaderboard:
    def __init__(self, client: redis.Redis) -> None:
        """`client` decodes responses (`decode_responses=True`)."""
        self.client = client
        self._outages = RedisOutages(log, "ranking from the database")
        self._add = client.register_script(_ADD)
        self._page = client.register_script(_PAGE)
        self._swap = client.register_script(_SWAP)
        self._correct = client.register_script(_CORRECT)
        self._bulk: redis.Redis | None = None

    @property
    def bulk(self) -> redis.Redis:
        """A client like `client`, over connections of its own that wait up to
        `BULK_TIMEOUT_SECONDS` for an answer: for the whole-board writes and reads."""
        if self._bulk is None:
            pool = self.client.connection_pool
            options = {**pool.connection_kwargs, "socket_timeout": BULK_TIMEOUT_SECONDS}
            patient = redis.ConnectionPool(connection_class=pool.connection_class, **options)
            self._bulk = redis.Redis(connection_pool=patient)
        return self._bulk

    # --- what each vote, publication and page read does: one round trip -------------------

    def add(self, boards: Iterable[str], member: str, delta: int, *, label: str = "") -> bool:
        """Add `delta` to `member`'s score on each board (0: enter it with 0 if absent), and
        set its label if given. Skipped (False) while the boards are not complete, or when
        Redis cannot be reached."""
        keys = [READY, BOARDS, LABELS, *(_key(board) for board in boards)]
        added = self._outages.call(lambda: self._add(keys=keys, args=[member, delta, label]), 0)
        return bool(added)

    def page(self, board: str, *, offset: int, limit: int) -> list[Ranked] | None:
        """`limit` rows from the `offset`-th (0-based) of `board`; None while the boards are
        not complete or Redis cannot be reached."""
        keys = [READY, _key(board), LABELS]
        last = offset + limit - 1
        rows = self._outages.call(lambda: self._page(keys=keys, args=[offset, last]), None)
        if rows is None:
            return None
        return [
            Ranked(position=1 + int(ahead), member=member, score=-int(float(score)), label=label)
            for member, score, ahead, label in _quads(rows)
        ]

    # --- rebuilding and reconciling -------------------------------------------------------

    def is_ready(self) -> bool | None:
        """Whether the boards are complete; None when Redis cannot be reached."""
        return self._outages.call(lambda: bool(self.client.exists(READY)), None)

    def lock(self, *, timeout_seconds: float) -> Callable[[], None] | None:
        """Take the rebuild lock without waiting: its release, or None if someone holds it
        (or Redis cannot be reached)."""
        lock = self.client.lock(
            LOCK, timeout=timeout_seconds, thread_local=False
        )  # released by the rebuild thread
        if not self._outages.call(lambda: lock.acquire(blocking=False), False):
            return None
        return partial(self._outages.release, lock)

    def replace(self, boards: Mapping[str, Mapping[str, int]], labels: Mapping[str, str]) -> None:
        """Make the boards exactly these (written aside, then swapped in atomically) and
        mark them complete. Raises `RedisError` when Redis fails meanwhile."""
        marker = uuid.uuid4().hex
        aside = f"{PREFIX}new:{marker}:"
        pipeline = self.bulk.pipeline(transaction=False)
        pairs: list[str] = []
        for board, scores in boards.items():
            pairs += [aside + _key(board), _key(board)]
            for chunk in _chunks(list(scores.items())):
                pipeline.zadd(aside + _key(board), {member: -score for member, score in chunk})
            pipeline.expire(aside + _key(board), TEMPORARY_SECONDS)
        for chunk in _chunks(list(labels.items())):
            pipeline.hset(aside + "labels", mapping=dict(chunk))
        pipeline.expire(aside + "labels", TEMPORARY_SECONDS)
        pipeline.execute()
        keys = [READY, BOARDS, LABELS, aside + "labels", *pairs]
        self._swap(keys=keys, args=[marker], client=self.bulk)

    def contents(self) -> Contents:
        """Read everything the boards hold (for a reconciliation). Raises `RedisError`."""
        ready = bool(self.bulk.exists(READY))
        board_keys = sorted(cast("set[str]", self.bulk.smembers(BOARDS)))
        pipeline = self.bulk.pipeline(transaction=False)
        for key in board_keys:
            pipeline.zrange(key, 0, -1, withscores=True)
        pipeline.hgetall(LABELS)
        *scores, labels = pipeline.execute()
        boards = {
            key.removeprefix(PREFIX + "board:"): {member: -int(s) for member, s in rows}
            for key, rows in zip(board_keys, scores, strict=True)
        }
        return Contents(ready=ready, boards=boards, labels=cast("dict[str, str]", labels))

    def correct(self, corrections: list[Correction], labels: Mapping[str, str | None]) -> int:
        """Apply the corrections whose `seen` still holds (how many did), and set (None:
        delete) the labels. Raises `RedisError`."""
        keys = [BOARDS, *(_key(fix.board) for fix in corrections)]
        args: list[Any] = []
        for fix in corrections:
            args += [fix.member, _stored(fix.seen), _stored(fix.wanted)]
        applied = int(self._correct(keys=keys, args=args, client=self.bulk)) if corrections else 0
        stale = [member for member, label in labels.items() if label is None]
        fresh = {member: label for member, label in labels.items() if label is not None}
        if stale:
            self.bulk.hdel(LABELS, *stale)
        if fresh:
            self.bulk.hset(LABELS, mapping=cast("dict[Any, Any]", fresh))
        return applied

    def forget(self) -> None:
        """Drop every board, label and the marker (as a flushed Redis would)."""
        keys = cast("list[str]", list(self.bulk.scan_iter(match=PREFIX + "*", count=1000)))
        if keys:
            self.bulk.delete(*keys)


def _key(board: str) -> str:
    return f"{PREFIX}board:{board}"


def _stored(score: int | None) -> str:
    return "" if score is None else str(-score)


def _quads(rows: list[Any]) -> Iterable[tuple[str, str, int, str | None]]:
    return zip(rows[0::4], rows[1::4], rows[2::4], rows[3::4], strict=True)


def _chunks(items: list[tuple[str, Any]]) -> Iterable[list[tuple[str, Any]]]:
    for start in range(0, len(items), WRITE_CHUNK):
        yield items[start : start + WRITE_CHUNK]
