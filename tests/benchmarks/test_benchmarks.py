"""Each benchmark runs as `python -m benchmarks.<module>` behind its scripts/ wrapper, and
exits non-zero when it misses a target (the measurements themselves are not run here)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from benchmarks.api import table
from benchmarks.quality import Quality
from benchmarks.targets import MISSED

from benchmarks import ROOT, content, upload_rss, worker

WRAPPERS = {
    "bench_api": "api",
    "bench_poster": "poster",
    "bench_probe": "probe",
    "bench_public_list": "public_list",
    "bench_rankings": "rankings",
    "bench_upload_rss": "upload_rss",
    "bench_worker": "worker",
    "loadtest": "loadtest",
    "loadtest_worker": "loadtest_worker",
}
WITHOUT_LOAD_EXTRA = "import sys; sys.modules['matplotlib'] = sys.modules['locust'] = None; "


def run_module(module: str, *args: str, prelude: str = "") -> subprocess.CompletedProcess:
    code = f"{prelude}import runpy; runpy.run_module('benchmarks.{module}', run_name='__main__')"
    command = [sys.executable, "-c", code, *args]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("module", sorted(WRAPPERS.values()))
def test_help(module: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", f"benchmarks.{module}", "--help"],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "usage:" in result.stdout


@pytest.mark.parametrize("module", ["loadtest", "loadtest_worker"])
def test_help_without_the_load_extra(module: str) -> None:
    """Locust and matplotlib are needed to run a load test, not to read its options."""
    result = run_module(module, "--help", prelude=WITHOUT_LOAD_EXTRA)
    assert result.returncode == 0, result.stderr


def test_a_load_test_without_the_load_extra_stops_before_any_load(tmp_path: Path) -> None:
    result = run_module("loadtest_worker", "--out", str(tmp_path), prelude=WITHOUT_LOAD_EXTRA)
    assert result.returncode == 1
    assert "matplotlib not installed" in result.stderr


@pytest.mark.parametrize(("script", "module"), WRAPPERS.items())
def test_each_wrapper_runs_its_module(script: str, module: str) -> None:
    text = (ROOT / "scripts" / script).read_text()
    assert f" -m benchmarks.{module} " in text
    assert (ROOT / "benchmarks" / f"{module}.py").is_file()


def results(wall: float, size: int, vmaf: float) -> worker.Result:
    return worker.Result([worker.Run(wall, wall, size)], Quality(vmaf=vmaf, ssim=0.95))


PRODUCTION = results(10.0, 100, 95.0)


def test_worker_exits_0_when_every_clip_meets_its_targets() -> None:
    ours = results(7.0, 100, 94.0)
    clips = {
        "static": {"ours": ours, "production": PRODUCTION},
        "fast": {"ours": ours, "production": PRODUCTION},
    }
    assert worker.check_targets(clips) == 0


@pytest.mark.parametrize(
    ("ours", "missed"),
    [
        (results(7.1, 40, 95.0), "fast time"),
        (results(6.0, 101, 95.0), "fast bytes"),
        (results(6.0, 40, 93.9), "fast VMAF"),
    ],
)
def test_worker_exits_non_zero_when_one_clip_misses_a_target(
    ours: worker.Result, missed: str, capsys: pytest.CaptureFixture[str]
) -> None:
    passing = results(6.0, 40, 95.0)
    clips = {
        "static": {"ours": passing, "production": PRODUCTION},
        "fast": {"ours": ours, "production": PRODUCTION},
    }
    assert worker.check_targets(clips) == MISSED
    assert capsys.readouterr().out.splitlines()[-1].startswith(f"missed 1 of 6 targets: {missed}")


def test_worker_clips_are_chosen_by_name() -> None:
    assert [clip.name for clip in content.by_names(["grain", "static"])] == ["static", "grain"]
    assert len(content.by_names(None)) == len(content.CLIPS) >= 6
    with pytest.raises(ValueError, match="unknown clips"):
        content.by_names(["nope"])


def rss_round(delta_mib: float) -> upload_rss.Round:
    idle = 200_000
    return upload_rss.Round(idle, idle + round(delta_mib * 1024), 1.0, 0, 0.5, 100 * 1024 * 1024)


def test_upload_rss_exit_status_follows_the_median_delta() -> None:
    assert upload_rss.print_summary([rss_round(10), rss_round(40), rss_round(20)], 32) == 0
    assert upload_rss.print_summary([rss_round(10), rss_round(40), rss_round(35)], 32) == MISSED


def test_api_table_flags_non_2xx_answers() -> None:
    def figures(ms: float, non_2xx: int = 0) -> dict:
        return {"median_ms": ms, "requests_per_batch": 1000, "non_2xx": non_2xx,
                "workers_changed": False}  # fmt: skip

    rows = [
        {"class": "health", "anb": figures(0.18), "baseline": figures(0.15),
         "ratios": {"anb/baseline": 1.2}},
        {"class": "vote", "anb": figures(3.26, non_2xx=2), "baseline": figures(0.19),
         "ratios": {"anb/baseline": 17.16}},
    ]  # fmt: skip
    header, rule, health, vote = table(rows, ["anb", "baseline"]).splitlines()
    assert header.split() == ["class", "req", "anb", "ms", "baseline", "ms", "anb/baseline",
                              "non-2xx"]  # fmt: skip
    assert rule == "-" * len(header)
    assert health.split() == ["health", "1000", "0.180", "0.150", "1.20", "0"]
    assert vote.endswith("anb 2  ERRORS")
