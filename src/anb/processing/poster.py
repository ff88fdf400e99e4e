"""The poster of a published clip: one frame of its footage as a 1280x720 JPEG.

It is taken from the rendered clip once the render is done, so the render's single ffmpeg
pass stays as it is. ffmpeg seeks to the keyframe before the moment wanted (`-ss` before
`-i`), decodes from there to that moment and writes one JPEG; the same frame, shrunk to
32x18 grey pixels, comes back on stdout so that a black frame (a dark scene, a fade) can be
told from a usable one. The moments tried lie inside the footage, past the opening bumper:
a third of the way in first, then others; when every one is dark, the brightest is kept.

Cost (scripts/bench_poster, median of 3 on the worker benchmark's 50 MB input, 2 busy
cores): 0.26 CPU s and 0.45 s wall against the render's 8.9 CPU s and 9.9 s, i.e. 2.9% of
its CPU time and 4.6% of its wall time. Most of it is decoding from the keyframe before
the moment (x264's default interval: up to 250 frames).
"""

from __future__ import annotations

import subprocess
import time
from dataclasses import replace
from pathlib import Path

from anb.processing import pipeline
from anb.processing.ffmpeg import ffmpeg_exe
from anb.processing.probe import MediaInfo, read_media

FOOTAGE_FRACTIONS = (1 / 3, 1 / 2, 2 / 3, 1 / 6)  # the moments tried, in order
JPEG_QUALITY = 3  # mjpeg's quantiser scale (2 best .. 31): about 100 KB for busy footage
DARK_MEAN_LUMA = 32  # limited-range black is 16; a mean under this reads as a black frame
_LUMA_SIZE = (32, 18)


def poster_times(source: MediaInfo) -> list[float]:
    """The moments of the clip tried for the poster, in seconds from its start."""
    footage = pipeline.footage_seconds(source)
    return [pipeline.BUMPER_SECONDS + fraction * footage for fraction in FOOTAGE_FRACTIONS]


def make_poster(clip: Path, target: Path, source: MediaInfo, *, timeout_seconds: float) -> None:
    """Write the poster of `clip` (rendered from `source`) to `target`.

    `timeout_seconds` bounds all the ffmpeg runs together, as `pipeline.render`'s bounds
    its run: past it `PipelineTimedOut`; an ffmpeg that fails raises `PipelineFailed`."""
    deadline = time.monotonic() + timeout_seconds
    brightest: tuple[float, Path] | None = None
    for attempt, at in enumerate(poster_times(source)):
        candidate = target.with_name(f"{target.stem}-{attempt}{target.suffix}")
        luma = _extract_frame(clip, candidate, at, deadline)
        if brightest is None or luma > brightest[0]:
            if brightest is not None:
                brightest[1].unlink()
            brightest = luma, candidate
        else:
            candidate.unlink()
        if luma >= DARK_MEAN_LUMA:
            break
    assert brightest is not None  # FOOTAGE_FRACTIONS is not empty
    brightest[1].replace(target)


def make_poster_of_published(clip: Path, target: Path, *, timeout_seconds: float) -> None:
    """`make_poster` for a clip published without a poster, its source gone: the moments
    are those `make_poster` would have tried, the footage being the clip less its bumpers."""
    deadline = time.monotonic() + timeout_seconds
    published = read_media(clip)
    footage = max(0.0, published.duration - 2 * pipeline.BUMPER_SECONDS)
    left = max(0.0, deadline - time.monotonic())
    make_poster(clip, target, replace(published, duration=footage), timeout_seconds=left)


def _extract_frame(clip: Path, target: Path, at: float, deadline: float) -> float:
    """Write the frame shown at `at` seconds to `target` as a JPEG; its mean luma (0-255)."""
    command = [
        ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y",
        "-ss", f"{at:.3f}", "-i", str(clip),
        "-filter_complex",
        f"[0:v]split[poster][probe];[probe]scale={_LUMA_SIZE[0]}:{_LUMA_SIZE[1]}:flags=area,"
        "format=gray[luma]",
        "-map", "[poster]", "-frames:v", "1", "-c:v", "mjpeg", "-q:v", str(JPEG_QUALITY),
        "-update", "1", str(target),
        "-map", "[luma]", "-frames:v", "1", "-f", "rawvideo", "pipe:1",
    ]  # fmt: skip
    timeout = max(0.0, deadline - time.monotonic())
    try:
        done = subprocess.run(command, capture_output=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:  # ffmpeg was killed
        target.unlink(missing_ok=True)
        raise pipeline.PipelineTimedOut(f"no poster within {timeout:.0f} s") from None
    pixels = done.stdout
    if done.returncode != 0 or not pixels or not target.is_file():
        target.unlink(missing_ok=True)
        said = done.stderr.decode("utf-8", "replace").strip().splitlines()[-3:]
        raise pipeline.PipelineFailed(" | ".join(said) or f"no frame at {at:.3f} s for the poster")
    return sum(pixels) / len(pixels)
