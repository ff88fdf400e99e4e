"""Inputs of the load tests, made with the ffmpeg of imageio-ffmpeg and cached on disk."""

from __future__ import annotations

import subprocess
from pathlib import Path

from anb.processing.ffmpeg import ffmpeg_exe

MB = 1_000_000
SECONDS = 60
FPS = 30
RECIPE = "v1"  # bump when the recipe changes, so that old cached files are not reused


def ffmpeg(*args: str) -> None:
    command = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y", *args]
    subprocess.run(command, check=True)


def worker_input(cache: Path, megabytes: int) -> Path:
    """60 s of 1080p30 H.264 of about `megabytes` MB: `testsrc2` (sharp edges, text, colour)
    with light temporal noise, so the encoder needs the bitrate, at a capped target bitrate
    (High profile, 1 s GOP, no B-frames: like a phone). Made once per size and recipe."""
    target = cache / f"input-{megabytes}MB-{RECIPE}.mp4"
    if target.exists():
        return target
    cache.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f"partial-{target.name}")
    bitrate = megabytes * MB * 8 // SECONDS
    ffmpeg(
        "-f", "lavfi", "-i", f"testsrc2=s=1920x1080:r={FPS}:d={SECONDS}",
        "-vf", "noise=alls=12:allf=t,format=yuv420p",
        "-c:v", "libx264", "-preset", "veryfast", "-profile:v", "high",
        "-b:v", str(bitrate), "-maxrate", str(bitrate * 11 // 10), "-bufsize", str(bitrate),
        "-g", str(FPS), "-bf", "0", "-movflags", "+faststart", "-f", "mp4", str(partial),
    )  # fmt: skip
    partial.rename(target)
    return target
