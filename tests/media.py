"""Reading what the pipeline made: stream facts, box order and pixels, with the real ffmpeg."""

from __future__ import annotations

import re
import struct
import subprocess
from dataclasses import dataclass
from pathlib import Path

from anb.processing.ffmpeg import ffmpeg_exe

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


def near(pixel: tuple[int, int, int], colour: tuple[int, int, int], tolerance: int = 24) -> bool:
    return all(abs(a - b) <= tolerance for a, b in zip(pixel, colour, strict=True))


def duration(path: Path) -> float:
    found = re.search(r"Duration: (\d+):(\d+):([\d.]+)", streams(path).header)
    assert found, "no duration"
    hours, minutes, seconds = found.groups()
    return int(hours) * 3600 + int(minutes) * 60 + float(seconds)
