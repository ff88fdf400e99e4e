"""Benchmark: CPU cost of the upload check (`check_upload`) with ffmpeg and from the boxes.

Inputs (generated once, cached with --keep): 1080p30 H.264 (1 s GOP, capped VBR) with AAC
sound, a moving `testsrc2` card under temporal noise, at bitrates that give ~5 and ~50 MB.

For each input, alternately: "ffmpeg" is the check as it was (the box walk, then `probe`: an
ffmpeg process demuxing the whole file by stream copy), "boxes" is `check_upload` as it is
(the box walk, then the video track's facts and sample tables read in-process). CPU per call
is this process's CPU (time.process_time) plus that of the children it waited for
(getrusage(RUSAGE_CHILDREN): the counters os.times() reports, at microsecond rather than
clock-tick resolution). Prints the medians side by side, and checks that both agree.

No targets: exits with 1 when the two checks disagree about an input.

Usage: scripts/bench_probe [--rounds N] [--keep DIR]
(or `.venv/bin/python -m benchmarks.probe` from the repository root).
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from anb.core.settings import Settings
from anb.processing.probe import (
    MediaInfo,
    UploadRules,
    _check_rules,
    check_iso_bmff,
    check_upload,
    probe,
)
from benchmarks import targets
from benchmarks.figures import Column, Table
from benchmarks.media import cached, ffmpeg

RULES = UploadRules.from_settings(Settings())  # the contract's rules: 20-60 s, 1080p
INPUTS = {  # name: seconds, video kb/s
    "5 MB": (30, 1200),
    "50 MB": (60, 6500),
}
RECIPE = "v1"  # bump when the generated files change, so --keep caches are not reused
TABLE = Table(
    (
        Column("input", 8),
        Column("bytes", 12, ","),
        Column("ffmpeg", 10, ".2f", "ms"),
        Column("boxes", 10, ".3f", "ms"),
        Column("ratio", 8, ".0f", "x"),
        Column("agree", left=True),
    )
)


def make_input(target: Path, seconds: int, kbps: int) -> None:
    """1080p30 H.264 + AAC of `seconds` at ~`kbps` of video."""
    ffmpeg(
        "-loglevel", "error",
        "-f", "lavfi", "-i", f"testsrc2=s=1920x1080:r=30:d={seconds}",
        "-f", "lavfi", "-i", f"sine=frequency=440:duration={seconds}",
        "-vf", "noise=alls=24:allf=t", "-c:v", "libx264", "-preset", "ultrafast", "-g", "30",
        "-b:v", f"{kbps}k", "-maxrate", f"{kbps}k", "-bufsize", f"{2 * kbps}k",
        "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "128k", "-f", "mp4", str(target),
    )  # fmt: skip


def check_with_ffmpeg(path: Path) -> MediaInfo:
    """The upload check as it was: the box walk, then ffmpeg's facts."""
    check_iso_bmff(path)
    info = probe(path)
    _check_rules(info, RULES)
    return info


def check_from_boxes(path: Path) -> MediaInfo:
    return check_upload(path, RULES)


def cpu_seconds() -> float:
    """This process's CPU plus that of the children it has waited for."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def timed(check: Callable[[Path], MediaInfo], path: Path) -> tuple[float, MediaInfo]:
    started = cpu_seconds()
    info = check(path)
    return cpu_seconds() - started, info


def agree(ffmpegs: MediaInfo, ours: MediaInfo) -> bool:
    same = ("width", "height", "codec", "rotation")
    return (
        all(getattr(ffmpegs, name) == getattr(ours, name) for name in same)
        and abs(ffmpegs.duration - ours.duration) <= 0.05
        and abs(ffmpegs.fps - ours.fps) <= 0.01
    )


def compare(name: str, path: Path, rounds: int) -> bool:
    """Print the median CPU of both checks on `path`; whether they agree about it."""
    timed(check_with_ffmpeg, path), timed(check_from_boxes, path)  # warm the caches
    before, after = [], []
    for _ in range(rounds):
        cost, ffmpegs = timed(check_with_ffmpeg, path)
        before.append(cost)
        cost, ours = timed(check_from_boxes, path)
        after.append(cost)
    same = agree(ffmpegs, ours)
    ms_before, ms_after = statistics.median(before) * 1e3, statistics.median(after) * 1e3
    size = path.stat().st_size
    print(TABLE.row(name, size, ms_before, ms_after, ms_before / ms_after, "yes" if same else "NO"))
    return same


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--keep", type=Path, help="directory to cache the generated inputs")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-probe-") as scratch:
        directory = args.keep or Path(scratch)
        print(f"generating inputs in {directory} (once with --keep) ...", flush=True)
        inputs = {
            name: cached(
                directory / f"{RECIPE}-{seconds}s-{kbps}k.mp4",
                lambda target, seconds=seconds, kbps=kbps: make_input(target, seconds, kbps),
            )
            for name, (seconds, kbps) in INPUTS.items()
        }
        print(f"\nCPU ms per check_upload, median of {args.rounds} (ffmpeg / boxes alternate)")
        print(TABLE.header())
        disagreed = [name for name, path in inputs.items() if not compare(name, path, args.rounds)]
    return targets.failed_checks("the two checks disagree about", disagreed)


if __name__ == "__main__":
    sys.exit(main())
