import struct
from dataclasses import replace
from pathlib import Path

import pytest

from anb.core.settings import Settings
from anb.processing.probe import (
    DAMAGED,
    NOT_MP4,
    QUICKTIME,
    UnacceptableVideo,
    UploadRules,
    check_iso_bmff,
    check_upload,
    packet_durations,
    parse_probe_output,
    probe,
    read_boxes,
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
    copied = {0: 45.5}  # the video stream is the first (and only) one copied
    info = parse_probe_output(stderr + done, 0, copied)
    assert (info.codec, info.width, info.height, info.duration) == ("hevc", 3840, 2160, 45.5)
    assert info.stream_index == 1
    with pytest.raises(UnacceptableVideo, match="incompleto"):
        parse_probe_output(stderr + done, 1, copied)
    with pytest.raises(UnacceptableVideo, match="incompleto"):
        parse_probe_output(stderr + done.replace("1365", "0"), 0, copied)
    with pytest.raises(UnacceptableVideo, match="incompleto"):
        parse_probe_output(stderr + done, 0, {})  # no packet of it copied


def test_pictures_too_large_or_too_fast_are_refused(clips: Clips) -> None:
    """What bounds the worker's memory (the picture) and work (frames per second)."""
    facts = check_upload(clips.landscape, RULES)
    with pytest.raises(UnacceptableVideo, match="el lado mayor puede medir a lo sumo 1919 px"):
        check_upload(clips.landscape, replace(RULES, max_long_side=1919))
    with pytest.raises(UnacceptableVideo, match="cuadros por segundo; se admiten a lo sumo"):
        check_upload(clips.landscape, replace(RULES, max_fps=facts.fps - 1))
    assert check_upload(clips.landscape, replace(RULES, max_long_side=1920, max_fps=facts.fps))


def test_the_largest_video_track_is_judged_not_a_thumbnail_track_before_it(
    clips: Clips,
) -> None:
    path = clips.thumbnail_track_first
    for info in (check_upload(path, RULES), probe(path)):
        assert (info.width, info.height, info.stream_index) == (1920, 1080, 1)
    assert check_upload(clips.landscape, RULES).stream_index == 0


def test_the_video_is_timed_by_its_own_track_not_a_longer_sound_track(clips: Clips) -> None:
    for read in (read_boxes, probe):  # the file lasts 20.5 s: its sound track
        assert read(clips.short_video_long_audio).duration == pytest.approx(19.5, abs=0.05)
    with pytest.raises(UnacceptableVideo, match=r"dura 19\.5 s; la duración debe estar entre 20"):
        check_upload(clips.short_video_long_audio, RULES)


@pytest.mark.parametrize("name", ["jugada.mov", "renombrado.mp4"])
def test_a_quicktime_file_is_refused_asking_for_mp4(
    clips: Clips, tmp_path: Path, name: str
) -> None:
    path = tmp_path / name
    path.write_bytes(clips.quicktime.read_bytes())
    with pytest.raises(UnacceptableVideo) as refused:
        check_upload(path, RULES)
    assert refused.value.detail == f"video_file: {QUICKTIME}"
    assert "MP4" in QUICKTIME


def test_probe_output_parsing_takes_the_largest_video_stream_and_its_own_facts() -> None:
    stderr = (
        "Input #0, mov,mp4,m4a,3gp,3g2,mj2, from 'x.mp4':\n"
        "  Duration: 00:00:30.00, start: 0.000000, bitrate: 9000 kb/s\n"
        "  Stream #0:0[0x1](und): Video: h264 (High), yuv420p, 640x360 [SAR 1:1 DAR 16:9], "
        "300 kb/s, 15 fps, 15 tbr, 15360 tbn (default)\n"
        "  Stream #0:1[0x2](und): Audio: aac (LC), 48000 Hz, stereo, fltp (default)\n"
        "  Stream #0:2[0x3](und): Video: hevc (Main), yuv420p, 1920x1080 [SAR 4:3 DAR 64:27], "
        "8000 kb/s, 29.97 fps, 29.97 tbr, 30k tbn\n"
        "    Side data:\n"
        "      Display Matrix: rotation of -90.00 degrees\n"
        "Stream mapping:\n  Stream #0:0 -> #0:0 (copy)\n  Stream #0:2 -> #0:1 (copy)\n"
        "frame=  750 fps=0.0 q=-1.0 Lsize=N/A time=00:00:30.00 bitrate=N/A speed=1e+03x\n"
    )
    info = parse_probe_output(stderr, 0, {0: 30.0, 1: 25.03})
    assert (info.codec, info.width, info.height, info.stream_index) == ("hevc", 1920, 1080, 2)
    assert (info.fps, info.sample_aspect, info.rotation) == (29.97, 4 / 3, 270)
    assert info.duration == 25.03  # the stream copied, not the file's 30 s


def test_packet_durations_span_each_streams_packets_in_display_order() -> None:
    framecrc = [
        b"#tb 0: 1/10240\n",
        b"#tb 1: 1/1000\n",
        b"0,      -2048,          0,     1024,     1117, 0x776d0497\n",
        b"1,          0,          0,       40,      500, 0x00000001\n",
        b"0,     210944,     214016,     1024,       68, 0xa1990300, F=0x0\n",
        b"0,     211968,     211968,     1024,       72, 0x31f405fb, F=0x0\n",
        b"1,        960,        960,       40,      500, 0x00000002\n",
    ]
    assert packet_durations(framecrc) == {0: 21.0, 1: 1.0}
