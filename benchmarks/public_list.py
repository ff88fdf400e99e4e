"""Benchmark: the public list's SQL at league scale, as PostgreSQL runs it (EXPLAIN ANALYZE).

For each system (the working tree; with --before REV, that revision too, from a detached
`git worktree`): a fresh PostgreSQL database migrated by the system's own code and seeded as
`benchmarks.league` seeds a league (--players, --videos, --votes), then, in a process that
imports the system's `anb`, the API answers each case in-process (TestClient; the embedded
cache emptied first, so the total is counted too) while every statement it sends is
recorded. Each recorded statement runs once unmeasured, then --runs times under
EXPLAIN (ANALYZE, FORMAT JSON): the table gives the median execution time (server side,
planning apart) and the plan's scans and sorts. The databases are dropped at the end.
--database URL measures a database already seeded instead (no seeding, no --before).

Cases: the first page of all videos, the first page of a city, offset 5000, the page after
a cursor at depth 5000 (taken from the `X-Next-Cursor` of offset 4980; n/a for a system
without cursors); each scope's count statement is its own row (what a request costs when
the count is not cached: a system may cache it).

Usage: scripts/bench_public_list [--before REV] [--runs 7] [--plans] [--players 100000]
                                 [--videos 200000] [--votes 2000000] [--database URL]
                                 [--out results.json]
(or `.venv/bin/python -m benchmarks.public_list` from the repository root).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from benchmarks import ROOT
from benchmarks.api import commit_of, worktree
from benchmarks.figures import Column, Table, ratio
from benchmarks.league import League, seed
from benchmarks.stack import POSTGRES_ADMIN

PATH = "/api/public/videos"
DEPTH = 5000
PAGE = 20
CITY = League().city(7)[0]
CASES = {
    "first page": {},
    "first page, a city": {"city": CITY},
    f"offset {DEPTH}": {"offset": str(DEPTH)},
    f"cursor at {DEPTH}": None,  # the page after offset DEPTH - PAGE's last video
}


@dataclass
class Row:
    """One statement of one case, as PostgreSQL ran it."""

    case: str
    kind: str  # "page" or "count"
    median_ms: float | None  # None: the system does not answer this case
    planning_ms: float | None = None
    plan: str = ""
    scans: str = ""


# --- in the measured system's process ---------------------------------------------------------


def measure(url: str, runs: int) -> list[Row]:
    """Answer each case with the `anb` this process imports, on the database at `url`."""
    from fastapi.testclient import TestClient

    os.environ.update(
        ANB_DATABASE_URL=url,
        ANB_DATA_DIR=tempfile.mkdtemp(prefix="anb-bench-list-"),
        ANB_JWT_SECRET="bench-public-list-" + "x" * 32,
    )
    os.environ.pop("ANB_CACHE_URL", None)
    from anb.api import create_app
    from anb.cache import get_cache

    rows: list[Row] = []
    counted: set[tuple[str, str]] = set()  # a count shared by cases is measured once
    with TestClient(create_app()) as client:
        for case, params in CASES.items():
            query = params
            if query is None:
                previous = client.get(PATH, params={"offset": str(DEPTH - PAGE)})
                cursor = previous.headers.get("x-next-cursor")
                if cursor is None:
                    rows.append(Row(case, "page", None))
                    continue
                query = {"cursor": cursor}
            get_cache.cache_clear()  # an empty cache: the page and its total are computed
            with recorded_selects() as recorded:
                answer = client.get(PATH, params=query)
            assert answer.status_code == 200 and len(answer.json()) == PAGE, answer.text
            for statement, parameters in recorded:
                row = _explained(url, case, statement, parameters, runs)
                if row.kind == "page" or (statement, repr(parameters)) not in counted:
                    counted.add((statement, repr(parameters)))
                    rows.append(row)
    return rows


@contextlib.contextmanager
def recorded_selects() -> Iterator[list[tuple[str, Any]]]:
    """The SELECTs that read videos sent meanwhile by any engine: (statement, parameters)
    as the driver receives them."""
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    recorded: list[tuple[str, Any]] = []

    def record(*args: Any) -> None:
        _connection, _cursor, statement, parameters = args[:4]
        if statement.lstrip().upper().startswith("SELECT") and "videos" in statement:
            recorded.append((statement, parameters))

    event.listen(Engine, "before_cursor_execute", record)
    try:
        yield recorded
    finally:
        event.remove(Engine, "before_cursor_execute", record)


def explain(url: str, statement: str, parameters: Any, runs: int) -> list[dict[str, Any]]:
    """`runs` results of EXPLAIN (ANALYZE, FORMAT JSON) of a recorded statement, after one
    unmeasured run that warms the caches."""
    from sqlalchemy import create_engine

    engine = create_engine(url)
    connection = engine.raw_connection()
    try:
        cursor = connection.cursor()
        results = []
        for _ in range(runs + 1):
            cursor.execute(f"EXPLAIN (ANALYZE, FORMAT JSON) {statement}", parameters)
            results.append(_as_json(cursor.fetchone()[0])[0])
    finally:
        connection.close()
        engine.dispose()
    return results[1:]


def _explained(url: str, case: str, statement: str, parameters: Any, runs: int) -> Row:
    measured = explain(url, statement, parameters, runs)
    plan = measured[-1]["Plan"]
    return Row(
        case=case,
        kind="count" if "count(" in statement.lower() else "page",
        median_ms=statistics.median(result["Execution Time"] for result in measured),
        planning_ms=statistics.median(result["Planning Time"] for result in measured),
        plan="\n".join(_plan_lines(plan)),
        scans="; ".join(scans(plan)),
    )


def _as_json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def _node(node: dict[str, Any]) -> str:
    kind = node["Node Type"]
    if node.get("Scan Direction") == "Backward":
        kind += " Backward"
    if "Index Name" in node:
        kind += f" using {node['Index Name']}"
    if "Relation Name" in node:
        kind += f" on {node['Relation Name']}"
    rows = node.get("Actual Rows", 0) * node.get("Actual Loops", 1)
    return f"{kind} ({rows} rows)"


def _plan_lines(node: dict[str, Any], depth: int = 0) -> Iterator[str]:
    yield "  " * depth + _node(node)
    for child in node.get("Plans", []):
        yield from _plan_lines(child, depth + 1)


def scans(node: dict[str, Any]) -> Iterator[str]:
    """The plan's reads and sorts, in plan order: what tells a range read from a sort."""
    if "Scan" in node["Node Type"] or "Sort" in node["Node Type"]:
        yield _node(node)
    for child in node.get("Plans", []):
        yield from scans(child)


# --- driving the systems ----------------------------------------------------------------------


@contextlib.contextmanager
def seeded_database(src: Path, league: League) -> Iterator[str]:
    """A fresh database migrated by the `anb` in `src` and seeded with `league`; dropped on
    exit."""
    import pg8000.native

    name = f"anb_bench_list_{uuid.uuid4().hex[:10]}"
    url = f"postgresql+pg8000://postgres@127.0.0.1:5432/{name}"
    admin = pg8000.native.Connection(**POSTGRES_ADMIN, timeout=5)
    admin.run(f"CREATE DATABASE {name}")
    try:
        migrate = "import sys; from anb.cli import main; sys.exit(main(['migrate']))"
        env = {**_child_env(src), "ANB_DATABASE_URL": url}
        subprocess.run([sys.executable, "-c", migrate], env=env, check=True)
        for step, seconds in seed(url, league).items():
            print(f"  seeded {step}: {seconds:.1f} s", file=sys.stderr)
        yield url
    finally:
        admin.run(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.close()


def _child_env(src: Path) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("ANB_")}
    data = tempfile.mkdtemp(prefix="anb-bench-list-")
    return {**base, "PYTHONPATH": f"{src}{os.pathsep}{ROOT}", "ANB_DATA_DIR": data}


def measure_system(src: Path, league: League, runs: int) -> list[Row]:
    """Seed a database for the `anb` in `src` and measure it in a process importing it."""
    with seeded_database(src, league) as url, tempfile.TemporaryDirectory() as work:
        out = Path(work) / "rows.json"
        command = [sys.executable, "-m", "benchmarks.public_list", "--database", url,
                   "--runs", str(runs), "--rows", str(out)]  # fmt: skip
        subprocess.run(command, env=_child_env(src), cwd=ROOT, check=True)
        return [Row(**row) for row in json.loads(out.read_text())]


def table(results: dict[str, list[Row]]) -> str:
    names = list(results)
    columns = [Column("case", 20, left=True), Column("sql", 5, left=True)]
    columns += [Column(f"{name} ms", 12, ".2f") for name in names]
    if len(names) == 2:
        columns.append(Column(f"{names[1]}/{names[0]}", 12, ".3f"))
    layout = Table(tuple(columns), gap="  ")
    lines = [layout.header(), layout.rule()]
    keys = [(row.case, row.kind) for row in results[names[0]]]
    for key in dict.fromkeys(keys):
        found = [_find(results[name], key) for name in names]
        cells: list[object] = [*key, *(_ms(row) for row in found)]
        if len(names) == 2:
            both = [row.median_ms for row in found]
            measured = [ms for ms in both if ms is not None]
            cells.append(ratio(measured[1], measured[0]) if len(measured) == 2 else "n/a")
        lines.append(layout.row(*cells))
    return "\n".join(lines)


def _find(rows: list[Row], key: tuple[str, str]) -> Row | None:
    return next((row for row in rows if (row.case, row.kind) == key), None)


def _ms(row: Row | None) -> object:
    return "n/a" if row is None or row.median_ms is None else row.median_ms


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.public_list",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--before", metavar="REV", help="also measure this revision")
    parser.add_argument("--runs", type=int, default=7, help="EXPLAIN ANALYZE runs per statement")
    parser.add_argument("--plans", action="store_true", help="print each statement's plan")
    defaults = League()
    for name in ("players", "videos", "votes"):
        parser.add_argument(f"--{name}", type=int, default=getattr(defaults, name))
    parser.add_argument("--database", metavar="URL", help="measure this seeded database")
    parser.add_argument("--out", type=Path, help="write every row (plans too) as JSON")
    parser.add_argument("--rows", type=Path, help=argparse.SUPPRESS)  # a child's answer
    args = parser.parse_args()
    if args.database:
        rows = measure(args.database, args.runs)
        if args.rows:
            args.rows.write_text(json.dumps([asdict(row) for row in rows]))
            return
        results = {"anb": rows}
    else:
        results = _measure_systems(args)
    print(table(results))
    if args.plans:
        for name, rows in results.items():
            for row in rows:
                print(f"\n{name}, {row.case}, {row.kind}:\n{row.plan or 'n/a'}")
    if args.out:
        args.out.write_text(json.dumps({k: [asdict(r) for r in v] for k, v in results.items()}))


def _measure_systems(args: argparse.Namespace) -> dict[str, list[Row]]:
    league = League(players=args.players, videos=args.videos, votes=args.votes)
    with tempfile.TemporaryDirectory() as work:
        sources = {}
        with contextlib.ExitStack() as resources:
            if args.before:
                commit = commit_of(args.before)
                sources["before"] = resources.enter_context(worktree(commit, Path(work))) / "src"
            sources["anb"] = ROOT / "src"
            results = {}
            for name, src in sources.items():
                print(f"{name}: seeding and measuring", file=sys.stderr)
                results[name] = measure_system(src, league, args.runs)
    return results


if __name__ == "__main__":
    main()
