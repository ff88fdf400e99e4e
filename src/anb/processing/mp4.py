"""The facts of an MP4's main video track, read in-process from its ISO-BMFF boxes.

Only box headers and the `moov` box (track headers and sample tables) are read, never the
media data. Every count read from the file is checked against the bytes that would have to
hold it, so a hostile file can make the reader neither allocate nor loop without bound, and
anything wrong raises an `Mp4Error`. Layouts it does not handle (fragmented files, `stz2`,
several sample descriptions, external data references, codecs missing from `CODECS`, a
deep-colour track whose colours only its HEVC or AV1 bitstream declares, ...) raise
`Unsupported`, for the caller to ask ffmpeg instead. Without `colr`, an H.264 track's colours
are read from its SPS (`h264_sps`), as players and ffmpeg read them.
"""

from __future__ import annotations

import math
import os
import struct
import sys
from array import array
from bisect import bisect_right
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from itertools import accumulate, chain, repeat
from operator import add, itemgetter, mul, sub
from pathlib import Path
from typing import BinaryIO, NamedTuple

from anb.processing import h264_sps

CODECS = {  # sample entry type -> ffmpeg's codec name
    b"avc1": "h264",
    b"avc3": "h264",
    b"hvc1": "hevc",
    b"hev1": "hevc",
    b"av01": "av1",
    b"vp09": "vp9",
    b"mp4v": "mpeg4",
}
MAX_TOP_LEVEL_BOXES = 100_000
MAX_MOOV_BYTES = 16 * 1024 * 1024  # an hour of video with sound needs well under 10 MB
MAX_CHILDREN = 10_000  # boxes directly inside one box
MAX_SAMPLES = 250_000  # a minute at 4000 fps; longer tables are left to ffmpeg
MAX_EDITS = 1_000
MAX_CONFIG_BYTES = 1024 * 1024
# The peak frame rate is that of the shortest sample duration that at least this share of the
# samples have or beat: a few odd short samples do not set it.
PEAK_RATE_SHARE = 0.05

_HEADER = struct.Struct(">I4s")
_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")
_TWO_U16 = struct.Struct(">HH")
_TWO_U32 = struct.Struct(">II")
_EDIT = struct.Struct(">I8x")  # segment duration; media time, rate
_EDIT_V1 = struct.Struct(">Q12x")
_MATRIX = struct.Struct(">9i")
_UNKNOWN_DURATIONS = (0xFFFFFFFF, 0xFFFFFFFFFFFFFFFF)
_U32_CODE = "I"  # 4 bytes wherever CPython runs
_SWAP = sys.byteorder == "little"  # the boxes are big-endian
_VISUAL_SAMPLE_ENTRY_BYTES = 78  # the fields of a VisualSampleEntry before its child boxes
_MPEG4_VISUAL = 0x20  # esds objectTypeIndication of MPEG-4 part 2 video
_HEVC_PARAMETER_SETS = {32, 33, 34}  # VPS, SPS, PPS
TRANSFERS = {  # colr's transfer characteristics (ISO/IEC 23091-2) -> ffmpeg's name
    1: "bt709",
    4: "gamma22",
    5: "gamma28",
    6: "smpte170m",
    7: "smpte240m",
    8: "linear",
    13: "iec61966-2-1",
    14: "bt2020-10",
    15: "bt2020-12",
    16: "smpte2084",
    18: "arib-std-b67",
}
MATRICES = {  # colr's matrix coefficients (ISO/IEC 23091-2) -> ffmpeg's name
    1: "bt709",
    4: "fcc",
    5: "bt470bg",
    6: "smpte170m",
    7: "smpte240m",
    9: "bt2020nc",
}
_TRACK_LAYOUT = {  # container -> the children read from it
    b"trak": {b"tkhd", b"edts", b"mdia"},
    b"edts": {b"elst"},
    b"mdia": {b"mdhd", b"hdlr", b"minf"},
    b"minf": {b"dinf", b"stbl"},
    b"dinf": {b"dref"},
    b"stbl": {b"stsd", b"stts", b"stsz", b"stz2", b"stsc", b"stco", b"co64"},
}


class Mp4Error(Exception):
    """Why the video track could not be judged from the boxes."""


class Damaged(Mp4Error):
    """Boxes or sample tables that are inconsistent, cut short or point outside the media."""


class NoVideoTrack(Mp4Error):
    """No track holds video."""


class Unsupported(Mp4Error):
    """A layout this reader does not handle: ffmpeg has to judge the file."""


@dataclass(frozen=True)
class VideoTrack:
    duration: float  # seconds, the edit list applied
    width: int  # as stored in the sample entry, before rotation and pixel aspect ratio
    height: int
    codec: str  # ffmpeg's name
    fps: float  # samples over the decoding duration
    sample_aspect: float  # width of a pixel over its height
    rotation: int  # degrees, as ffmpeg reports the display matrix
    peak_rate: Fraction  # of the fastest part, from the sample durations (see `_peak_rate`)
    transfer: str  # ffmpeg's name of the transfer function from `colr`; "" when not declared
    matrix: str  # ffmpeg's name of the YCbCr matrix from `colr`; "" when not declared
    stream_index: int  # ffmpeg's index of the track's stream (`0:{index}`)


class Box(NamedTuple):
    kind: bytes
    start: int  # payload, as offsets into the buffer that holds the box
    end: int


@dataclass(frozen=True)
class _Movie:
    timescale: int
    duration: int
    matrix: tuple[int, ...]


def read_video_track(path: Path) -> VideoTrack:
    """The facts of the file's main video track; an `Mp4Error` saying why there are none."""
    with path.open("rb") as handle:
        file_size = os.fstat(handle.fileno()).st_size
        moov, mdats = _top_level_layout(handle, file_size)
        handle.seek(moov[0])
        data = handle.read(moov[1] - moov[0])
    if len(data) != moov[1] - moov[0]:
        raise Damaged("moov cut short")
    try:
        return _video_track(data, mdats, file_size)
    except (struct.error, IndexError, ValueError, ZeroDivisionError, OverflowError) as exc:
        raise Damaged(f"unreadable boxes: {exc}") from exc  # a bound missed above: still damage


def _top_level_layout(
    handle: BinaryIO, file_size: int
) -> tuple[tuple[int, int], list[tuple[int, int]]]:
    """Where the first `moov`'s payload lies, and the payload of every `mdat`."""
    moov: tuple[int, int] | None = None
    mdats: list[tuple[int, int]] = []
    offset = 0
    for _ in range(MAX_TOP_LEVEL_BOXES):
        if offset >= file_size:
            break
        handle.seek(offset)
        header = handle.read(16)
        box = _box_at(header, 0, file_size - offset)
        if box.kind == b"moof":
            raise Unsupported("fragmented MP4")
        if box.kind == b"moov" and moov is None:
            moov = (offset + box.start, offset + box.end)
        elif box.kind == b"mdat":
            mdats.append((offset + box.start, offset + box.end))
        offset += box.end
    else:
        raise Damaged("too many top-level boxes")
    if moov is None:
        raise Damaged("no moov")
    if moov[1] - moov[0] > MAX_MOOV_BYTES:
        raise Unsupported("moov too large")
    return moov, mdats


def _box_at(data: bytes, at: int, end: int) -> Box:
    """The box whose header starts at `at` in `data` and which must end by `end`."""
    readable = min(end, len(data)) - at
    if readable < 8:
        raise Damaged("box header cut short")
    size, kind = _HEADER.unpack_from(data, at)
    header = 8
    if size == 1:
        if readable < 16:
            raise Damaged("box header cut short")
        size = _U64.unpack_from(data, at + 8)[0]
        header = 16
    elif size == 0:  # up to the end of the enclosing box
        size = end - at
    if not header <= size <= end - at:
        raise Damaged(f"box {kind!r} of {size} bytes does not fit")
    return Box(kind, at + header, at + size)


def _children(data: bytes, parent: Box, skip: int = 0) -> list[Box]:
    """The boxes inside `parent`'s payload (after `skip` bytes of fields); a tail shorter
    than a box header is padding."""
    boxes: list[Box] = []
    at = parent.start + skip
    while parent.end - at >= 8:
        if len(boxes) == MAX_CHILDREN:
            raise Unsupported(f"too many boxes in {parent.kind!r}")
        box = _box_at(data, at, parent.end)
        boxes.append(box)
        at = box.end
    return boxes


def _first(boxes: Sequence[Box], kind: bytes) -> Box | None:
    return next((box for box in boxes if box.kind == kind), None)


def _payload(data: bytes, box: Box | None, min_bytes: int, kind: str) -> Box:
    """`box`, which must exist and hold at least `min_bytes` of payload."""
    if box is None:
        raise Damaged(f"no {kind}")
    if box.end - box.start < min_bytes:
        raise Damaged(f"{kind} cut short")
    return box


def _video_track(data: bytes, mdats: list[tuple[int, int]], file_size: int) -> VideoTrack:
    boxes = _children(data, Box(b"moov", 0, len(data)))
    if _first(boxes, b"mvex") is not None:
        raise Unsupported("fragmented MP4")
    movie = _movie_header(data, _first(boxes, b"mvhd"))
    stream_index, track = _main_video_track(data, boxes)
    matrix = _track_matrix(data, track.get(b"tkhd"))
    timescale, media_duration = _media_header(data, track.get(b"mdhd"))
    entry = _sample_entry(data, track.get(b"stsd"))
    _require_self_contained(data, track.get(b"dref"), entry)
    codec, width, height, sample_aspect, (transfer, ycbcr) = _visual_sample_entry(data, entry)
    _check_sample_locations(data, track, mdats, file_size)
    counts, deltas = _sample_durations(data, track.get(b"stts"))
    return VideoTrack(
        duration=_duration(data, movie, track.get(b"elst"), timescale, media_duration),
        width=width,
        height=height,
        codec=codec,
        fps=_frame_rate(counts, deltas, timescale),
        sample_aspect=sample_aspect,
        rotation=_rotation(matrix, movie.matrix),
        peak_rate=_peak_rate(counts, deltas, timescale),
        transfer=transfer,
        matrix=ycbcr,
        stream_index=stream_index,
    )


def _movie_header(data: bytes, mvhd: Box | None) -> _Movie:
    version, timescale, duration = _times(data, mvhd, "mvhd")
    matrix_at = 48 if version == 1 else 36
    mvhd = _payload(data, mvhd, matrix_at + _MATRIX.size, "mvhd")
    return _Movie(timescale, duration, _MATRIX.unpack_from(data, mvhd.start + matrix_at))


def _times(data: bytes, header: Box | None, kind: str) -> tuple[int, int, int]:
    """Version, timescale and duration (0 if unknown) of an mvhd or mdhd, which start alike."""
    version = data[_payload(data, header, 4, kind).start]
    timescale_at, duration_format = (20, _U64) if version == 1 else (12, _U32)
    header = _payload(data, header, timescale_at + 4 + duration_format.size, kind)
    timescale = _U32.unpack_from(data, header.start + timescale_at)[0]
    duration = duration_format.unpack_from(data, header.start + timescale_at + 4)[0]
    return version, timescale, 0 if duration in _UNKNOWN_DURATIONS else duration


def main_track_rank(area: int, enabled: bool, index: int) -> tuple[int, bool, int]:
    """How a video track ranks as the one to judge and render (the highest wins): the
    largest picture, then an enabled track, then the first. A thumbnail or preview track may
    come before the footage, and writers (ffmpeg among them) enable only the first track of
    a kind, so the enabled flag alone would pick the thumbnail."""
    return area, enabled, -index


def _main_video_track(data: bytes, moov: list[Box]) -> tuple[int, dict[bytes, Box]]:
    """The boxes of the main video track (`main_track_rank`) and its stream index: ffmpeg
    makes a stream of every `trak`, in order, and of cover art where it meets it (files
    with cover art ahead of the track are left to ffmpeg). A video track has handler
    `vide`, or a video sample entry under any handler but `soun` (what ffmpeg takes as
    video)."""
    ranked: list[tuple[tuple[int, bool, int], int, dict[bytes, Box], bool]] = []
    index, cover_before = 0, False
    for box in moov:
        if box.kind in (b"udta", b"meta") and b"covr" in data[box.start : box.end]:
            cover_before = True  # ffmpeg makes a stream of the cover art, where it finds it
        if box.kind != b"trak":
            continue
        track = _track_boxes(data, box)
        handler = _handler(data, track.get(b"hdlr"))
        if handler == b"vide" or (handler != b"soun" and _entry_type(data, track) in CODECS):
            rank = main_track_rank(_stored_area(data, track), _enabled(data, track), index)
            ranked.append((rank, index, track, cover_before))
        index += 1
    if not ranked:
        raise NoVideoTrack("no video track")
    _, index, track, cover_before = max(ranked, key=itemgetter(0))
    if cover_before:
        raise Unsupported("cover art ahead of the video track: ffmpeg numbers the streams")
    return index, track


def _track_boxes(data: bytes, trak: Box) -> dict[bytes, Box]:
    """The boxes of a track that are read, by type (the first of each, where it belongs)."""
    found: dict[bytes, Box] = {}
    containers = [trak]
    while containers:
        parent = containers.pop()
        wanted = _TRACK_LAYOUT[parent.kind]
        for box in _children(data, parent):
            if box.kind in wanted and box.kind not in found:
                found[box.kind] = box
                if box.kind in _TRACK_LAYOUT:
                    containers.append(box)
    return found


def _handler(data: bytes, hdlr: Box | None) -> bytes:
    if hdlr is None or hdlr.end - hdlr.start < 12:
        return b""
    return data[hdlr.start + 8 : hdlr.start + 12]


def _entry_type(data: bytes, track: dict[bytes, Box]) -> bytes:
    stsd = track.get(b"stsd")
    if stsd is None or stsd.end - stsd.start < 16:
        return b""
    return data[stsd.start + 12 : stsd.start + 16]


def _stored_area(data: bytes, track: dict[bytes, Box]) -> int:
    """Width times height of the first video sample entry; 0 where it cannot be read (the
    chosen track's entry is checked in full later)."""
    stsd = track.get(b"stsd")
    size_at = stsd.start + 8 + 8 + 24 if stsd else 0  # stsd fields, entry header, entry fields
    if stsd is None or stsd.end - size_at < _TWO_U16.size:
        return 0
    width, height = _TWO_U16.unpack_from(data, size_at)
    return int(width) * int(height)


def _enabled(data: bytes, track: dict[bytes, Box]) -> bool:
    tkhd = track.get(b"tkhd")
    return tkhd is not None and tkhd.end - tkhd.start >= 4 and bool(data[tkhd.start + 3] & 1)


def _track_matrix(data: bytes, tkhd: Box | None) -> tuple[int, ...]:
    """The track's display matrix."""
    version = data[_payload(data, tkhd, 4, "tkhd").start]
    matrix_at = 52 if version == 1 else 40
    tkhd = _payload(data, tkhd, matrix_at + _MATRIX.size, "tkhd")
    return _MATRIX.unpack_from(data, tkhd.start + matrix_at)


def _media_header(data: bytes, mdhd: Box | None) -> tuple[int, int]:
    """The track's timescale and its media duration in that timescale (0 if unknown)."""
    _, timescale, duration = _times(data, mdhd, "mdhd")
    if timescale == 0:
        raise Unsupported("mdhd timescale 0")
    return timescale, duration


def _sample_entry(data: bytes, stsd: Box | None) -> Box:
    stsd = _payload(data, stsd, 8, "stsd")
    entries = _U32.unpack_from(data, stsd.start + 4)[0]
    if entries == 0:
        raise Damaged("no sample description")
    if entries > 1:
        raise Unsupported("several sample descriptions")
    return _box_at(data, stsd.start + 8, stsd.end)


def _require_self_contained(data: bytes, dref: Box | None, entry: Box) -> None:
    """The samples must be in this file: the sample entry's data reference (if any is
    declared) has to be a `url ` flagged self-contained."""
    if dref is None:
        return
    dref = _payload(data, dref, 8, "dref")
    index = _U16.unpack_from(data, _payload(data, entry, 8, "sample entry").start + 6)[0]
    references = _children(data, dref, skip=8)
    if not 1 <= index <= min(len(references), _U32.unpack_from(data, dref.start + 4)[0]):
        return  # ffmpeg then reads the samples from this file
    reference = references[index - 1]
    if reference.end - reference.start < 4 or not data[reference.start + 3] & 1:
        raise Unsupported("samples in another file")


def _visual_sample_entry(data: bytes, entry: Box) -> tuple[str, int, int, float, tuple[str, str]]:
    """Codec, stored width and height, pixel aspect and colours (transfer function, matrix)
    from the video sample entry."""
    codec = CODECS.get(entry.kind)
    if codec is None:
        raise Unsupported(f"codec {entry.kind!r}")
    entry = _payload(data, entry, _VISUAL_SAMPLE_ENTRY_BYTES, "video sample entry")
    width, height = _TWO_U16.unpack_from(data, entry.start + 24)
    if not width or not height:
        raise Unsupported("no size in the sample entry")
    extensions = _children(data, entry, skip=_VISUAL_SAMPLE_ENTRY_BYTES)
    facts = _CONFIG_CHECKS[entry.kind](data, extensions, entry.kind)
    sample_aspect = _pixel_aspect(data, _first(extensions, b"pasp"))
    colours = _colours(data, extensions) or facts.colours  # `colr` first, as ffmpeg takes it
    if colours is None and facts.bit_depth > 8:
        # HDR (PQ, HLG) needs 10 bits; without `colr`, only the bitstream says whether it is
        # HDR, and ffmpeg reads that (this reader reads only H.264's parameter sets).
        raise Unsupported("colours declared only in the bitstream of a deep-colour track")
    return codec, width, height, sample_aspect, colours or ("", "")


def _pixel_aspect(data: bytes, pasp: Box | None) -> float:
    if pasp is None or pasp.end - pasp.start < 8:
        return 1.0
    horizontal, vertical = _TWO_U32.unpack_from(data, pasp.start)
    return horizontal / vertical if horizontal and vertical else 1.0


class _CodecFacts(NamedTuple):
    """What a codec configuration box declares of the samples."""

    bit_depth: int  # of luma samples
    colours: tuple[str, str] | None = None  # (transfer, matrix), if it declares them


def _colours(data: bytes, extensions: list[Box]) -> tuple[str, str] | None:
    """The transfer function and matrix a `colr` box of colour type `nclx` (ISO) or `nclc`
    (QuickTime) declares: primaries, transfer and matrix codes (u16 each) follow the type.
    ("", "") for codes without a name here; None without such a box."""
    for box in extensions:
        colour_type = data[box.start : box.start + 4]
        if box.kind == b"colr" and box.end - box.start >= 10 and colour_type in (b"nclx", b"nclc"):
            return _named(*_TWO_U16.unpack_from(data, box.start + 6))
    return None


def _named(transfer: int, matrix: int) -> tuple[str, str]:
    """ffmpeg's names of a transfer and a matrix code (ISO/IEC 23091-2), "" if unnamed."""
    return TRANSFERS.get(transfer, ""), MATRICES.get(matrix, "")


def _config(extensions: list[Box], kind: bytes) -> Box | None:
    """The codec configuration box, if any (`Unsupported` if too large to be real)."""
    box = _first(extensions, kind)
    if box is not None and box.end - box.start > MAX_CONFIG_BYTES:
        raise Unsupported(f"{kind!r} too large")
    return box


def _check_avc_config(data: bytes, extensions: list[Box], entry_kind: bytes) -> _CodecFacts:
    """avcC version 1 with whole parameter sets; `avc1` must carry at least one SPS and one
    PPS (`avc3` may send them in-band). The bit depth and colours its first SPS declares."""
    avcc = _config(extensions, b"avcC")
    if avcc is None:
        raise Damaged("no avcC")
    at, end = avcc.start, avcc.end
    if end - at < 7 or data[at] != 1:
        raise Damaged("avcC is not version 1")
    sps_count = data[at + 5] & 0x1F
    at = _skip_nal_units(data, at + 6, end, sps_count, lambda header: header & 0x1F == 7)
    if at >= end:
        raise Damaged("avcC cut short")
    pps_count = data[at]
    _skip_nal_units(data, at + 1, end, pps_count, lambda header: header & 0x1F == 8)
    if entry_kind == b"avc1" and not (sps_count and pps_count):
        raise Damaged("avcC without SPS or PPS")
    if not sps_count:
        return _CodecFacts(bit_depth=8)
    length = _U16.unpack_from(data, avcc.start + 6)[0]
    try:
        sps = h264_sps.read_sps(data[avcc.start + 8 : avcc.start + 8 + length])
    except h264_sps.BadParameterSet as exc:
        raise Damaged(str(exc)) from exc
    return _CodecFacts(sps.bit_depth, None if sps.colours is None else _named(*sps.colours))


def _skip_nal_units(
    data: bytes, at: int, end: int, count: int, is_expected: Callable[[int], bool]
) -> int:
    """Past `count` length-prefixed NAL units of the expected type (`Damaged` otherwise)."""
    for _ in range(count):
        if end - at < 2:
            raise Damaged("parameter set cut short")
        length = _U16.unpack_from(data, at)[0]
        if length == 0 or end - at - 2 < length or not is_expected(data[at + 2]):
            raise Damaged("parameter set cut short or of the wrong type")
        at += 2 + length
    return at


def _check_hevc_config(data: bytes, extensions: list[Box], entry_kind: bytes) -> _CodecFacts:
    """hvcC with whole NAL arrays; `hvc1` must carry its VPS, SPS and PPS (`hev1` may
    send them in-band). The luma bit depth it declares."""
    hvcc = _config(extensions, b"hvcC")
    if hvcc is None:
        raise Damaged("no hvcC")
    at, end = hvcc.start, hvcc.end
    if end - at < 23:
        raise Damaged("hvcC cut short")
    arrays, at = data[at + 22], at + 23
    nal_types = set()
    for _ in range(arrays):
        if end - at < 3:
            raise Damaged("hvcC cut short")
        nal_type, count = data[at] & 0x3F, _U16.unpack_from(data, at + 1)[0]
        at = _skip_nal_units(data, at + 3, end, count, lambda header: True)
        if count:
            nal_types.add(nal_type)
    if entry_kind == b"hvc1" and not _HEVC_PARAMETER_SETS.issubset(nal_types):
        raise Damaged("hvcC without VPS, SPS or PPS")
    return _CodecFacts(bit_depth=8 + (data[hvcc.start + 17] & 0x07))  # bitDepthLumaMinus8


def _check_av1_config(data: bytes, extensions: list[Box], entry_kind: bytes) -> _CodecFacts:
    """av1C version 1; 10 bits a sample when its high_bitdepth flag is set, 8 otherwise."""
    av1c = _config(extensions, b"av1C")
    if av1c is None:
        raise Unsupported("av01 without av1C")
    if av1c.end - av1c.start < 4 or data[av1c.start] != 0x81:  # marker bit, version 1
        raise Damaged("av1C is not version 1")
    return _CodecFacts(bit_depth=10 if data[av1c.start + 2] & 0x40 else 8)


def _check_vp9_config(data: bytes, extensions: list[Box], entry_kind: bytes) -> _CodecFacts:
    """vpcC (a full box); the bit depth it declares."""
    vpcc = _config(extensions, b"vpcC")
    if vpcc is None:
        raise Unsupported("vp09 without vpcC")
    if vpcc.end - vpcc.start < 8:
        raise Damaged("vpcC cut short")
    return _CodecFacts(bit_depth=data[vpcc.start + 6] >> 4)


def _check_mpeg4_config(data: bytes, extensions: list[Box], entry_kind: bytes) -> _CodecFacts:
    """`mp4v` is MPEG-4 part 2 only when its esds says so (it can carry MPEG-2 or JPEG);
    8 bits a sample."""
    esds = _config(extensions, b"esds")
    if esds is None or _object_type(data, esds.start + 4, esds.end) != _MPEG4_VISUAL:
        raise Unsupported("mp4v that is not MPEG-4 part 2")
    return _CodecFacts(bit_depth=8)


def _object_type(data: bytes, at: int, end: int) -> int | None:
    """The objectTypeIndication of the DecoderConfigDescriptor inside an ES_Descriptor."""
    tag, at = _descriptor(data, at, end)
    if tag != 3 or end - at < 3:
        return None
    flags, at = data[at + 2], at + 3  # after ES_ID
    at += 2 * bool(flags & 0x80)  # dependsOn_ES_ID
    if flags & 0x40 and at < end:
        at += 1 + data[at]  # URL
    at += 2 * bool(flags & 0x20)  # OCR_ES_Id
    tag, at = _descriptor(data, at, end)
    return data[at] if tag == 4 and at < end else None


def _descriptor(data: bytes, at: int, end: int) -> tuple[int | None, int]:
    """The tag of the MPEG-4 descriptor at `at`, and where its body starts."""
    if end - at < 2:
        return None, end
    tag, at = data[at], at + 1
    for _ in range(4):  # the size: up to four 7-bit groups
        if at >= end:
            return None, end
        more, at = data[at] & 0x80, at + 1
        if not more:
            return tag, at
    return None, end


# Each checks the codec's configuration box and answers what it declares of the samples.
_CONFIG_CHECKS: dict[bytes, Callable[[bytes, list[Box], bytes], _CodecFacts]] = {
    b"avc1": _check_avc_config,
    b"avc3": _check_avc_config,
    b"hvc1": _check_hevc_config,
    b"hev1": _check_hevc_config,
    b"av01": _check_av1_config,
    b"vp09": _check_vp9_config,
    b"mp4v": _check_mpeg4_config,
}


def _u32_table(data: bytes, box: Box, count_at: int, fields: int) -> array[int]:
    """A table of `fields` big-endian u32 per entry, its entry count at `count_at`; the
    count has to fit in the box."""
    count = _U32.unpack_from(data, box.start + count_at)[0]
    start = box.start + count_at + 4
    if count > (box.end - start) // (4 * fields):
        raise Damaged(f"{box.kind!r} claims more entries than it holds")
    table = array(_U32_CODE, data[start : start + 4 * fields * count])
    if _SWAP:
        table.byteswap()
    return table


def _check_sample_locations(
    data: bytes, track: dict[bytes, Box], mdats: list[tuple[int, int]], file_size: int
) -> None:
    """Every sample of the track (there must be one) lies whole inside an `mdat`: sizes
    (stsz), chunks (stsc) and chunk offsets (stco/co64) put together."""
    if b"stz2" in track and b"stsz" not in track:
        raise Unsupported("compact sample sizes (stz2)")
    sample_count, sizes = _sample_sizes(data, track.get(b"stsz"), file_size)
    offsets = _chunk_offsets(data, track)
    if len(offsets) > sample_count:
        raise Damaged("more chunks than samples")
    per_chunk = _samples_per_chunk(data, track.get(b"stsc"), len(offsets))
    if sum(per_chunk) != sample_count:
        raise Damaged("stsc and stsz disagree on the number of samples")
    lengths: Iterable[int]  # of each chunk, in bytes
    if isinstance(sizes, int):
        lengths = map(mul, per_chunk, repeat(sizes))
    elif per_chunk.count(1) == sample_count:  # a sample per chunk
        lengths = sizes
    else:
        first_samples = accumulate(per_chunk, initial=0)
        bytes_before = itemgetter(*first_samples)(list(accumulate(sizes, initial=0)))
        lengths = map(sub, bytes_before[1:], bytes_before)
    _check_inside_mdats(offsets, map(add, offsets, lengths), mdats)


def _sample_sizes(data: bytes, stsz: Box | None, file_size: int) -> tuple[int, int | array[int]]:
    """The number of samples and their sizes (one size if they all have it)."""
    stsz = _payload(data, stsz, 12, "stsz")
    size, count = _TWO_U32.unpack_from(data, stsz.start + 4)
    if count == 0:
        raise Damaged("no samples")
    if size:
        if count * size > file_size:
            raise Damaged("samples larger than the file")
        if count > MAX_SAMPLES:
            raise Unsupported("too many samples")
        return count, size
    if count > (stsz.end - stsz.start - 12) // 4:
        raise Damaged("stsz claims more samples than it holds")
    if count > MAX_SAMPLES:
        raise Unsupported("too many samples")
    return count, _u32_table(data, stsz, 8, 1)


def _chunk_offsets(data: bytes, track: dict[bytes, Box]) -> array[int]:
    if b"stco" in track:
        return _u32_table(data, _payload(data, track[b"stco"], 8, "stco"), 4, 1)
    co64 = _payload(data, track.get(b"co64"), 8, "stco")
    count = _U32.unpack_from(data, co64.start + 4)[0]
    if count > (co64.end - co64.start - 8) // 8:
        raise Damaged("co64 claims more chunks than it holds")
    offsets = array("Q", data[co64.start + 8 : co64.start + 8 + 8 * count])
    if _SWAP:
        offsets.byteswap()
    return offsets


def _samples_per_chunk(data: bytes, stsc: Box | None, chunk_count: int) -> list[int]:
    """The number of samples in each chunk, from stsc's runs of chunks."""
    table = _u32_table(data, _payload(data, stsc, 8, "stsc"), 4, 3)
    first_chunks, counts = table[0::3], table[1::3]
    if not first_chunks or first_chunks[0] != 1:
        raise Damaged("stsc does not start at the first chunk")
    if len(first_chunks) > 1 and min(map(sub, first_chunks[1:], first_chunks)) <= 0:
        raise Damaged("stsc runs out of order")
    limit = chunk_count + 1  # runs past the last chunk are empty
    bounds = [min(first, limit) for first in first_chunks]
    bounds.append(limit)
    runs = map(sub, bounds[1:], bounds)
    return list(chain.from_iterable(map(repeat, counts, runs)))


def _check_inside_mdats(
    starts: Sequence[int], ends: Iterable[int], mdats: list[tuple[int, int]]
) -> None:
    """Each byte range (chunk) lies inside the payload of one `mdat`."""
    if not mdats:
        raise Damaged("no media data")
    if len(mdats) == 1:
        if min(starts) < mdats[0][0] or max(ends) > mdats[0][1]:
            raise Damaged("samples outside the media data")
        return
    mdat_starts = [start for start, _ in mdats]
    for start, end in zip(starts, ends, strict=True):
        index = bisect_right(mdat_starts, start) - 1
        if index < 0 or end > mdats[index][1]:
            raise Damaged("samples outside the media data")


def _duration(
    data: bytes, movie: _Movie, elst: Box | None, timescale: int, media_duration: int
) -> float:
    """Seconds shown: the edit list's if any, else the media's, else the movie's."""
    if elst is not None and movie.timescale:
        edited = _edited_duration(data, elst)
        if edited:
            return edited / movie.timescale
    if media_duration:
        return media_duration / timescale
    if movie.duration and movie.timescale:
        return movie.duration / movie.timescale
    raise Unsupported("no duration")


def _edited_duration(data: bytes, elst: Box) -> int:
    """The sum of the edit list's segment durations (movie timescale)."""
    elst = _payload(data, elst, 8, "elst")
    version, count = data[elst.start], _U32.unpack_from(data, elst.start + 4)[0]
    entry = _EDIT_V1 if version == 1 else _EDIT
    if count > (elst.end - elst.start - 8) // entry.size:
        raise Damaged("elst claims more edits than it holds")
    if count > MAX_EDITS:
        raise Unsupported("too many edits")
    start = elst.start + 8
    return sum(entry.unpack_from(data, start + i * entry.size)[0] for i in range(count))


def _sample_durations(data: bytes, stts: Box | None) -> tuple[array[int], array[int]]:
    """stts' runs: how many samples, and their decoding duration."""
    table = _u32_table(data, _payload(data, stts, 8, "stts"), 4, 2)
    return table[0::2], table[1::2]


def _frame_rate(counts: array[int], deltas: array[int], timescale: int) -> float:
    """Samples per second over stts' decoding durations, as ffmpeg averages them (a last
    lone sample with an outsized duration counts at the average)."""
    samples, duration = sum(counts), sum(map(mul, counts, deltas))
    if len(counts) > 1 and counts[-1] == 1 and samples - 1 > 100:
        before = duration - deltas[-1]
        if deltas[-1] // 10 > before // (samples - 1):
            duration = before + before // (samples - 1)
    return samples * timescale / duration if samples and duration else 30.0


def _peak_rate(counts: array[int], deltas: array[int], timescale: int) -> Fraction:
    """The frame rate of the stream's fastest part: the timescale over the shortest sample
    duration that, with the shorter ones, covers `PEAK_RATE_SHARE` of the samples. For a
    constant rate it is that rate, exactly (60000/1001); for a variable one (a phone
    alternating 30 and 15 fps) the fastest, where the average would drop frames."""
    samples: dict[int, int] = {}
    for count, delta in zip(counts, deltas, strict=True):
        if delta:
            samples[delta] = samples.get(delta, 0) + count
    needed, seen = PEAK_RATE_SHARE * sum(samples.values()), 0
    for delta in sorted(samples):
        seen += samples[delta]
        if seen >= needed:
            return Fraction(timescale, delta)
    return Fraction(30)


def _rotation(track_matrix: tuple[int, ...], movie_matrix: tuple[int, ...]) -> int:
    """Degrees of rotation of the track's display matrix (composed with the movie's), as
    ffmpeg computes it: 16.16 fixed point, with u, v and w in 2.30."""
    shifts = (16, 16, 30)
    a, b, c, d = (
        sum((track_matrix[3 * row + e] * movie_matrix[3 * e + col]) >> shifts[e] for e in range(3))
        for row, col in ((0, 0), (0, 1), (1, 0), (1, 1))
    )
    scale_x, scale_y = math.hypot(a, c), math.hypot(b, d)
    if not scale_x or not scale_y:
        return 0
    return round(-math.degrees(math.atan2(b / scale_y, a / scale_x))) % 360
