"""Upload validation: is it an MP4 with a whole video stream of the accepted length and size?

The container is judged by walking its ISO-BMFF boxes (a truncated file is caught exactly,
wherever it was cut). The video track's facts are read in-process from the boxes as well
(`anb.processing.mp4`: its sample tables must place every sample inside the media data), so
an upload costs no process. Layouts that reader does not handle (fragmented files, codecs it
does not know, ...) are left to `probe`: the ffmpeg binary demuxes the whole file by stream
copy (fast: nothing is decoded) and fails on packets that are missing or corrupt.

Both judge the same video track, the main one (`mp4.main_track_rank`: the largest picture,
then an enabled track, then the first), by its own duration rather than the file's (a longer
sound track does not lengthen the video), and name its stream for the pipeline to render.
"""

from __future__ import annotations

import re
import signal
import struct
import subprocess
import tempfile
import threading
from collections.abc import Iterable, Mapping
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
_NO_PTS = -(2**63)  # how framecrc writes a packet without a timestamp
_FRAMES = re.compile(r"frame=\s*(\d+)")
_STREAM_BLOCK = re.compile(r"^\s*Stream #0:.*?(?=^\s*Stream #0:|\Z)", re.MULTILINE | re.DOTALL)
_VIDEO_STREAM = re.compile(r"Stream #0:(\d+).*?: Video: (\w+).*?, (\d{2,5})x(\d{2,5})(.*)")
_FPS = re.compile(r"([\d.]+) (?:fps|tbr)")
_TBR = re.compile(r"([\d.]+)(k?) tbr")  # ffmpeg's guess of the base rate (r_frame_rate)
_SAR = re.compile(r"SAR (\d+):(\d+)")
# The pixel format's details, as in "yuv420p10le(tv, bt2020nc/bt2020/arib-std-b67, progressive)"
# (matrix/primaries/transfer), or "yuv420p(tv, bt709)" when the three are named alike.
_COLOURS = re.compile(
    r"\w\((?:\w+, )?(?:([\w-]+)/[\w-]+/([\w-]+)|(bt709|smpte170m|smpte240m|bt470bg)\b)"
)
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
    matrix: str = ""  # ffmpeg's name of the YCbCr matrix (colour space); "" when not declared
    stream_index: int = 0  # ffmpeg's index of the video stream judged (`0:{index}`)

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
QUICKTIME = (
    "el archivo es un video QuickTime (.mov), no MP4: expórtalo o conviértelo a MP4 y vuelve "
    "a subirlo."
)
DAMAGED = "el archivo está incompleto o dañado."
NO_VIDEO = "el archivo no contiene una pista de video."
UNREADABLE = "no se pudo leer el archivo como video."


def check_upload(path: Path, rules: UploadRules) -> MediaInfo:
    """The file's facts when it is acceptable; `UnacceptableVideo` saying why otherwise."""
    check_iso_bmff(path)
    info = read_media(path)
    _check_rules(info, rules)
    return info


def read_media(path: Path) -> MediaInfo:
    """The main video track's facts, from the boxes or, when the reader cannot judge the
    file, from ffmpeg (`probe`); `UnacceptableVideo` when there is no usable video."""
    try:
        return read_boxes(path)
    except mp4.Unsupported:
        return probe(path)


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
        matrix=track.matrix,
        stream_index=track.stream_index,
    )


def check_iso_bmff(path: Path) -> None:
    """Walk the top-level boxes: `ftyp` first, naming a brand other than QuickTime's, a
    `moov`, and sizes that end exactly at EOF."""
    file_size = path.stat().st_size
    seen: list[bytes] = []
    with path.open("rb") as handle:
        offset = 0
        while offset < file_size:
            box_type, box_size = _read_box_header(handle, offset, file_size)
            if not seen and box_type != b"ftyp":
                raise UnacceptableVideo(NOT_MP4)
            if not seen and _major_brand(handle) == b"qt  ":
                raise UnacceptableVideo(QUICKTIME)
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


def _major_brand(handle: BinaryIO) -> bytes:
    """The major brand of the `ftyp` box at the start of the file."""
    handle.seek(8)
    return handle.read(4)


def probe(path: Path) -> MediaInfo:
    """The facts of the main video stream as ffmpeg reads them. Every video stream is copied
    (damage in any of them refuses the file) to `framecrc`, a line per packet, read as it
    comes: the main stream's duration is measured from its own packets, as the container's
    `Duration:` spans every stream, a longer sound track included."""
    command = [
        ffmpeg_exe(), "-hide_banner", "-nostdin", "-nostats", "-xerror",
        "-i", str(path), "-map", "0:v", "-c", "copy", "-f", "framecrc", "-",
    ]  # fmt: skip
    with (
        tempfile.TemporaryFile() as errors,
        subprocess.Popen(command, stdout=subprocess.PIPE, stderr=errors) as process,
    ):
        killer = threading.Timer(PROBE_TIMEOUT_SECONDS, process.kill)
        killer.start()
        try:
            assert process.stdout is not None
            durations = packet_durations(process.stdout)
            process.wait()
        finally:
            killer.cancel()
        if process.returncode == -signal.SIGKILL:  # past the timeout
            raise UnacceptableVideo(DAMAGED)
        errors.seek(0)
        stderr = errors.read().decode("utf-8", "replace")
    return parse_probe_output(stderr, process.returncode, durations)


def packet_durations(lines: Iterable[bytes]) -> dict[int, float]:
    """Seconds from each output stream's earliest packet to the end of its latest one, from
    ffmpeg's `framecrc` lines (`#tb N: 1/10240`, then `N, dts, pts, duration, size, crc`)."""
    bases: dict[int, Fraction] = {}
    spans: dict[int, tuple[int, int]] = {}
    for line in lines:
        if line.startswith(b"#tb "):
            index, _, base = line[4:].partition(b":")
            bases[int(index)] = Fraction(base.strip().decode())
        elif line[:1].isdigit():
            stream, _dts, pts, duration = (int(field) for field in line.split(b",")[:4])
            if pts == _NO_PTS:
                continue
            start, end = spans.get(stream, (pts, pts + duration))
            spans[stream] = min(start, pts), max(end, pts + duration)
    return {
        stream: float((end - start) * bases[stream])
        for stream, (start, end) in spans.items()
        if stream in bases
    }


@dataclass(frozen=True)
class _VideoStream:
    index: int
    codec: str
    width: int
    height: int
    enabled: bool  # ffmpeg marks an enabled track's stream "(default)"
    cover: bool  # cover art (an "attached pic"), not footage
    details: str  # the rest of its line: frame rate, pixel aspect
    side_data: str  # the lines under it: the display matrix
    line: str  # its whole line (the pixel format's colours come before the size)


def _header(stderr: str) -> str:
    return stderr.split("Stream mapping:", 1)[0]


def _video_streams(header: str) -> list[_VideoStream]:
    streams = []
    for block in _STREAM_BLOCK.findall(header):
        line, _, below = block.partition("\n")
        found = _VIDEO_STREAM.search(line)
        if found:
            index, codec, width, height, details = found.groups()
            streams.append(
                _VideoStream(
                    int(index), codec, int(width), int(height), "(default)" in details,
                    "(attached pic)" in details, details, below, line,
                )
            )  # fmt: skip
    return streams


def _main_stream(streams: list[_VideoStream]) -> _VideoStream | None:
    footage = [stream for stream in streams if not stream.cover]
    return max(
        footage,
        key=lambda stream: mp4.main_track_rank(
            stream.width * stream.height, stream.enabled, stream.index
        ),
        default=None,
    )


def parse_probe_output(stderr: str, returncode: int, durations: Mapping[int, float]) -> MediaInfo:
    """The facts of the main video stream, from what ffmpeg said copying every video stream
    (in their order) and each one's `packet_durations`."""
    header = _header(stderr)
    if "Input #0," not in header:
        raise UnacceptableVideo(UNREADABLE)
    streams = _video_streams(header)  # copied in this order: their output indices
    stream = _main_stream(streams)
    if stream is None:
        raise UnacceptableVideo(NO_VIDEO)
    duration = durations.get(streams.index(stream))
    if not duration or returncode != 0 or _samples_missing(stderr):
        raise UnacceptableVideo(DAMAGED)
    fps, sar = _FPS.search(stream.details), _SAR.search(stream.details)
    rotation = _ROTATION.search(stream.side_data)
    sample_aspect = int(sar.group(1)) / int(sar.group(2)) if sar and int(sar.group(2)) else 1.0
    transfer, matrix = _colours(stream.line)
    return MediaInfo(
        duration=duration,
        width=stream.width,
        height=stream.height,
        codec=stream.codec,
        fps=float(fps.group(1)) if fps and float(fps.group(1)) > 0 else 30.0,
        sample_aspect=sample_aspect or 1.0,
        rotation=round(float(rotation.group(1))) % 360 if rotation else 0,
        peak_rate=_base_rate(stream.details),
        transfer=transfer,
        matrix=matrix,
        stream_index=stream.index,
    )


def _colours(stream_line: str) -> tuple[str, str]:
    """The transfer function and matrix ffmpeg prints for the stream; "" where not declared."""
    found = _COLOURS.search(stream_line)
    if found is None:
        return "", ""
    matrix, transfer, alike = found.groups()
    return _declared(transfer or alike), _declared(matrix or alike)


def _declared(name: str | None) -> str:
    return "" if name in (None, "unknown") else name


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
