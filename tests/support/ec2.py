"""The EC2 deployment in ec2/ as the tests read it: its files, the launch templates' user-data,
the systemd units, and stub commands for running its shell scripts here."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from tests.support.cloudformation import Template, props, resources, sub_text, target

ROOT = Path(__file__).resolve().parents[2]
EC2 = ROOT / "ec2"
TEMPLATE = EC2 / "anb.yaml"
SYSTEMD = EC2 / "systemd"
APP_PORT = 8000
JOB_SECONDS = 900  # ANB_JOB_TIMEOUT_SECONDS: the longest ffmpeg run of one job


# ------------------------------------------------------------------------------------ user-data


def user_data(t: Template, launch_template: str) -> str:
    encoded = props(t, launch_template)["LaunchTemplateData"]["UserData"]
    return sub_text(encoded["Fn::Base64"])


def bootstrap_env(t: Template, launch_template: str) -> dict[str, str]:
    """The KEY=VALUE lines the launch template's user-data writes to /etc/anb/bootstrap.env."""
    text = user_data(t, launch_template)
    match = re.search(r"> /etc/anb/bootstrap.env <<'EOF'\n(.*?)\nEOF\n", text, re.S)
    assert match, "the user-data must write /etc/anb/bootstrap.env with a quoted heredoc"
    return dict(line.split("=", 1) for line in match.group(1).splitlines())


def termination_hook(t: Template) -> dict[str, Any]:
    """The worker group's one lifecycle hook on termination (its properties)."""
    hooks = [
        h
        for h in props(t, "WorkerGroup").get("LifecycleHookSpecificationList", [])
        if h["LifecycleTransition"] == "autoscaling:EC2_INSTANCE_TERMINATING"
    ]
    hooks += [
        h["Properties"]
        for h in resources(t, "AWS::AutoScaling::LifecycleHook").values()
        if target(h["Properties"]["AutoScalingGroupName"]) == "WorkerGroup"
        and h["Properties"]["LifecycleTransition"] == "autoscaling:EC2_INSTANCE_TERMINATING"
    ]
    assert len(hooks) == 1, "the worker group needs one termination lifecycle hook"
    return hooks[0]


def scripts_text() -> str:
    """The boot scripts of ec2/user-data, one after the other."""
    return "\n".join(
        (EC2 / "user-data" / name).read_text() for name in ("api.sh", "worker.sh", "lib.sh")
    )


def make_stub(directory: Path, name: str, body: str) -> None:
    """An executable bash script `name` in `directory` (put it first on PATH) running `body`."""
    stub = directory / name
    stub.write_text("#!/bin/bash\n" + body)
    stub.chmod(0o755)


# ------------------------------------------------------------------------------------ systemd


def parse_unit(text: str) -> dict[str, dict[str, list[str]]]:
    """A systemd unit as {section: {key: [values in order]}}; raises on malformed lines."""
    sections: dict[str, dict[str, list[str]]] = {}
    current = None
    lines = iter(text.splitlines())
    for raw in lines:
        line = raw.strip()
        while line.endswith("\\"):
            line = line[:-1] + " " + next(lines).strip()
        if not line or line.startswith(("#", ";")):
            continue
        header = re.fullmatch(r"\[([A-Za-z]+)\]", line)
        if header:
            current = sections.setdefault(header.group(1), {})
            continue
        entry = re.fullmatch(r"([A-Za-z][A-Za-z0-9]*)\s*=\s*(.*)", line)
        if current is None or not entry:
            raise ValueError(f"not a unit file line: {raw!r}")
        current.setdefault(entry.group(1), []).append(entry.group(2))
    return sections


def unit(name: str) -> dict[str, dict[str, list[str]]]:
    """The unit `name` of ec2/systemd, parsed."""
    return parse_unit((SYSTEMD / name).read_text())


def timespan(value: str) -> float:
    """Seconds in a systemd time span: 960, 960s, 16min, 1h 30min, 500ms."""
    units = {"ms": 0.001, "s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "hr": 3600}
    total = 0.0
    for number, suffix in re.findall(r"(\d+(?:\.\d+)?)\s*([a-z]*)", value):
        total += float(number) * units[suffix or "s"]
    assert total or value.strip() in {"0", "0s"}, f"not a time span: {value!r}"
    return total
