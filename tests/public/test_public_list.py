"""The public list at depth: cursor pages, their headers and their refusals, offset pages
started from anchors, the total count and the pages kept per scope membership (votes reach
a voter at once, other readers within seconds), and pages read as index ranges."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from benchmarks.league import League, seed
from benchmarks.public_list import explain, recorded_selects, scans
from fastapi.testclient import TestClient

from anb.api import create_app
from anb.cache import get_cache
from anb.core.db import get_engine
from anb.core.migrations import upgrade_to_head
from anb.public import service
from anb.public.scopes import Scope
from tests.clips import Clips
from tests.support.api import Player, upload, upload_public
from tests.support.backend import add_public_video, add_user, vote
from tests.support.services import fresh_postgres_database, reset_process_state

PATH = "/api/public/videos"
START = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def listed(response: httpx.Response) -> list[str]:
    assert response.status_code == 200, response.text
    return [video["video_id"] for video in response.json()]


def walk(
    client: TestClient, params: dict[str, str], between: Callable[[], None]
) -> list[dict[str, Any]]:
    """Every video from the first page on, following X-Next-Cursor; `between()` runs
    between two pages."""
    videos: list[dict[str, Any]] = []
    response = client.get(PATH, params=params)
    for _ in range(100):
        assert response.status_code == 200, response.text
        videos += response.json()
        cursor = response.headers.get("X-Next-Cursor")
        if cursor is None:
            assert "Link" not in response.headers
            return videos
        between()
        response = client.get(PATH, params={**params, "cursor": cursor})
    raise AssertionError("the walk did not end")


@pytest.fixture
def league(client: TestClient) -> dict[str, Any]:
    """Nine videos: five of two Bogotá players, four of a Lima player; three of them published
    in the same microsecond (the id orders them), none inserted in publication order."""
    bogota = [
        add_user("Ana", "Uno", "Bogotá", "Colombia"),
        add_user("Eva", "Dos", "BOGOTA", "colombia"),
    ]
    lima = add_user("Luz", "Tres", "Lima", "Perú")
    owners = [bogota[0], lima, bogota[1], bogota[0], lima, bogota[1], bogota[0], lima, lima]
    minutes = [5, 1, 7, 3, 3, 3, 8, 0, 6]
    videos = [
        add_public_video(owner, processed_at=START + timedelta(minutes=minute))
        for owner, minute in zip(owners, minutes, strict=True)
    ]
    return {"bogota": bogota, "lima": lima, "videos": videos}


@pytest.mark.parametrize("params", [{}, {"city": "BOGOTÁ"}, {"country": "peru"}])
def test_a_cursor_walk_lists_the_scope_once_while_videos_are_published_and_voted(
    client: TestClient, league: dict[str, Any], params: dict[str, str]
) -> None:
    before = listed(client.get(PATH, params={**params, "limit": 100}))
    assert len(before) == len(set(before)) >= 4
    fans = iter(add_user("Fan", str(n), "Quito", "Ecuador") for n in range(10))
    votes_cast = 0

    def meanwhile() -> None:
        nonlocal votes_cast
        add_public_video(league["bogota"][0])  # on top of every list it is in
        add_public_video(league["lima"])
        vote(next(fans), before[-1])  # the scope's last video, on the last page
        votes_cast += 1

    walked = walk(client, {**params, "limit": "2"}, between=meanwhile)
    assert [video["video_id"] for video in walked] == before  # each once, in order
    assert walked[-1]["votes"] == votes_cast >= 1  # as voted when its page was read


@pytest.mark.parametrize("params", [{}, {"city": "BOGOTÁ"}, {"country": "peru"}])
def test_offset_pages_started_from_anchors_are_the_list_cut_at_that_offset(
    client: TestClient,
    league: dict[str, Any],
    params: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(service, "ANCHOR_STRIDE", 2)  # an anchor every other video

    def pages_are_cuts_of_the_whole() -> list[str]:
        whole = listed(client.get(PATH, params={**params, "limit": 100}))
        for limit in (1, 2, 3):
            for offset in range(len(whole) + 2):
                cut = {**params, "limit": str(limit), "offset": str(offset)}
                assert listed(client.get(PATH, params=cut)) == whole[offset : offset + limit], cut
        return whole

    before = pages_are_cuts_of_the_whole()
    add_public_video(league["bogota"][0])  # on top of Bogotá's list and everyone's:
    add_public_video(league["lima"])  # every anchor moves down, and is read again
    after = pages_are_cuts_of_the_whole()
    assert after[-len(before) :] == before and len(after) == len(before) + (1 if params else 2)


def test_a_voter_sees_their_vote_at_once_and_everyone_within_two_seconds(
    client: TestClient, player: Player, league: dict[str, Any]
) -> None:
    top = league["videos"][6]  # the last published

    def votes_seen(headers: dict[str, str] | None = None) -> tuple[int, bool]:
        [first] = client.get(PATH, params={"limit": 1}, headers=headers).json()
        assert first["video_id"] == top
        return first["votes"], first["voted"]

    assert votes_seen() == votes_seen(player.headers) == (0, False)  # both pages now cached
    voted = client.post(f"/api/public/videos/{top}/vote", headers=player.headers)
    assert voted.status_code == 200, voted.text
    assert votes_seen(player.headers) == (1, True)
    deadline = time.monotonic() + 2 * service.LIST_PAGE_FRESH_SECONDS + 0.5
    while votes_seen() != (1, False):
        assert time.monotonic() < deadline, "an anonymous reader still sees no vote"
        time.sleep(0.1)


def test_the_next_page_is_linked_and_the_last_page_has_no_cursor(
    client: TestClient, league: dict[str, Any]
) -> None:
    first = client.get(PATH, params={"city": "bogota", "limit": 4})
    cursor = first.headers["X-Next-Cursor"]
    assert first.headers["X-Total-Count"] == "5"
    assert (
        first.headers["Link"]
        == f'</api/public/videos?city=bogota&limit=4&cursor={cursor}>; rel="next"'
    )
    target = first.headers["Link"].split(">")[0].removeprefix("<")
    second = client.get(target)
    assert second.headers["X-Total-Count"] == "5"
    assert len(listed(second)) == 1 and "X-Next-Cursor" not in second.headers
    by_offset = client.get(PATH, params={"city": "bogota", "limit": 4, "offset": 4})
    assert listed(by_offset) == listed(second) and "X-Next-Cursor" not in by_offset.headers


def test_pages_at_hand_carry_the_cursor_headers_too(
    client: TestClient, league: dict[str, Any]
) -> None:
    routed, at_hand = (client.get(PATH, params={"country": "Perú", "limit": 1}) for _ in range(2))
    assert at_hand.json() == routed.json()
    for header in ("X-Total-Count", "X-Next-Cursor", "Link"):
        assert at_hand.headers[header] == routed.headers[header], header


def test_foreign_forged_or_combined_cursors_are_400(
    client: TestClient, league: dict[str, Any]
) -> None:
    cursor = client.get(PATH, params={"city": "Bogotá", "limit": 2}).headers["X-Next-Cursor"]
    body, _, signature = cursor.partition(".")
    forged_body = ("A" if body[0] != "A" else "B") + body[1:]
    refused = [
        {"cursor": cursor},  # made for Bogotá, used on all videos
        {"cursor": cursor, "city": "Lima"},
        {"cursor": cursor, "city": "Bogotá", "country": "Colombia"},
        {"cursor": f"{forged_body}.{signature}", "city": "Bogotá"},
        {"cursor": f"{body}.{signature[:-1]}", "city": "Bogotá"},
        {"cursor": cursor, "city": "Bogotá", "offset": "2"},
        {"cursor": "", "city": "Bogotá"},
        {"cursor": "no-es-un-cursor"},
        {"cursor": "ñandú.ü"},
        {"cursor": "x" * 201},
    ]
    for params in refused:
        response = client.get(PATH, params=params)
        assert response.status_code == 400, params
        assert response.json()["detail"] == "Parámetro inválido en la consulta: cursor", params
    accepted = client.get(PATH, params={"cursor": cursor, "city": "bogota", "offset": "0"})
    assert accepted.status_code == 200 and len(listed(accepted)) == 3  # the rest of Bogotá


def test_the_total_changes_with_publications_not_votes(
    client: TestClient, player: Player, clips: Clips, league: dict[str, Any]
) -> None:
    def totals() -> tuple[str, ...]:
        scopes = ({}, {"city": "bogota"}, {"city": "lima"})
        return tuple(client.get(PATH, params=p).headers["X-Total-Count"] for p in scopes)

    assert totals() == ("9", "5", "4")
    cache, everyone = get_cache(), Scope()
    counted = everyone.membership(cache)
    vote(add_user("Fan", "Cero", "Quito", "Ecuador"), league["videos"][0])
    assert everyone.membership(cache) == counted  # a vote leaves every count cached
    assert totals() == ("9", "5", "4")
    add_public_video(league["lima"])
    assert everyone.membership(cache) != counted
    assert totals() == ("10", "5", "5")
    published = upload_public(client, player, clips.landscape)  # the player is in Bogotá
    assert totals() == ("11", "6", "5")
    pending = upload(client, player, clips.landscape).json()["video_id"]
    assert client.delete(f"/api/videos/{pending}", headers=player.headers).status_code == 200
    refused = client.delete(f"/api/videos/{published}", headers=player.headers)
    assert refused.status_code == 400  # published: it stays, and so does the total
    assert totals() == ("11", "6", "5")


# --- what the planners make of the page statements --------------------------------------


def test_list_pages_are_index_ranges_on_sqlite(client: TestClient) -> None:
    """The page's ids come from a covering index, in its order; only the page's rows are
    sorted again (the outer ORDER BY, over limit + 1 rows)."""
    engine = get_engine()
    if engine.dialect.name != "sqlite":
        pytest.skip("embedded mode: PostgreSQL's plans are checked on a seeded league")
    owners = [add_user("Ana", str(n), f"Ciudad {n % 3}", f"País {n % 2}") for n in range(6)]
    for n in range(60):
        add_public_video(owners[n % 6], processed_at=START + timedelta(seconds=(n * 37) % 60))
    cursor = client.get(PATH, params={"limit": 5}).headers["X-Next-Cursor"]
    for params in ({}, {"city": "ciudad 1"}, {"country": "PAÍS 0"}, {"cursor": cursor}):
        with recorded_selects() as recorded:
            assert len(listed(client.get(PATH, params=params))) == 20
        [(page, arguments)] = [(sql, a) for sql, a in recorded if "count(" not in sql.lower()]
        with engine.connect() as connection:
            plan = connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {page}", arguments).all()
        parents = {row[0]: row[1] for row in plan}
        [materialize] = [row[0] for row in plan if row[3].startswith("MATERIALIZE")]
        inner = [row[3] for row in plan if _descends(row[0], materialize, parents)]
        assert len(inner) == 1 and inner[0].startswith(
            "SEARCH videos USING COVERING INDEX ix_videos_public"
        ), (params, inner)


def _descends(node: int, ancestor: int, parents: dict[int, int]) -> bool:
    while node in parents:
        node = parents[node]
        if node == ancestor:
            return True
    return False


# --- PostgreSQL ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def seeded_postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A small league (4 000 public videos in 10 cities), migrated, seeded, analysed."""
    with fresh_postgres_database() as url, pytest.MonkeyPatch.context() as env:
        env.setenv("ANB_DATABASE_URL", url)
        env.setenv("ANB_DATA_DIR", str(tmp_path_factory.mktemp("league")))
        reset_process_state()
        upgrade_to_head()
        reset_process_state()
        seed(url, League(players=1000, cities=10, videos=4000, votes=1000))
        yield url


def test_list_pages_are_index_ranges_on_postgresql(
    seeded_postgres: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name, value in {
        "ANB_DATABASE_URL": seeded_postgres,
        "ANB_DATA_DIR": str(tmp_path),
        "ANB_JWT_SECRET": "test-secret-" + "x" * 32,
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("ANB_CACHE_URL", raising=False)
    reset_process_state()
    city, country = League().city(3)
    with TestClient(create_app()) as client:
        cursor = client.get(PATH, params={"offset": 980}).headers["X-Next-Cursor"]
        for params in ({}, {"city": city}, {"country": country}, {"cursor": cursor}):
            read = _page_scans(seeded_postgres, client, params)
            assert "(21 rows)" in read[0], read  # the page and one more, nothing skipped
        assert listed(client.get(PATH, params={"offset": 3500}))  # the anchors, read once
        read = _page_scans(seeded_postgres, client, {"offset": 3517})
        # from the anchor at 3000 (ANCHOR_STRIDE), not from the top
        assert f"({3517 - 3000 + 21} rows)" in read[0], read
    reset_process_state()


def _page_scans(url: str, client: TestClient, params: dict[str, Any]) -> list[str]:
    """The scans of the page's statement: one range of the scope's index, checked here."""
    with recorded_selects() as recorded:
        assert len(listed(client.get(PATH, params=params))) == 20
    [page] = [(sql, args) for sql, args in recorded if "count(" not in sql.lower()]
    [result] = explain(url, *page, runs=1)
    read = list(scans(_first(result["Plan"], "Limit")))
    assert len(read) == 1, (params, read)  # the scope is never sorted, only ranged
    assert read[0].startswith(
        (
            "Index Only Scan Backward using ix_videos_public",
            "Index Scan Backward using ix_videos_public",
        )
    ), read
    assert not any(s.startswith("Seq Scan") for s in scans(result["Plan"])), params
    return read


def _first(node: dict[str, Any], kind: str) -> dict[str, Any]:
    """The first node of `kind` in plan order."""
    found = _find(node, kind)
    assert found is not None, f"no {kind} in the plan"
    return found


def _find(node: dict[str, Any], kind: str) -> dict[str, Any] | None:
    if node["Node Type"] == kind:
        return node
    for child in node.get("Plans", []):
        found = _find(child, kind)
        if found is not None:
            return found
    return None
