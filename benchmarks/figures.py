"""How the benchmarks write their figures: ratios and fixed-width tables, so that columns
line up in a terminal and in a pasted log."""

from __future__ import annotations

import math
from dataclasses import dataclass


def ratio(numerator: float, denominator: float) -> float:
    """numerator / denominator; infinite for a zero denominator (a floor too small to
    measure), rather than an exception that loses the whole run."""
    return numerator / denominator if denominator else math.inf


@dataclass(frozen=True)
class Column:
    """A column: its title, its width, and how its values are written (`spec`, a format
    spec, then `unit`); right-aligned unless `left`."""

    title: str
    width: int = 0
    spec: str = ""
    unit: str = ""
    left: bool = False

    def cell(self, value: object) -> str:
        """`value` written with the spec; a string is taken as already written."""
        text = value if isinstance(value, str) else format(value, self.spec) + self.unit
        return f"{text:{'<' if self.left else '>'}{self.width}}"


@dataclass(frozen=True)
class Table:
    """Columns separated by `gap`, every line starting with `indent`."""

    columns: tuple[Column, ...]
    gap: str = " "
    indent: str = ""

    def header(self) -> str:
        return self.row(*(column.title for column in self.columns))

    def rule(self) -> str:
        """A line of dashes as wide as the header."""
        return "-" * len(self.header())

    def row(self, *values: object) -> str:
        if len(values) != len(self.columns):
            raise ValueError(f"{len(values)} values for {len(self.columns)} columns")
        cells = (column.cell(value) for column, value in zip(self.columns, values, strict=True))
        return (self.indent + self.gap.join(cells)).rstrip()
