"""Reading what the pipeline made: stream facts, box order and pixels, with the real ffmpeg."""

from __future__ import annotations

import re
import struct
import subprocess
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from anb.processing import pipeline
from anb.processing.ffmpeg import ffmpeg_exe
from anb.processing.probe import read_media

THUMB_W, THUMB_H = 128, 72  # frames are sampled at a tenth of 1280x720


@dataclass(frozen=True)
class Streams:
    header: str

    @property
    def has_audio(self) -> bool:
        return "Audio:" in self.header

    @property
    def video_line(self) -> str:
        return next(line for line in self.header.splitlines() if "Video:" in line)


def render_each(
    directory: Path, names: Iterable[str], encode: Callable[[Path, str], Path]
) -> dict[str, tuple[Path, Path]]:
    """For each name, the source `encode(path, name)` made and what the pipeline made of it."""
    made = {}
    for name in names:
        source = encode(directory / f"{name}.mp4", name)
        output = directory / f"out-{name}.mp4"
        pipeline.render(source, output, read_media(source))
        made[name] = (source, output)
    return made


def streams(path: Path) -> Streams:
    result = subprocess.run(
        [ffmpeg_exe(), "-hide_banner", "-i", str(path)], capture_output=True, text=True
    )
    return Streams(result.stderr)


def top_level_boxes(path: Path) -> list[str]:
    data, boxes, offset = path.read_bytes(), [], 0
    while offset + 8 <= len(data):
        size, kind = struct.unpack(">I4s", data[offset : offset + 8])
        boxes.append(kind.decode())
        offset += size if size >= 8 else len(data)
    return boxes


def frame(path: Path, at: float) -> list[list[tuple[int, int, int]]]:
    """The frame shown at `at` seconds, downscaled to 128x72, as rows of RGB pixels."""
    return _pixels(["-ss", f"{at}", "-i", str(path)], f"no frame at {at} s")


def picture(path: Path) -> list[list[tuple[int, int, int]]]:
    """An image file (a poster), downscaled to 128x72, as rows of RGB pixels."""
    return _pixels(["-i", str(path)], "no picture")


def _pixels(source: list[str], missing: str) -> list[list[tuple[int, int, int]]]:
    raw = subprocess.run(
        [ffmpeg_exe(), "-hide_banner", "-loglevel", "error", *source,
         "-frames:v", "1", "-vf", f"scale={THUMB_W}:{THUMB_H}:flags=area",
         "-f", "rawvideo", "-pix_fmt", "rgb24", "-"],
        capture_output=True, check=True,
    ).stdout  # fmt: skip
    assert len(raw) == THUMB_W * THUMB_H * 3, missing
    pixels = [tuple(raw[i : i + 3]) for i in range(0, len(raw), 3)]
    return [pixels[row * THUMB_W : (row + 1) * THUMB_W] for row in range(THUMB_H)]


def full_frame(path: Path, at: float) -> bytes:
    """The frame shown at `at` seconds at full size (1280x720), as packed RGB bytes."""
    raw = subprocess.run(
        [ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-ss", f"{at}", "-i", str(path),
         "-frames:v", "1", "-f", "rawvideo", "-pix_fmt", "rgb24", "-"],
        capture_output=True, check=True,
    ).stdout  # fmt: skip
    assert len(raw) == 1280 * 720 * 3, f"no frame at {at} s"
    return raw


def luma(image: list[list[tuple[int, int, int]]]) -> float:
    """The mean BT.709 luma of an RGB image (0..255)."""
    pixels = [pixel for row in image for pixel in row]
    return sum(0.2126 * r + 0.7152 * g + 0.0722 * b for r, g, b in pixels) / len(pixels)


def near(pixel: tuple[int, int, int], colour: tuple[int, int, int], tolerance: int = 24) -> bool:
    return all(abs(a - b) <= tolerance for a, b in zip(pixel, colour, strict=True))


def duration(path: Path) -> float:
    found = re.search(r"Duration: (\d+):(\d+):([\d.]+)", streams(path).header)
    assert found, "no duration"
    hours, minutes, seconds = found.groups()
    return int(hours) * 3600 + int(minutes) * 60 + float(seconds)


@dataclass(frozen=True)
class Sample:
    time: float  # decoding time, seconds
    size: int  # bytes
    key: bool


def samples(path: Path) -> list[Sample]:
    """The samples of a single-track MP4, from its sample tables (stts, stsz, stss)."""
    data = path.read_bytes()
    stbl = _box(data, "moov", "trak", "mdia", "minf", "stbl")
    mdhd = _box(data, "moov", "trak", "mdia", "mdhd")
    timescale = struct.unpack_from(">I", mdhd, 20 if mdhd[0] == 1 else 12)[0]
    stts, stsz, stss = (_box(stbl, kind) for kind in ("stts", "stsz", "stss"))
    runs = struct.unpack_from(f">{2 * _count(stts)}I", stts, 8)
    pairs = zip(runs[0::2], runs[1::2], strict=True)
    durations = [delta for count, delta in pairs for _ in range(count)]
    sizes = struct.unpack_from(f">{_count(stsz, 8)}I", stsz, 12)
    keys = set(struct.unpack_from(f">{_count(stss)}I", stss, 8)) if stss else None
    times = [sum(durations[:index]) / timescale for index in range(len(sizes))]
    return [
        Sample(time, size, keys is None or number in keys)
        for number, (time, size) in enumerate(zip(times, sizes, strict=True), start=1)
    ]


def _box(data: bytes, *path: str) -> bytes:
    """The payload of the first box at `path` (empty if there is none)."""
    for kind in path:
        offset = 0
        while offset + 8 <= len(data):
            size, found = struct.unpack_from(">I4s", data, offset)
            if found.decode() == kind:
                data = data[offset + 8 : offset + size]
                break
            offset += size
        else:
            return b""
    return data


def _count(payload: bytes, at: int = 4) -> int:
    return struct.unpack_from(">I", payload, at)[0] if payload else 0
