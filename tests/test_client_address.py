"""The client address that login limits count against: X-Forwarded-For is believed only from
ANB_TRUSTED_PROXIES, right-most untrusted entry first (a real server in a subprocess)."""

from __future__ import annotations

import shlex
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from pydantic import ValidationError

from anb.core.settings import Settings
from tests.support.api import PASSWORD
from tests.support.servers import anb_serve_command, free_port, served, server_env

LIMIT = 3  # wrong logins per client address and e-mail
VICTIM, ATTACKER = "198.51.100.9", "203.0.113.7"
ROOT = Path(__file__).resolve().parent.parent


@contextmanager
def _server(kind: str, tmp_path: Path, trusted: str = "") -> Iterator[str]:
    env = server_env(
        tmp_path / "data",
        ANB_JWT_SECRET="client-address-" + "x" * 32,
        ANB_LOGIN_RATE_LIMIT=f"{LIMIT}/300",
        ANB_TRUSTED_PROXIES=trusted,
    )
    port = free_port()
    command, stop = anb_serve_command(port), signal.SIGINT
    if kind == "gunicorn":
        subprocess.run([sys.executable, "-m", "anb.cli", "migrate"], env=env, check=True)
        command, stop = _production_api_command(port), signal.SIGTERM
    with served(command, env, port, tmp_path / "server.log", stop=stop) as server:
        yield server.base_url


def _production_api_command(port: int) -> list[str]:
    """The EC2 API unit's command line, on this port with one worker."""
    unit = (ROOT / "ec2" / "systemd" / "anb-api.service").read_text()
    [line] = [line for line in unit.splitlines() if line.startswith("ExecStart=")]
    argv = shlex.split(line.removeprefix("ExecStart="))
    argv[0] = str(Path(sys.executable).parent / "gunicorn")
    argv[argv.index("--bind") + 1] = f"127.0.0.1:{port}"
    argv[argv.index("--workers") + 1] = "1"
    return argv


def _player(api: httpx.Client) -> str:
    email = f"{uuid.uuid4().hex[:10]}@example.com"
    fields = {"first_name": "Ana", "last_name": "Ruiz", "city": "Cali", "country": "Colombia"}
    data = {**fields, "email": email, "password1": PASSWORD, "password2": PASSWORD}
    assert api.post("/api/auth/signup", json=data).status_code == 201
    return email


def _login(api: httpx.Client, email: str, password: str, forwarded: str | None) -> int:
    headers = {"X-Forwarded-For": forwarded} if forwarded else {}
    body = {"email": email, "password": password}
    return api.post("/api/auth/login", json=body, headers=headers).status_code


def test_without_trusted_proxies_a_forged_forwarded_for_changes_nothing(tmp_path: Path) -> None:
    """`anb serve` trusts no proxy by default: a new spoofed address per attempt does not
    escape the limit, which counts the connection's own address."""
    with _server("embedded", tmp_path) as base_url, httpx.Client(base_url=base_url) as api:
        email = _player(api)
        answers = [_login(api, email, "wrong", f"10.9.{n}.{n}") for n in range(LIMIT + 1)]
        assert answers == [401] * LIMIT + [429]
        assert _login(api, email, PASSWORD, "10.200.0.1") == 429  # still this client's count


def test_behind_a_trusted_proxy_the_right_most_untrusted_address_counts(tmp_path: Path) -> None:
    """Gunicorn with the EC2 unit's command line, the test client playing the load balancer
    (127.0.0.1 trusted), which appends the address it saw: an attacker who writes the
    victim's address first is counted as himself, and the victim can still log in."""
    with (
        _server("gunicorn", tmp_path, trusted="127.0.0.1") as base_url,
        httpx.Client(base_url=base_url) as api,
    ):
        email = _player(api)
        spoofed = f"{VICTIM}, {ATTACKER}"  # what the balancer forwards for the attacker
        answers = [_login(api, email, "wrong", spoofed) for _ in range(LIMIT + 1)]
        assert answers == [401] * LIMIT + [429]
        assert _login(api, email, PASSWORD, ATTACKER) == 429
        assert _login(api, email, PASSWORD, VICTIM) == 200


def test_a_wildcard_or_a_name_is_not_a_trusted_proxy() -> None:
    for value in ("*", "alb.internal", "10.0.0.0/33"):
        with pytest.raises(ValidationError, match="not an IP address or network"):
            Settings(trusted_proxies=value)
    assert Settings(trusted_proxies="10.0.0.0/16, 127.0.0.1").trusted_proxy_list == [
        "10.0.0.0/16",
        "127.0.0.1",
    ]
