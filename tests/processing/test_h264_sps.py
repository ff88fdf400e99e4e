"""The H.264 SPS reader agrees with ffmpeg on every layout x264 writes (interlacing,
cropping, sample aspect ratios from the table and extended, 4:4:4 at 10 bits, with and
without colours), and on one written here with what x264 never puts in an SPS (scaling
lists, picture order type 1)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from anb.processing import h264_sps
from anb.processing.ffmpeg import ffmpeg_exe
from anb.processing.probe import probe, read_boxes

LAYOUTS = {
    # name: (x264 parameters, pixel format)
    "colours": ("colormatrix=smpte170m:transfer=bt709", "yuv420p"),
    "no colours": ("", "yuv420p"),
    "interlaced, cropped": ("interlaced=1:colormatrix=bt709", "yuv420p"),
    "sar from the table": ("sar=4/3:colormatrix=smpte240m", "yuv420p"),
    "extended sar": ("sar=7/5:colormatrix=bt2020nc:transfer=arib-std-b67", "yuv420p"),
    "4:4:4, 10 bits": ("colormatrix=bt709:transfer=smpte2084", "yuv444p10le"),
}


@pytest.fixture(scope="module")
def encoded(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    directory, made = tmp_path_factory.mktemp("sps"), {}
    for index, (name, (params, pixels)) in enumerate(LAYOUTS.items()):
        target = made[name] = directory / f"{index}.mp4"
        subprocess.run(
            [ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-f", "lavfi",
             "-i", f"testsrc2=s=320x180:r=10:d=0.5,format={pixels}", "-c:v", "libx264",
             "-preset", "ultrafast", "-x264-params", params or "log=-1", str(target)],
            check=True,
        )  # fmt: skip
    return made


@pytest.mark.parametrize("name", LAYOUTS)
def test_the_colours_are_read_as_ffmpeg_reads_them(encoded: dict[str, Path], name: str) -> None:
    source = encoded[name]
    assert b"colr" not in source.read_bytes()  # the stream is all that declares them
    found, expected = read_boxes(source), probe(source)
    assert (found.transfer, found.matrix) == (expected.transfer, expected.matrix)
    assert found.matrix != "" or name == "no colours"


def _first_sps(path: Path) -> bytes:
    data = path.read_bytes()
    at = data.index(b"avcC") + 4 + 6  # the first SPS's length
    return data[at + 2 : at + 2 + int.from_bytes(data[at : at + 2], "big")]


@pytest.mark.parametrize("name", LAYOUTS)
def test_the_profile_and_bit_depth_are_read(encoded: dict[str, Path], name: str) -> None:
    sps = _first_sps(encoded[name])
    deep = name == "4:4:4, 10 bits"
    assert h264_sps.read_sps(sps).bit_depth == (10 if deep else 8)
    if deep:  # the High profiles' fields were read
        assert sps[1] in h264_sps.HIGH_PROFILES


@pytest.mark.parametrize(
    "payload",
    [b"", b"\x67\x64", b"\x67\x64\x00\x1e" + bytes(12), b"\x67\x64\x00\x1e\xff\xff"],
    ids=["empty", "cut after the profile", "codes of zeros", "cut in the codes"],
)
def test_a_broken_sps_raises(payload: bytes) -> None:
    with pytest.raises(h264_sps.BadParameterSet):
        h264_sps.read_sps(payload)


class _BitWriter:
    """An SPS written field by field (ITU-T H.264 7.3.2.1.1): the test's own encoder."""

    def __init__(self) -> None:
        self.bits = ""

    def u(self, count: int, value: int) -> None:
        self.bits += format(value, f"0{count}b")

    def ue(self, value: int) -> None:
        code = format(value + 1, "b")
        self.bits += "0" * (len(code) - 1) + code

    def se(self, value: int) -> None:
        self.ue(2 * value - 1 if value > 0 else -2 * value)

    def nal_unit(self) -> bytes:
        bits = self.bits + "1"  # rbsp_stop_one_bit, then zeros to the byte
        bits += "0" * (-len(bits) % 8)
        payload = int(bits, 2).to_bytes(len(bits) // 8, "big")
        return b"\x67" + payload.replace(b"\0\0", b"\0\0\3")  # emulation prevention


def _sps_with_scaling_lists() -> bytes:
    """High profile, 4:2:0 8-bit, three scaling lists sent (one ended early by a zero scale),
    picture order type 1 with a cycle of 3, cropping, an extended SAR, BT.601 colours."""
    sps = _BitWriter()
    sps.u(8, 100), sps.u(8, 0), sps.u(8, 31), sps.ue(0)  # High, level 3.1, sps 0
    sps.ue(1), sps.ue(0), sps.ue(0), sps.u(1, 0)  # 4:2:0, 8 bits, no transform bypass
    sps.u(1, 1)  # seq_scaling_matrix_present_flag
    for index in range(8):
        sent = index in (0, 2, 6)
        sps.u(1, sent)
        if index == 0:
            for delta in (3, -2, -9):  # 8 -> 11 -> 9 -> 0: the default list from here
                sps.se(delta)
        elif sent:
            for n in range(16 if index < 6 else 64):
                sps.se(1 if n % 2 else -1)
    sps.ue(0), sps.ue(1)  # log2_max_frame_num_minus4, pic_order_cnt_type 1
    sps.u(1, 0), sps.se(-2), sps.se(1), sps.ue(3)  # offsets, then a cycle of 3
    for offset in (1, -1, 2):
        sps.se(offset)
    sps.ue(1), sps.u(1, 0), sps.ue(19), sps.ue(11)  # refs, gaps, 320x192
    sps.u(1, 1), sps.u(1, 1)  # frame_mbs_only, direct_8x8_inference
    sps.u(1, 1)  # frame_cropping_flag: 320x180
    for offset in (0, 0, 0, 6):
        sps.ue(offset)
    sps.u(1, 1)  # vui_parameters_present_flag
    sps.u(1, 1), sps.u(8, 255), sps.u(16, 7), sps.u(16, 5)  # extended SAR 7:5
    sps.u(1, 0)  # no overscan info
    sps.u(1, 1), sps.u(3, 5), sps.u(1, 1)  # video signal type: unspecified, full range
    sps.u(1, 1), sps.u(8, 6), sps.u(8, 6), sps.u(8, 6)  # colours: SMPTE 170M
    sps.u(1, 0), sps.u(1, 0), sps.u(1, 0), sps.u(1, 0), sps.u(1, 0)  # no timing, HRD, ...
    return sps.nal_unit()


def test_scaling_lists_and_picture_order_type_1_are_read_as_ffmpeg_reads_them(
    tmp_path: Path,
) -> None:
    nal_unit = _sps_with_scaling_lists()
    assert h264_sps.read_sps(nal_unit) == h264_sps.SequenceFacts(8, (6, 6))
    stream = tmp_path / "sps.h264"
    stream.write_bytes(b"\0\0\0\1" + nal_unit)
    traced = subprocess.run(
        [ffmpeg_exe(), "-hide_banner", "-loglevel", "trace", "-f", "h264", "-i", str(stream),
         "-c", "copy", "-bsf:v", "trace_headers", "-f", "null", "-"],
        capture_output=True, text=True,
    ).stderr  # fmt: skip
    read_by_ffmpeg = dict(re.findall(r"\] \d+ +(\w+) +[01]+ = (\d+)", traced))
    assert read_by_ffmpeg["colour_description_present_flag"] == "1"
    assert read_by_ffmpeg["matrix_coefficients"] == "6"
    assert read_by_ffmpeg["num_ref_frames_in_pic_order_cnt_cycle"] == "3"
