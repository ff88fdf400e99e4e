"""The processing pipeline: one ffmpeg pass from an upload to the published clip.

Output: H.264 (yuv420p, +faststart) at 1280x720, square pixels, the footage fitted inside
(letter- or pillar-boxed, never stretched or cropped), at most 30 s of it, the ANB watermark
on the picture itself (placed and sized on the fitted picture, never on the bars), an opening
and a closing bumper with the ANB logo (the clip starts on the card, not on black), and no
audio. Timing follows the source's timestamps: the output runs at the source's nominal rate,
that of its fastest part, exact as a fraction (30000/1001) and brought to at most 30 fps by
keeping every n-th frame. HDR sources (PQ, HLG) are tone-mapped to SDR, the others' colours
converted (BT.601, full range), and every output is tagged BT.709. For streaming: CRF under
a VBV cap of 4 Mb/s, a keyframe every 2 s.
Only the first 30 s of the input are read; the bumpers are drawn inside the same filter graph
from the logo (one card frame, drawn once and repeated: a still costs almost nothing to
encode).

Colours: the scale brings full range to limited, and a `colorspace` filter after it converts
another matrix than BT.709 (see `matrix_to_bt709`).

Where the CPU goes (scripts/bench_worker's clips: 30 s of 1080p30 H.264 at 12 Mb/s, as a phone
records it): decoding the source takes about half of it on a near-static clip and a third on
a fast one, scaling, the watermark and the bumpers about a tenth, x264 the rest. The `Encoder`
defaults are tuned on three of those clips and checked on the others; the comments there give
what each choice measured.
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
from fractions import Fraction
from importlib import resources
from pathlib import Path
from typing import IO, NamedTuple

from anb.processing.ffmpeg import ffmpeg_exe
from anb.processing.probe import MediaInfo

WIDTH, HEIGHT = 1280, 720
MAX_FOOTAGE_SECONDS = 30.0
MAX_FPS = Fraction(30)
# The rates cameras record at. A measured rate within 1% of one is taken as that one: a
# phone's timestamps jitter (its 30 fps can measure 30.1), and ffmpeg prints 29.97 for 30000/1001.
NTSC = Fraction(1000, 1001)
STANDARD_RATES = [24 * NTSC, Fraction(24), Fraction(25), 30 * NTSC, Fraction(30)]
STANDARD_RATES += [Fraction(48), Fraction(50), 60 * NTSC, Fraction(60), Fraction(120)]
LOWEST_DIVIDED_RATE = 24 * NTSC
BUMPER_SECONDS = 2.0  # each; both together stay under the 5 s allowed
BUMPER_FADE_SECONDS = 0.4  # the closing bumper's fade to black (the opening one has none)
BUMPER_BACKGROUND = "0x0B1F3A"
BUMPER_LOGO_WIDTH = 400
# The watermark is sized and placed on the fitted picture: its width and margin are shares of
# the picture's short side (132 and 24 px on a 16:9 picture, the most, since that side is at
# most 720; 74 and 14 px on a 9:16 one), with a floor for extreme shapes.
WATERMARK_SHARE = 132 / 720
WATERMARK_MIN_WIDTH = 48
WATERMARK_MARGIN_SHARE = 24 / 720
WATERMARK_MIN_MARGIN = 8
WATERMARK_OPACITY = 0.75


# x264's `superfast` preset (diamond motion search, one reference frame) with the three tools
# of `veryfast` that pay for themselves. Measured by scripts/bench_worker (VMAF against a
# lanczos-scaled source; the tuning clips static, motion and fast; CPU seconds on a loaded
# 2-core machine, so differences under ~1 s are noise):
X264_PARAMS = (
    # Macroblock-tree rate control over a 10-frame lookahead: what keeps a near-static clip
    # small (without it, `ultrafast` with B-frames made 1.6x the bytes of the production
    # encode on the static clip).
    "mbtree=1",
    "rc-lookahead=10",
    # 8x8 inter partitions: -3% bytes on the motion clip, VMAF +0.1.
    "partitions=p8x8,b8x8,i8x8,i4x4",
    # veryfast's sub-pixel refinement (superfast's is 1): -6 % to -19 % bytes on the portrait
    # and photo clips, which were bigger than the production encode's (slow motion, where
    # quarter-pixel precision pays), -1 % to -4 % on the others, for ~5 % more CPU.
    "subme=2",
)
# Not kept: `-skip_loop_filter all` when decoding saves 20% of the whole render's CPU on the
# static clip at the same VMAF, but leaves a compressed phone source's block edges, which cost
# +4% bytes on the motion clip and -1.0 VMAF on the fast one (at the cap); a bilinear scaler
# saves ~0.5 CPU s for -4.4 VMAF; lanczos gives +0.6 VMAF for +6% bytes (static); `me=hex`
# (veryfast's search) +2 CPU s for no VMAF (fast); a 20-frame lookahead +13% bytes and
# `aq-mode=0` +24% (motion); `aq-mode=2` -0.3 VMAF (fast).


@dataclass(frozen=True)
class Encoder:
    """How the source is decoded, scaled (swscale `flags`) and encoded (libx264)."""

    preset: str = "superfast"
    # Constant quality (CRF) under a cap: a VBV of `max_bitrate` with a buffer of
    # `buffer_bits`, so that the clip streams at 4 Mb/s, under the 4.5 Mb/s of the top 720p30
    # rung of Apple's HLS authoring specification (YouTube recommends 5 Mb/s for 720p30), and
    # what a typical production 720p encode caps at. CRF 23.5 rather than 23: -1% to -6%
    # bytes for -0.1 to -0.5 VMAF (fast, motion, static). x264 applies a VBV only to CRF or
    # ABR, not to a constant quantiser.
    crf: float = 23.5
    max_bitrate: int = 4_000_000  # bits per second
    buffer_bits: int = 8_000_000
    keyframe_seconds: int = 2  # the longest gap between keyframes, for seeking and segmenting
    scaler: str = "bicubic"
    x264_params: tuple[str, ...] = X264_PARAMS
    input_options: tuple[str, ...] = ()  # options for the source's decoder
    extra: tuple[str, ...] = ()


ENCODER = Encoder()
# What the output declares, whatever the source: BT.709 SDR (HDR sources are tone-mapped).
BT709_TAGS = (
    "-color_primaries", "bt709", "-color_trc", "bt709", "-colorspace", "bt709",
    "-color_range", "tv",
)  # fmt: skip


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


def nominal_rate(source: MediaInfo) -> Fraction:
    """The source's rate where it is fastest (not its average: on a variable rate source that
    would drop frames where it runs fast), snapped to a standard rate when it is one."""
    measured = source.peak_rate or Fraction(source.fps)
    nearest = min(STANDARD_RATES, key=lambda rate: abs(rate - measured))
    if abs(nearest - measured) <= measured / 100:
        return nearest
    return measured.limit_denominator(1001)


def output_fps(source: MediaInfo) -> Fraction:
    """The source's nominal rate up to 30 fps. Above, divided by the smallest whole number
    that brings it to 30 or under, so that every n-th frame is kept at even intervals (60 and
    59.94 become 30 and 30000/1001, 50 becomes 25), unless that would fall under 23.976,
    where 30 is taken (40 fps: a frame in 4 dropped rather than half of them)."""
    rate = nominal_rate(source)
    if rate <= MAX_FPS:
        return rate
    divided = rate / math.ceil(rate / MAX_FPS)
    return divided if divided >= LOWEST_DIVIDED_RATE else MAX_FPS


def fitted_size(source: MediaInfo) -> tuple[int, int]:
    """The largest even size with the source's display aspect that fits in 1280x720."""
    width, height = source.display_size
    scale = min(WIDTH / width, HEIGHT / height)
    return _even(width * scale, WIDTH), _even(height * scale, HEIGHT)


def _even(value: float, limit: int) -> int:
    return max(2, min(limit, 2 * math.floor(value / 2 + 0.5)))


@dataclass(frozen=True)
class Rect:
    x: int
    y: int
    width: int
    height: int


def picture_rect(source: MediaInfo) -> Rect:
    """Where the fitted picture lies in the 1280x720 frame: centred, at even offsets (pad
    would round odd ones down to the chroma grid anyway)."""
    width, height = fitted_size(source)
    return Rect((WIDTH - width) // 4 * 2, (HEIGHT - height) // 4 * 2, width, height)


def watermark_width(source: MediaInfo) -> int:
    picture = picture_rect(source)
    short_side = min(picture.width, picture.height)
    return max(WATERMARK_MIN_WIDTH, round(short_side * WATERMARK_SHARE))


def watermark_margin(source: MediaInfo) -> int:
    picture = picture_rect(source)
    short_side = min(picture.width, picture.height)
    return max(WATERMARK_MIN_MARGIN, round(short_side * WATERMARK_MARGIN_SHARE))


def _bumper_frames(source: MediaInfo) -> int:
    return math.ceil(Fraction(BUMPER_SECONDS) * output_fps(source))


def footage_stream(source: MediaInfo) -> str:
    """The filter graph's name for the source's main video stream (`0:v` is its first)."""
    return f"0:{source.stream_index}"


def filter_graph(source: MediaInfo, encoder: Encoder = ENCODER) -> str:
    fps = str(output_fps(source))  # exact: 30000/1001
    picture = picture_rect(source)
    margin = watermark_margin(source)
    fade_out_start = BUMPER_SECONDS - BUMPER_FADE_SECONDS
    return ";".join(
        [
            "[1:v]split[logo_in][mark_in]",
            f"[{footage_stream(source)}]{fitting(source, encoder)},"
            f"{tone_mapping(source)}setsar=1,"
            f"pad={WIDTH}:{HEIGHT}:{picture.x}:{picture.y}:color=black,format=yuv420p[footage]",
            f"[mark_in]scale={watermark_width(source)}:-1,format=rgba,"
            f"colorchannelmixer=aa={WATERMARK_OPACITY}[mark]",
            # In the picture's bottom right corner (`w` and `h` are the watermark's size).
            f"[footage][mark]overlay=x={picture.x + picture.width - margin}-w"
            f":y={picture.y + picture.height - margin}-h[marked]",
            # The card: one frame with the logo, drawn once, then repeated (decoding, scaling
            # and overlaying the logo for every bumper frame cost 0.25 CPU s more).
            f"color=c={BUMPER_BACKGROUND}:s={WIDTH}x{HEIGHT}:r={fps},trim=end_frame=1[card]",
            f"[logo_in]scale={BUMPER_LOGO_WIDTH}:-1[logo]",
            "[card][logo]overlay=(W-w)/2:(H-h)/2,format=yuv420p,setsar=1,"
            f"loop=loop={_bumper_frames(source) - 1}:size=1,setpts=N/FRAME_RATE/TB,"
            "split[opening][closing]",
            # No fade-in: the clip's first frame (what players and thumbnailers show before
            # playing) is the card, not black.
            f"[closing]fade=out:st={fade_out_start:g}:d={BUMPER_FADE_SECONDS}[last]",
            "[opening][marked][last]concat=n=3:v=1:a=0,"
            "setparams=color_primaries=bt709:color_trc=bt709:colorspace=bt709:range=tv[out]",
        ]
    )


def fitting(source: MediaInfo, encoder: Encoder = ENCODER) -> str:
    """The filters that bring the footage to the output rate, fit its picture and convert
    its colours to what the output is tagged (the rate first: frames a faster source drops
    are not scaled; the colours after: converted on the smaller picture)."""
    picture = picture_rect(source)
    limited = "" if source.hdr else ":out_range=tv"
    return (
        f"fps={output_fps(source)},"  # exact: 30000/1001
        f"scale={picture.width}:{picture.height}:flags={encoder.scaler}{limited}"
        f"{matrix_to_bt709(source)}"
    )


def source_matrix(source: MediaInfo) -> str:
    """ffmpeg's name of the source's YCbCr matrix: the one it declares, else the one players
    take for an undeclared one, BT.601 up to SD sizes and BT.709 above (576 lines, 1280 wide)."""
    if source.matrix in _MATRICES:
        return source.matrix
    return "bt709" if source.width >= 1280 or source.height > 576 else "smpte170m"


def matrix_to_bt709(source: MediaInfo) -> str:
    """For an SDR source of another matrix than BT.709 (an SD source's BT.601, kept as it
    was, shifted reds and greens once tagged BT.709), the filter that converts it (with a
    leading comma); "" for the others (HDR sources are converted by `tone_mapping`). It runs
    on the fitted picture, after the scale has brought it to limited range: the `colorspace`
    filter's matrix-only conversion (`fast`: primaries and transfer are the output's anyway)
    costs ~nothing there, where the scale converting the matrix itself took as much CPU as
    the rest of the scaling. Whole render of 1080p BT.601 sources, median of 3 alternate
    runs: CPU -17.5% on the clip it was found on, -10.7% and -8.5% on two others (one-off
    script); colours as accurate (tests/processing/test_colours.py)."""
    space = _MATRICES[source_matrix(source)].colorspace
    if source.hdr or space == "bt709":
        return ""
    return f",colorspace=iall=bt709:ispace={space}:irange=tv:all=bt709:range=tv:fast=1"


class _MatrixNames(NamedTuple):
    scale: str  # the scale filter's name of a matrix
    colorspace: str  # the colorspace filter's


# ffmpeg's names of the YCbCr matrices -> the filters'. Constant-luminance BT.2020 is converted
# as the non-constant one, which both filters implement (colorspace refuses `bt2020c`).
_MATRICES = {
    "bt709": _MatrixNames("bt709", "bt709"),
    "smpte170m": _MatrixNames("bt601", "smpte170m"),
    "bt470bg": _MatrixNames("bt601", "bt470bg"),
    "fcc": _MatrixNames("fcc", "fcc"),
    "smpte240m": _MatrixNames("smpte240m", "smpte240m"),
    "bt2020nc": _MatrixNames("bt2020", "bt2020nc"),
    "bt2020c": _MatrixNames("bt2020", "bt2020nc"),
}


def to_bt709(source: MediaInfo) -> str:
    """The scale options that bring an SDR source's YCbCr to what the output is tagged, in
    the scale itself: the BT.709 matrix and limited range (a full-range source, as some
    phones and webcams record, had its blacks and whites clipped by players). What the
    pipeline's `fitting` does in two cheaper steps; the benchmark's reference uses this."""
    if source.hdr:
        return ""
    matrix = _MATRICES[source_matrix(source)].scale
    return f":in_color_matrix={matrix}:out_color_matrix=bt709:out_range=tv"


def tone_mapping(source: MediaInfo) -> str:
    """For an HDR source (PQ or HLG, BT.2020), the filters that make it BT.709 SDR (with a
    trailing comma); "" for any other. They run after the downscale, on at most 1280x720.

    HDR reference white (203 cd/m², ITU-R BT.2408) becomes SDR white; the Möbius curve keeps
    what is below half of it as it is and rolls the rest off towards the highlights, without
    desaturating them. Measured through the pipeline on a test card made HDR and back: mean
    error per RGB sample 16 (HLG) and 18 (PQ) of 255 against the card's SDR rendering, luma
    117 for 127; Reinhard 29, Hable 49 (luma 81), no tone mapping 69 and 89. Clipping at
    reference white would give 6-8 on the card but flattens every highlight of real footage.
    It is costly, in float: 1.9x the CPU of the same 1080p 10-bit HEVC source in SDR."""
    if not source.hdr:
        return ""
    return (
        f"zscale=tin={source.transfer}:pin=bt2020:min=bt2020nc:t=linear:npl=203,"
        "format=gbrpf32le,zscale=p=bt709,tonemap=mobius:param=0.5:desat=0,"
        "zscale=t=bt709:m=bt709:r=tv,format=yuv420p,"
    )


def build_command(
    source_path: Path, output_path: Path, source: MediaInfo, encoder: Encoder = ENCODER
) -> list[str]:
    x264_params = ":".join([*encoder.x264_params, *_keyframes(source, encoder)])
    return [
        ffmpeg_exe(), "-hide_banner", "-nostdin", "-nostats", "-loglevel", "error", "-y",
        "-progress", "pipe:1",
        *encoder.input_options, "-t", f"{footage_seconds(source):.3f}", "-i", str(source_path),
        "-i", str(logo_path()),
        "-filter_complex", filter_graph(source, encoder),
        "-map", "[out]", "-an", "-sn", "-dn", "-map_metadata", "-1",
        "-c:v", "libx264", "-preset", encoder.preset, *_rate_control(encoder),
        "-x264-params", x264_params,
        *encoder.extra, "-pix_fmt", "yuv420p", *BT709_TAGS, "-movflags", "+faststart",
        str(output_path),
    ]  # fmt: skip


def _rate_control(encoder: Encoder) -> list[str]:
    return [
        "-crf", f"{encoder.crf:g}",
        "-maxrate", str(encoder.max_bitrate), "-bufsize", str(encoder.buffer_bits),
    ]  # fmt: skip


def _keyframes(source: MediaInfo, encoder: Encoder) -> list[str]:
    """A keyframe every `keyframe_seconds` or sooner (59 frames at 30000/1001), at fixed
    intervals: no scene cut moves them."""
    interval = math.floor(encoder.keyframe_seconds * output_fps(source))
    return [f"keyint={interval}", f"min-keyint={interval}", "scenecut=0"]


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
