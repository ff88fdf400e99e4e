"""The targets of a benchmark, each printed with PASS or FAIL, and the checks that its figures
mean what they say; the process's exit status (0 when every target is met and every check
holds, 1 otherwise), so that a script or CI can tell."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

MISSED = 1
"""The exit status of a benchmark that missed a target or failed a check."""


@dataclass(frozen=True)
class Target:
    """One goal: what it asks, the figure measured (as written), whether it was met."""

    goal: str
    figure: str
    met: bool


def at_most(name: str, value: float, limit: float, spec: str = ".3f") -> Target:
    return Target(f"{name} <= {limit:g}", format(value, spec), value <= limit)


def at_least(name: str, value: float, limit: float, spec: str = ".3f") -> Target:
    return Target(f"{name} >= {limit:g}", format(value, spec), value >= limit)


def report(title: str, targets: Sequence[Target], width: int = 26) -> int:
    """Print the targets under `title`, each with PASS or FAIL; the exit status."""
    print(f"\n{title}")
    for target in targets:
        print(f"  {target.goal:{width}} {target.figure:>8}  {'PASS' if target.met else 'FAIL'}")
    missed = [target.goal for target in targets if not target.met]
    if missed:
        print(f"missed {len(missed)} of {len(targets)} targets: {'; '.join(missed)}")
        return MISSED
    return 0


def failed_checks(problem: str, failing: Sequence[str]) -> int:
    """The exit status of a check over named parts of a run (inputs, classes, workloads):
    MISSED, after saying which parts failed, when any did."""
    if failing:
        print(f"{problem}: {', '.join(failing)}")
        return MISSED
    return 0
