"""Ratios and the fixed-width tables the benchmarks print."""

from __future__ import annotations

import math

import pytest
from benchmarks.figures import Column, Table, ratio


def test_ratio() -> None:
    assert ratio(3.0, 1.5) == 2.0
    assert ratio(1.0, 0.0) == math.inf


TABLE = Table(
    (
        Column("", 6, left=True),
        Column("wall s", 8, ".2f"),
        Column("bytes", 10, ","),
        Column("cpu", 8, ".1f", "ms"),
    ),
    indent="  ",
)


def test_columns_line_up_under_their_titles() -> None:
    header, row = TABLE.header(), TABLE.row("ours", 1.234, 1234567, 12.34)
    assert header == "           wall s      bytes      cpu"
    assert row == "  ours       1.23  1,234,567   12.3ms"
    assert len(header) == len(row)
    assert TABLE.rule() == "-" * len(header)


def test_a_string_cell_is_written_as_it_is() -> None:
    assert TABLE.row("ratio", "0.912", "0.4", "+0.01") == "  ratio     0.912        0.4    +0.01"


def test_a_left_aligned_last_column_leaves_no_trailing_spaces() -> None:
    table = Table((Column("n", 3), Column("agree", left=True)), gap="  ")
    assert table.header() == "  n  agree"
    assert table.row(1, "NO") == "  1  NO"


def test_a_row_needs_one_value_per_column() -> None:
    with pytest.raises(ValueError, match="2 values for 4 columns"):
        TABLE.row("ours", 1.0)
