"""Servers in a subprocess (`anb serve` and others): a port, an environment, health."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until_healthy(
    base_url: str, server: subprocess.Popen, *, path: str = "/health", seconds: float = 30
) -> None:
    """Wait for a server started in a subprocess to answer 200 on `path`."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if server.poll() is not None:
            output = server.stderr.read().decode()[-2000:] if server.stderr else "see its log"
            pytest.fail(f"the server exited: {output}")
        try:
            if httpx.get(f"{base_url}{path}", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.1)
    pytest.fail(f"the server did not answer {path} in {seconds:g} s")


def server_env(data_dir: Path, **settings: str) -> dict[str, str]:
    """This process's environment without its ANB_ settings, plus `settings` (ANB_ names)."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("ANB_")}
    return env | {"ANB_DATA_DIR": str(data_dir)} | settings


def untraced(env: dict[str, str]) -> dict[str, str]:
    """`env` for a server whose speed a test judges: without coverage's subprocess variables,
    so it runs untraced (the tracer slows Python code several times; under it, 503s that
    must come within 1.5 s came after 3.4 s)."""
    return {
        k: v
        for k, v in env.items()
        if k not in ("COVERAGE_PROCESS_CONFIG", "COVERAGE_PROCESS_START")
    }


@contextmanager
def tracer_paused() -> Iterator[None]:
    """Coverage paused in this process: a test that times a server from here must not have
    its own clients slowed by the tracer (they share the CPU with the server)."""
    try:
        from coverage import Coverage
    except ImportError:  # the suite runs without coverage too
        yield
        return
    current = Coverage.current()
    if current is None:
        yield
        return
    current.stop()
    try:
        yield
    finally:
        current.start()


@dataclass
class Served:
    base_url: str
    log: Path  # what the server wrote, stdout and stderr

    @property
    def output(self) -> str:
        return self.log.read_text(errors="replace")


@contextmanager
def served(
    command: list[str], env: dict[str, str], port: int, log: Path, *, stop: int = signal.SIGINT
) -> Iterator[Served]:
    """A server started in a subprocess, once it answers `/health`; stopped with `stop`."""
    with log.open("wb") as sink:
        process = subprocess.Popen(command, env=env, stdout=sink, stderr=subprocess.STDOUT)
        try:
            server = Served(f"http://127.0.0.1:{port}", log)
            wait_until_healthy(server.base_url, process, seconds=60)
            yield server
        finally:
            process.send_signal(stop)
            process.wait(30)


def anb_serve_command(port: int) -> list[str]:
    return [sys.executable, "-m", "anb.cli", "serve", "--port", str(port)]
