"""Benchmark: our processing pipeline against a production encode and a reference student
pipeline, on a content-diverse set of clips, for time, bytes and picture quality.

Inputs (`benchmarks.content`, generated once, cached with --keep): near-static, normal
handheld motion, high motion, heavy grain, portrait, a real photograph, and a clean card
(60 s of testsrc2 with light grain at 6.5 Mb/s); 1080p30 (portrait 1080x1920) H.264 as a phone
records it.

Three encodes of each, run alternately, `--rounds` times:
- ours: `pipeline.render` with its defaults (after `probe`, which is not timed);
- production: the same filter graph (fit, watermark, bumpers) encoded as a typical
  production service does: libx264 -preset veryfast -crf 23 -maxrate 4M -bufsize 8M, the
  scale filter's default (bicubic) scaler, the source decoded in full;
- reference: the best published student pipeline, reproduced (1080p intro/outro MP4s of
  2.5 s, the source trimmed to 30 s in the filter graph, a full-opacity watermark, libx264
  ultrafast CRF 25).

For each: median wall and user-CPU seconds, output bytes, and the VMAF (libvmaf's default
model) and SSIM of its 30 s of footage (opening bumper skipped with an accurate seek) against
the source fitted into 1280x720 with lanczos (`benchmarks.quality`). Beside them, in the same
rounds, two lower bounds (`-f null`: nothing encoded): the floor, the source's 30 s decoded,
brought to the output rate and scaled as every encode of it must, which no encoder can go
under, and the decoding alone; their shares of the production encode's wall time say how
much of the time target is left to the encoder, and to the scaling.
Then videos/min through our pipeline at concurrency 1 and 2 on the first clip.

Targets, on every clip: VMAF ours >= production - 1, bytes ours <= production, wall time
ours <= 0.7 x production. Exits with 1 when one is missed.

Usage: scripts/bench_worker [--clips NAME ...] [--rounds N] [--keep DIR] [--renders K]
(or `.venv/bin/python -m benchmarks.worker` from the repository root).
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from anb.processing import pipeline
from anb.processing.probe import MediaInfo, probe
from benchmarks import content, targets
from benchmarks.figures import Column, Table, ratio
from benchmarks.media import MB, cached, ffmpeg
from benchmarks.quality import Quality, footage_quality

REF_BUMPER_SECONDS = 2.5
REF_WATERMARK = pipeline.logo_path()

TIME_TARGET = 0.7  # ours/production wall time, at most
BYTES_TARGET = 1.0  # ours/production output bytes, at most
VMAF_SLACK = 1.0  # ours >= production - this

PRODUCTION = pipeline.Encoder(
    preset="veryfast",
    crf=23,
    max_bitrate=4_000_000,
    buffer_bits=8_000_000,
    scaler="bicubic",
    x264_params=(),
    input_options=(),
)
"""A typical production encode of the same picture (fit, watermark, bumpers, 2 s keyframes)."""

REFERENCE_GRAPH = (
    "[1:v]trim=0:30,setpts=PTS-STARTPTS,"
    "scale=1280:720:force_original_aspect_ratio=decrease,"
    "pad=1280:720:(ow-iw)/2:(oh-ih)/2,setsar=1[m];"
    "[0:v]scale=1280:720,setsar=1[i];"
    "[2:v]scale=1280:720,setsar=1[o];"
    "[i][m][o]concat=n=3:v=1:a=0[c];"
    "[3:v]scale=120:-1[wm];"
    "[c][wm]overlay=W-w-20:H-h-20,format=yuv420p[v]"
)
ENCODES = ("ours", "production", "reference")
FLOOR, DECODE = "floor", "decode"
LOWER_BOUNDS = (FLOOR, DECODE)


@dataclass(frozen=True)
class Run:
    """One timed render."""

    wall: float
    cpu: float  # user CPU seconds of the ffmpeg child
    size: int


@dataclass(frozen=True)
class Result:
    """All rounds of one encode of one clip, plus the quality of its (deterministic) output."""

    runs: list[Run]
    quality: Quality

    @property
    def wall(self) -> float:
        return statistics.median(run.wall for run in self.runs)

    @property
    def cpu(self) -> float:
        return statistics.median(run.cpu for run in self.runs)

    @property
    def size(self) -> int:
        return self.runs[-1].size


def make_bumper(target: Path) -> None:
    """The reference's intro/outro: 2.5 s of 1080p30, our logo centered on a dark background."""
    ffmpeg(
        "-f", "lavfi", "-i", f"color=c=0x0B1F3A:s=1920x1080:r=30:d={REF_BUMPER_SECONDS}",
        "-i", str(pipeline.logo_path()),
        "-filter_complex", "[1:v]scale=600:-1[logo];[0:v][logo]overlay=(W-w)/2:(H-h)/2,"
        "format=yuv420p",
        "-c:v", "libx264", "-preset", "medium", "-crf", "18", "-movflags", "+faststart",
        "-f", "mp4", str(target),
    )  # fmt: skip


def reference_command(source: Path, intro: Path, outro: Path, output: Path) -> list[str]:
    return [
        "-i", str(intro), "-i", str(source), "-i", str(outro), "-i", str(REF_WATERMARK),
        "-filter_complex", REFERENCE_GRAPH, "-map", "[v]", "-an",
        "-c:v", "libx264", "-preset", "ultrafast", "-crf", "25", "-movflags", "+faststart",
        str(output),
    ]  # fmt: skip


def timed(action: Callable[[], None], output: Path) -> Run:
    """Wall and child user-CPU seconds of `action` (children must be waited for inside it)."""
    before, started = resource.getrusage(resource.RUSAGE_CHILDREN), time.monotonic()
    action()
    wall = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return Run(wall, after.ru_utime - before.ru_utime, output.stat().st_size)


@dataclass(frozen=True)
class Bench:
    """Everything one clip's comparison needs."""

    clip: content.Clip
    source: Path
    info: MediaInfo
    intro: Path
    work: Path

    def ours(self, output: Path) -> None:
        pipeline.render(self.source, output, self.info)

    def production(self, output: Path) -> None:
        pipeline.render(self.source, output, self.info, encoder=PRODUCTION)

    def reference(self, output: Path) -> None:
        command = reference_command(self.source, self.intro, self.intro, output)
        ffmpeg("-loglevel", "error", *command)

    def floor(self, output: Path) -> None:
        """The decoding and scaling every encode of the clip does, and nothing encoded
        (`output` is left empty)."""
        self._decode(output, "-vf", pipeline.fitting(self.info))

    def decode(self, output: Path) -> None:
        """The decoding alone (`output` is left empty)."""
        self._decode(output)

    def _decode(self, output: Path, *filters: str) -> None:
        ffmpeg(
            "-loglevel", "error", "-t", f"{pipeline.footage_seconds(self.info):.3f}",
            "-i", str(self.source), "-map", pipeline.footage_stream(self.info),
            *filters, "-f", "null", "-",
        )  # fmt: skip
        output.write_bytes(b"")

    def encode(self, name: str) -> Callable[[Path], None]:
        encodes = {"ours": self.ours, "production": self.production, "reference": self.reference}
        return {**encodes, FLOOR: self.floor, DECODE: self.decode}[name]

    def output(self, name: str) -> Path:
        return self.work / f"out-{name}-{self.clip.name}.mp4"


def bumper_seconds(name: str) -> float:
    return REF_BUMPER_SECONDS if name == "reference" else pipeline.BUMPER_SECONDS


def compare(bench: Bench, rounds: int) -> tuple[dict[str, Result], dict[str, list[Run]]]:
    """Alternate the three encodes and the lower bounds `rounds` times: each encode's runs
    with the quality of its last output, and each lower bound's runs."""
    runs: dict[str, list[Run]] = {name: [] for name in (*ENCODES, *LOWER_BOUNDS)}
    for n in range(1, rounds + 1):
        for name in runs:
            output = bench.output(name)
            runs[name].append(timed(partial(bench.encode(name), output), output))
        walls = "   ".join(f"{name} {found[-1].wall:6.2f} s" for name, found in runs.items())
        print(f"  round {n}: {walls}", flush=True)
    results = {
        name: Result(
            runs[name],
            footage_quality(bench.output(name), bumper_seconds(name), bench.source, bench.info),
        )
        for name in ENCODES
    }
    return results, {name: runs[name] for name in LOWER_BOUNDS}


def videos_per_minute(bench: Bench, concurrency: int, renders: int) -> float:
    """Our pipeline's throughput: `renders` renders, `concurrency` at a time."""
    outputs = [bench.work / f"out-throughput-{n}.mp4" for n in range(renders)]
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        list(pool.map(bench.ours, outputs))
    return renders * 60 / (time.monotonic() - started)


# --- report ----------------------------------------------------------------------------------


COMPARISON = Table(
    (
        Column("", 11, left=True),
        Column("wall s", 8, ".2f"),
        Column("user cpu s", 11, ".2f"),
        Column("bytes", 12, ",d"),
        Column("VMAF", 7, ".2f"),
        Column("SSIM", 8, ".4f"),
    ),
    indent="  ",
)


def print_comparison(
    bench: Bench, results: dict[str, Result], bounds: dict[str, list[Run]]
) -> None:
    size = bench.source.stat().st_size / MB
    print(f"\n{bench.clip.name}: {bench.clip.about} ({bench.source.name}, {size:.1f} MB)")
    print(COMPARISON.header())
    for name, result in results.items():
        quality = result.quality
        print(
            COMPARISON.row(name, result.wall, result.cpu, result.size, quality.vmaf, quality.ssim)
        )
    ours, production = results["ours"], results["production"]
    print(
        COMPARISON.row(
            "ours/prod",
            f"{ratio(ours.wall, production.wall):.3f}",
            f"{ratio(ours.cpu, production.cpu):.3f}",
            f"{ratio(ours.size, production.size):.3f}",
            f"{ours.quality.vmaf - production.quality.vmaf:+.2f}",
            f"{ours.quality.ssim - production.quality.ssim:+.4f}",
        )
    )
    for name, runs in bounds.items():
        wall = statistics.median(run.wall for run in runs)
        cpu = statistics.median(run.cpu for run in runs)
        print(COMPARISON.row(name, wall, cpu, "-", "-", "-"))
        print(
            COMPARISON.row(
                f"{name}/prod",
                f"{ratio(wall, production.wall):.3f}",
                f"{ratio(cpu, production.cpu):.3f}",
                "-", "-", "-",
            )
        )  # fmt: skip
    paired = [
        ratio(mine.wall, theirs.wall)
        for mine, theirs in zip(ours.runs, production.runs, strict=True)
    ]
    print(
        f"  wall ours/prod round by round: {', '.join(f'{r:.3f}' for r in paired)}; {load()}",
        flush=True,
    )


def load() -> str:
    """The machine's load average: how much the wall times can be trusted."""
    return "load average " + " ".join(f"{value:.1f}" for value in os.getloadavg())


def clip_targets(clip: str, ours: Result, production: Result) -> list[targets.Target]:
    """The three targets of one clip, ours against the production encode."""
    return [
        targets.at_least(
            f"{clip} VMAF ours-prod",
            ours.quality.vmaf - production.quality.vmaf,
            -VMAF_SLACK,
            "+.2f",
        ),
        targets.at_most(f"{clip} bytes ours/prod", ratio(ours.size, production.size), BYTES_TARGET),
        targets.at_most(f"{clip} time  ours/prod", ratio(ours.wall, production.wall), TIME_TARGET),
    ]


def check_targets(results: dict[str, dict[str, Result]]) -> int:
    """PASS/FAIL of every clip's targets; the exit status."""
    return targets.report(
        "targets (every clip; time = ratio of median wall times):",
        [
            target
            for clip, by_encode in results.items()
            for target in clip_targets(clip, by_encode["ours"], by_encode["production"])
        ],
        width=34,
    )


# --- main ------------------------------------------------------------------------------------


def load_bench(clip: content.Clip, intro: Path, work: Path) -> Bench:
    """Generate `clip` unless cached, and probe it (timed, but not counted)."""
    source = clip.path(work)
    started = time.monotonic()
    info = probe(source)
    print(f"\n{source.name}: {info}", flush=True)
    print(f"  probe {time.monotonic() - started:.2f} s (not counted); {load()}", flush=True)
    return Bench(clip, source, info, intro, work)


def run(clips: list[content.Clip], rounds: int, renders: int, work: Path) -> int:
    """Each clip's comparison, then the throughput; the exit status of the targets."""
    print(f"work dir: {work}\npreparing inputs (cached there)...", flush=True)
    intro = cached(work / f"intro-{content.RECIPE}.mp4", make_bumper)
    print(f"our pipeline: {pipeline.ENCODER}\nproduction: {PRODUCTION}")
    benches, results = [], {}
    for clip in clips:
        benches.append(load_bench(clip, intro, work))
        results[clip.name], bounds = compare(benches[-1], rounds)
        print_comparison(benches[-1], results[clip.name], bounds)
    if renders:
        print(f"\nthroughput, our pipeline, {renders} renders of {benches[0].source.name}:")
        for concurrency in (1, 2):
            rate = videos_per_minute(benches[0], concurrency, renders)
            print(f"  concurrency {concurrency}: {rate:5.2f} videos/min; {load()}", flush=True)
    return check_targets(results)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--clips",
        nargs="+",
        metavar="NAME",
        help=f"clips to run (default: all of {', '.join(c.name for c in content.CLIPS)})",
    )
    parser.add_argument("--rounds", type=int, default=3, help="alternations (default 3)")
    parser.add_argument("--keep", type=Path, help="work dir to keep and reuse (inputs cached)")
    parser.add_argument(
        "--renders", type=int, default=4, help="renders per throughput run (0: none)"
    )
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.renders < 0:
        parser.error("--rounds must be at least 1 and --renders at least 0")
    try:
        clips = content.by_names(args.clips)
    except ValueError as exc:
        parser.error(str(exc))
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
        return run(clips, args.rounds, args.renders, args.keep.resolve())
    scratch = tempfile.TemporaryDirectory(prefix="anb-bench-worker-", ignore_cleanup_errors=True)
    with scratch as work:
        return run(clips, args.rounds, args.renders, Path(work))


if __name__ == "__main__":
    sys.exit(main())
