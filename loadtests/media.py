"""Inputs of the load tests, made with the ffmpeg of imageio-ffmpeg and cached on disk."""

from __future__ import annotations

import subprocess
from pathlib import Path

from anb.processing.ffmpeg import ffmpeg_exe

MB = 1_000_000
SECONDS = 60
UPLOAD_SECONDS = 30
FPS = 30
RECIPE = "v1"  # bump when the recipe changes, so that old cached files are not reused


def ffmpeg(*args: str) -> None:
    command = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y", *args]
    subprocess.run(command, check=True)


def worker_input(cache: Path, megabytes: int) -> Path:
    """60 s of 1080p30 H.264 of about `megabytes` MB (see `encode_sized`)."""
    return cached(cache / f"input-{megabytes}MB-{RECIPE}.mp4", megabytes, SECONDS)


def upload_input(cache: Path, megabytes: int) -> Path:
    """A file the API accepts: 30 s of 1080p30 H.264 of about `megabytes` MB; 0 stands for a
    tiny clip (a flat colour and a moving box, ~11 KB), which costs a request but no bytes."""
    if megabytes == 0:
        return cached(cache / f"upload-tiny-{UPLOAD_SECONDS}s-{RECIPE}.mp4", 0, UPLOAD_SECONDS)
    name = f"upload-{megabytes}MB-{UPLOAD_SECONDS}s-{RECIPE}.mp4"
    return cached(cache / name, megabytes, UPLOAD_SECONDS)


def cached(target: Path, megabytes: int, seconds: int) -> Path:
    """`target`, encoded first if it is not there yet (written aside, then renamed, so that
    an interrupted encode is never taken for a finished one)."""
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f"partial-{target.name}")
    if megabytes:
        encode_sized(partial, megabytes, seconds)
    else:
        encode_tiny(partial, seconds)
    partial.rename(target)
    return target


def encode_sized(target: Path, megabytes: int, seconds: int) -> None:
    """`seconds` of 1080p30 H.264 of about `megabytes` MB: `testsrc2` (sharp edges, text,
    colour) with light temporal noise, so the encoder needs the bitrate, at a capped target
    bitrate (High profile, 1 s GOP, no B-frames: like a phone)."""
    bitrate = megabytes * MB * 8 // seconds
    ffmpeg(
        "-f", "lavfi", "-i", f"testsrc2=s=1920x1080:r={FPS}:d={seconds}",
        "-vf", "noise=alls=12:allf=t,format=yuv420p",
        "-c:v", "libx264", "-preset", "veryfast", "-profile:v", "high",
        "-b:v", str(bitrate), "-maxrate", str(bitrate * 11 // 10), "-bufsize", str(bitrate),
        "-g", str(FPS), "-bf", "0", "-movflags", "+faststart", "-f", "mp4", str(target),
    )  # fmt: skip


def encode_tiny(target: Path, seconds: int) -> None:
    """`seconds` of 1080p10: a flat colour with a moving box, a few KB (as the tests' clips)."""
    from tests.clips import encode

    encode(target, width=1920, height=1080, seconds=seconds, extra=("-movflags", "+faststart"))
