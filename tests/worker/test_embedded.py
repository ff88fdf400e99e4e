"""The embedded worker: the local queue fed to handle_batch, and nothing lost on restart."""

from __future__ import annotations

import time

import pytest
from fastapi.testclient import TestClient

from anb.core.db import unit_of_work
from anb.queue import get_queue
from anb.queue.local import LocalQueue
from anb.videos.models import Video, VideoStatus
from anb.worker.embedded import EmbeddedWorker
from tests.clips import Clips
from tests.support.api import Player, upload


def _statuses(ids: list[str]) -> list[VideoStatus]:
    with unit_of_work() as session:
        return [session.get(Video, video_id).status for video_id in ids]


@pytest.fixture(autouse=True)
def _embedded_only(configure) -> None:
    if not isinstance(get_queue(), LocalQueue):
        pytest.skip("the embedded worker consumes the in-process queue only")


def test_a_restart_picks_up_what_the_last_run_left(
    client: TestClient, player: Player, clips: Clips
) -> None:
    ids = [upload(client, player, clips.landscape, f"V{i}").json()["video_id"] for i in range(2)]
    with unit_of_work() as session:  # as if a worker died mid-job
        session.get(Video, ids[1]).status = VideoStatus.processing
    fresh_queue = LocalQueue()  # the jobs in memory died with the previous process
    worker = EmbeddedWorker(fresh_queue, concurrency=2, max_attempts=3)
    worker.start()
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and _statuses(ids) != [VideoStatus.processed] * 2:
            time.sleep(0.3)
    finally:
        worker.stop()
    assert _statuses(ids) == [VideoStatus.processed] * 2


def test_failed_jobs_are_retried_then_dropped(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    queue = get_queue()
    assert isinstance(queue, LocalQueue)
    queue.send({"not": "a job"})
    worker = EmbeddedWorker(queue, concurrency=1, max_attempts=2)
    worker.start()
    try:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and "dropping a job" not in caplog.text:
            time.sleep(0.1)
    finally:
        worker.stop()
    assert caplog.text.count("poison message") == 2  # the first try and one retry
    assert "dropping a job after 2 attempts" in caplog.text
    assert queue.pending() == 0
