import struct
from dataclasses import replace
from pathlib import Path

import pytest

from anb.core.settings import Settings
from anb.processing.probe import (
    DAMAGED,
    NOT_MP4,
    UnacceptableVideo,
    UploadRules,
    check_iso_bmff,
    check_upload,
    parse_probe_output,
)
from tests.clips import Clips

RULES = UploadRules.from_settings(Settings())  # the contract's rules: 20-60 s, 1080p


def _boxes(path: Path) -> list[tuple[bytes, int, int]]:
    data, boxes, offset = path.read_bytes(), [], 0
    while offset < len(data):
        size, kind = struct.unpack(">I4s", data[offset : offset + 8])
        boxes.append((kind, offset, size))
        offset += size
    return boxes


def test_accepted_clips_report_their_facts(clips: Clips) -> None:
    landscape = check_upload(clips.landscape, RULES)
    assert (landscape.width, landscape.height, landscape.codec) == (1920, 1080, "h264")
    assert landscape.duration == pytest.approx(21, abs=0.2)
    assert check_upload(clips.portrait, RULES).short_side == 1080


def test_a_file_cut_exactly_between_boxes_is_damaged(clips: Clips, tmp_path: Path) -> None:
    boxes = _boxes(clips.landscape)
    mdat = next(offset for kind, offset, _ in boxes if kind == b"mdat")
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(clips.landscape.read_bytes()[:mdat])  # ftyp + moov, no media data
    check_iso_bmff(cut)  # the boxes themselves are whole...
    with pytest.raises(UnacceptableVideo, match="incompleto"):
        check_upload(cut, RULES)  # ...but the samples they index are missing


def test_trailing_padding_box_is_fine(clips: Clips, tmp_path: Path) -> None:
    padded = tmp_path / "padded.mp4"
    padded.write_bytes(
        clips.landscape.read_bytes() + struct.pack(">I4s", 1024, b"free") + bytes(1016)
    )
    assert check_upload(padded, RULES).width == 1920


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"", NOT_MP4),
        (b"\x00\x00\x00\x08", NOT_MP4),
        (struct.pack(">I4s", 16, b"moov") + bytes(8), NOT_MP4),  # no ftyp first
        (struct.pack(">I4s", 16, b"ftyp") + bytes(8), DAMAGED),  # no moov
        (struct.pack(">I4s", 4, b"ftyp") + bytes(8), NOT_MP4),  # impossible size
        (
            struct.pack(">I4s", 16, b"ftyp") + bytes(8) + struct.pack(">I4s", 99, b"mo\x00v"),
            DAMAGED,
        ),
        (struct.pack(">I4s", 16, b"ftyp") + bytes(8) + struct.pack(">I4s", 4096, b"moov"), DAMAGED),
    ],
)
def test_box_walk_refuses_what_is_not_a_whole_iso_bmff_file(
    tmp_path: Path, content: bytes, reason: str
) -> None:
    path = tmp_path / "x.mp4"
    path.write_bytes(content)
    with pytest.raises(UnacceptableVideo) as refused:
        check_iso_bmff(path)
    assert refused.value.detail == f"video_file: {reason}"


def test_probe_output_parsing_handles_other_stream_orders() -> None:
    stderr = (
        "Input #0, mov,mp4,m4a,3gp,3g2,mj2, from 'x.mp4':\n"
        "  Duration: 00:00:45.50, start: 0.000000, bitrate: 9000 kb/s\n"
        "  Stream #0:0[0x1](und): Audio: aac (LC) (mp4a / 0x6134706D), 48000 Hz, stereo\n"
        "  Stream #0:1[0x2](und): Video: hevc (Main) (hvc1 / 0x31637668), yuv420p(tv, bt709), "
        "3840x2160 [SAR 1:1 DAR 16:9], 8000 kb/s, 30 fps\n"
        "Stream mapping:\n  Stream #0:1 -> #0:0 (copy)\n"
    )
    done = "frame= 1365 fps=0.0 q=-1.0 Lsize=N/A time=00:00:45.50 bitrate=N/A speed=1e+03x\n"
    info = parse_probe_output(stderr + done, 0)
    assert (info.codec, info.width, info.height, info.duration) == ("hevc", 3840, 2160, 45.5)
    with pytest.raises(UnacceptableVideo, match="incompleto"):
        parse_probe_output(stderr + done, 1)
    with pytest.raises(UnacceptableVideo, match="incompleto"):
        parse_probe_output(stderr + done.replace("1365", "0"), 0)


def test_pictures_too_large_or_too_fast_are_refused(clips: Clips) -> None:
    """What bounds the worker's memory (the picture) and work (frames per second)."""
    facts = check_upload(clips.landscape, RULES)
    with pytest.raises(UnacceptableVideo, match="el lado mayor puede medir a lo sumo 1919 px"):
        check_upload(clips.landscape, replace(RULES, max_long_side=1919))
    with pytest.raises(UnacceptableVideo, match="cuadros por segundo; se admiten a lo sumo"):
        check_upload(clips.landscape, replace(RULES, max_fps=facts.fps - 1))
    assert check_upload(clips.landscape, replace(RULES, max_long_side=1920, max_fps=facts.fps))
