"""The processing pipeline: one ffmpeg pass from an upload to the published clip.

Output: H.264 (yuv420p, +faststart) at 1280x720, square pixels, the footage fitted inside
(letter- or pillar-boxed, never stretched or cropped), at most 30 s of it, at most 30 fps,
the ANB watermark on the footage, an opening and a closing bumper with the ANB logo, and no
audio. Only the first 30 s of the input are read; the bumpers are drawn inside the same
filter graph from the logo (one card frame, drawn once and repeated: a still costs almost
nothing to encode).

Where the CPU goes (scripts/bench_worker: 30 s of 1080p30 H.264 at ~6.7 Mb/s, 2 cores): about
45% decoding the source, 40% x264, 11% scaling, the rest the watermark and the bumpers. The
`Encoder` defaults are tuned for that; the comments there give what each choice measured.
"""

from __future__ import annotations

import math
import os
import selectors
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import IO

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


# `-preset ultrafast` is x264's cheapest analysis (diamond motion search without sub-pixel
# refinement, one reference frame, 16x16 blocks only, no lookahead, no adaptive quantisation).
# On top of it, the tools that pay for themselves (x264's CPU seconds per clip, bytes and SSIM
# measured at CRF 25 on the benchmark's 50 MB input; the whole render takes ~9 CPU s):
X264_PARAMS = (
    "bframes=3",  # B-frames: -40% bytes, SSIM +0.005 and -0.6 CPU s (B blocks are cheap)
    "b-adapt=0",  # a fixed IBBBP pattern: no lookahead pass to choose the frame types
    "b-pyramid=none",  # no B-frame is a reference to keep: -0.2 CPU s, -1.5% bytes
    "cabac=1",  # arithmetic entropy coding: -12% bytes for +0.5 CPU s, same picture
    "deblock=0,0",  # the in-loop deblocking filter: -3% bytes, SSIM +0.0005
)
# The source's own deblocking filter is skipped when decoding: -0.8 CPU s (~20% of decoding);
# the downscale and the re-encode mostly hide it: SSIM -0.0002 on the benchmark's 6.7 and
# 13 Mb/s inputs, -0.0017 on a blocky 2.5 Mb/s one.
DECODER_OPTIONS = ("-skip_loop_filter", "all")


@dataclass(frozen=True)
class Encoder:
    """How the source is decoded, scaled (swscale `flags`) and encoded (libx264)."""

    preset: str = "ultrafast"
    # Constant quantiser (I, P and B frames at about 23, 26 and 28). CRF would weigh each
    # frame's complexity on a half-resolution lookahead: at about the same bytes, CRF 25 gives
    # SSIM +0.0016 for +0.4 CPU s; CRF 26 or QP 27 lose 0.005 SSIM.
    qp: int = 26
    crf: int | None = None  # CRF rate control instead of `qp` when set
    scaler: str = "bilinear"  # bicubic: +0.45 CPU s, and only SSIM +0.0005 at the same bytes
    x264_params: tuple[str, ...] = X264_PARAMS
    input_options: tuple[str, ...] = DECODER_OPTIONS
    extra: tuple[str, ...] = ()


ENCODER = Encoder()


class PipelineFailed(Exception):
    """ffmpeg could not produce the output; `reason` is the tail of what it said."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class PipelineTimedOut(PipelineFailed):
    """ffmpeg was still running at the deadline: it was killed and its output removed."""


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


def _bumper_frames(source: MediaInfo) -> int:
    return math.ceil(BUMPER_SECONDS * output_fps(source) - 1e-6)


def footage_stream(source: MediaInfo) -> str:
    """The filter graph's name for the source's main video stream (`0:v` is its first)."""
    return f"0:{source.stream_index}"


def filter_graph(source: MediaInfo, encoder: Encoder = ENCODER) -> str:
    fps = f"{output_fps(source):g}"
    width, height = fitted_size(source)
    fade_out_start = BUMPER_SECONDS - BUMPER_FADE_SECONDS
    return ";".join(
        [
            "[1:v]split[logo_in][mark_in]",
            f"[{footage_stream(source)}]scale={width}:{height}:flags={encoder.scaler},setsar=1,"
            f"pad={WIDTH}:{HEIGHT}:(ow-iw)/2:(oh-ih)/2:color=black,fps={fps},format=yuv420p[footage]",
            f"[mark_in]scale={WATERMARK_WIDTH}:-1,format=rgba,"
            f"colorchannelmixer=aa={WATERMARK_OPACITY}[mark]",
            f"[footage][mark]overlay=W-w-{WATERMARK_MARGIN}:H-h-{WATERMARK_MARGIN}[marked]",
            # The card: one frame with the logo, drawn once, then repeated (decoding, scaling
            # and overlaying the logo for every bumper frame cost 0.25 CPU s more).
            f"color=c={BUMPER_BACKGROUND}:s={WIDTH}x{HEIGHT}:r={fps},trim=end_frame=1[card]",
            f"[logo_in]scale={BUMPER_LOGO_WIDTH}:-1[logo]",
            "[card][logo]overlay=(W-w)/2:(H-h)/2,format=yuv420p,setsar=1,"
            f"loop=loop={_bumper_frames(source) - 1}:size=1,setpts=N/FRAME_RATE/TB,"
            "split[opening][closing]",
            f"[opening]fade=in:st=0:d={BUMPER_FADE_SECONDS}[first]",
            f"[closing]fade=out:st={fade_out_start:g}:d={BUMPER_FADE_SECONDS}[last]",
            "[first][marked][last]concat=n=3:v=1:a=0[out]",
        ]
    )


def build_command(
    source_path: Path, output_path: Path, source: MediaInfo, encoder: Encoder = ENCODER
) -> list[str]:
    x264_params = ["-x264-params", ":".join(encoder.x264_params)] if encoder.x264_params else []
    return [
        ffmpeg_exe(), "-hide_banner", "-nostdin", "-nostats", "-loglevel", "error", "-y",
        "-progress", "pipe:1",
        *encoder.input_options, "-t", f"{footage_seconds(source):.3f}", "-i", str(source_path),
        "-i", str(logo_path()),
        "-filter_complex", filter_graph(source, encoder),
        "-map", "[out]", "-an", "-sn", "-dn", "-map_metadata", "-1",
        "-c:v", "libx264", "-preset", encoder.preset, *_rate_control(encoder), *x264_params,
        *encoder.extra, "-pix_fmt", "yuv420p", "-movflags", "+faststart",
        str(output_path),
    ]  # fmt: skip


def _rate_control(encoder: Encoder) -> list[str]:
    return ["-qp", str(encoder.qp)] if encoder.crf is None else ["-crf", str(encoder.crf)]


def render(
    source_path: Path,
    output_path: Path,
    source: MediaInfo,
    *,
    on_progress: Callable[[float], None] | None = None,
    timeout_seconds: float = 900,
    encoder: Encoder = ENCODER,
) -> None:
    """Run the pipeline; `on_progress` receives the fraction done (0..1) as ffmpeg reports it.

    `timeout_seconds` bounds the whole ffmpeg run, whatever ffmpeg does (reports progress
    forever, says nothing, ignores SIGTERM): the worker's stop timeout and the queue's
    visibility timeout count on it. Past it ffmpeg is SIGKILLed: SIGTERM would only have it
    finish the file (a +faststart pass over everything encoded so far) that is deleted anyway.
    On any failure the partial output is removed; a timeout raises `PipelineTimedOut`, any
    other failure `PipelineFailed` with the tail of what ffmpeg said."""
    command = build_command(source_path, output_path, source, encoder)
    total_us = output_seconds(source) * 1_000_000
    deadline = time.monotonic() + timeout_seconds
    with (
        tempfile.TemporaryFile() as errors,
        subprocess.Popen(command, stdout=subprocess.PIPE, stderr=errors) as process,
    ):
        try:
            _follow_progress(process, deadline, total_us, on_progress)
            process.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            _discard(process, output_path)
            reason = f"ffmpeg did not finish within {timeout_seconds:g} s"
            raise PipelineTimedOut(" | ".join([reason, *_tail(errors)])) from None
        except BaseException:  # on_progress raised, or the caller is interrupted
            _discard(process, output_path)
            raise
        if process.returncode != 0:
            output_path.unlink(missing_ok=True)
            reason = " | ".join(_tail(errors))
            raise PipelineFailed(reason or f"ffmpeg exited with {process.returncode}")


def _discard(process: subprocess.Popen[bytes], output_path: Path) -> None:
    """Kill ffmpeg (SIGKILL: it cannot be ignored), reap it and remove its partial output."""
    process.kill()
    process.wait()
    output_path.unlink(missing_ok=True)


def _tail(errors: IO[bytes]) -> list[str]:
    """The last lines ffmpeg wrote to stderr (`-loglevel error`: its error messages)."""
    errors.seek(0)
    return errors.read().decode("utf-8", "replace").strip().splitlines()[-3:]


def _follow_progress(
    process: subprocess.Popen[bytes],
    deadline: float,
    total_us: float,
    on_progress: Callable[[float], None] | None,
) -> None:
    """Read ffmpeg's `-progress` lines until it closes its output or `deadline` passes.

    Each read waits only for the time left (`select`), so neither a silent ffmpeg nor one
    that reports progress forever keeps the caller past the deadline."""
    assert process.stdout is not None
    fd, pending = process.stdout.fileno(), b""
    with selectors.DefaultSelector() as selector:
        selector.register(fd, selectors.EVENT_READ)
        while (left := deadline - time.monotonic()) > 0 and selector.select(left):
            chunk = os.read(fd, 65536)
            if not chunk:
                return
            *lines, pending = (pending + chunk).split(b"\n")
            for line in lines:
                key, _, value = line.strip().partition(b"=")
                if on_progress and key == b"out_time_us" and value.lstrip(b"-").isdigit():
                    on_progress(max(0.0, min(1.0, int(value) / total_us)))
