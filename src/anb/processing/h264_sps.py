"""What an H.264 sequence parameter set (ITU-T H.264 7.3.2.1.1, E.1.1) says of the picture's
samples: their bit depth and, in its VUI, their colours (transfer function and matrix).

Read for a track whose MP4 sample entry has no `colr` box: the colours are then declared only
here, and players (and ffmpeg) take them from here. Every count is bounded and every read
checked against the end, so a hostile SPS raises `BadParameterSet` (the caller's damage)."""

from __future__ import annotations

from dataclasses import dataclass

# Profiles whose SPS declares chroma format and bit depth (High and above); the others are 8-bit.
HIGH_PROFILES = frozenset({100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135})
_EXTENDED_SAR = 255
_MAX_EXP_GOLOMB_ZEROS = 31  # a 32-bit value at most
_MAX_POC_CYCLE = 255


class BadParameterSet(ValueError):
    """The SPS is cut short or holds values out of range."""


@dataclass(frozen=True)
class SequenceFacts:
    bit_depth: int  # of luma samples
    colours: tuple[int, int] | None  # VUI transfer characteristics and matrix codes, if any


class _Bits:
    """The SPS's payload read bit by bit (emulation prevention bytes removed)."""

    def __init__(self, payload: bytes) -> None:
        self._bits = "".join(f"{byte:08b}" for byte in payload.replace(b"\0\0\3", b"\0\0"))
        self._at = 0

    def u(self, count: int) -> int:
        end = self._at + count
        if end > len(self._bits):
            raise BadParameterSet("SPS cut short")
        value = int(self._bits[self._at : end], 2) if count else 0
        self._at = end
        return value

    def flag(self) -> bool:
        return bool(self.u(1))

    def ue(self) -> int:
        zeros = self._bits.find("1", self._at) - self._at
        if not 0 <= zeros <= _MAX_EXP_GOLOMB_ZEROS:
            raise BadParameterSet("Exp-Golomb code cut short or too long")
        self._at += zeros
        return self.u(zeros + 1) - 1

    def se(self) -> int:
        code = self.ue()
        return (code + 1) // 2 if code % 2 else -(code // 2)


def read_sps(nal_unit: bytes) -> SequenceFacts:
    """The facts of an SPS NAL unit (its one-byte header first)."""
    bits = _Bits(nal_unit[1:])
    profile = bits.u(8)
    bits.u(16)  # constraint flags, level
    bits.ue()  # seq_parameter_set_id
    bit_depth = _sample_format(bits) if profile in HIGH_PROFILES else 8
    bits.ue()  # log2_max_frame_num_minus4
    _skip_picture_order(bits)
    bits.ue()  # max_num_ref_frames
    bits.flag()  # gaps_in_frame_num_value_allowed_flag
    bits.ue(), bits.ue()  # width and height in macroblocks (map units)
    if not bits.flag():  # frame_mbs_only_flag
        bits.flag()  # mb_adaptive_frame_field_flag
    bits.flag()  # direct_8x8_inference_flag
    if bits.flag():  # frame_cropping_flag: four offsets
        for _ in range(4):
            bits.ue()
    colours = _vui_colours(bits) if bits.flag() else None
    return SequenceFacts(bit_depth, colours)


def _sample_format(bits: _Bits) -> int:
    """Past the High profiles' fields (chroma format, bit depths, scaling matrices): the
    luma bit depth."""
    chroma_format = bits.ue()
    if chroma_format == 3:
        bits.flag()  # separate_colour_plane_flag
    bit_depth = 8 + bits.ue()
    bits.ue()  # bit_depth_chroma_minus8
    bits.flag()  # qpprime_y_zero_transform_bypass_flag
    if bits.flag():  # seq_scaling_matrix_present_flag
        for index in range(12 if chroma_format == 3 else 8):
            if bits.flag():  # seq_scaling_list_present_flag
                _skip_scaling_list(bits, 16 if index < 6 else 64)
    return bit_depth


def _skip_scaling_list(bits: _Bits, size: int) -> None:
    """Past one scaling list: delta-coded scales, up to a zero one (the rest are implied)."""
    scale = 8
    for _ in range(size):
        scale = (scale + bits.se()) % 256
        if not scale:
            return


def _skip_picture_order(bits: _Bits) -> None:
    kind = bits.ue()  # pic_order_cnt_type
    if kind == 0:
        bits.ue()  # log2_max_pic_order_cnt_lsb_minus4
    elif kind == 1:
        bits.flag()  # delta_pic_order_always_zero_flag
        bits.se(), bits.se()  # offsets for non-reference pictures and bottom fields
        cycle = bits.ue()
        if cycle > _MAX_POC_CYCLE:
            raise BadParameterSet("picture order cycle too long")
        for _ in range(cycle):
            bits.se()


def _vui_colours(bits: _Bits) -> tuple[int, int] | None:
    """The VUI's transfer characteristics and matrix coefficients, if it declares them."""
    if bits.flag() and bits.u(8) == _EXTENDED_SAR:  # aspect_ratio_info_present_flag
        bits.u(32)  # sar_width, sar_height
    if bits.flag():  # overscan_info_present_flag
        bits.flag()
    if not bits.flag():  # video_signal_type_present_flag
        return None
    bits.u(4)  # video_format, video_full_range_flag
    if not bits.flag():  # colour_description_present_flag
        return None
    bits.u(8)  # colour_primaries
    return bits.u(8), bits.u(8)
