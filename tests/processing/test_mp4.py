"""The in-process MP4 reader against ffmpeg: the same verdict and facts on real clips, hostile
sample tables and box sizes refused quickly, and the layouts it leaves to ffmpeg judged there."""

from __future__ import annotations

import contextlib
import random
import resource
import struct
import subprocess
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import fields, replace
from operator import itemgetter
from pathlib import Path

import pytest

from anb.core.settings import Settings
from anb.processing import mp4, pipeline
from anb.processing.ffmpeg import ffmpeg_exe
from anb.processing.probe import (
    DAMAGED,
    MediaInfo,
    UnacceptableVideo,
    UploadRules,
    _check_rules,
    check_iso_bmff,
    check_upload,
    probe,
    read_boxes,
)
from tests.clips import Clips, encode

RULES = UploadRules.from_settings(Settings())  # the contract's rules: 20-60 s, 1080p
STBL = (b"moov", b"trak", b"mdia", b"minf", b"stbl")
QUICK_CPU_SECONDS = 0.05
SMALL = ("-f", "lavfi", "-i", "testsrc2=s=320x240:r=25:d=2")
X264 = ("-c:v", "libx264", "-pix_fmt", "yuv420p")
X265 = ("-c:v", "libx265", "-preset", "ultrafast", "-x265-params", "log-level=error")
MADE_BY_FFMPEG = {  # clip: ffmpeg's arguments before the output file
    "fps_ntsc_mpeg4": ("-f", "lavfi", "-i", "testsrc2=s=320x240:r=30000/1001:d=2", "-c:v", "mpeg4"),
    "sound_first_b_frames": (
        "-f", "lavfi", "-i", "sine=frequency=440:duration=21",
        "-f", "lavfi", "-i", "color=c=0x1d3557:s=1920x1080:r=10:d=21",
        "-map", "0:a", "-map", "1:v", *X264, "-preset", "veryfast", "-c:a", "aac",
    ),
    "avc3": (*SMALL, *X264, "-preset", "ultrafast", "-tag:v", "avc3"),
    "hevc_hvc1": (*SMALL, *X265, "-tag:v", "hvc1"),
    "hevc_hev1": (*SMALL, *X265, "-tag:v", "hev1"),
    "vp9": (*SMALL, "-c:v", "libvpx-vp9", "-deadline", "realtime", "-cpu-used", "8"),
    "av1": (*SMALL, "-c:v", "libsvtav1", "-preset", "12"),
    "mjpeg": (*SMALL, "-c:v", "mjpeg"),
}  # fmt: skip
ENCODED = {  # clip: width, height, seconds and extra arguments for tests.clips.encode
    "anamorphic": (1440, 1080, 21, ("-aspect", "16:9")),
    "fps_60": (1920, 1080, 3, ("-r", "60")),
    "fragmented": (1920, 1080, 21, ("-movflags", "frag_keyframe+empty_moov")),
}
ROTATIONS = (90, 180, 270)

Verdict = tuple[str | None, MediaInfo | None]  # refusal reason, facts


def _ffmpeg(target: Path, *args: str) -> Path | None:
    """`target` made by ffmpeg from `args`; None when this ffmpeg lacks what they need."""
    command = [ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", *args, str(target)]
    done = subprocess.run(command, capture_output=True, check=False)
    return target if done.returncode == 0 else None


@pytest.fixture(scope="module")
def more_clips(clips: Clips, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path | None]:
    """Clips beyond the shared ones: display matrices, pixel aspect, frame rates, track
    order, other codecs, sample tables that point at missing data, fragments."""
    directory = tmp_path_factory.mktemp("mp4")
    with ThreadPoolExecutor() as pool:
        futures = {
            name: pool.submit(_ffmpeg, directory / f"{name}.mp4", *args)
            for name, args in MADE_BY_FFMPEG.items()
        }
        for name, (width, height, seconds, extra) in ENCODED.items():
            futures[name] = pool.submit(
                encode, directory / f"{name}.mp4", width=width, height=height,
                seconds=seconds, extra=extra,
            )  # fmt: skip
        for degrees in ROTATIONS:
            futures[f"rotated_{degrees}"] = pool.submit(
                _ffmpeg, directory / f"rotated_{degrees}.mp4", "-display_rotation",
                str(degrees), "-i", str(clips.landscape), "-c", "copy",
            )  # fmt: skip
        made = {name: future.result() for name, future in futures.items()}
    made["index_without_media"] = _index_without_media(clips.landscape, directory)
    made["media_cut_inside_mdat"] = _media_cut_inside_mdat(clips.landscape, directory)
    interleaved = made["sound_first_b_frames"]
    made["two_mdats"] = interleaved and _two_mdats(interleaved, directory / "two_mdats.mp4")
    made["first_video_track_disabled"] = _patched(
        clips.landscape, directory / "disabled.mp4", (b"moov", b"trak", b"tkhd"), 8, ">I", 0
    )
    made["cover_art"] = _with_cover_art(clips.landscape, directory)
    made["cover_art_first"] = _cover_art_first(made["cover_art"], directory)
    return made


def _with_cover_art(source: Path, directory: Path) -> Path:
    """`source` with a 2400x2400 cover picture, larger than the footage (ffmpeg writes it
    in the moov's udta, after the tracks; ffmpeg reads it as an "attached pic" stream)."""
    cover, target = directory / "cover.jpg", directory / "cover_art.mp4"
    _ffmpeg(cover, "-f", "lavfi", "-i", "color=c=red:s=2400x2400", "-frames:v", "1")
    _ffmpeg(
        target, "-i", str(source), "-i", str(cover), "-map", "0", "-map", "1", "-c", "copy",
        "-disposition:v:1", "attached_pic",
    )  # fmt: skip
    return target


def _cover_art_first(source: Path, directory: Path) -> Path:
    """`source` (moov at the end) with its udta moved ahead of the tracks: ffmpeg then makes
    the cover's stream first, and numbers the footage's stream 1."""
    data = bytearray(source.read_bytes())
    moov = _box(data, b"moov")
    moov_end = moov + struct.unpack_from(">I", data, moov)[0]
    children, at = [], moov + 8
    while at < moov_end:
        size, kind = struct.unpack_from(">I4s", data, at)
        children.append((kind != b"mvhd", kind != b"udta", bytes(data[at : at + size])))
        at += size
    ahead = sorted(children, key=itemgetter(0, 1))  # stable: the tracks keep their order
    data[moov + 8 : moov_end] = b"".join(box for *_, box in ahead)
    target = directory / "cover_art_first.mp4"
    target.write_bytes(data)
    return target


def _box(data: bytes | bytearray, *path: bytes, start: int = 0, end: int | None = None) -> int:
    """Offset of the first box at `path` (top-level type first) in a well-formed file."""
    end = len(data) if end is None else end
    while start + 8 <= end:
        size, kind = struct.unpack_from(">I4s", data, start)
        if kind == path[0]:
            if len(path) == 1:
                return start
            return _box(data, *path[1:], start=start + 8, end=start + size)
        start += size
    raise KeyError(path)


def _patched(source: Path, target: Path, path: tuple[bytes, ...], at: int, fmt: str, value: int):
    """A copy of `source` with `value` packed `at` bytes into the box at `path`."""
    data = bytearray(source.read_bytes())
    struct.pack_into(fmt, data, _box(data, *path) + at, value)
    target.write_bytes(data)
    return target


def _index_without_media(source: Path, directory: Path) -> Path:
    """A faststart file cut right before its mdat: whole boxes indexing missing samples."""
    data = source.read_bytes()
    target = directory / "index_only.mp4"
    target.write_bytes(data[: _box(data, b"mdat")])
    return target


def _media_cut_inside_mdat(source: Path, directory: Path) -> Path:
    """The mdat cut in half with its size rewritten: the boxes end at EOF, the second half
    of the samples are past it."""
    data = source.read_bytes()
    mdat = _box(data, b"mdat")
    size = struct.unpack_from(">I", data, mdat)[0] // 2
    target = directory / "mdat_cut.mp4"
    target.write_bytes(data[:mdat] + struct.pack(">I", size) + data[mdat + 4 : mdat + size])
    return target


def _chunk_offsets(data: bytes | bytearray) -> list[list[tuple[int, int]]]:
    """Each track's chunk offsets (stco), each with where it is written."""
    moov = _box(data, b"moov")
    tracks, at = [], moov + 8
    while at < moov + struct.unpack_from(">I", data, moov)[0]:
        size, kind = struct.unpack_from(">I4s", data, at)
        if kind == b"trak":
            stco = _box(data, *STBL[2:], b"stco", start=at + 8, end=at + size)
            count = struct.unpack_from(">I", data, stco + 12)[0]
            offsets = struct.unpack_from(f">{count}I", data, stco + 16)
            tracks.append([(stco + 16 + 4 * index, offset) for index, offset in enumerate(offsets)])
        at += size
    return tracks


def _two_mdats(source: Path, target: Path) -> Path:
    """`source` (moov at the end, sound and video interleaved) with its mdat split in two at
    a chunk boundary, the chunk offsets past it moved accordingly."""
    data = bytearray(source.read_bytes())
    mdat, chunks = _box(data, b"mdat"), [chunk for track in _chunk_offsets(data) for chunk in track]
    split = sorted(offset for _, offset in chunks)[len(chunks) // 2]
    for field, offset in chunks:
        if offset >= split:
            struct.pack_into(">I", data, field, offset + 8)
    mdat_end = mdat + struct.unpack_from(">I", data, mdat)[0]
    struct.pack_into(">I", data, mdat, split - mdat)
    data[split:split] = struct.pack(">I4s", mdat_end - split + 8, b"mdat")
    target.write_bytes(data)
    return target


def _judge(path: Path, read: Callable[[Path], MediaInfo]) -> Verdict:
    """What the upload check says, with `read` for the stream facts."""
    try:
        check_iso_bmff(path)
        info = read(path)
    except UnacceptableVideo as refused:
        return refused.detail, None
    try:
        _check_rules(info, RULES)
    except UnacceptableVideo as refused:
        return refused.detail, info
    return None, info


def _upload_verdict(path: Path) -> Verdict:
    try:
        info = check_upload(path, RULES)
    except UnacceptableVideo as refused:
        return refused.detail, None
    return None, info


def _assert_same(got: Verdict, expected: Verdict) -> None:
    assert got[0] == expected[0]
    assert (got[1] is None) == (expected[1] is None)
    if got[1] is None or expected[1] is None:
        return
    ours, ffmpegs = got[1], expected[1]
    assert ours.duration == pytest.approx(ffmpegs.duration, abs=0.05)
    assert ours.fps == pytest.approx(ffmpegs.fps, abs=0.01)
    assert pipeline.nominal_rate(ours) == pipeline.nominal_rate(ffmpegs)
    assert ours.transfer == ffmpegs.transfer
    assert ours.sample_aspect == pytest.approx(ffmpegs.sample_aspect, rel=1e-3)
    exact = ("width", "height", "rotation", "codec", "stream_index")
    assert [getattr(ours, name) for name in exact] == [getattr(ffmpegs, name) for name in exact]


def _children_cpu() -> float:
    """CPU seconds of the child processes waited for so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


SHARED = [field.name for field in fields(Clips)]
MORE = [
    "rotated_90", "rotated_180", "rotated_270", "anamorphic", "fps_60", "fps_ntsc_mpeg4",
    "sound_first_b_frames", "avc3", "hevc_hvc1", "hevc_hev1", "vp9", "av1",
    "index_without_media", "media_cut_inside_mdat", "two_mdats", "first_video_track_disabled",
    "cover_art",
]  # fmt: skip
FALLBACKS = ["fragmented", "mjpeg", "cover_art_first"]


def _clip(name: str, clips: Clips, more_clips: dict[str, Path | None]) -> Path:
    path = getattr(clips, name) if name in SHARED else more_clips[name]
    if path is None:
        pytest.skip(f"this ffmpeg cannot make the {name} clip")
    return path


@pytest.mark.parametrize("name", SHARED + MORE)
def test_the_boxes_say_what_ffmpeg_says(
    name: str, clips: Clips, more_clips: dict[str, Path | None]
) -> None:
    path = _clip(name, clips, more_clips)
    _assert_same(_judge(path, read_boxes), _judge(path, probe))


def test_the_expected_facts_come_from_the_boxes(
    clips: Clips, more_clips: dict[str, Path | None]
) -> None:
    rotations = [read_boxes(more_clips[f"rotated_{degrees}"]).rotation for degrees in ROTATIONS]
    assert rotations == list(ROTATIONS)
    anamorphic = read_boxes(more_clips["anamorphic"])
    assert anamorphic.display_size == pytest.approx((1920, 1080))
    assert read_boxes(more_clips["fps_60"]).fps == 60
    assert _upload_verdict(more_clips["index_without_media"])[0] == f"video_file: {DAMAGED}"
    assert _upload_verdict(more_clips["sound_first_b_frames"])[1] is not None
    assert _upload_verdict(more_clips["two_mdats"])[1] is not None


def test_cover_art_is_never_taken_for_the_footage(
    clips: Clips, more_clips: dict[str, Path | None]
) -> None:
    after = check_upload(_clip("cover_art", clips, more_clips), RULES)
    assert (after.width, after.height, after.stream_index) == (1920, 1080, 0)
    ahead = check_upload(_clip("cover_art_first", clips, more_clips), RULES)
    assert (ahead.width, ahead.height, ahead.stream_index) == (1920, 1080, 1)


def test_an_upload_judged_from_the_boxes_spawns_no_process(clips: Clips) -> None:
    before = _children_cpu()
    assert check_upload(clips.landscape, RULES).width == 1920
    assert _children_cpu() == before


@pytest.mark.parametrize("name", FALLBACKS)
def test_layouts_the_reader_leaves_are_judged_by_ffmpeg(
    name: str, clips: Clips, more_clips: dict[str, Path | None]
) -> None:
    path = _clip(name, clips, more_clips)
    with pytest.raises(mp4.Unsupported):
        read_boxes(path)
    before = _children_cpu()
    verdict = _upload_verdict(path)
    assert _children_cpu() > before  # ffmpeg ran
    expected = _judge(path, probe)
    assert verdict[0] == expected[0]
    if verdict[1] is not None:  # accepted: the facts are ffmpeg's
        _assert_same(verdict, expected)


def test_a_fragmented_mp4_is_accepted(clips: Clips, more_clips: dict[str, Path | None]) -> None:
    info = check_upload(_clip("fragmented", clips, more_clips), RULES)
    assert (info.width, info.height, info.codec) == (1920, 1080, "h264")
    assert info.duration == pytest.approx(21, abs=0.1)


def _avcc_without_sps(data: bytearray) -> None:
    avcc = data.index(b"avcC", _box(data, *STBL, b"stsd"))
    data[avcc + 4 + 5] = 0xE0  # reserved bits, no SPS


def _sps_of_zeros(data: bytearray) -> None:
    """A High profile SPS (one that declares a bit depth) whose fields after the level
    (Exp-Golomb codes) are zeros: codes without an end."""
    sps = data.index(b"avcC", _box(data, *STBL, b"stsd")) + 4 + 6
    length = struct.unpack_from(">H", data, sps)[0]
    data[sps + 3] = 100
    data[sps + 6 : sps + 2 + length] = bytes(length - 4)


def _field(path: tuple[bytes, ...], at: int, fmt: str, value: int) -> Callable[[bytearray], None]:
    return lambda data: struct.pack_into(fmt, data, _box(data, *path) + at, value)


def _both(*patches: Callable[[bytearray], None]) -> Callable[[bytearray], None]:
    def apply(data: bytearray) -> None:
        for patch in patches:
            patch(data)

    return apply


HOSTILE = {
    "stsz_claims_2**31_samples": _field((*STBL, b"stsz"), 16, ">I", 2**31),
    "stsz_2**31_samples_of_one_size": _both(
        _field((*STBL, b"stsz"), 12, ">I", 1), _field((*STBL, b"stsz"), 16, ">I", 2**31)
    ),
    "stsc_claims_2**31_runs": _field((*STBL, b"stsc"), 12, ">I", 2**31),
    "stts_claims_2**31_entries": _field((*STBL, b"stts"), 12, ">I", 2**31),
    "elst_claims_2**31_edits": _field((b"moov", b"trak", b"edts", b"elst"), 12, ">I", 2**31),
    "chunk_offset_past_eof": _field((*STBL, b"stco"), 16, ">I", 2**32 - 1),
    "chunk_offset_into_the_moov": _field((*STBL, b"stco"), 16, ">I", 40),
    "box_smaller_than_its_header": _field((*STBL, b"stts"), 0, ">I", 4),
    "trak_larger_than_the_moov": _field((b"moov", b"trak"), 0, ">I", 2**32 - 16),
    "64_bit_size_of_2**63": _both(
        _field((b"moov", b"trak"), 0, ">I", 1), _field((b"moov", b"trak"), 8, ">Q", 2**63)
    ),
    "avcC_without_sps": _avcc_without_sps,
    "sps_of_zeros": _sps_of_zeros,
}


@pytest.mark.parametrize("patch", HOSTILE.values(), ids=HOSTILE.keys())
def test_hostile_tables_and_sizes_are_refused_quickly_as_damaged(
    clips: Clips, tmp_path: Path, patch: Callable[[bytearray], None]
) -> None:
    data = bytearray(clips.landscape.read_bytes())
    patch(data)
    hostile = tmp_path / "hostile.mp4"
    hostile.write_bytes(data)
    children, started = _children_cpu(), time.process_time()
    with pytest.raises(UnacceptableVideo) as refused:
        check_upload(hostile, RULES)
    assert time.process_time() - started < QUICK_CPU_SECONDS
    assert _children_cpu() == children  # judged in-process
    assert refused.value.detail == f"video_file: {DAMAGED}"


def test_a_chunk_on_the_header_between_two_mdats_is_damaged(
    clips: Clips, more_clips: dict[str, Path | None], tmp_path: Path
) -> None:
    data = bytearray(_clip("two_mdats", clips, more_clips).read_bytes())
    second = _box(data, b"mdat") + struct.unpack_from(">I", data, _box(data, b"mdat"))[0]
    video = _chunk_offsets(data)[1]  # the sound track comes first
    field = min((chunk for chunk in video if chunk[1] > second), key=lambda chunk: chunk[1])[0]
    struct.pack_into(">I", data, field, second)  # the chunk now starts on the mdat header
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(data)
    with pytest.raises(UnacceptableVideo) as refused:
        read_boxes(broken)
    assert refused.value.detail == f"video_file: {DAMAGED}"


def test_deeply_nested_boxes_cost_nothing(clips: Clips, tmp_path: Path) -> None:
    """A track nested 100,000 deep ahead of the real one: not walked, not recursed into."""
    data = bytearray(clips.portrait.read_bytes())  # moov at the end: no offset moves
    moov = _box(data, b"moov")
    depth = 100_000
    nested = b"".join(struct.pack(">I4s", 8 * (depth - level), b"trak") for level in range(depth))
    struct.pack_into(">I", data, moov, struct.unpack_from(">I", data, moov)[0] + len(nested))
    data[moov + 8 : moov + 8] = nested
    deep = tmp_path / "deep.mp4"
    deep.write_bytes(data)
    started = time.process_time()
    info = read_boxes(deep)
    assert time.process_time() - started < QUICK_CPU_SECONDS
    assert replace(info, stream_index=0) == read_boxes(clips.portrait)
    assert info.stream_index == 1  # ffmpeg makes a stream of the nested trak too


@pytest.mark.parametrize("name", ["landscape", "sound_first_b_frames", "hevc_hvc1"])
def test_random_damage_to_the_moov_only_ever_reads_as_unacceptable_or_unsupported(
    name: str, clips: Clips, more_clips: dict[str, Path | None], tmp_path: Path
) -> None:
    source = _clip(name, clips, more_clips).read_bytes()
    moov = _box(source, b"moov")
    moov_end = moov + struct.unpack_from(">I", source, moov)[0]
    damaged, rng = tmp_path / "damaged.mp4", random.Random(name)
    for _ in range(300):
        data = bytearray(source)
        for _ in range(rng.randint(1, 4)):
            at = rng.randrange(moov, moov_end - 4)
            value = rng.choice([0, 1, 7, 8, 2**31, 2**32 - 1, rng.randrange(2**32)])
            struct.pack_into(">I", data, at, value)
        damaged.write_bytes(data)
        with contextlib.suppress(UnacceptableVideo, mp4.Unsupported):  # anything else fails
            read_boxes(damaged)
