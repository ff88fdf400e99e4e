"""Small test clips generated with the real ffmpeg: a flat colour and a moving box."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from anb.processing.ffmpeg import ffmpeg_exe


@dataclass(frozen=True)
class Clips:
    landscape: Path  # 1920x1080, 21 s: accepted
    portrait: Path  # 1080x1920, 21 s: accepted
    short: Path  # 1920x1080, 10 s
    long: Path  # 1920x1080, 65 s
    low_res: Path  # 1280x720, 21 s
    audio_only: Path  # an .mp4 with a sound track and no video
    matroska: Path  # Matroska named .mp4
    text: Path  # text named .mp4
    truncated: Path  # the landscape clip cut in half
    moov_at_end_truncated: Path  # moov-at-end layout, cut: no index at all


def encode(target: Path, *, width: int, height: int, seconds: float, extra: tuple = ()) -> Path:
    box = (
        f"drawbox=x='mod(t*200,{max(width - 200, 1)})':y={height // 3}"
        ":w=200:h=200:color=orange:t=fill"
    )
    command = [
        ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y",
        "-f", "lavfi", "-i", f"color=c=0x1d3557:s={width}x{height}:r=10:d={seconds}",
        "-vf", box, "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p",
        *extra, str(target),
    ]  # fmt: skip
    subprocess.run(command, check=True)
    return target


def make_clips(directory: Path) -> Clips:
    faststart = ("-movflags", "+faststart")
    landscape = encode(
        directory / "landscape.mp4", width=1920, height=1080, seconds=21, extra=faststart
    )
    truncated = directory / "truncated.mp4"
    data = landscape.read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    moov_at_end = encode(directory / "moov_end.mp4", width=1920, height=1080, seconds=21)
    cut = directory / "moov_end_truncated.mp4"
    cut.write_bytes(moov_at_end.read_bytes()[: moov_at_end.stat().st_size * 3 // 4])
    text = directory / "text.mp4"
    text.write_text("esto no es un video\n" * 100)
    audio_only = directory / "audio_only.mp4"
    subprocess.run(
        [ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi",
         "-i", "sine=frequency=440:duration=21", "-c:a", "aac", str(audio_only)],
        check=True,
    )  # fmt: skip
    return Clips(
        landscape=landscape,
        portrait=encode(directory / "portrait.mp4", width=1080, height=1920, seconds=21),
        short=encode(directory / "short.mp4", width=1920, height=1080, seconds=10),
        long=encode(directory / "long.mp4", width=1920, height=1080, seconds=65),
        low_res=encode(directory / "low_res.mp4", width=1280, height=720, seconds=21),
        audio_only=audio_only,
        matroska=encode(
            directory / "matroska.mp4",
            width=1920,
            height=1080,
            seconds=21,
            extra=("-f", "matroska"),
        ),
        text=text,
        truncated=truncated,
        moov_at_end_truncated=cut,
    )
