"""End to end against `anb serve` in a subprocess: a fresh data dir, real clips, real HTTP."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.clips import Clips
from tests.support.api import signup, upload
from tests.support.servers import free_port, wait_until_healthy


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    data_dir = tmp_path_factory.mktemp("served") / "data"
    port = free_port()
    env = {key: value for key, value in os.environ.items() if not key.startswith("ANB_")}
    env["ANB_DATA_DIR"] = str(data_dir)
    command = [sys.executable, "-m", "anb.cli", "serve", "--port", str(port)]
    server = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base_url = f"http://127.0.0.1:{port}"
    try:
        wait_until_healthy(base_url, server)
        with httpx.Client(base_url=base_url, timeout=60) as client:
            yield client
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(15)
    assert (data_dir / "anb.db").is_file()  # created and migrated on first start
    assert (data_dir / "jwt-secret").is_file()


def test_health_docs_and_readiness(served: httpx.Client) -> None:
    assert served.get("/health").json() == {"status": "healthy"}
    assert served.get("/api/health/ready").status_code == 200
    docs = served.get("/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()


def test_the_contract_end_to_end(served: httpx.Client, clips: Clips) -> None:
    player = signup(served)
    accepted = upload(served, player, clips.landscape, "Volcada 1080p")
    assert accepted.status_code == 201, accepted.text
    assert upload(served, player, clips.portrait, "Vertical").status_code == 201
    refused = {
        name: upload(served, player, getattr(clips, name)).json()["detail"]
        for name in ("text", "matroska", "truncated", "short", "long", "low_res")
    }
    assert all(detail.startswith("video_file: ") for detail in refused.values()), refused

    videos = served.get("/api/videos", headers=player.headers).json()
    assert [video["title"] for video in videos] == ["Vertical", "Volcada 1080p"]
    video_id = accepted.json()["video_id"]
    detail = served.get(f"/api/videos/{video_id}", headers=player.headers).json()
    assert detail["original_url"].startswith(str(served.base_url))
    assert served.get(detail["original_url"]).content == Path(clips.landscape).read_bytes()

    assert served.delete(f"/api/videos/{video_id}", headers=player.headers).status_code == 200
    assert served.get(detail["original_url"]).status_code == 404
    assert served.get("/api/public/rankings").json() == []


def _wait_until_processed(client: httpx.Client, player, video_id: str) -> dict:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        video = client.get(f"/api/videos/{video_id}", headers=player.headers).json()
        if video["status"] in ("processed", "failed"):
            return video
        time.sleep(0.5)
    pytest.fail("the embedded worker did not process the video in 120 s")


def test_upload_is_processed_published_voted_and_ranked(served: httpx.Client, clips: Clips) -> None:
    player = signup(served, first_name="Rosa", last_name="Mejía", city="Cúcuta")
    fan = signup(served)
    video_id = upload(served, player, clips.portrait, "Bandeja").json()["video_id"]
    video = _wait_until_processed(served, player, video_id)
    assert video["status"] == "processed" and video["processed_at"].endswith("Z")
    clip = served.get(video["processed_url"])
    assert clip.status_code == 200 and clip.content[4:8] == b"ftyp"

    public = served.get("/api/public/videos", params={"city": "cucuta"}).json()
    assert [item["video_id"] for item in public] == [video_id]
    vote = served.post(f"/api/public/videos/{video_id}/vote", headers=fan.headers)
    assert vote.status_code == 200
    ranking = served.get("/api/public/rankings", params={"city": "CUCUTA"}).json()
    assert ranking == [{"position": 1, "username": "Rosa Mejía", "city": "Cúcuta", "votes": 1}]
    refused = served.delete(f"/api/videos/{video_id}", headers=player.headers)
    assert refused.status_code == 400
