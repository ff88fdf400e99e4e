"""The processing pipeline: one ffmpeg pass from an upload to the published clip.

Output: H.264 (yuv420p, +faststart) at 1280x720, square pixels, the footage fitted inside
(letter- or pillar-boxed, never stretched or cropped), at most 30 s of it, at most 30 fps,
the ANB watermark on the footage, an opening and a closing bumper with the ANB logo, and no
audio. Only the first 30 s of the input are read; the bumpers are drawn inside the same
filter graph from the logo (a still card costs almost nothing to encode).
"""

from __future__ import annotations

import math
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from anb.processing.ffmpeg import ffmpeg_exe
from anb.processing.probe import MediaInfo

WIDTH, HEIGHT = 1280, 720
MAX_FOOTAGE_SECONDS = 30.0
MAX_FPS = 30.0
BUMPER_SECONDS = 2.0  # each; both together stay under the 5 s allowed
BUMPER_FADE_SECONDS = 0.4
BUMPER_BACKGROUND = "0x0B1F3A"
BUMPER_LOGO_WIDTH = 400
WATERMARK_WIDTH = 132
WATERMARK_MARGIN = 24
WATERMARK_OPACITY = 0.75


@dataclass(frozen=True)
class Encoder:
    """libx264 settings of the output."""

    preset: str = "superfast"
    crf: int = 26
    scaler: str = "bilinear"
    extra: tuple[str, ...] = ()


ENCODER = Encoder()


class PipelineFailed(Exception):
    """ffmpeg could not produce the output; `reason` is the tail of what it said."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def logo_path() -> Path:
    return Path(str(resources.files("anb.processing") / "assets" / "logo.png"))


def footage_seconds(source: MediaInfo) -> float:
    return min(source.duration, MAX_FOOTAGE_SECONDS)


def output_seconds(source: MediaInfo) -> float:
    return footage_seconds(source) + 2 * BUMPER_SECONDS


def output_fps(source: MediaInfo) -> float:
    return min(source.fps, MAX_FPS)


def fitted_size(source: MediaInfo) -> tuple[int, int]:
    """The largest even size with the source's display aspect that fits in 1280x720."""
    width, height = source.display_size
    scale = min(WIDTH / width, HEIGHT / height)
    return _even(width * scale, WIDTH), _even(height * scale, HEIGHT)


def _even(value: float, limit: int) -> int:
    return max(2, min(limit, 2 * math.floor(value / 2 + 0.5)))


def filter_graph(source: MediaInfo, encoder: Encoder = ENCODER) -> str:
    fps = f"{output_fps(source):g}"
    width, height = fitted_size(source)
    fade_out_start = BUMPER_SECONDS - BUMPER_FADE_SECONDS
    return ";".join(
        [
            f"[0:v]scale={width}:{height}:flags={encoder.scaler},setsar=1,"
            f"pad={WIDTH}:{HEIGHT}:(ow-iw)/2:(oh-ih)/2:color=black,fps={fps},format=yuv420p[footage]",
            f"[1:v]scale={WATERMARK_WIDTH}:-1,format=rgba,"
            f"colorchannelmixer=aa={WATERMARK_OPACITY}[mark]",
            f"[footage][mark]overlay=W-w-{WATERMARK_MARGIN}:H-h-{WATERMARK_MARGIN}[marked]",
            f"color=c={BUMPER_BACKGROUND}:s={WIDTH}x{HEIGHT}:r={fps}:d={BUMPER_SECONDS}[card]",
            f"[2:v]scale={BUMPER_LOGO_WIDTH}:-1[logo]",
            "[card][logo]overlay=(W-w)/2:(H-h)/2:shortest=1,format=yuv420p,setsar=1,"
            "split[opening][closing]",
            f"[opening]fade=in:st=0:d={BUMPER_FADE_SECONDS}[first]",
            f"[closing]fade=out:st={fade_out_start:g}:d={BUMPER_FADE_SECONDS}[last]",
            "[first][marked][last]concat=n=3:v=1:a=0[out]",
        ]
    )


def build_command(
    source_path: Path, output_path: Path, source: MediaInfo, encoder: Encoder = ENCODER
) -> list[str]:
    logo = str(logo_path())
    return [
        ffmpeg_exe(), "-hide_banner", "-nostdin", "-nostats", "-loglevel", "error", "-y",
        "-progress", "pipe:1",
        "-t", f"{footage_seconds(source):.3f}", "-i", str(source_path),
        "-i", logo,
        "-loop", "1", "-framerate", f"{output_fps(source):g}", "-i", logo,
        "-filter_complex", filter_graph(source, encoder),
        "-map", "[out]", "-an", "-sn", "-dn", "-map_metadata", "-1",
        "-c:v", "libx264", "-preset", encoder.preset, "-crf", str(encoder.crf), *encoder.extra,
        "-pix_fmt", "yuv420p", "-movflags", "+faststart",
        str(output_path),
    ]  # fmt: skip


def render(
    source_path: Path,
    output_path: Path,
    source: MediaInfo,
    *,
    on_progress: Callable[[float], None] | None = None,
    timeout_seconds: float = 900,
    encoder: Encoder = ENCODER,
) -> None:
    """Run the pipeline; `on_progress` receives the fraction done (0..1) as ffmpeg reports it."""
    command = build_command(source_path, output_path, source, encoder)
    total_us = output_seconds(source) * 1_000_000
    with tempfile.TemporaryFile() as errors:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=errors, text=True)
        try:
            _follow_progress(process, total_us, on_progress)
            process.wait(timeout=timeout_seconds)
        except BaseException:
            process.kill()
            process.wait()
            raise
        if process.returncode != 0:
            errors.seek(0)
            tail = errors.read().decode("utf-8", "replace").strip().splitlines()[-3:]
            raise PipelineFailed(" | ".join(tail) or f"ffmpeg exited with {process.returncode}")


def _follow_progress(
    process: subprocess.Popen, total_us: float, on_progress: Callable[[float], None] | None
) -> None:
    assert process.stdout is not None
    for line in process.stdout:
        key, _, value = line.strip().partition("=")
        if on_progress and key == "out_time_us" and value.lstrip("-").isdigit():
            on_progress(max(0.0, min(1.0, int(value) / total_us)))
