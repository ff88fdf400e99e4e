"""AWS mode end to end: the API on PostgreSQL, S3, SQS and Redis, `anb poll` in a
subprocess doing the processing: upload → processed → public → vote → ranking."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from fastapi.testclient import TestClient

from anb.queue import get_queue
from anb.queue.sqs import SqsQueue
from tests.clips import Clips
from tests.support.api import download, signup, upload


def test_upload_to_ranking_through_sqs_and_anb_poll(client: TestClient, clips: Clips) -> None:
    if not isinstance(get_queue(), SqsQueue):
        pytest.skip("AWS mode only")
    poller = subprocess.Popen(
        [sys.executable, "-m", "anb.cli", "poll"],
        env={**os.environ, "ANB_POLL_WAIT_SECONDS": "1"},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        player = signup(client, first_name="Iván", last_name="Ríos", city="Medellín")
        fan = signup(client)
        video_id = upload(client, player, clips.landscape, "Tapón").json()["video_id"]
        deadline = time.monotonic() + 120
        video: dict = {}
        while time.monotonic() < deadline:
            video = client.get(f"/api/videos/{video_id}", headers=player.headers).json()
            if video["status"] in ("processed", "failed"):
                break
            time.sleep(0.5)
        assert video["status"] == "processed", video
        assert download(client, video["processed_url"]).content[4:8] == b"ftyp"

        [public] = client.get("/api/public/videos", params={"city": "MEDELLIN"}).json()
        assert public["video_id"] == video_id
        assert (
            client.post(f"/api/public/videos/{video_id}/vote", headers=fan.headers).status_code
            == 200
        )
        ranking = client.get("/api/public/rankings", params={"city": "medellín"}).json()
        assert ranking == [{"position": 1, "username": "Iván Ríos", "city": "Medellín", "votes": 1}]
    finally:
        poller.send_signal(signal.SIGTERM)
        output = poller.communicate(timeout=60)[0]
    assert poller.returncode == 0, output
