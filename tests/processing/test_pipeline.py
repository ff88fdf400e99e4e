"""The pipeline's outputs, probed: size, pixels, codec, audio, duration, bumpers, watermark."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
from pathlib import Path

import pytest

from anb.core.settings import Settings
from anb.processing import pipeline
from anb.processing.ffmpeg import ffmpeg_exe
from anb.processing.probe import UploadRules, check_upload, probe
from tests import media
from tests.clips import MAIN_COLOUR, Clips

GREEN = (0x2A, 0x9D, 0x8F)
NAVY = tuple(bytes.fromhex(pipeline.BUMPER_BACKGROUND.removeprefix("0x")))
BLACK = (0, 0, 0)


def _source(target: Path, size: str, seconds: float, fps: int = 10, *, before=(), vf="") -> Path:
    filters = ",".join(part for part in (vf, "format=yuv420p") if part)
    subprocess.run(
        [ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y",
         "-f", "lavfi", "-i", f"color=c=0x2A9D8F:s={size}:r={fps}:d={seconds}",
         "-f", "lavfi", "-i", f"sine=frequency=300:duration={seconds}",
         "-vf", filters, "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac", "-shortest",
         str(target)],
        check=True,
    )  # fmt: skip
    if before:  # container-level options, applied by remuxing (e.g. a display rotation)
        rotated = target.with_name(f"rotated-{target.name}")
        subprocess.run(
            [ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", *before,
             "-i", str(target), "-c", "copy", str(rotated)],
            check=True,
        )  # fmt: skip
        return rotated
    return target


@pytest.fixture(scope="module")
def outputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Each kind of source and what the pipeline made of it."""
    directory = tmp_path_factory.mktemp("pipeline")
    sources = {
        "long": _source(directory / "long.mp4", "1920x1080", 40),
        "portrait": _source(directory / "portrait.mp4", "1080x1920", 6),
        "fast": _source(directory / "fast.mp4", "1280x720", 3, fps=60),
        "anamorphic": _source(directory / "anamorphic.mp4", "1440x1080", 4, vf="setsar=4/3"),
        "rotated": _source(
            directory / "rotated.mp4", "1920x1080", 4, before=("-display_rotation", "90")
        ),
        "uhd": _source(directory / "uhd.mp4", "3840x2160", 3),
    }
    made = {}
    for name, source in sources.items():
        made[name] = directory / f"out-{name}.mp4"
        pipeline.render(source, made[name], probe(source))
    return made


@pytest.mark.parametrize("name", ["long", "portrait", "fast", "anamorphic", "rotated", "uhd"])
def test_every_output_is_720p_h264_square_pixels_silent_and_faststart(
    outputs: dict[str, Path], name: str
) -> None:
    path = outputs[name]
    info = probe(path)
    assert (info.width, info.height, info.codec) == (1280, 720, "h264")
    assert info.sample_aspect == 1.0 and info.rotation == 0
    assert info.fps <= 30
    line = media.streams(path).video_line
    assert "yuv420p" in line and "SAR 1:1" in line and "DAR 16:9" in line
    assert not media.streams(path).has_audio
    boxes = media.top_level_boxes(path)
    assert boxes.index("moov") < boxes.index("mdat")  # +faststart


def test_at_most_30_seconds_of_footage_plus_bumpers(outputs: dict[str, Path]) -> None:
    bumpers = 2 * pipeline.BUMPER_SECONDS
    assert bumpers <= 5
    assert media.duration(outputs["long"]) == pytest.approx(30 + bumpers, abs=0.25)
    assert media.duration(outputs["fast"]) == pytest.approx(3 + bumpers, abs=0.25)


def test_frame_rate_is_capped_at_30(outputs: dict[str, Path]) -> None:
    assert probe(outputs["fast"]).fps == 30
    assert probe(outputs["long"]).fps == 10  # slower sources keep their rate


def test_bumpers_with_the_logo_open_and_close(outputs: dict[str, Path]) -> None:
    path = outputs["long"]
    end = media.duration(path)
    for at in (pipeline.BUMPER_SECONDS / 2, end - pipeline.BUMPER_SECONDS / 2):
        image = media.frame(path, at)
        assert media.near(image[3][3], NAVY), f"no bumper background at {at} s"
        centre = [pixel for row in image[20:52] for pixel in row[44:84]]
        orange = [p for p in centre if p[0] > 180 and 80 < p[1] < 170 and p[2] < 90]
        assert len(orange) > 50, f"no logo at {at} s"


def test_footage_fills_the_frame_with_the_watermark_in_a_corner(outputs: dict[str, Path]) -> None:
    image = media.frame(outputs["long"], 10)
    assert media.near(image[36][10], GREEN) and media.near(image[5][120], GREEN)
    corner = [pixel for row in image[58:70] for pixel in row[112:126]]
    assert sum(not media.near(pixel, GREEN, 40) for pixel in corner) > 20, "no watermark"


@pytest.mark.parametrize("name", ["portrait", "rotated"])
def test_portrait_footage_is_pillarboxed_not_stretched(outputs: dict[str, Path], name: str) -> None:
    image = media.frame(outputs[name], pipeline.BUMPER_SECONDS + 1)
    assert media.near(image[36][2], BLACK) and media.near(image[36][125], BLACK)
    assert media.near(image[36][64], GREEN)
    # 9:16 inside 16:9: the picture is 720 * 9 / 16 = 405 px wide, about 40 of 128 columns
    green_columns = sum(media.near(pixel, GREEN) for pixel in image[36])
    assert 36 <= green_columns <= 44


def test_non_square_pixels_are_shown_at_their_display_aspect(outputs: dict[str, Path]) -> None:
    image = media.frame(outputs["anamorphic"], pipeline.BUMPER_SECONDS + 1)
    assert media.near(image[36][1], GREEN) and media.near(image[36][126], GREEN)  # no bars


def test_the_main_video_track_is_rendered_not_a_thumbnail_track_before_it(
    clips: Clips, tmp_path: Path
) -> None:
    source, output = clips.thumbnail_track_first, tmp_path / "clip.mp4"
    pipeline.render(source, output, check_upload(source, UploadRules.from_settings(Settings())))
    image = media.frame(output, pipeline.BUMPER_SECONDS + 5)
    assert media.near(image[36][64], MAIN_COLOUR), image[36][64]  # the thumbnail is red


def test_fitted_size_keeps_even_dimensions() -> None:
    from anb.processing.probe import MediaInfo

    assert pipeline.fitted_size(MediaInfo(10, 1080, 1920, "h264")) == (406, 720)
    assert pipeline.fitted_size(MediaInfo(10, 1920, 1080, "h264", rotation=270)) == (406, 720)
    assert pipeline.fitted_size(MediaInfo(10, 1920, 800, "h264")) == (1280, 534)


def test_anb_process_writes_the_clip_and_shows_progress_on_a_terminal(
    outputs: dict[str, Path], tmp_path: Path
) -> None:
    source = outputs["fast"].parent / "fast.mp4"
    target = tmp_path / "clip.mp4"
    leader, follower = pty.openpty()
    result = subprocess.run(
        [sys.executable, "-m", "anb.cli", "process", str(source), str(target)],
        stderr=follower, stdout=subprocess.DEVNULL, timeout=120,
    )  # fmt: skip
    os.close(follower)
    shown = os.read(leader, 65536).decode()
    os.close(leader)
    assert result.returncode == 0
    assert "processing [" in shown and "100%" in shown
    assert probe(target).width == 1280


def test_anb_process_refuses_an_unreadable_input_in_one_line(tmp_path: Path) -> None:
    broken = tmp_path / "broken.mp4"
    broken.write_text("not a video")
    result = subprocess.run(
        [sys.executable, "-m", "anb.cli", "process", str(broken), str(tmp_path / "out.mp4")],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "cannot read" in lines[0]
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "out.mp4").exists()
