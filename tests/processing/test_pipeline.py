"""The pipeline's outputs, probed: size, pixels, codec, audio, duration, bumpers, watermark."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
from fractions import Fraction
from itertools import pairwise
from pathlib import Path

import pytest

from anb.core.settings import Settings
from anb.processing import pipeline
from anb.processing.ffmpeg import ffmpeg_exe
from anb.processing.probe import MediaInfo, UploadRules, check_upload, probe, read_boxes
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


def test_the_first_frame_is_the_bumper_card_not_black(outputs: dict[str, Path]) -> None:
    first = media.frame(outputs["long"], 0)
    card = media.frame(outputs["long"], pipeline.BUMPER_SECONDS / 2)
    assert media.near(first[3][3], NAVY)
    assert media.luma(first) == pytest.approx(media.luma(card), abs=2)
    assert media.luma(first) > 20  # the navy card alone is ~29, black 0


PICTURE_SHAPES = {"9:16": "360x640", "4:3": "640x480", "16:9": "640x360", "21:9": "840x360"}


@pytest.mark.parametrize("shape", PICTURE_SHAPES)
def test_the_watermark_lies_wholly_on_the_picture(tmp_path: Path, shape: str) -> None:
    source = _source(tmp_path / "source.mp4", PICTURE_SHAPES[shape], 1)
    info = probe(source)
    pipeline.render(source, tmp_path / "out.mp4", info)
    raw = media.full_frame(tmp_path / "out.mp4", pipeline.BUMPER_SECONDS + 0.5)
    on_picture, on_bars = _marked_pixels(raw, pipeline.picture_rect(info))
    assert on_bars == 0, f"{on_bars} watermark pixels on the black bars"
    assert on_picture > pipeline.watermark_width(info) ** 2 / 10, "no watermark on the picture"


def _marked_pixels(raw: bytes, picture: pipeline.Rect, edge: int = 2) -> tuple[int, int]:
    """Pixels that are neither the green picture nor the black bars, on each; the `edge`
    pixels either side of the picture's border (which blend both) are left out."""
    on_picture = on_bars = 0
    for y in range(pipeline.HEIGHT):
        row = raw[3 * y * pipeline.WIDTH : 3 * (y + 1) * pipeline.WIDTH]
        for x in range(pipeline.WIDTH):
            pixel = (row[3 * x], row[3 * x + 1], row[3 * x + 2])
            inside = _within(x, picture.x, picture.width, -edge) and _within(
                y, picture.y, picture.height, -edge
            )
            outside = not (
                _within(x, picture.x, picture.width, edge)
                and _within(y, picture.y, picture.height, edge)
            )
            on_picture += inside and not media.near(pixel, GREEN, 40)
            on_bars += outside and not media.near(pixel, BLACK)
    return on_picture, on_bars


def _within(value: int, start: int, length: int, grow: int) -> bool:
    return start - grow <= value < start + length + grow


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
    assert pipeline.fitted_size(MediaInfo(10, 1080, 1920, "h264")) == (406, 720)
    assert pipeline.fitted_size(MediaInfo(10, 1920, 1080, "h264", rotation=270)) == (406, 720)
    assert pipeline.fitted_size(MediaInfo(10, 1920, 800, "h264")) == (1280, 534)


def _variable_rate_source(target: Path) -> Path:
    """4 s of 1280x720 at 30 fps in even seconds and 15 fps in odd ones (every other frame
    left out, timestamps kept); a white bar at x = 10 * (its index at 30 fps) marks each frame."""
    graph = (
        "color=c=black:s=1280x720:r=30:d=4[black];color=c=white:s=6x720:r=30:d=4[bar];"
        "[black][bar]overlay=x='round(300*t)':y=0,"
        "select='lt(mod(t,2),1)+not(mod(n,2))',format=yuv420p"
    )
    subprocess.run(
        [ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i", graph,
         "-fps_mode", "vfr", "-c:v", "libx264", "-preset", "ultrafast", "-bf", "0", str(target)],
        check=True,
    )  # fmt: skip
    return target


def _bar_indices(path: Path) -> list[int | None]:
    """For each frame of `path`, the index its white bar marks (None: no bar)."""
    raw = subprocess.run(
        [ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-i", str(path),
         "-vf", "crop=1280:2:0:8,format=gray", "-f", "rawvideo", "-"],
        capture_output=True, check=True,
    ).stdout  # fmt: skip
    rows = [raw[at : at + 1280] for at in range(0, len(raw), 2 * 1280)]  # two rows a frame
    return [next((round(x / 10) for x, v in enumerate(row) if v > 128), None) for row in rows]


def test_a_variable_rate_source_keeps_every_frame_at_its_time(tmp_path: Path) -> None:
    source = _variable_rate_source(tmp_path / "vfr.mp4")
    info = read_boxes(source)
    assert info.fps < 23 and info.peak_rate == 30  # 90 frames in 4 s, the fastest at 30
    pipeline.render(source, tmp_path / "out.mp4", info)
    bumper = pipeline.BUMPER_SECONDS * 30
    footage = _bar_indices(tmp_path / "out.mp4")[int(bumper) : int(bumper) + 118]
    # At 30 fps each output frame shows the source frame of its time: all of the 30 fps
    # seconds' frames once, each of the 15 fps seconds' frames twice.
    kept = [n for n in range(120) if n // 30 % 2 == 0 or n % 2 == 0]
    assert footage == [max(n for n in kept if n <= k) for k in range(118)]


def test_ntsc_rates_stay_exact(tmp_path: Path) -> None:
    source = tmp_path / "ntsc.mp4"
    subprocess.run(
        [ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi",
         "-i", "testsrc2=s=640x360:r=60000/1001:d=2", "-c:v", "libx264", "-preset", "ultrafast",
         "-pix_fmt", "yuv420p", str(source)],
        check=True,
    )  # fmt: skip
    pipeline.render(source, tmp_path / "out.mp4", read_boxes(source))
    out = read_boxes(tmp_path / "out.mp4")
    assert out.peak_rate == Fraction(30000, 1001)
    assert out.fps == pytest.approx(30000 / 1001, abs=1e-3)


@pytest.mark.parametrize(
    ("fps", "peak_rate", "expected"),
    [
        (59.94, Fraction(60000, 1001), Fraction(30000, 1001)),
        (59.94, Fraction("59.94"), Fraction(30000, 1001)),  # ffmpeg's tbr, rounded
        (50, Fraction(50), Fraction(25)),
        (120, Fraction(120), Fraction(30)),
        (40, Fraction(40), Fraction(30)),
        (22.58, Fraction(90000, 2991), Fraction(30)),  # a variable rate, jittery timestamps
        (15, Fraction(15), Fraction(15)),
        (24, None, Fraction(24)),
    ],
)
def test_output_rate(fps: float, peak_rate: Fraction | None, expected: Fraction) -> None:
    source = MediaInfo(10, 1920, 1080, "h264", fps=fps, peak_rate=peak_rate)
    assert pipeline.output_fps(source) == expected


def test_keyframes_every_2_s_and_the_bitrate_capped(tmp_path: Path) -> None:
    source = _source(tmp_path / "noise.mp4", "1280x720", 6, fps=30, vf="noise=alls=50:allf=t+u")
    pipeline.render(source, tmp_path / "out.mp4", read_boxes(source))
    samples, frame = media.samples(tmp_path / "out.mp4"), 1 / 30
    keys = [sample.time for sample in samples if sample.key] + [samples[-1].time + frame]
    assert max(b - a for a, b in pairwise(keys)) <= 2 + 1e-6
    # A player that receives the clip at the cap never waits: no run of frames carries more
    # bits than the cap brings in during it plus the buffer (the VBV model).
    cap, buffer = pipeline.ENCODER.max_bitrate, pipeline.ENCODER.buffer_bits
    for first in range(len(samples)):
        bits = 0
        for sample in samples[first:]:
            bits += 8 * sample.size
            assert bits <= 1.05 * cap * (sample.time - samples[first].time + frame) + buffer
    # Once the buffer the still opening bumper left is spent (the footage's first seconds may
    # draw on it: `buffer` bits at most), noise streams at the cap.
    start, end = pipeline.BUMPER_SECONDS + buffer / cap, pipeline.BUMPER_SECONDS + 6
    bits = 8 * sum(sample.size for sample in samples if start <= sample.time < end)
    assert bits / (end - start) <= 1.1 * cap, f"{bits / (end - start) / 1e6:.2f} Mb/s"


def test_anb_process_writes_the_clip_and_its_poster_and_shows_progress_on_a_terminal(
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
    poster = tmp_path / "clip.jpg"  # beside the clip
    assert f"its poster {poster}" in shown
    assert "Video: mjpeg" in media.streams(poster).video_line
    assert "1280x720" in media.streams(poster).video_line


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
