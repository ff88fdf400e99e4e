"""Connections at their edges, against `anb serve` in a subprocess: a client that goes away
mid-request is an INFO line, not an error with a traceback (any anonymous client could
otherwise flood the logs and trip log-based alarms); an answer given before the request's
body was read closes the connection."""

from __future__ import annotations

import http.client
import socket
import time
from pathlib import Path

import httpx

from tests.support.api import signup
from tests.support.servers import anb_serve_command, free_port, served, server_env

ABANDONED = 3


def _upload_head(authorization: str | None) -> bytes:
    """The start of a declared 10 MB upload: its headers, its title, and the first 4 KiB of
    its file part (little enough that the server has read all of it when it answers: a
    server that closes with bytes unread sends a reset, which can destroy its answer)."""
    boundary = "anbdisconnect"
    auth = f"Authorization: {authorization}\r\n" if authorization else ""
    request = (
        "POST /api/videos/upload HTTP/1.1\r\nHost: 127.0.0.1\r\n" + auth
        + f"Content-Type: multipart/form-data; boundary={boundary}\r\n"
        + "Content-Length: 10000000\r\n\r\n"
    )  # fmt: skip
    parts = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="title"\r\n\r\nCorte\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="video_file"; '
        'filename="a.mp4"\r\nContent-Type: video/mp4\r\n\r\n'
    )
    return (request + parts).encode() + b"\0" * 4096


def _abandon_upload(port: int, authorization: str) -> None:
    """Start a 10 MB multipart upload, send its first bytes, and hang up."""
    with socket.create_connection(("127.0.0.1", port)) as connection:
        connection.sendall(_upload_head(authorization))
        time.sleep(0.3)  # the server is reading the body


def test_a_client_gone_mid_upload_is_logged_as_one_info_line(tmp_path: Path) -> None:
    port = free_port()
    env = server_env(tmp_path / "data", ANB_JWT_SECRET="disconnects-" + "x" * 32)
    log = tmp_path / "serve.log"
    with (
        served(anb_serve_command(port), env, port, log) as server,
        httpx.Client(base_url=server.base_url, timeout=30) as api,
    ):
        player = signup(api)
        for _ in range(ABANDONED):
            _abandon_upload(port, player.headers["Authorization"])
        time.sleep(1)
        assert api.get("/health").status_code == 200
    output = server.output
    assert "Traceback" not in output, output[-3000:]
    gone = [line for line in output.splitlines() if "client disconnected" in line]
    assert len(gone) == ABANDONED, output[-3000:]
    assert all('"level":"INFO"' in line.replace(" ", "") for line in gone), gone
    assert all(len(line) < 600 for line in gone), gone
    assert not [path for path in (tmp_path / "data" / "tmp").rglob("*") if path.is_file()]


def _read_until_closed(connection: socket.socket) -> bytes:
    received = b""
    while chunk := connection.recv(65536):  # a timeout here: the server kept it open
        received += chunk
    return received


def test_an_answer_before_the_body_is_read_closes_the_connection(tmp_path: Path) -> None:
    port = free_port()
    env = server_env(tmp_path / "data", ANB_JWT_SECRET="early-answers-" + "x" * 32)
    with served(anb_serve_command(port), env, port, tmp_path / "serve.log"):
        for authorization in (None, "Bearer not-a-token"):
            with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
                connection.sendall(_upload_head(authorization))
                answer = _read_until_closed(connection)
            head = answer.split(b"\r\n\r\n", 1)[0].lower()
            assert head.startswith(b"http/1.1 401"), answer[:200]
            assert b"\r\nconnection: close" in head, head

        # a body read to its end keeps the connection for the next request
        login = b'{"email": "nadie@example.com", "password": "incorrecta"}'
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        sockets = []
        try:
            for _ in range(2):
                connection.request(
                    "POST", "/api/auth/login", login, {"Content-Type": "application/json"}
                )
                answer = connection.getresponse()
                answer.read()
                assert answer.status == 401
                assert answer.getheader("connection") != "close"
                sockets.append(connection.sock)
        finally:
            connection.close()
        assert sockets[0] is sockets[1]  # the same connection served both
