"""The poster: a 1280x720 JPEG of the footage (never a bumper or a black frame), in bounded time."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from anb.processing import pipeline, poster
from anb.processing.ffmpeg import ffmpeg_exe
from anb.processing.probe import MediaInfo, probe
from tests import media

GREEN = (0x2A, 0x9D, 0x8F)


def _rendered(
    directory: Path, name: str, filters: str, seconds: float = 6
) -> tuple[Path, MediaInfo]:
    """A 1920x1080 source of green footage (drawn over by `filters`), and its clip."""
    source, clip = directory / f"{name}.mp4", directory / f"{name}-clip.mp4"
    subprocess.run(
        [ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y",
         "-f", "lavfi", "-i", f"color=c=0x2A9D8F:s=1920x1080:r=10:d={seconds}",
         "-vf", f"{filters},format=yuv420p", "-c:v", "libx264", "-preset", "ultrafast",
         str(source)],
        check=True,
    )  # fmt: skip
    info = probe(source)
    pipeline.render(source, clip, info)
    return clip, info


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, MediaInfo]]:
    directory = tmp_path_factory.mktemp("poster")
    return {
        "green": _rendered(directory, "green", "null"),
        # black for the first 40%: the first moment tried (a third of the way in) is dark
        "dark_start": _rendered(
            directory, "dark_start", "drawbox=c=black:t=fill:enable='lt(t,2.4)'"
        ),
        "all_dark": _rendered(directory, "all_dark", "drawbox=c=0x050505:t=fill"),
    }


def _mean_level(image: list[list[tuple[int, int, int]]]) -> float:
    return sum(sum(pixel) for row in image for pixel in row) / (3 * len(image) * len(image[0]))


def test_every_moment_tried_is_footage_not_a_bumper() -> None:
    source = MediaInfo(duration=45, width=1920, height=1080, codec="h264")
    start, end = pipeline.BUMPER_SECONDS, pipeline.BUMPER_SECONDS + pipeline.footage_seconds(source)
    times = poster.poster_times(source)
    assert times[0] == pytest.approx(start + 10)  # a third of the 30 s kept
    assert all(start + 1 < at < end - 1 for at in times)


def test_the_poster_is_a_1280x720_jpeg_of_the_footage(
    clips: dict[str, tuple[Path, MediaInfo]], tmp_path: Path
) -> None:
    clip, info = clips["green"]
    target = tmp_path / "poster.jpg"
    poster.make_poster(clip, target, info, timeout_seconds=60)
    assert target.read_bytes()[:3] == b"\xff\xd8\xff"  # JPEG
    assert "Video: mjpeg" in media.streams(target).video_line
    assert "1280x720" in media.streams(target).video_line
    image = media.picture(target)
    assert media.near(image[36][64], GREEN) and media.near(image[5][5], GREEN)
    assert [path.name for path in tmp_path.iterdir()] == ["poster.jpg"]  # no candidate left


def test_a_dark_moment_is_passed_over_for_a_lit_one(
    clips: dict[str, tuple[Path, MediaInfo]], tmp_path: Path
) -> None:
    clip, info = clips["dark_start"]
    assert _mean_level(media.frame(clip, poster.poster_times(info)[0])) < 20  # black
    target = tmp_path / "poster.jpg"
    poster.make_poster(clip, target, info, timeout_seconds=60)
    assert media.near(media.picture(target)[36][64], GREEN)
    assert [path.name for path in tmp_path.iterdir()] == ["poster.jpg"]


def test_footage_dark_throughout_still_gets_its_brightest_moment(
    clips: dict[str, tuple[Path, MediaInfo]], tmp_path: Path
) -> None:
    clip, info = clips["all_dark"]
    target = tmp_path / "poster.jpg"
    poster.make_poster(clip, target, info, timeout_seconds=60)
    assert "1280x720" in media.streams(target).video_line
    assert [path.name for path in tmp_path.iterdir()] == ["poster.jpg"]


def test_an_ffmpeg_past_the_timeout_is_killed_and_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    silent = tmp_path / "ffmpeg"
    silent.write_text(f"#!{sys.executable}\nimport time\ntime.sleep(30)\n")
    silent.chmod(0o755)
    monkeypatch.setattr(poster, "ffmpeg_exe", lambda: str(silent))
    source = MediaInfo(duration=21, width=1920, height=1080, codec="h264")
    target = tmp_path / "out" / "poster.jpg"
    target.parent.mkdir()
    started = time.monotonic()
    with pytest.raises(pipeline.PipelineTimedOut):
        poster.make_poster(tmp_path / "clip.mp4", target, source, timeout_seconds=1)
    assert time.monotonic() - started < 5
    assert list(target.parent.iterdir()) == []


def test_a_clip_without_frames_fails_as_a_pipeline_failure(tmp_path: Path) -> None:
    broken = tmp_path / "clip.mp4"
    broken.write_bytes(b"not a clip")
    source = MediaInfo(duration=21, width=1920, height=1080, codec="h264")
    with pytest.raises(pipeline.PipelineFailed):
        poster.make_poster(broken, tmp_path / "poster.jpg", source, timeout_seconds=60)
    assert [path.name for path in tmp_path.iterdir()] == ["clip.mp4"]
