"""Child processes of the benchmarks: free ports, servers waited for and stopped, log tails,
and the CPU time of process groups from /proc."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx

BIN = Path(sys.executable).parent
"""The scripts of this interpreter's environment (anb, gunicorn, locust): the code measured
is the code this process imports."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_http(url: str, process: subprocess.Popen, timeout: float = 60) -> None:
    """Until `url` answers anything but a 5xx; fails early if `process` exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args!r} exited with {process.returncode}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=2).status_code < 500:
                return
        time.sleep(0.3)
    raise RuntimeError(f"{url} did not answer within {timeout} s")


def stop(process: subprocess.Popen | None, timeout: float = 30) -> None:
    """SIGTERM, then SIGKILL after `timeout` s."""
    if process is None or process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def log_tail(path: Path, lines: int = 30) -> str:
    """The last lines of a server's log ("" if there is none): what to show when it fails."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


# --- CPU accounting --------------------------------------------------------------------------


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> tuple[int, float] | None:
    """(ppid, CPU seconds of the process and of its reaped children)."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rindex(")") + 2 :].split()
    utime, stime, cutime, cstime = (int(value) for value in fields[11:15])
    return int(fields[1]), (utime + stime + cutime + cstime) / CLOCK_TICKS


def _cmdline(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return ""
    return raw.replace(b"\0", b" ").decode(errors="replace")


def process_tree(root: int) -> list[int]:
    """`root` and its live descendants."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (stat := _stat(int(entry.name))) is not None:
            children.setdefault(stat[0], []).append(int(entry.name))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def machine_jiffies() -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs since boot."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    total = sum(values[:8])
    return total - idle, total


@dataclass
class CpuMeter:
    """CPU seconds used by named process groups, and the whole machine, between snapshots."""

    groups: dict[str, Callable[[], list[int]]]  # name -> the pids of the group now

    def snapshot(self) -> dict[str, float]:
        snap: dict[str, float] = {"_wall": time.monotonic()}
        for name, pids in self.groups.items():
            snap[name] = sum(stat[1] for pid in pids() if (stat := _stat(pid)) is not None)
        busy, total = machine_jiffies()
        snap["_busy"], snap["_total"] = busy / CLOCK_TICKS, total / CLOCK_TICKS
        return snap

    @staticmethod
    def cores(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
        """Average cores used by each group between two snapshots, and `machine` (all
        processes on the box, including other people's work), `machine_share` of its CPUs."""
        wall = after["_wall"] - before["_wall"]
        result = {
            name: round(max(after[name] - before.get(name, 0.0), 0.0) / wall, 3)
            for name in after
            if not name.startswith("_")
        }
        ncpu = os.cpu_count() or 1
        busy = (after["_busy"] - before["_busy"]) / ((after["_total"] - before["_total"]) or 1)
        result["machine"] = round(busy * ncpu, 3)
        result["machine_share"] = round(busy, 3)
        return result


def pids_matching(text: str) -> Callable[[], list[int]]:
    """The pids whose command line contains `text` (e.g. a PostgreSQL backend's database)."""

    def find() -> list[int]:
        return [
            int(entry.name)
            for entry in Path("/proc").iterdir()
            if entry.name.isdigit() and text in _cmdline(int(entry.name))
        ]

    return find
