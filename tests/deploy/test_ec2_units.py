"""The systemd units of ec2/systemd: parsed and checked here, and verified by systemd-analyze
when it is available.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from anb import gunicorn_conf
from tests.support.ec2 import APP_PORT, JOB_SECONDS, SYSTEMD, parse_unit, timespan, unit

UNITS = sorted(p.name for p in SYSTEMD.glob("*.service"))


def started_by_on_failure() -> set[str]:
    """Units that only another unit's OnFailure= starts (one-shot, never enabled)."""
    return {name for other in UNITS for name in unit(other).get("Unit", {}).get("OnFailure", [])}


@pytest.mark.parametrize("name", UNITS)
def test_unit_has_the_required_keys(name: str) -> None:
    sections = unit(name)
    assert sections["Unit"]["Description"]
    service = sections["Service"]
    (exec_start,) = service["ExecStart"]
    assert exec_start.startswith("/"), "ExecStart needs an absolute path"
    if name in started_by_on_failure():
        assert service["Type"] == ["oneshot"] and "Install" not in sections
        return
    assert service.get("Restart", ["no"])[-1] in {"on-failure", "always"}
    assert sections["Install"]["WantedBy"] == ["multi-user.target"]


def test_a_worker_that_cannot_stay_up_is_replaced() -> None:
    sections = unit("anb-worker.service")
    assert sections["Service"]["Restart"] == ["always"]
    assert sections["Unit"]["OnFailure"] == ["anb-unhealthy.service"]
    # the start limit is what ends a crash loop: 5 starts, RestartSec apart, fit in the interval
    burst = int(sections["Unit"]["StartLimitBurst"][-1])
    restart = timespan(sections["Service"]["RestartSec"][-1])
    assert burst * restart < timespan(sections["Unit"]["StartLimitIntervalSec"][-1])
    unhealthy = unit("anb-unhealthy.service")["Service"]
    assert unhealthy["ExecStart"] == ["/usr/local/bin/anb-lifecycle unhealthy"]
    assert unhealthy["EnvironmentFile"] == ["/etc/anb/lifecycle.env"]


@pytest.mark.parametrize("name", ["anb-api.service", "anb-worker.service"])
def test_app_units_run_as_anb_with_the_environment_file(name: str) -> None:
    service = unit(name)["Service"]
    assert service["User"] == ["anb"]
    assert service["EnvironmentFile"][0] == "/etc/anb/anb.env"
    assert service["KillMode"] == ["mixed"], "SIGTERM to the main process only"
    assert service["KillSignal"] == ["SIGTERM"]


def test_api_unit_runs_gunicorn_with_uvicorn_workers() -> None:
    service = unit("anb-api.service")["Service"]
    assert service["Restart"] == ["on-failure"]
    argv = shlex.split(service["ExecStart"][0])
    assert argv[0] == "/opt/anb/venv/bin/gunicorn"

    def option(flag: str) -> str:
        return argv[argv.index(flag) + 1]

    assert option("-c") == "python:anb.gunicorn_conf"
    assert gunicorn_conf.worker_class == "uvicorn_worker.UvicornWorker"
    assert gunicorn_conf.graceful_timeout == 30, "as long as the ALB's deregistration delay"
    assert "anb.api:create_app()" in argv
    assert option("--bind") == f"0.0.0.0:{APP_PORT}"
    # X-Forwarded-For is believed by the app, from ANB_TRUSTED_PROXIES (the VPC) only
    assert not any(arg.startswith("--forwarded-allow-ips") for arg in argv)
    assert gunicorn_conf.forwarded_allow_ips == ""
    assert option("--workers") == "${GUNICORN_WORKERS}"
    assert "GUNICORN_WORKERS=2" in service["Environment"], "a default when instance.env is absent"
    assert "-/etc/anb/instance.env" in service["EnvironmentFile"]


def test_worker_unit_lets_the_job_in_hand_finish() -> None:
    service = unit("anb-worker.service")["Service"]
    assert service["ExecStart"] == ["/opt/anb/venv/bin/anb poll"]
    assert timespan(service["TimeoutStopSec"][-1]) >= JOB_SECONDS
    assert "-/etc/anb/instance.env" in service["EnvironmentFile"]


def test_unit_checks_catch_problems() -> None:
    text = (SYSTEMD / "anb-worker.service").read_text()
    short = parse_unit(text.replace("TimeoutStopSec=960", "TimeoutStopSec=5min"))
    assert timespan(short["Service"]["TimeoutStopSec"][-1]) < JOB_SECONDS
    with pytest.raises(ValueError):
        parse_unit(text.replace("[Service]", "Service]"))
    assert timespan("16min") == 960 and timespan("1h 30s") == 3630


def test_systemd_analyze_verifies_the_units(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if not analyze:
        pytest.skip("systemd-analyze is not available")
    for path in SYSTEMD.glob("*.service"):
        shutil.copy(path, tmp_path / path.name)
    names = [n for n in UNITS if "@" not in n] + ["anb-journal-export@anb-worker.service"]
    result = subprocess.run(
        [analyze, "verify", "--man=no", *(str(tmp_path / n) for n in names)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
    )
    # the programs live on the instances, not here: only that complaint is expected
    problems = [
        line
        for line in (result.stdout + result.stderr).splitlines()
        if line.strip() and not re.search(r"Command \S+ is not executable", line)
    ]
    assert problems == []
