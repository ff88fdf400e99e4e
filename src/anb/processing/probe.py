"""Upload validation: is it an MP4 with a whole video stream of the accepted length and size?

The container is judged by walking its ISO-BMFF boxes (a truncated file is caught exactly,
wherever it was cut). The video track's facts are read in-process from the boxes as well
(`anb.processing.mp4`: its sample tables must place every sample inside the media data), so
an upload costs no process. Layouts that reader does not handle (fragmented files, codecs it
does not know, ...) are left to `probe`: the ffmpeg binary demuxes the whole file by stream
copy (fast: nothing is decoded) and fails on packets that are missing or corrupt.
"""

from __future__ import annotations

import re
import struct
import subprocess
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import BinaryIO

from anb.core.errors import InvalidInput
from anb.core.settings import Settings
from anb.processing import mp4
from anb.processing.ffmpeg import ffmpeg_exe

PROBE_TIMEOUT_SECONDS = 120
_MAX_BOXES = 100_000
_DURATION = re.compile(r"Duration: (\d+):(\d{2}):(\d{2}(?:\.\d+)?)")
_FRAMES = re.compile(r"frame=\s*(\d+)")
_VIDEO_STREAM = re.compile(r"Stream #0:\d+.*?: Video: (\w+).*?, (\d{2,5})x(\d{2,5})(.*)")
_FPS = re.compile(r"([\d.]+) (?:fps|tbr)")
_TBR = re.compile(r"([\d.]+)(k?) tbr")  # ffmpeg's guess of the base rate (r_frame_rate)
_SAR = re.compile(r"SAR (\d+):(\d+)")
# The pixel format's details, as in "yuv420p10le(tv, bt2020nc/bt2020/arib-std-b67, progressive)"
# (matrix/primaries/transfer), or "yuv420p(tv, bt709)" when the three are named alike.
_COLOURS = re.compile(r"\w\((?:\w+, )?(?:[\w-]+/[\w-]+/([\w-]+)|(bt709|smpte170m|smpte240m)\b)")
HDR_TRANSFERS = frozenset({"smpte2084", "arib-std-b67"})  # PQ (HDR10, Dolby Vision) and HLG
_ROTATION = re.compile(r"rotation of (-?[\d.]+) degrees", re.IGNORECASE)


@dataclass(frozen=True)
class MediaInfo:
    duration: float
    width: int  # as stored, before rotation and pixel aspect ratio
    height: int
    codec: str
    fps: float = 30.0
    sample_aspect: float = 1.0  # width of a pixel over its height
    rotation: int = 0  # degrees, from the display matrix
    # The rate of the fastest part (variable rate phones: 30 fps, 15 in low light), where
    # `fps` is the average; None: take `fps`.
    peak_rate: Fraction | None = None
    transfer: str = ""  # ffmpeg's name of the transfer function; "" when not declared

    @property
    def short_side(self) -> int:
        return min(self.width, self.height)

    @property
    def hdr(self) -> bool:
        return self.transfer in HDR_TRANSFERS

    @property
    def display_size(self) -> tuple[float, float]:
        """Width and height as shown: square pixels, rotation applied."""
        width, height = self.width * self.sample_aspect, float(self.height)
        return (height, width) if self.rotation % 180 == 90 else (width, height)


@dataclass(frozen=True)
class UploadRules:
    min_seconds: float
    max_seconds: float
    min_short_side: int
    max_long_side: int  # bounds the worker's memory per frame (8192x8192: ~1 GB)
    max_fps: float  # bounds the frames it decodes per second of video

    @classmethod
    def from_settings(cls, settings: Settings) -> UploadRules:
        return cls(
            min_seconds=settings.upload_min_seconds,
            max_seconds=settings.upload_max_seconds,
            min_short_side=settings.upload_min_short_side,
            max_long_side=settings.upload_max_long_side,
            max_fps=settings.upload_max_fps,
        )


class UnacceptableVideo(InvalidInput):
    def __init__(self, reason: str) -> None:
        super().__init__(f"video_file: {reason}")


NOT_MP4 = "el archivo no es un video MP4."
DAMAGED = "el archivo está incompleto o dañado."
NO_VIDEO = "el archivo no contiene una pista de video."
UNREADABLE = "no se pudo leer el archivo como video."


def check_upload(path: Path, rules: UploadRules) -> MediaInfo:
    """The file's facts when it is acceptable; `UnacceptableVideo` saying why otherwise."""
    check_iso_bmff(path)
    try:
        info = read_boxes(path)
    except mp4.Unsupported:
        info = probe(path)
    _check_rules(info, rules)
    return info


def read_boxes(path: Path) -> MediaInfo:
    """`probe`'s facts read in-process from the MP4's boxes; `mp4.Unsupported` for a layout
    that only ffmpeg can judge."""
    try:
        track = mp4.read_video_track(path)
    except mp4.NoVideoTrack as exc:
        raise UnacceptableVideo(NO_VIDEO) from exc
    except mp4.Damaged as exc:
        raise UnacceptableVideo(DAMAGED) from exc
    return MediaInfo(
        duration=track.duration,
        width=track.width,
        height=track.height,
        codec=track.codec,
        fps=track.fps,
        sample_aspect=track.sample_aspect,
        rotation=track.rotation,
        peak_rate=track.peak_rate,
        transfer=track.transfer,
    )


def check_iso_bmff(path: Path) -> None:
    """Walk the top-level boxes: `ftyp` first, a `moov`, and sizes that end exactly at EOF."""
    file_size = path.stat().st_size
    seen: list[bytes] = []
    with path.open("rb") as handle:
        offset = 0
        while offset < file_size:
            box_type, box_size = _read_box_header(handle, offset, file_size)
            if not seen and box_type != b"ftyp":
                raise UnacceptableVideo(NOT_MP4)
            seen.append(box_type)
            if offset + box_size > file_size or len(seen) > _MAX_BOXES:
                break
            offset += box_size
        else:
            if b"moov" in seen:
                return
    raise UnacceptableVideo(DAMAGED if seen else NOT_MP4)


def _read_box_header(handle: BinaryIO, offset: int, file_size: int) -> tuple[bytes, int]:
    handle.seek(offset)
    header = handle.read(16)
    if len(header) < 8:
        raise UnacceptableVideo(DAMAGED if offset else NOT_MP4)
    size, box_type = struct.unpack(">I4s", header[:8])
    if not all(0x20 <= byte < 0x7F for byte in box_type):
        raise UnacceptableVideo(DAMAGED if offset else NOT_MP4)
    if size == 1 and len(header) == 16:
        size = struct.unpack(">Q", header[8:16])[0]
    elif size == 0:  # "to the end of the file": only allowed for the last box
        size = file_size - offset
    if size < 8:
        raise UnacceptableVideo(DAMAGED if offset else NOT_MP4)
    return box_type, size


def probe(path: Path) -> MediaInfo:
    command = [
        ffmpeg_exe(), "-hide_banner", "-nostdin", "-nostats", "-xerror",
        "-i", str(path), "-map", "0:v:0", "-c", "copy", "-f", "null", "-",
    ]  # fmt: skip
    try:
        result = subprocess.run(
            command, capture_output=True, text=True, errors="replace",
            timeout=PROBE_TIMEOUT_SECONDS, check=False,
        )  # fmt: skip
    except subprocess.TimeoutExpired as exc:
        raise UnacceptableVideo(DAMAGED) from exc
    return parse_probe_output(result.stderr, result.returncode)


def parse_probe_output(stderr: str, returncode: int) -> MediaInfo:
    header = stderr.split("Stream mapping:", 1)[0]
    if "Input #0," not in header:
        raise UnacceptableVideo(UNREADABLE)
    stream = _VIDEO_STREAM.search(header)
    if stream is None:
        raise UnacceptableVideo(NO_VIDEO)
    duration = _DURATION.search(header)
    if duration is None or returncode != 0 or _samples_missing(stderr):
        raise UnacceptableVideo(DAMAGED)
    hours, minutes, seconds = duration.groups()
    details = stream.group(4)
    fps, sar, rotation = _FPS.search(details), _SAR.search(details), _ROTATION.search(header)
    sample_aspect = int(sar.group(1)) / int(sar.group(2)) if sar and int(sar.group(2)) else 1.0
    return MediaInfo(
        duration=int(hours) * 3600 + int(minutes) * 60 + float(seconds),
        width=int(stream.group(2)),
        height=int(stream.group(3)),
        codec=stream.group(1),
        fps=float(fps.group(1)) if fps and float(fps.group(1)) > 0 else 30.0,
        sample_aspect=sample_aspect or 1.0,
        rotation=round(float(rotation.group(1))) % 360 if rotation else 0,
        peak_rate=_base_rate(details),
        transfer=_transfer(stream.group(0)),
    )


def _transfer(stream_line: str) -> str:
    found = _COLOURS.search(stream_line)
    return (found.group(1) or found.group(2)) if found else ""


def _base_rate(details: str) -> Fraction | None:
    """ffmpeg's `tbr`, printed rounded (29.97, 1k): the pipeline snaps it to a standard rate."""
    found = _TBR.search(details)
    if found is None or not float(found.group(1)):
        return None
    return Fraction(found.group(1)) * (1000 if found.group(2) else 1)


def _samples_missing(stderr: str) -> bool:
    """Whole boxes can still index samples past the end of the file: ffmpeg then reports a
    "partial file" and copies fewer (or no) frames."""
    frames = _FRAMES.findall(stderr)
    return "partial file" in stderr or not frames or int(frames[-1]) == 0


def _check_rules(info: MediaInfo, rules: UploadRules) -> None:
    if not rules.min_seconds <= info.duration <= rules.max_seconds:
        raise UnacceptableVideo(
            f"el video dura {info.duration:.1f} s; la duración debe estar entre "
            f"{rules.min_seconds:g} y {rules.max_seconds:g} segundos."
        )
    if info.short_side < rules.min_short_side:
        raise UnacceptableVideo(
            f"la resolución es {info.width}x{info.height}; se requiere {rules.min_short_side}p "
            f"o más (el lado menor debe medir al menos {rules.min_short_side} px)."
        )
    if max(info.width, info.height) > rules.max_long_side:
        raise UnacceptableVideo(
            f"la resolución es {info.width}x{info.height}; el lado mayor puede medir a lo sumo "
            f"{rules.max_long_side} px."
        )
    if info.fps > rules.max_fps:
        raise UnacceptableVideo(
            f"el video tiene {info.fps:.4g} cuadros por segundo; se admiten a lo sumo "
            f"{rules.max_fps:g}."
        )
