"""Benchmark: our processing pipeline against a reference student pipeline, on ~50 and ~100 MB.

Inputs (generated once, cached with --keep): 60 s of 1080p30 H.264 that resembles phone
footage — a detailed, softly colored texture (multi-scale value noise, like foliage or
gravel) panned along a wobbly handheld path, a moving `testsrc2` card (sharp edges, text,
saturated colors), light temporal sensor grain (`noise=alls=4:allf=t`); encoded like a phone
does (High profile, 1 s GOP, no B-frames, capped VBR) at bitrates that give ~50 and ~100 MB.

Reference: the best published student pipeline, reproduced — one ffmpeg pass with 1080p
intro/outro MP4s (2.5 s each, our logo on a dark background), the source trimmed to 30 s in
the filter graph, a full-opacity watermark on all three parts, libx264 ultrafast CRF 25.

For each input, ours (`pipeline.render` after `probe`, which is not timed) and the reference
run alternately: median wall and user-CPU seconds, the ratios ours/reference, output bytes,
and SSIM of each one's 30 s of footage (opening bumper skipped with an accurate seek)
against a lossless lanczos 1280x720 rendering of the source's first 30 s. Then videos/min
through our pipeline at concurrency 1 and 2, and PASS/FAIL against the targets.

Exits with 1 when a target is missed. The work dir needs ~1.3 GB (the lossless truths);
generating it takes ~3 min on 2 cores.

Usage: scripts/bench_worker [--rounds N] [--keep DIR] [--renders K]
(or `.venv/bin/python -m benchmarks.worker` from the repository root).
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from anb.processing import pipeline
from anb.processing.probe import MediaInfo, probe
from benchmarks import targets
from benchmarks.figures import Column, Table
from benchmarks.media import MB, cached, ffmpeg

SOURCE_SECONDS = 60
SOURCE_FPS = 30
SOURCE_SIZES_MB = (50, 100)
FOOTAGE_SECONDS = 30
REF_BUMPER_SECONDS = 2.5
REF_WATERMARK = pipeline.logo_path()
RECIPE = "v2"  # bump when the generated files change, so --keep caches are not reused

TIME_TARGET = 0.9  # ours/reference wall time, at most
BYTES_TARGET = 0.5  # ours/reference output bytes, at most
SSIM_SLACK = 0.005  # ours >= reference - this

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
_SSIM_ALL = re.compile(r"SSIM .*All:([\d.]+)")


@dataclass(frozen=True)
class Run:
    """One timed render."""

    wall: float
    cpu: float  # user CPU seconds of the ffmpeg child
    size: int


@dataclass(frozen=True)
class Result:
    """All rounds of one pipeline on one input, plus the SSIM of its (deterministic) output."""

    runs: list[Run]
    ssim: float

    @property
    def wall(self) -> float:
        return statistics.median(run.wall for run in self.runs)

    @property
    def cpu(self) -> float:
        return statistics.median(run.cpu for run in self.runs)

    @property
    def size(self) -> int:
        return self.runs[-1].size


# --- generated files -------------------------------------------------------------------------


def texture_graph() -> str:
    """A 2560x1440 still of multi-scale value noise: soft color blobs with fine luma detail."""

    def octave(size: str, luma: int, chroma: int) -> str:
        return (
            f"color=c=0x808080:s={size}:d=1:r=1,format=yuv444p,"
            f"noise=c0s={luma}:c1s={chroma}:c2s={chroma}:allf=u,"
            "scale=2560:1440:flags=bicubic,setsar=1"
        )

    return ";".join(
        [
            f"{octave('24x14', 100, 100)}[o1]",
            f"{octave('96x54', 100, 60)}[o2]",
            f"{octave('384x216', 90, 0)}[o3]",
            f"{octave('1280x720', 80, 0)}[o4]",
            f"{octave('2560x1440', 60, 0)}[o5]",
            "[o1][o2]blend=all_mode=average[coarse]",
            "[o3][o4]blend=all_mode=average[fine]",
            "[fine][o5]blend=all_expr='A*0.8+B*0.2'[finer]",
            "[coarse][finer]blend=all_expr='A*0.6+B*0.4',"
            "eq=contrast=2.2:saturation=1.3,format=yuv420p",
        ]
    )


def scene_graph() -> str:
    """The texture panned like a handheld phone, a moving test card on it, sensor grain."""
    frames = SOURCE_SECONDS * SOURCE_FPS
    return ";".join(
        [
            f"[0:v]loop=loop={frames - 1}:size=1,setpts=N/{SOURCE_FPS}/TB,"
            "crop=1920:1080:x='320+250*sin(2*PI*t/7)+40*sin(2*PI*t/1.3)'"
            ":y='180+130*sin(2*PI*t/9)+25*sin(2*PI*t/1.7)'[background]",
            f"testsrc2=s=768x432:r={SOURCE_FPS}:d={SOURCE_SECONDS}[card]",
            "[background][card]overlay=x='576+500*sin(2*PI*t/11)':y='324+250*sin(2*PI*t/5)',"
            "noise=alls=4:allf=t,setsar=1,format=yuv420p",
        ]
    )


def make_texture(target: Path) -> None:
    ffmpeg("-f", "lavfi", "-i", texture_graph(), "-frames:v", "1", "-f", "image2", str(target))


def make_source(texture: Path, megabytes: int, target: Path) -> None:
    """60 s of 1080p30 H.264 whose size lands near `megabytes` (a phone-like encode; four
    slice threads rather than frame threads, whose rate control is not reproducible)."""
    bitrate = megabytes * MB * 8 // SOURCE_SECONDS
    ffmpeg(
        "-framerate", str(SOURCE_FPS), "-i", str(texture),
        "-filter_complex", scene_graph(), "-t", str(SOURCE_SECONDS),
        "-c:v", "libx264", "-preset", "faster", "-profile:v", "high",
        "-b:v", str(bitrate), "-maxrate", str(bitrate * 3 // 2), "-bufsize", str(bitrate * 2),
        "-g", str(SOURCE_FPS), "-bf", "0", "-x264-params", "threads=4:sliced-threads=1",
        "-movflags", "+faststart", "-f", "mp4", str(target),
    )  # fmt: skip


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


def make_truth(source: Path, target: Path) -> None:
    """The source's first 30 s at 1280x720 (lanczos), losslessly encoded: the SSIM reference."""
    ffmpeg(
        "-t", str(FOOTAGE_SECONDS), "-i", str(source),
        "-vf", "scale=1280:720:flags=lanczos,setsar=1,format=yuv420p",
        "-c:v", "libx264", "-qp", "0", "-preset", "ultrafast", "-f", "matroska", str(target),
    )  # fmt: skip


# --- the two pipelines -----------------------------------------------------------------------


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


def footage_ssim(output: Path, skip: float, truth: Path) -> float:
    """SSIM (All) of `output`'s 30 s after its opening bumper against the lossless truth."""
    stderr = ffmpeg(
        "-ss", f"{skip:.3f}", "-t", str(FOOTAGE_SECONDS), "-i", str(output),
        "-t", str(FOOTAGE_SECONDS), "-i", str(truth),
        "-lavfi", "[0:v][1:v]ssim=shortest=1", "-f", "null", "-",
    )  # fmt: skip
    found = _SSIM_ALL.findall(stderr)
    if not found:
        raise RuntimeError(f"no SSIM in ffmpeg's output:\n{stderr[-1000:]}")
    return float(found[-1])


@dataclass(frozen=True)
class Bench:
    """Everything one input's comparison needs."""

    source: Path
    info: MediaInfo
    truth: Path
    intro: Path
    outro: Path
    work: Path

    def ours(self, output: Path) -> None:
        pipeline.render(self.source, output, self.info)

    def reference(self, output: Path) -> None:
        command = reference_command(self.source, self.intro, self.outro, output)
        ffmpeg("-loglevel", "error", *command)


def compare(bench: Bench, rounds: int) -> tuple[Result, Result]:
    """Alternate ours and the reference `rounds` times; SSIM of each one's last output."""
    ours_out = bench.work / f"out-ours-{bench.source.stem}.mp4"
    ref_out = bench.work / f"out-ref-{bench.source.stem}.mp4"
    ours_runs: list[Run] = []
    ref_runs: list[Run] = []
    for n in range(1, rounds + 1):
        ours_runs.append(timed(lambda: bench.ours(ours_out), ours_out))
        ref_runs.append(timed(lambda: bench.reference(ref_out), ref_out))
        print(
            f"  round {n}: ours {ours_runs[-1].wall:6.2f} s ({ours_runs[-1].cpu:6.2f} cpu)   "
            f"ref {ref_runs[-1].wall:6.2f} s ({ref_runs[-1].cpu:6.2f} cpu)",
            flush=True,
        )
    ours = Result(ours_runs, footage_ssim(ours_out, pipeline.BUMPER_SECONDS, bench.truth))
    ref = Result(ref_runs, footage_ssim(ref_out, REF_BUMPER_SECONDS, bench.truth))
    return ours, ref


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
        Column("", 10, left=True),
        Column("wall s", 8, ".2f"),
        Column("user cpu s", 11, ".2f"),
        Column("bytes", 12, ",d"),
        Column("SSIM", 8, ".4f"),
    ),
    indent="  ",
)


def print_comparison(label: str, source: Path, ours: Result, ref: Result) -> None:
    print(f"\n{label}: {source.name}, {source.stat().st_size / MB:.1f} MB")
    print(COMPARISON.header())
    for name, result in (("ours", ours), ("reference", ref)):
        print(COMPARISON.row(name, result.wall, result.cpu, result.size, result.ssim))
    print(
        COMPARISON.row(
            "ours/ref",
            f"{ours.wall / ref.wall:.3f}",
            f"{ours.cpu / ref.cpu:.3f}",
            f"{ours.size / ref.size:.3f}",
            f"{ours.ssim - ref.ssim:+.4f}",
        )
    )
    paired = [mine.wall / theirs.wall for mine, theirs in zip(ours.runs, ref.runs, strict=True)]
    print(
        f"  wall ours/ref round by round: {', '.join(f'{ratio:.3f}' for ratio in paired)} "
        f"(median {statistics.median(paired):.3f}); {load()}"
    )


def load() -> str:
    """The machine's load average: how much the wall times can be trusted."""
    return "load average " + " ".join(f"{value:.1f}" for value in os.getloadavg())


def check_targets(ours: Result, ref: Result) -> int:
    """PASS/FAIL of each target on the first input; the exit status."""
    return targets.report(
        f"targets (on the {SOURCE_SIZES_MB[0]} MB input; time = ratio of median wall times):",
        [
            targets.at_most("time  ours/ref", ours.wall / ref.wall, TIME_TARGET),
            targets.at_most("bytes ours/ref", ours.size / ref.size, BYTES_TARGET),
            targets.at_least("SSIM  ours-ref", ours.ssim - ref.ssim, -SSIM_SLACK, "+.4f"),
        ],
    )


# --- main ------------------------------------------------------------------------------------


def prepare(work: Path) -> tuple[list[Path], Path, Path]:
    """The sources (as in SOURCE_SIZES_MB), the intro and the outro: generated unless already
    in `work`."""
    texture = cached(work / f"texture-{RECIPE}.png", make_texture)
    sources = [
        cached(work / f"source-{mb}MB-{RECIPE}.mp4", lambda t, mb=mb: make_source(texture, mb, t))
        for mb in SOURCE_SIZES_MB
    ]
    intro = cached(work / f"intro-{RECIPE}.mp4", make_bumper)
    outro = cached(work / f"outro-{RECIPE}.mp4", make_bumper)
    return sources, intro, outro


def load_bench(source: Path, intro: Path, outro: Path, work: Path) -> Bench:
    """Probe `source` (timed, but not counted in the comparison) and make its SSIM truth."""
    truth = cached(work / f"truth-{source.stem}.mkv", lambda target: make_truth(source, target))
    started = time.monotonic()
    info = probe(source)
    print(f"\n{source.name}: {info}", flush=True)
    print(f"  probe {time.monotonic() - started:.2f} s (not counted); {load()}", flush=True)
    return Bench(source, info, truth, intro, outro, work)


def run(rounds: int, renders: int, work: Path) -> int:
    """The comparison of each input, then the throughput; the exit status of the targets."""
    print(f"work dir: {work}\npreparing inputs (cached there)...", flush=True)
    sources, intro, outro = prepare(work)
    print(__doc__.split("\n\n")[1])
    print(f"our pipeline: {pipeline.ENCODER}")
    benches, results = [], []
    for megabytes, source in zip(SOURCE_SIZES_MB, sources, strict=True):
        benches.append(load_bench(source, intro, outro, work))
        results.append(compare(benches[-1], rounds))
        print_comparison(f"{megabytes} MB input", source, *results[-1])
    print(f"\nthroughput, our pipeline, {renders} renders of {sources[0].name}:", flush=True)
    for concurrency in (1, 2):
        rate = videos_per_minute(benches[0], concurrency, renders)
        print(f"  concurrency {concurrency}: {rate:5.2f} videos/min; {load()}", flush=True)
    return check_targets(*results[0])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="alternations (default 3)")
    parser.add_argument("--keep", type=Path, help="work dir to keep and reuse (inputs cached)")
    parser.add_argument("--renders", type=int, default=4, help="renders per throughput run")
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.renders < 1:
        parser.error("--rounds and --renders must be at least 1")
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
        return run(args.rounds, args.renders, args.keep.resolve())
    scratch = tempfile.TemporaryDirectory(prefix="anb-bench-worker-", ignore_cleanup_errors=True)
    with scratch as work:
        return run(args.rounds, args.renders, Path(work))


if __name__ == "__main__":
    sys.exit(main())
