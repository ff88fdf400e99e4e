"""The cache URL the EC2 boot writes for ElastiCache (TLS in transit, an AUTH token):
`rediss://:<token>@host:port/0`, against a real redis-server speaking TLS only."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from anb.cache.redis import RedisCache
from tests.support.servers import free_port
from tests.support.services import services_missing

TOKEN = "T0kenFromSecretsManager"


def make_certificate(directory: Path) -> Path:
    openssl = shutil.which("openssl")
    if not openssl:
        pytest.skip("openssl is not installed")
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-keyout", str(directory / "key.pem"), "-out", str(directory / "cert.pem"),
         "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost"],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return directory / "cert.pem"


@pytest.fixture
def tls_redis(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    server = shutil.which("redis-server")
    if not server:
        services_missing("redis-server is not installed")
    certificate = make_certificate(tmp_path)
    port = free_port()
    process = subprocess.Popen(
        [server, "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1",
         "--tls-cert-file", str(certificate), "--tls-key-file", str(tmp_path / "key.pem"),
         "--tls-ca-cert-file", str(certificate), "--tls-auth-clients", "no",
         "--requirepass", TOKEN, "--save", "", "--appendonly", "no", "--dir", str(tmp_path)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 10
        while not _listening(port):
            if process.poll() is not None:
                services_missing(f"redis-server cannot serve TLS: {process.stdout.read()[-300:]}")
            assert time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.05)
        yield port, certificate
    finally:
        process.terminate()
        process.wait(timeout=10)


def _listening(port: int) -> bool:
    import socket

    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def test_the_app_speaks_tls_with_the_auth_token(tls_redis: tuple[int, Path]) -> None:
    port, certificate = tls_redis
    # in AWS the CA is public and in the system's trust store; here it is given in the URL
    url = f"rediss://:{TOKEN}@localhost:{port}/0?ssl_ca_certs={certificate}"
    cache = RedisCache.from_url(url)
    cache.set("ranking:page", "[1, 2, 3]", ttl_seconds=30)
    assert cache.get("ranking:page") == "[1, 2, 3]"


@pytest.mark.parametrize("mistake", ["wrong token", "no TLS", "unknown CA"])
def test_a_wrong_cache_url_degrades_to_no_cache(tls_redis: tuple[int, Path], mistake: str) -> None:
    port, certificate = tls_redis
    url = {
        "wrong token": f"rediss://:nope@localhost:{port}/0?ssl_ca_certs={certificate}",
        "no TLS": f"redis://:{TOKEN}@localhost:{port}/0",
        "unknown CA": f"rediss://:{TOKEN}@localhost:{port}/0",
    }[mistake]
    cache = RedisCache.from_url(url)
    cache.set("key", "value", ttl_seconds=30)  # refused, not raised: the API keeps answering
    assert cache.get("key") is None
