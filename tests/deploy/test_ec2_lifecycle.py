"""ec2/bin/anb-lifecycle, which lets a busy worker finish before its instance goes: run for real
against stub `curl` (the instance metadata), `aws` and `systemctl` commands. Nothing here calls
AWS.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import time
from pathlib import Path

import pytest

from tests.support.cloudformation import Template
from tests.support.ec2 import EC2, bootstrap_env, make_stub, termination_hook, unit


def lifecycle_stubs(
    tmp_path: Path, *, state: str, stop_seconds: float, heartbeat_seconds: int = 300
) -> dict[str, str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls, state_file = tmp_path / "calls", tmp_path / "state"
    state_file.write_text(state)
    log = f'echo "$(basename "$0") $*" >> {shlex.quote(str(calls))}\n'
    make_stub(
        bin_dir,
        "curl",
        f"""url="${{!#}}"
case "$url" in
  */api/token) echo token-123 ;;
  */meta-data/instance-id) echo i-0abc ;;
  */meta-data/autoscaling/target-lifecycle-state) cat {shlex.quote(str(state_file))} ;;
  *) exit 22 ;;
esac
""",
    )
    make_stub(
        bin_dir,
        "aws",
        log + "if [[ $2 == describe-auto-scaling-instances ]]; then echo anb-prod-worker; fi\n",
    )
    unit_state = tmp_path / "unit-state"
    unit_state.write_text("active")
    make_stub(
        bin_dir,
        "systemctl",
        log
        + f"[[ $1 != show ]] || exec cat {shlex.quote(str(unit_state))}\nsleep {stop_seconds}\n",
    )
    return {
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "ANB_LIFECYCLE_HOOK": "anb-worker-drain",
        "ANB_LIFECYCLE_POLL_SECONDS": "0.2",
        "ANB_LIFECYCLE_HEARTBEAT_SECONDS": str(heartbeat_seconds),
    }


def calls_of(tmp_path: Path) -> list[str]:
    calls = tmp_path / "calls"
    return calls.read_text().splitlines() if calls.exists() else []


COMPLETE = (
    "aws autoscaling complete-lifecycle-action --lifecycle-hook-name anb-worker-drain "
    "--auto-scaling-group-name anb-prod-worker --instance-id i-0abc "
    "--lifecycle-action-result CONTINUE"
)


def test_lifecycle_stops_the_worker_then_completes_the_hook(tmp_path: Path) -> None:
    env = lifecycle_stubs(tmp_path, state="Terminated", stop_seconds=0)
    result = subprocess.run(
        [str(EC2 / "bin/anb-lifecycle"), "watch"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr + result.stdout
    calls = [c for c in calls_of(tmp_path) if "describe-auto-scaling-instances" not in c]
    assert calls == ["systemctl stop anb-worker.service", COMPLETE]


def test_lifecycle_waits_while_the_instance_is_in_service(tmp_path: Path) -> None:
    env = lifecycle_stubs(tmp_path, state="InService", stop_seconds=0)
    process = subprocess.Popen(
        [str(EC2 / "bin/anb-lifecycle"), "watch"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        time.sleep(1.5)
        assert process.poll() is None, "it must keep watching"
        assert calls_of(tmp_path) == []
        (tmp_path / "state").write_text("Terminated")
        assert process.wait(timeout=20) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert calls_of(tmp_path)[-1] == COMPLETE


def test_lifecycle_heartbeats_while_a_long_job_finishes(tmp_path: Path) -> None:
    env = lifecycle_stubs(tmp_path, state="Terminated", stop_seconds=2.5, heartbeat_seconds=1)
    result = subprocess.run(
        [str(EC2 / "bin/anb-lifecycle"), "drain"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr + result.stdout
    calls = calls_of(tmp_path)
    heartbeats = [c for c in calls if "record-lifecycle-action-heartbeat" in c]
    assert heartbeats, calls
    assert "--lifecycle-hook-name anb-worker-drain" in heartbeats[0]
    assert calls[-1] == COMPLETE


@pytest.mark.parametrize(("state", "marked"), [("failed", True), ("activating", False)])
def test_a_worker_failed_for_good_marks_its_instance_unhealthy(
    tmp_path: Path, state: str, marked: bool
) -> None:
    env = lifecycle_stubs(tmp_path, state="InService", stop_seconds=0)
    (tmp_path / "unit-state").write_text(state)
    result = subprocess.run(
        [str(EC2 / "bin/anb-lifecycle"), "unhealthy"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr + result.stdout
    mark = (
        "aws autoscaling set-instance-health --instance-id i-0abc --health-status Unhealthy "
        "--no-should-respect-grace-period"
    )
    assert (mark in calls_of(tmp_path)) is marked


def test_lifecycle_hook_name_is_the_one_the_unit_reads(template: Template) -> None:
    service = unit("anb-lifecycle.service")["Service"]
    assert service["EnvironmentFile"] == ["/etc/anb/lifecycle.env"]
    assert service["ExecStart"] == ["/usr/local/bin/anb-lifecycle watch"]
    worker = (EC2 / "user-data" / "worker.sh").read_text()
    assert "ANB_LIFECYCLE_HOOK=%s" in worker and '"$ANB_ETC/lifecycle.env"' in worker
    assert "/usr/local/bin/anb-lifecycle" in worker
    assert (
        bootstrap_env(template, "WorkerLaunchTemplate")["ANB_LIFECYCLE_HOOK"]
        == (termination_hook(template)["LifecycleHookName"])
    )
