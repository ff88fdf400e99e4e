"""Small test clips generated with the real ffmpeg: a flat colour and a moving box."""

from __future__ import annotations

import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
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
    quicktime: Path  # the landscape clip in a QuickTime (.mov) container
    thumbnail_track_first: Path  # a 640x360 red track, then the 1920x1080 MAIN_COLOUR footage
    short_video_long_audio: Path  # 19.5 s of 1920x1080 video, 20.5 s of sound


MAIN_COLOUR = (0x2A, 0x9D, 0x8F)  # the footage of `thumbnail_track_first`; its thumbnail is red


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
    """Encode every clip (in parallel: each is one ffmpeg process) into `directory`."""
    faststart = ("-movflags", "+faststart")
    landscape, moov_at_end = directory / "landscape.mp4", directory / "moov_end.mp4"
    jobs = {
        "landscape": (landscape, 1920, 1080, 21, faststart),
        "moov_at_end": (moov_at_end, 1920, 1080, 21, ()),
        "portrait": (directory / "portrait.mp4", 1080, 1920, 21, ()),
        "short": (directory / "short.mp4", 1920, 1080, 10, ()),
        "long": (directory / "long.mp4", 1920, 1080, 65, ()),
        "low_res": (directory / "low_res.mp4", 1280, 720, 21, ()),
        "matroska": (directory / "matroska.mp4", 1920, 1080, 21, ("-f", "matroska")),
    }
    made_by_ffmpeg = {
        "thumbnail_track_first": (directory / "thumbnail_first.mp4", _THUMBNAIL_TRACK_FIRST),
        "short_video_long_audio": (directory / "long_audio.mp4", _SHORT_VIDEO_LONG_AUDIO),
        "quicktime": (
            directory / "quicktime.mov",
            ("-i", str(landscape), "-c", "copy", "-f", "mov"),
        ),
    }
    with ThreadPoolExecutor() as pool:
        audio = pool.submit(_audio_only, directory / "audio_only.mp4")
        futures = {
            name: pool.submit(encode, path, width=w, height=h, seconds=s, extra=extra)
            for name, (path, w, h, s, extra) in jobs.items()
        }
        made = {name: future.result() for name, future in futures.items()}
        audio.result()
        done = pool.map(lambda made_from: _ffmpeg(*made_from), made_by_ffmpeg.values())
        made.update(zip(made_by_ffmpeg, done, strict=True))
    truncated = directory / "truncated.mp4"
    truncated.write_bytes(landscape.read_bytes()[: landscape.stat().st_size // 2])
    cut = directory / "moov_end_truncated.mp4"
    cut.write_bytes(moov_at_end.read_bytes()[: moov_at_end.stat().st_size * 3 // 4])
    text = directory / "text.mp4"
    text.write_text("esto no es un video\n" * 100)
    del made["moov_at_end"]
    return Clips(
        **made,
        audio_only=directory / "audio_only.mp4",
        text=text,
        truncated=truncated,
        moov_at_end_truncated=cut,
    )


_THUMBNAIL_TRACK_FIRST = (
    "-f", "lavfi", "-i", "color=c=red:s=640x360:r=10:d=21",
    "-f", "lavfi", "-i", "color=c=0x2A9D8F:s=1920x1080:r=10:d=21",
    "-map", "0", "-map", "1", "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p",
)  # fmt: skip
_SHORT_VIDEO_LONG_AUDIO = (
    "-f", "lavfi", "-i", "color=c=0x1d3557:s=1920x1080:r=10:d=19.5",
    "-f", "lavfi", "-i", "sine=frequency=440:duration=20.5",
    "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-c:a", "aac",
)  # fmt: skip


def _ffmpeg(target: Path, arguments: tuple[str, ...]) -> Path:
    subprocess.run(
        [ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", *arguments, str(target)],
        check=True,
    )
    return target


def _audio_only(target: Path) -> None:
    subprocess.run(
        [ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi",
         "-i", "sine=frequency=440:duration=21", "-c:a", "aac", str(target)],
        check=True,
    )  # fmt: skip


if __name__ == "__main__":  # python -m tests.clips DIR: the clips for the Postman collection
    target = Path(sys.argv[1])
    target.mkdir(parents=True, exist_ok=True)
    make_clips(target)
