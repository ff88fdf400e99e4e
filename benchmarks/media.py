"""Inputs of the benchmarks and load tests, made with the ffmpeg of imageio-ffmpeg and cached
on disk."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

from anb.processing.ffmpeg import ffmpeg_exe

MB = 1_000_000
SECONDS = 60
UPLOAD_SECONDS = 30
FPS = 30
RECIPE = "v1"  # bump when the recipe changes, so that old cached files are not reused
PHONE_LIKE = ("-preset", "veryfast", "-profile:v", "high", "-g", str(FPS), "-bf", "0")
"""How a phone encodes: High profile, 1 s GOP, no B-frames."""


def ffmpeg(*args: str) -> str:
    """Run ffmpeg (no banner, no progress, outputs overwritten); return what it wrote on
    stderr, where filters such as `ssim` report. A failure raises with the end of it."""
    command = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-nostats", "-y", *args]
    result = subprocess.run(command, capture_output=True, text=True, errors="replace")
    if result.returncode != 0:
        raise RuntimeError(f"ffmpeg failed: {' '.join(command)}\n{result.stderr[-2000:]}")
    return result.stderr


def cached(path: Path, make: Callable[[Path], None]) -> Path:
    """`path`, made first by `make` if it is not there yet (written aside, then renamed, so
    that an interrupted encode is never taken for a finished one)."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f"partial-{path.name}")
        make(partial)
        partial.rename(path)
    return path


def worker_input(cache: Path, megabytes: int) -> Path:
    """60 s of 1080p30 H.264 of about `megabytes` MB (see `encode_sized`)."""
    target = cache / f"input-{megabytes}MB-{RECIPE}.mp4"
    return cached(target, lambda partial: encode_sized(partial, megabytes, SECONDS))


def upload_input(cache: Path, megabytes: int) -> Path:
    """A file the API accepts: 30 s of 1080p30 H.264 of about `megabytes` MB; 0 stands for a
    tiny clip (a flat colour and a moving box, ~11 KB), which costs a request but no bytes."""
    if megabytes == 0:
        target = cache / f"upload-tiny-{UPLOAD_SECONDS}s-{RECIPE}.mp4"
        return cached(target, lambda partial: encode_tiny(partial, UPLOAD_SECONDS))
    target = cache / f"upload-{megabytes}MB-{UPLOAD_SECONDS}s-{RECIPE}.mp4"
    return cached(target, lambda partial: encode_sized(partial, megabytes, UPLOAD_SECONDS))


def encode_sized(target: Path, megabytes: int, seconds: int) -> None:
    """`seconds` of 1080p30 H.264 of about `megabytes` MB, encoded like a phone does."""
    bitrate = megabytes * MB * 8 // seconds
    encode_noisy_card(target, bitrate, seconds, FPS, PHONE_LIKE)


def encode_noisy_card(
    target: Path, bitrate: int, seconds: int, fps: int, x264: tuple[str, ...]
) -> None:
    """`seconds` of 1920x1080 H.264 at a capped target `bitrate` (b/s): `testsrc2` (sharp
    edges, text, colour) with light temporal noise, so the encoder needs the bitrate."""
    ffmpeg(
        "-loglevel", "error", "-f", "lavfi", "-i", f"testsrc2=s=1920x1080:r={fps}:d={seconds}",
        "-vf", "noise=alls=12:allf=t,format=yuv420p", "-c:v", "libx264", *x264,
        "-b:v", str(bitrate), "-maxrate", str(bitrate * 11 // 10), "-bufsize", str(bitrate),
        "-movflags", "+faststart", "-f", "mp4", str(target),
    )  # fmt: skip


def encode_tiny(target: Path, seconds: int) -> None:
    """`seconds` of 1080p10: a flat colour with a moving box, a few KB (as the tests' clips)."""
    from tests.clips import encode

    encode(target, width=1920, height=1080, seconds=seconds, extra=("-movflags", "+faststart"))
