"""The rankings benchmark: its data plan, its figures and verdicts, and one tiny run of the
whole of it against Gunicorn, PostgreSQL and Redis."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from benchmarks.openloop import DROPPED, Record
from benchmarks.rankings import (
    Truth,
    comparison,
    errors_by_kind,
    median_of_rounds,
    next_cursor,
    parse_mix,
    read_mix,
    summarize,
    targets_of,
)
from benchmarks.rankings_data import Plan, Scale
from benchmarks.targets import MISSED, report
from benchmarks.timed_app import server_ms

from benchmarks import ROOT

TINY = Scale(0.001)  # 100 players, 200 videos, 2 000 votes


def test_the_plan_seeds_distinct_voters_and_a_viral_video() -> None:
    plan = Plan.make(TINY)
    assert (TINY.players, TINY.videos, TINY.votes) == (100, 200, 2000)
    assert sum(plan.video_votes) == TINY.votes
    assert plan.video_votes[Plan.VIRAL] == TINY.viral_votes == TINY.votes // 20
    for video, count in enumerate(plan.video_votes):
        voters = [plan.voter(video, n) for n in range(count)]
        assert len(set(voters)) == count, f"video {video} has a voter twice"
    usernames = {plan.username(player) for player in range(TINY.players)}
    assert len(usernames) == TINY.players  # the API tells players apart by their names
    assert set(plan.videos_of) == set(range(TINY.players))  # every player is ranked
    assert len(set(plan.user_city)) == 50


def test_the_benchmarks_votes_come_after_the_seeded_ones() -> None:
    plan = Plan.make(TINY)
    video = 1
    seeded = {plan.voter(video, n) for n in range(plan.video_votes[video])}
    later = [plan.voter(video, n) for n in range(plan.video_votes[video], TINY.players)]
    assert seeded.isdisjoint(later)
    assert len(seeded) + len(set(later)) == TINY.players
    with pytest.raises(ValueError, match="every player has voted"):
        plan.voter(Plan.VIRAL, TINY.players)


def test_the_plan_is_the_same_every_time() -> None:
    first, second = Plan.make(TINY), Plan.make(TINY)
    assert first.user_ids == second.user_ids
    assert first.video_votes == second.video_votes


def test_truth_ranks_ties_at_one_position() -> None:
    truth = Truth({"A a": ("x", 5), "B b": ("x", 3), "C c": ("y", 3), "D d": ("x", 1)}, 0)
    assert truth.positions(None) == {"A a": (1, 5), "B b": (2, 3), "C c": (2, 3), "D d": (4, 1)}
    assert truth.positions("x") == {"A a": (1, 5), "B b": (2, 3), "D d": (3, 1)}


def test_the_mix_is_normalized_and_checked() -> None:
    mix = parse_mix("ranking_first_global=3,ranking_deep=1")
    assert mix["ranking_first_global"] == 0.75
    assert mix["list_first"] == 0
    with pytest.raises(ValueError, match="unknown read class"):
        parse_mix("rankings=1")
    with pytest.raises(ValueError, match="not all 0"):
        parse_mix("list_deep=0")
    halved = read_mix({"list_deep": 0.2}, with_cursor=True)
    assert halved == {"list_deep": 0.1, "list_cursor": 0.1}


def test_a_next_cursor_is_found_in_a_header_or_a_link() -> None:
    assert next_cursor({"X-Next-Cursor": "abc"}) == "abc"
    link = '</api/public/videos?limit=20&cursor=a%3Db>; rel="next"'
    assert next_cursor({"Link": link}) == "a=b"
    assert next_cursor({"X-Total-Count": "200", "Content-Type": "application/json"}) is None


def test_server_timing_is_read_from_the_app_metric() -> None:
    assert server_ms("db;dur=1, app;dur=2.5") == 2.5
    assert server_ms(None) is None
    assert server_ms("cache;desc=hit") is None


def records(kind: str, times: list[float], status: int = 200) -> list[Record]:
    return [Record(kind, 0.0, 0.1, ms, ms / 2, status) for ms in times]


def result_with(vote_ms: float, errors: int = 0) -> dict:
    found = (
        records("vote", [vote_ms] * 20)
        + records("ranking_first_global", [5.0] * 20)
        + records("list_first", [5.0] * 20, 503)[:errors]
    )
    return {
        "classes": summarize(found),
        "freshness": {"p95_ms": 100.0},
        "votes_per_s": 100.0,
        "check": {"problems": []},
    }


def test_latencies_count_answered_requests_and_errors_count_the_rest() -> None:
    summary = summarize(records("vote", [10.0, 20.0]) + records("vote", [999.0], 503)
                        + records("vote", [0.0], DROPPED))  # fmt: skip
    assert summary["vote"]["count"] == 4
    assert summary["vote"]["errors"] == 2
    assert summary["vote"]["p95_ms"] == 20.0
    assert summary["vote"]["server_p50_ms"] == 5.0
    assert errors_by_kind(summary) == "503 1, dropped by the client 1"


def test_a_missed_target_or_an_error_fails_the_run(capsys: pytest.CaptureFixture[str]) -> None:
    args = type("Args", (), {"rate_votes": 100.0})()
    assert report("after:", targets_of(result_with(vote_ms=12.0), args)) == 0
    assert report("after:", targets_of(result_with(vote_ms=31.0), args)) == MISSED
    assert report("after:", targets_of(result_with(vote_ms=12.0, errors=1), args)) == MISSED
    out = capsys.readouterr().out
    assert "vote p95 ms <= 30" in out
    assert "errors == 0" in out


def test_rounds_are_judged_by_their_medians_with_every_error_and_wrong_rank(
    capsys: pytest.CaptureFixture[str],
) -> None:
    rounds = [result_with(vote_ms=ms, errors=e) for ms, e in ((12.0, 1), (95.0, 2), (14.0, 1))]
    rounds[1]["check"]["problems"] = ["player 7: votes 3, SQL 4"]

    overall = median_of_rounds(rounds)

    assert overall["classes"]["vote"]["p95_ms"] == 14.0
    assert overall["check"]["problems"] == ["player 7: votes 3, SQL 4"]
    args = type("Args", (), {"rate_votes": 100.0})()
    assert overall["classes"]["list_first"]["errors"] == 4
    assert report("after:", targets_of(overall, args)) == MISSED
    assert "rankings == SQL               1 off  FAIL" in capsys.readouterr().out


def test_the_comparison_gives_the_medians_and_each_rounds_ratio() -> None:
    rounds = [
        {"before": result_with(vote_ms=20.0), "after": result_with(vote_ms=10.0)},
        {"before": result_with(vote_ms=40.0), "after": result_with(vote_ms=80.0)},
        {"before": result_with(vote_ms=30.0), "after": result_with(vote_ms=15.0)},
    ]
    overall = {name: median_of_rounds([r[name] for r in rounds]) for name in ("before", "after")}

    vote = next(line for line in comparison(overall, rounds) if line.lstrip().startswith("vote"))

    assert vote.split()[1:] == ["30.0", "15.0", "0.500", "0.50", "2.00", "0.50"]


def test_a_tiny_run_measures_every_class_and_agrees_with_sql(
    postgres_database: str, redis_url: str, tmp_path: Path
) -> None:
    """The whole benchmark at 100 players for 2 s, on the tests' Redis db: every class is
    measured, the freshness probe sees its votes, and the rankings agree with SQL."""
    out = tmp_path / "rankings.json"
    command = [
        sys.executable, "-m", "benchmarks.rankings", "--only", "after", "--scale", "0.001",
        "--duration", "2", "--warmup", "0.5", "--rate-votes", "10", "--rate-reads", "20",
        "--gunicorn-workers", "1", "--redis-db", redis_url.rsplit("/", 1)[1], "--out", str(out),
    ]  # fmt: skip
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert done.returncode in (0, MISSED), done.stdout + done.stderr  # latency is the machine's
    figures = json.loads(out.read_text())
    assert figures["medians"] == figures["rounds"][0]  # one round: its own median
    after = figures["rounds"][0]["after"]
    classes = after["classes"]
    assert {"vote", "ranking_first_global", "ranking_first_city", "list_first"} <= set(classes)
    assert all(figures["errors"] == 0 for figures in classes.values()), classes
    assert Counter(after["classes"]["vote"]["statuses"]) == {"200": classes["vote"]["count"]}
    assert after["freshness"]["probes"] >= 2
    assert after["freshness"]["unseen"] == 0
    assert not math.isnan(classes["vote"]["server_p50_ms"])
    assert after["check"]["problems"] == []
    assert after["check"]["players"] >= 100
    assert after["leaderboard_check"]["agrees"]
    assert "rankings == SQL" in done.stdout
