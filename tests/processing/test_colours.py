"""SDR sources of every YCbCr flavour phones and cameras record come out as the BT.709,
limited-range colours the output is tagged with: the picture looks as the source did."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from anb.processing import pipeline
from anb.processing.ffmpeg import ffmpeg_exe
from anb.processing.probe import MediaInfo, probe, read_boxes
from tests import media

COLOURS = [(200, 50, 50), (40, 170, 60), (60, 80, 210), (235, 225, 40)]
"""Four patches side by side: red, green, blue and yellow, where a wrong matrix shows most."""


def _card(width: int, height: int) -> str:
    """The four patches, as RGB, `width` x `height`."""
    patch = width // len(COLOURS)
    layers = [f"color=c=0x{r:02X}{g:02X}{b:02X}:s={patch}x{height}:d=1:r=30" for r, g, b in COLOURS]
    inputs = "".join(f"{layer}[p{index}];" for index, layer in enumerate(layers))
    stacked = "".join(f"[p{index}]" for index in range(len(COLOURS)))
    return f"{inputs}{stacked}hstack=inputs={len(COLOURS)},format=gbrp"


BT601 = "m=170m:p=170m:t=601:pin=170m:tin=601"  # zscale: matrix, primaries, transfer
BT709 = "m=709:p=709:t=709:pin=709:tin=709"
SOURCES = {
    # name: (size, colours and range of the YCbCr, where the file says so: in the `colr`
    # box and the stream, nowhere, or in the H.264 stream only)
    "sd-bt601-tagged": ((640, 480), BT601, "limited", "file"),
    "sd-bt601-untagged": ((640, 480), BT601, "limited", "nowhere"),
    "hd-bt709-untagged": ((1280, 720), BT709, "limited", "nowhere"),
    "hd-bt709-full-range": ((1280, 720), BT709, "full", "file"),
    "hd-bt601-full-range": ((1280, 720), BT601, "full", "file"),
    # as many Android phones record: declared in the H.264 stream only (no `colr` box)
    "hd-bt601-full-range-in-the-stream": ((1280, 720), BT601, "full", "stream"),
}
UNTAGGED = "setparams=colorspace=unknown:color_primaries=unknown:color_trc=unknown"


def _encode(target: Path, name: str) -> Path:
    (width, height), colours, colour_range, said = SOURCES[name]
    convert = f"zscale=min=gbr:rin=full:{colours}:r={colour_range},format=yuv420p"
    declared = []
    if said != "file":  # zscale names what it made, which the encoder and muxer would write
        convert += f",{UNTAGGED}"
    if said == "stream":  # only the encoder says it (the SPS's VUI)
        declared = ["-x264-params", "colormatrix=bt470bg:fullrange=on"]
    subprocess.run(
        [ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi",
         "-i", f"{_card(width, height)},{convert}", "-c:v", "libx264", "-preset", "ultrafast",
         "-qp", "0", *declared, str(target)],
        check=True,
    )  # fmt: skip
    return target


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path]]:
    return media.render_each(tmp_path_factory.mktemp("colours"), SOURCES, _encode)


def _patches(image: list[list[tuple[int, int, int]]], source: Path) -> list[tuple[int, int, int]]:
    """The colour at the middle of each patch of a frame of the card, where the picture is
    (an SD card is pillar-boxed)."""
    row = image[len(image) // 2]
    picture = pipeline.picture_rect(read_boxes(source))
    scale = len(row) / pipeline.WIDTH
    patch = picture.width / len(COLOURS)
    centres = [picture.x + patch * (index + 0.5) for index in range(len(COLOURS))]
    return [row[int(centre * scale)] for centre in centres]


@pytest.mark.parametrize("name", list(SOURCES))
def test_the_colours_come_out_as_they_went_in(
    rendered: dict[str, tuple[Path, Path]], name: str
) -> None:
    """Before, BT.601 colours were passed through as BT.709 (the red patch, 200,50,50, came
    out 210,62,46) and full-range ones as limited (209,39,39: contrast stretched, blacks and
    whites clipped)."""
    source, output = rendered[name]
    assert "yuv420p(tv, bt709, progressive)" in media.streams(output).video_line
    footage = media.frame(output, pipeline.BUMPER_SECONDS + 0.5)
    for made, wanted in zip(_patches(footage, source), COLOURS, strict=True):
        assert media.near(made, wanted, tolerance=6), (name, made, wanted)


@pytest.mark.parametrize(
    "name", ["sd-bt601-tagged", "hd-bt709-full-range", "hd-bt601-full-range-in-the-stream"]
)
def test_the_matrix_is_read_from_the_boxes_and_from_ffmpeg(
    rendered: dict[str, tuple[Path, Path]], name: str
) -> None:
    source = rendered[name][0]
    assert read_boxes(source).matrix == probe(source).matrix != ""


def test_an_untagged_source_is_read_as_players_read_it() -> None:
    """BT.601 up to SD sizes, BT.709 from 1280 wide or more than 576 lines."""
    sd, hd = MediaInfo(1.0, 720, 576, "h264"), MediaInfo(1.0, 1280, 720, "h264")
    assert pipeline.source_matrix(sd) == "smpte170m"
    assert "ispace=smpte170m" in pipeline.fitting(sd)
    assert pipeline.source_matrix(hd) == "bt709"
    assert "colorspace" not in pipeline.fitting(hd)  # nothing to convert


@pytest.mark.parametrize(
    "matrix", ["bt709", "smpte170m", "bt470bg", "fcc", "smpte240m", "bt2020nc", "bt2020c"]
)
def test_every_matrix_ffmpeg_names_is_converted_by_the_pipeline_s_filters(matrix: str) -> None:
    """ffmpeg runs the fitting filters for each matrix its probe may report (its colorspace
    filter refuses some of its own names, `bt2020c`)."""
    source = MediaInfo(1.0, 1920, 1080, "h264", matrix=matrix)
    done = subprocess.run(
        [ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-f", "lavfi",
         "-i", "testsrc2=s=1920x1080:r=30:d=0.1,format=yuv420p",
         "-vf", pipeline.fitting(source), "-f", "null", "-"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
