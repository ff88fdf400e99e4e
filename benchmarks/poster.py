"""Benchmark: the poster's cost next to the render it follows.

Input: the worker benchmark's ~50 MB source (60 s of 1080p30 H.264 encoded like a phone
does, `benchmarks.media.worker_input`). Each round renders it (`pipeline.render`) and makes
the poster from that clip (`poster.make_poster`), timing both: median wall and child CPU
seconds, and the poster's share of the render. Target: the poster costs at most 5% of the
render's CPU time.

Usage: scripts/bench_poster [--rounds N] [--keep DIR]
(or `.venv/bin/python -m benchmarks.poster` from the repository root).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from functools import partial
from pathlib import Path

from anb.processing import pipeline, poster
from anb.processing.probe import probe
from benchmarks import targets
from benchmarks.media import worker_input
from benchmarks.worker import Run, timed

SOURCE_MB = 50
CPU_SHARE_TARGET = 0.05  # poster CPU / render CPU, at most


def measure(source: Path, work: Path, rounds: int) -> tuple[list[Run], list[Run]]:
    """`rounds` renders of `source`, each followed by the poster of its clip."""
    info = probe(source)
    clip, image = work / "clip.mp4", work / "poster.jpg"
    render = partial(pipeline.render, source, clip, info)
    make_poster = partial(poster.make_poster, clip, image, info, timeout_seconds=60)
    renders, posters = [], []
    for _ in range(rounds):
        renders.append(timed(render, clip))
        posters.append(timed(make_poster, image))
    return renders, posters


def run(rounds: int, work: Path) -> int:
    print(f"work dir: {work}\npreparing the input (cached there)...", flush=True)
    source = worker_input(work, SOURCE_MB)
    renders, posters = measure(source, work, rounds)
    render_wall = statistics.median(run.wall for run in renders)
    render_cpu = statistics.median(run.cpu for run in renders)
    poster_wall = statistics.median(run.wall for run in posters)
    poster_cpu = statistics.median(run.cpu for run in posters)
    print(f"\n{source.name}, median of {rounds}:")
    print(f"  render  wall {render_wall:7.3f} s  cpu {render_cpu:7.3f} s")
    print(f"  poster  wall {poster_wall:7.3f} s  cpu {poster_cpu:7.3f} s  ({posters[-1].size} B)")
    print(
        f"  poster/render  wall {poster_wall / render_wall:.4f}  cpu {poster_cpu / render_cpu:.4f}"
    )
    share = poster_cpu / render_cpu
    return targets.report("target", [targets.at_most("poster/render CPU", share, CPU_SHARE_TARGET)])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="renders and posters (default 3)")
    parser.add_argument("--keep", type=Path, help="work dir to keep and reuse (input cached)")
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
        return run(args.rounds, args.keep.resolve())
    with tempfile.TemporaryDirectory(prefix="anb-bench-poster-") as work:
        return run(args.rounds, Path(work))


if __name__ == "__main__":
    sys.exit(main())
