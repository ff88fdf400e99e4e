"""A league-sized PostgreSQL database, seeded in the database itself (INSERT … SELECT over
generate_series): 100 000 players in 50 cities of 5 countries, 200 000 public videos (and
a few unpublished ones), 2 000 000 votes, in two or three minutes, then VACUUM ANALYZE.

The rows are what the API would have written: folded keys as `anb.core.text.search_key`
folds them, each video's `votes` equal to its rows in `votes`, publication times spread
over a year in no particular order of owner or city. The same arguments seed the same
league. The database must be migrated first (`anb migrate`); every schema since the
leaderboard's (0005) is seeded, with or without the videos' own scope keys (0006).

Usage: .venv/bin/python -m benchmarks.league DATABASE_URL [--players 100000] [--cities 50]
       [--videos 200000] [--votes 2000000]
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass

from sqlalchemy import Connection, create_engine, inspect, text

from anb.core.text import search_key

COUNTRIES = 5
UNPUBLISHED_SHARE = 20  # one unpublished video (uploaded, processing or failed) per 20 public
YEAR_SECONDS = 365 * 24 * 3600


@dataclass(frozen=True)
class League:
    players: int = 100_000
    cities: int = 50
    videos: int = 200_000  # public ones
    votes: int = 2_000_000

    def city(self, n: int) -> tuple[str, str]:
        """City n and its country, as players type them (accents and all)."""
        return f"Ciudad {n:02d}", f"País {n % COUNTRIES}"

    def city_names(self) -> list[str]:
        return [self.city(n)[0] for n in range(self.cities)]

    def country_names(self) -> list[str]:
        return sorted({self.city(n)[1] for n in range(self.cities)})

    @property
    def votes_per_player(self) -> int:
        return -(-self.votes // self.players)  # the last players cast fewer


def seed(url: str, league: League) -> dict[str, float]:
    """Seed the (migrated, empty) database at `url`; answers the seconds of each step."""
    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    steps: dict[str, float] = {}
    try:
        with engine.connect() as connection:
            if connection.scalar(text("SELECT count(*) FROM users")):
                raise SystemExit("the database has players already: seed an empty one")
            for name, step in (
                ("players", _players),
                ("videos", _videos),
                ("votes", _votes),
                ("counts", _counts),
                ("analyze", _analyze),
            ):
                started = time.monotonic()
                step(connection, league)
                steps[name] = time.monotonic() - started
    finally:
        engine.dispose()
    return steps


def _places(league: League) -> str:
    """The cities as a VALUES list: (n, city, country, city_key, country_key)."""
    rows = []
    for n in range(league.cities):
        city, country = league.city(n)
        values = (city, country, search_key(city), search_key(country))
        rows.append(f"({n}, " + ", ".join(f"'{value}'" for value in values) + ")")
    return ", ".join(rows)


def _players(connection: Connection, league: League) -> None:
    connection.execute(
        text(
            f"""
            INSERT INTO users (id, email, password_hash, first_name, last_name, city, country,
                               city_key, country_key, name_key, created_at)
            SELECT md5('player' || n)::uuid::text, 'player' || n || '@league.test',
                   'not-a-hash', 'Jugador', 'Número ' || n, p.city, p.country,
                   p.city_key, p.country_key, 'jugador numero ' || n,
                   timestamptz '2025-01-01' + n * interval '1 second'
            FROM generate_series(0, {league.players - 1}) AS n
            JOIN (VALUES {_places(league)}) AS p (k, city, country, city_key, country_key)
              ON p.k = mod(n, {league.cities})
            """
        )
    )


def _videos(connection: Connection, league: League) -> None:
    """Public videos n = 0…videos-1 (owner n % players), then the unpublished ones; the
    owner's scope keys are copied where the schema keeps them on the video."""
    scoped = "city_key" in {column["name"] for column in inspect(connection).get_columns("videos")}
    keys, owner_keys = (
        (", city_key, country_key", ", u.city_key, u.country_key") if scoped else ("", "")
    )
    unpublished = league.videos // UNPUBLISHED_SHARE
    connection.execute(
        text(
            f"""
            INSERT INTO videos (id, owner_id, title, status, task_id, original_key,
                                processed_key, thumbnail_key, original_bytes, votes,
                                uploaded_at, processed_at{keys})
            SELECT md5('video' || n)::uuid::text, u.id, 'Jugada ' || n,
                   CASE WHEN n < {league.videos} THEN 'processed'
                        ELSE (ARRAY['uploaded', 'processing', 'failed'])[mod(n, 3) + 1] END,
                   md5('task' || n)::uuid::text, 'videos/' || n || '/original.mp4',
                   CASE WHEN n < {league.videos} THEN 'videos/' || n || '/processed.mp4' END,
                   CASE WHEN n < {league.videos} THEN 'videos/' || n || '/processed.jpg' END,
                   50000000, 0, t.published - interval '2 minutes',
                   CASE WHEN n < {league.videos} THEN t.published END{owner_keys}
            FROM generate_series(0, {league.videos + unpublished - 1}) AS n
            JOIN users AS u ON u.id = md5('player' || mod(n, {league.players}))::uuid::text
            CROSS JOIN LATERAL (
                -- a fixed shuffle of the year: n * 7919 modulo a prime above the count
                SELECT timestamptz '2025-06-01' + mod(n::bigint * 7919, 1000003)
                       * ({YEAR_SECONDS} / 1000003.0) * interval '1 second' AS published
            ) AS t
            """
        )
    )


def _votes(connection: Connection, league: League) -> None:
    """Player v votes for public videos (v * 7919 + k * 10007) mod videos, k < votes per
    player: never twice for one video, as long as k * 10007 < videos for every k (19 * 10007 <
    200 000 in the default league)."""
    per_player = league.votes_per_player
    if (per_player - 1) * 10007 >= league.videos:
        raise SystemExit(f"{per_player} votes per player over {league.videos} videos: too many")
    connection.execute(
        text(
            f"""
            INSERT INTO votes (user_id, video_id, created_at)
            SELECT md5('player' || v)::uuid::text,
                   md5('video' || mod(v::bigint * 7919 + k * 10007, {league.videos}))::uuid::text,
                   timestamptz '2026-06-01' + (v * {per_player} + k) * interval '1 millisecond'
            FROM generate_series(0, {league.players - 1}) AS v
            CROSS JOIN generate_series(0, {per_player - 1}) AS k
            WHERE v * {per_player} + k < {league.votes}
            """
        )
    )


def _counts(connection: Connection, _league: League) -> None:
    connection.execute(
        text(
            """
            UPDATE videos SET votes = counted.votes
            FROM (SELECT video_id, count(*) AS votes FROM votes GROUP BY video_id) AS counted
            WHERE videos.id = counted.video_id
            """
        )
    )


def _analyze(connection: Connection, _league: League) -> None:
    connection.execute(text("VACUUM (ANALYZE) users, videos, votes"))


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.league", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("url", metavar="DATABASE_URL", help="postgresql+pg8000://…, migrated")
    defaults = League()
    for name in ("players", "cities", "videos", "votes"):
        parser.add_argument(f"--{name}", type=int, default=getattr(defaults, name))
    options = parser.parse_args()
    league = League(options.players, options.cities, options.videos, options.votes)
    for step, seconds in seed(options.url, league).items():
        print(f"{step:8} {seconds:7.1f} s")


if __name__ == "__main__":
    main()
