"""The worker under faults, on the AWS-mode stack: `anb poll` subprocesses on moto's SQS and
S3 with PostgreSQL, SIGKILLed mid-render or between upload and publish, publishing while
PostgreSQL goes away, fed the same job twice at once, fed poison, failing every attempt."""

from __future__ import annotations

import json
import threading
import uuid
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from anb.core.db import unit_of_work
from anb.core.settings import get_settings
from anb.processing.probe import UnacceptableVideo, check_iso_bmff, probe
from anb.storage import get_storage
from anb.videos.models import Video, VideoStatus, processed_key_for
from anb.worker.batch import handle_batch
from anb.worker.jobs import GAVE_UP
from anb.worker.poller import Poller, lambda_record
from tests.clips import Clips
from tests.faults.conftest import PollProcess, Queues, through, wait_for
from tests.faults.tcp_proxy import Mode, TcpProxy
from tests.support.api import Player, upload

FINISHED = (VideoStatus.processed, VideoStatus.failed)
PUBLISH_SQL = b"processed_key="  # only the publishing UPDATE sets it (SELECTs read it)
OUTPUT_SECONDS = 21 + 2 + 2  # the landscape clip framed by two 2-second bumpers


def _video(video_id: str) -> Video:
    with unit_of_work() as session:
        video = session.get(Video, video_id)
        assert video is not None, f"video {video_id} is gone"
        return video


def _finished(video_id: str) -> Video | None:
    video = _video(video_id)
    return video if video.status in FINISHED else None


def _uploaded(client: TestClient, player: Player, clips: Clips) -> dict[str, str]:
    """Upload the landscape clip: the API stores it and enqueues its job."""
    response = upload(client, player, clips.landscape)
    assert response.status_code == 201, response.text
    body = response.json()
    return {"video_id": body["video_id"], "task_id": body["task_id"]}


def _stored(video_id: str) -> set[str]:
    return set(get_storage().keys(f"videos/{video_id}/"))


def _job_lines(poller: PollProcess, video_id: str) -> list[str]:
    """The messages of the log lines a poller wrote about this video."""
    return [
        str(record.get("message", ""))
        for record in poller.records()
        if record.get("video_id") == video_id
    ]


def _assert_published_is_whole(
    client: TestClient, player: Player, video: Video, scratch: Path
) -> bytes:
    """The published object is a complete 720p MP4 of the expected length, and it is what
    the player's processed_url serves."""
    published = scratch / "published.mp4"
    get_storage().get_file(video.processed_key, published)
    check_iso_bmff(published)  # every box whole, a moov present
    info = probe(published)  # demuxes every packet: fails on a truncated file
    assert (info.width, info.height) == (1280, 720)
    assert abs(info.duration - OUTPUT_SECONDS) < 1.5, info
    seen = client.get(f"/api/videos/{video.id}", headers=player.headers).json()
    assert seen["status"] == "processed", seen
    served = httpx.get(seen["processed_url"], timeout=30)
    assert served.status_code == 200
    assert served.content == published.read_bytes()
    return served.content


def _rendering() -> Path | None:
    """The output an attempt is rendering right now, once ffmpeg has written its header."""
    for path in get_settings().tmp_dir.glob("job-*/processed.mp4"):
        try:
            if path.stat().st_size > 0:
                return path
        except FileNotFoundError:  # that attempt just finished
            pass
    return None


def _attempts_in_progress() -> int:
    """Attempts between their claim and their end (each has a scratch dir meanwhile)."""
    return len(list(get_settings().tmp_dir.glob("job-*")))


def test_a_worker_killed_mid_job_leaves_the_job_to_another_that_publishes_it_whole(
    client: TestClient,
    player: Player,
    clips: Clips,
    queues: Queues,
    pollers,
    tmp_path: Path,
) -> None:
    job = _uploaded(client, player, clips)
    doomed = pollers()
    partial = wait_for(_rendering, 60, "the first worker to be writing its output", step=0.005)
    claimed = _video(job["video_id"])
    assert claimed.status == VideoStatus.processing and claimed.claim_token
    doomed.kill_hard()  # kill -9, mid-render
    assert doomed.process.returncode == -9
    assert _video(job["video_id"]).status == VideoStatus.processing  # nothing was published
    with pytest.raises(UnacceptableVideo):  # what it left is a half-written MP4
        check_iso_bmff(partial)
    half_written = partial.read_bytes()

    rescuer = pollers()  # gets the job once its visibility (3 s past the last beat) runs out
    video = wait_for(lambda: _finished(job["video_id"]), 90, "the second worker to finish")
    assert video.status == VideoStatus.processed, video.error
    assert video.error is None and video.claim_token is None
    killed_key = processed_key_for(video.id, claimed.claim_token)
    assert video.processed_key != killed_key
    assert _stored(video.id) == {video.original_key, video.processed_key, video.thumbnail_key}
    served = _assert_published_is_whole(client, player, video, tmp_path)
    assert served != half_written
    wait_for(lambda: queues.count() == 0, 15, "the job's message to be deleted")
    assert queues.count(queues.dlq_url) == 0
    assert rescuer.stop() == 0, rescuer.output()
    assert any(line == "job done: processed" for line in _job_lines(rescuer, video.id))


ORPHAN_OUTPUT = (
    "bug: an attempt that uploaded its output and then did not publish it (its publish failed "
    "on the database, or the worker died in between) leaves videos/{id}/processed-{token}.mp4 "
    "in storage for good: anb.worker.jobs.Worker._process deletes its key only when _publish "
    "returns normally, and the attempt that publishes later never removes other attempts' "
    "outputs, so the video ends with two processed objects"
)


def test_a_worker_killed_between_uploading_and_publishing_leaves_no_orphan_output(
    client: TestClient,
    player: Player,
    clips: Clips,
    queues: Queues,
    pollers,
    database_proxy: TcpProxy,
    tmp_path: Path,
) -> None:
    job = _uploaded(client, player, clips)
    # the first worker's PostgreSQL stops answering when it publishes: it hangs there
    database_proxy.fail_when_sent(PUBLISH_SQL, Mode.blackhole)
    doomed = pollers(ANB_DATABASE_URL=through(database_proxy, get_settings().database_url))
    wait_for(lambda: database_proxy.mode is Mode.blackhole, 60, "the first worker to publish")
    token = _video(job["video_id"]).claim_token
    killed_key = processed_key_for(job["video_id"], token)
    assert killed_key in _stored(job["video_id"])  # uploaded, not yet published
    doomed.kill_hard()  # kill -9 between the upload and the publish

    rescuer = pollers()  # straight to PostgreSQL
    video = wait_for(lambda: _finished(job["video_id"]), 90, "the second worker to finish")
    assert video.status == VideoStatus.processed, video.error
    assert video.processed_key != killed_key
    _assert_published_is_whole(client, player, video, tmp_path)
    wait_for(lambda: queues.count() == 0, 15, "the job's message to be deleted")
    assert rescuer.stop() == 0, rescuer.output()
    assert _stored(video.id) == {video.original_key, video.processed_key, video.thumbnail_key}


def _record(job: dict[str, str], receive_count: int) -> dict:
    message = {
        "MessageId": str(uuid.uuid4()),
        "ReceiptHandle": str(uuid.uuid4()),
        "Body": json.dumps(job),
        "Attributes": {"ApproximateReceiveCount": str(receive_count)},
        "MessageAttributes": {
            "correlation_id": {"DataType": "String", "StringValue": job["task_id"]}
        },
    }
    return lambda_record(message, "arn:aws:sqs:us-east-1:123456789012:jobs", "us-east-1")


def test_a_publish_failing_on_the_database_leaves_no_orphan_output(
    client: TestClient,
    player: Player,
    clips: Clips,
    configure,
    database_proxy: TcpProxy,
) -> None:
    job = _uploaded(client, player, clips)
    # the batch handler in-process, its PostgreSQL through the proxy, which goes down the
    # moment the attempt sends its publishing UPDATE
    configure(ANB_DATABASE_URL=through(database_proxy, get_settings().database_url))
    database_proxy.fail_when_sent(PUBLISH_SQL, Mode.refuse)
    first = handle_batch({"Records": [_record(job, receive_count=1)]})
    assert len(first["batchItemFailures"]) == 1  # failed; SQS would deliver it again
    assert database_proxy.mode is Mode.refuse
    database_proxy.forward()
    failed_token_outputs = {
        key for key in _stored(job["video_id"]) if key.rsplit("/", 1)[1].startswith("processed-")
    }
    second = handle_batch({"Records": [_record(job, receive_count=2)]})
    assert second == {"batchItemFailures": []}
    video = _video(job["video_id"])
    assert video.status == VideoStatus.processed and video.processed_key
    assert video.processed_key not in failed_token_outputs
    assert _stored(video.id) == {video.original_key, video.processed_key, video.thumbnail_key}


def test_a_job_delivered_twice_to_two_pollers_at_once_is_published_once(
    client: TestClient,
    player: Player,
    clips: Clips,
    queues: Queues,
    pollers,
) -> None:
    job = _uploaded(client, player, clips)
    queues.sqs.send_message(  # SQS delivers at least once: the same job, again
        QueueUrl=queues.url,
        MessageBody=json.dumps(job),
        MessageAttributes={"correlation_id": {"DataType": "String", "StringValue": job["task_id"]}},
    )
    assert queues.count() == 2
    first, second = pollers(), pollers()
    overlap = 0  # the most attempts seen in progress at once

    def published() -> Video | None:
        nonlocal overlap
        overlap = max(overlap, _attempts_in_progress())
        return _finished(job["video_id"])

    video = wait_for(published, 90, "the video to be processed", step=0.02)
    assert video.status == VideoStatus.processed, video.error
    first_seen = (video.processed_key, video.processed_at)
    # the other delivery ends too (a lost claim is retried after 10 s and then skipped)
    wait_for(lambda: queues.count() == 0, 60, "both deliveries to be done with")
    assert first.stop() == 0, first.output()
    assert second.stop() == 0, second.output()

    after = _video(job["video_id"])
    assert (after.processed_key, after.processed_at) == first_seen
    assert after.status == VideoStatus.processed and after.error is None
    assert after.claim_token is None
    assert _stored(after.id) == {after.original_key, after.processed_key, after.thumbnail_key}
    assert queues.count(queues.dlq_url) == 0
    assert overlap == 2, "the two deliveries were not processed at once"
    lines = {poller.pid: _job_lines(poller, after.id) for poller in (first, second)}
    assert all(lines.values()), f"each poller should have had one delivery: {lines}"
    done = [line for found in lines.values() for line in found if line.startswith("job done")]
    assert done.count("job done: processed") == 1, lines
    assert "job done: failed" not in done, lines
    assert '"VideosFailed"' not in first.output() + second.output()


POISON = [
    "not a job",
    "{}",
    "[1, 2]",
    '{"video_id": "only-half"}',
    '{"video_id": "", "task_id": ""}',
    '{"video_id": 1, "task_id": 2}',
]


def test_poison_messages_reach_the_dlq_after_three_receives(queues: Queues) -> None:
    for body in POISON:
        queues.sqs.send_message(QueueUrl=queues.url, MessageBody=body)
    # a well-formed job for a video that does not exist is done with, not dead-lettered
    orphan_job = json.dumps({"video_id": str(uuid.uuid4()), "task_id": str(uuid.uuid4())})
    queues.sqs.send_message(QueueUrl=queues.url, MessageBody=orphan_job)
    # the real poller and batch handler, in-process only to retry at once (not after 10 s, 20 s...)
    poller = Poller(queues.sqs, get_settings(), handle_batch, retry_base_seconds=0)
    thread = threading.Thread(target=poller.run, daemon=True)
    thread.start()
    try:
        wait_for(lambda: queues.count(queues.dlq_url) == len(POISON), 60, "the poison to be dead")
        wait_for(lambda: queues.count() == 0, 20, "the job queue to be empty")
    finally:
        poller.stop()
        thread.join(30)
    assert not thread.is_alive()
    assert queues.dead_letters() == sorted(POISON)


def test_a_video_that_fails_every_attempt_ends_failed_with_a_reason(
    client: TestClient,
    player: Player,
    clips: Clips,
    queues: Queues,
    pollers,
) -> None:
    job = _uploaded(client, player, clips)
    # the worker's ffmpeg is missing: a passing failure, retried (after 10 s) until the
    # last attempt, which gives up
    worker = pollers(ANB_FFMPEG="/nonexistent/ffmpeg", ANB_MAX_ATTEMPTS="2")
    video = wait_for(lambda: _finished(job["video_id"]), 60, "the video to be marked failed")
    assert video.status == VideoStatus.failed
    assert video.error == GAVE_UP
    assert video.processed_key is None and video.claim_token is None
    seen = client.get(f"/api/videos/{video.id}", headers=player.headers).json()
    assert (seen["status"], seen["error"], seen["processed_url"]) == ("failed", GAVE_UP, None)
    wait_for(lambda: queues.count() == 0, 15, "the last attempt's message to be deleted")
    assert queues.count(queues.dlq_url) == 0  # it ended the video, so it is not dead
    assert _stored(video.id) == {video.original_key}
    assert worker.stop() == 0, worker.output()
    lines = _job_lines(worker, video.id)
    assert sum(line.startswith("attempt 1 failed") for line in lines) == 1, lines
    assert lines.count("job done: failed") == 1, lines
    assert '"VideosFailed"' in worker.output()
