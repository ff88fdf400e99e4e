"""HDR sources (PQ and HLG in BT.2020, 10-bit HEVC, as phones record) become BT.709 SDR."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from anb.processing import mp4, pipeline
from anb.processing.ffmpeg import ffmpeg_exe
from anb.processing.probe import probe, read_boxes, read_media
from tests import media

HLG, PQ, SDR = "arib-std-b67", "smpte2084", "bt709"
CARD = "testsrc2=s=640x360:r=30:d=1,format=gbrp"
FROM_RGB = "zscale=tin=bt709:pin=bt709:min=gbr:rin=full"


# HDR declared only in the bitstream (the parameter sets' VUI), with no `colr` box: the
# transfer, and the encoder (x265: 10-bit HEVC; x264: 10-bit H.264, High 10) that declares it.
BITSTREAM_ONLY = {"hlg-hevc-vui": (HLG, "libx265"), "pq-h264-vui": (PQ, "libx264")}


def _encode(target: Path, name: str) -> Path:
    """The same test card in the transfer `name` says: HDR puts its white at the reference
    203 cd/m²."""
    transfer, encoder = BITSTREAM_ONLY.get(name, (name, ""))
    if transfer == SDR:
        convert = f"{FROM_RGB}:t=bt709:p=bt709:m=bt709:r=tv,format=yuv420p"
        codec = ["-c:v", "libx264", "-preset", "ultrafast"]
        tags = ["-color_primaries", "bt709", "-colorspace", "bt709", "-color_trc", transfer]
    else:
        convert = f"{FROM_RGB}:t={transfer}:p=bt2020:m=bt2020nc:r=tv:npl=203,format=yuv420p10le"
        codec = ["-c:v", "libx265", "-tag:v", "hvc1", "-x265-params", "log-level=error"]
        tags = ["-color_primaries", "bt2020", "-colorspace", "bt2020nc", "-color_trc", transfer]
    if encoder:  # the colours in the encoder's VUI only: none for the muxer's `colr`
        vui = f"colorprim=bt2020:transfer={transfer}:colormatrix=bt2020nc"
        codec, tags = ["-c:v", encoder, f"-{encoder[3:]}-params", f"log-level=error:{vui}"], []
        convert += ",setparams=color_primaries=unknown:color_trc=unknown:colorspace=unknown"
    subprocess.run(
        [ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi",
         "-i", f"{CARD},{convert}", *codec, *tags, str(target)],
        check=True,
    )  # fmt: skip
    return target


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path]]:
    """Each transfer's source and what the pipeline made of it."""
    names = (HLG, PQ, SDR, *BITSTREAM_ONLY)
    return media.render_each(tmp_path_factory.mktemp("hdr"), names, _encode)


@pytest.mark.parametrize("transfer", [HLG, PQ, SDR])
def test_the_transfer_is_read_from_the_boxes_and_from_ffmpeg(
    clips: dict[str, tuple[Path, Path]], transfer: str
) -> None:
    source = clips[transfer][0]
    assert read_boxes(source).transfer == probe(source).transfer == transfer
    assert read_boxes(source).hdr == (transfer != SDR)


@pytest.mark.parametrize("name", BITSTREAM_ONLY)
def test_hdr_declared_only_in_the_bitstream_is_read(
    clips: dict[str, tuple[Path, Path]], name: str
) -> None:
    """From H.264's SPS in-process; HEVC's are left to ffmpeg."""
    source = clips[name][0]
    assert b"colr" not in source.read_bytes()
    if BITSTREAM_ONLY[name][1] == "libx265":
        with pytest.raises(mp4.Unsupported):
            read_boxes(source)
    else:
        assert read_boxes(source).transfer == BITSTREAM_ONLY[name][0]
    assert read_media(source).transfer == probe(source).transfer == BITSTREAM_ONLY[name][0]
    assert read_media(source).hdr


def test_an_8_bit_track_without_colr_is_read_from_the_boxes(tmp_path: Path) -> None:
    source = tmp_path / "untagged.mp4"
    subprocess.run(
        [ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i", CARD,
         "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", str(source)],
        check=True,
    )  # fmt: skip
    assert b"colr" not in source.read_bytes()
    assert read_boxes(source).transfer == ""  # no ffmpeg run for the everyday upload


@pytest.mark.parametrize("transfer", [*BITSTREAM_ONLY, HLG, PQ, SDR])
def test_every_output_is_tagged_bt709(clips: dict[str, tuple[Path, Path]], transfer: str) -> None:
    output = clips[transfer][1]
    assert "yuv420p(tv, bt709, progressive)" in media.streams(output).video_line
    assert read_boxes(output).transfer == SDR


@pytest.mark.parametrize("transfer", [HLG, PQ, *BITSTREAM_ONLY])
def test_hdr_is_tone_mapped_close_to_the_sdr_rendering(
    clips: dict[str, tuple[Path, Path]], transfer: str
) -> None:
    at = pipeline.BUMPER_SECONDS + 0.5
    tone_mapped, sdr = media.frame(clips[transfer][1], at), media.frame(clips[SDR][1], at)
    # Without tone mapping the error is 69 (HLG) and 89 (PQ); tone-mapped 16 and 18.
    assert _mean_error(tone_mapped, sdr) < 22
    assert media.luma(tone_mapped) == pytest.approx(media.luma(sdr), abs=14)


def test_an_sdr_source_is_not_tone_mapped(clips: dict[str, tuple[Path, Path]]) -> None:
    source, output = clips[SDR]
    assert pipeline.tone_mapping(read_boxes(source)) == ""
    picture = media.frame(source, 0.5)
    assert _mean_error(media.frame(output, pipeline.BUMPER_SECONDS + 0.5), picture) < 6


def _mean_error(image: list[list[tuple[int, ...]]], other: list[list[tuple[int, ...]]]) -> float:
    """The mean absolute difference per RGB sample of two images of the same size."""
    samples = [
        abs(a - b)
        for row, other_row in zip(image, other, strict=True)
        for pixel, other_pixel in zip(row, other_row, strict=True)
        for a, b in zip(pixel, other_pixel, strict=True)
    ]
    return sum(samples) / len(samples)
