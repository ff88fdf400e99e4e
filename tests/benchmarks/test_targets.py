"""The PASS/FAIL report of a benchmark's targets and checks decides its exit status."""

from __future__ import annotations

import pytest
from benchmarks.targets import MISSED, Target, at_least, at_most, failed_checks, report

from benchmarks import targets


def test_at_most_is_met_up_to_the_limit() -> None:
    assert at_most("time ours/ref", 0.9, 0.9) == Target("time ours/ref <= 0.9", "0.900", True)
    assert not at_most("time ours/ref", 0.9001, 0.9).met


def test_at_least_is_met_down_to_the_limit() -> None:
    target = at_least("SSIM ours-ref", -0.005, -0.005, "+.4f")
    assert target == Target("SSIM ours-ref >= -0.005", "-0.0050", True)
    assert not at_least("SSIM ours-ref", -0.0051, -0.005).met


def test_report_exits_0_when_every_target_is_met(capsys: pytest.CaptureFixture[str]) -> None:
    status = report("targets:", [at_most("bytes", 0.4, 0.5), at_least("ssim", 0.0, -0.1)])
    out = capsys.readouterr().out
    assert status == 0
    assert out.count("PASS") == 2
    assert "FAIL" not in out
    assert "missed" not in out


def test_report_exits_non_zero_when_a_target_is_missed(
    capsys: pytest.CaptureFixture[str],
) -> None:
    status = report("targets:", [at_most("bytes", 0.4, 0.5), at_most("time", 0.95, 0.9)])
    lines = capsys.readouterr().out.splitlines()
    assert status == MISSED != 0
    assert lines[1:4] == [
        "targets:",
        f"  {'bytes <= 0.5':26} {'0.400':>8}  PASS",
        f"  {'time <= 0.9':26} {'0.950':>8}  FAIL",
    ]
    assert lines[-1] == "missed 1 of 2 targets: time <= 0.9"


def test_failed_checks_name_what_failed(capsys: pytest.CaptureFixture[str]) -> None:
    assert failed_checks("non-2xx answers in", []) == 0
    assert capsys.readouterr().out == ""
    assert failed_checks("non-2xx answers in", ["vote", "login"]) == targets.MISSED
    assert capsys.readouterr().out == "non-2xx answers in: vote, login\n"
