"""`anb poll` against moto's SQS over real HTTP."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
from fastapi.testclient import TestClient

from anb.core.db import unit_of_work
from anb.core.settings import get_settings
from anb.queue import region_of
from anb.videos.models import Video, VideoStatus
from anb.worker.batch import handle_batch
from anb.worker.poller import Poller, lambda_record
from tests.clips import Clips
from tests.support.api import Player, upload


@dataclass
class Queues:
    sqs: Any
    url: str
    dlq_url: str

    def counts(self, url: str | None = None) -> int:
        names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
        attributes = self.sqs.get_queue_attributes(QueueUrl=url or self.url, AttributeNames=names)
        return sum(int(attributes["Attributes"][name]) for name in names)


@pytest.fixture
def queues(aws: str, configure) -> Queues:
    sqs = boto3.client("sqs")
    name = f"anb-{uuid.uuid4().hex[:8]}"
    dlq_url = sqs.create_queue(QueueName=f"{name}-dlq")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])
    redrive = {"deadLetterTargetArn": dlq_arn["Attributes"]["QueueArn"], "maxReceiveCount": "3"}
    url = sqs.create_queue(
        QueueName=name,
        Attributes={"VisibilityTimeout": "2", "RedrivePolicy": json.dumps(redrive)},
    )["QueueUrl"]
    configure(ANB_QUEUE_URL=url, ANB_POLL_WAIT_SECONDS="1", ANB_HEARTBEAT_SECONDS="1")
    return Queues(sqs, url, dlq_url)


@pytest.fixture
def run_poller(queues: Queues) -> Iterator[Callable[..., Poller]]:
    """Start a poller in a thread; it is stopped (as by SIGTERM) at the end of the test."""
    started: list[tuple[Poller, threading.Thread]] = []

    def start(handler=handle_batch, **options: int) -> Poller:
        poller = Poller(queues.sqs, get_settings(), handler, **options)
        thread = threading.Thread(target=poller.run, daemon=True)
        thread.start()
        started.append((poller, thread))
        return poller

    yield start
    for poller, thread in started:
        poller.stop()
        thread.join(30)
        assert not thread.is_alive()


def _wait_for(condition: Callable[[], bool], seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    pytest.fail("condition not met in time")


def _status(video_id: str) -> VideoStatus | None:
    with unit_of_work() as session:
        video = session.get(Video, video_id)
        return video.status if video else None


def _uploaded(client: TestClient, player: Player, clips: Clips) -> dict[str, str]:
    response = upload(client, player, clips.landscape)
    assert response.status_code == 201
    body = response.json()
    return {"video_id": body["video_id"], "task_id": body["task_id"]}


def test_the_api_enqueues_jobs_with_a_correlation_id(
    queues: Queues, client: TestClient, player: Player, clips: Clips
) -> None:
    job = _uploaded(client, player, clips)
    [message] = queues.sqs.receive_message(
        QueueUrl=queues.url, MessageAttributeNames=["All"], WaitTimeSeconds=1
    )["Messages"]
    assert json.loads(message["Body"]) == job
    assert message["MessageAttributes"]["correlation_id"]["StringValue"] == job["task_id"]


def test_messages_become_lambda_records() -> None:
    message = {
        "MessageId": "m1", "ReceiptHandle": "r1", "Body": "{}", "MD5OfBody": "x",
        "Attributes": {"ApproximateReceiveCount": "2"},
        "MessageAttributes": {"correlation_id": {"StringValue": "t1", "DataType": "String"}},
    }  # fmt: skip
    record = lambda_record(message, "arn:aws:sqs:us-east-1:1:q", "us-east-1")
    assert record["messageId"] == "m1" and record["receiptHandle"] == "r1"
    assert record["attributes"]["ApproximateReceiveCount"] == "2"
    assert record["messageAttributes"]["correlation_id"]["stringValue"] == "t1"
    assert region_of("https://sqs.eu-west-1.amazonaws.com/1/q") == "eu-west-1"
    assert region_of("http://127.0.0.1:5000/1/q") is None


def test_only_successful_messages_are_deleted(
    queues: Queues, run_poller, client: TestClient, player: Player, clips: Clips
) -> None:
    job = _uploaded(client, player, clips)  # the API enqueued its job
    queues.sqs.send_message(QueueUrl=queues.url, MessageBody="poison")
    run_poller()
    _wait_for(lambda: _status(job["video_id"]) == VideoStatus.processed)
    _wait_for(lambda: queues.counts() == 1, 10)  # the poison message stays for its retries


def test_the_heartbeat_keeps_a_long_job_invisible(queues: Queues, run_poller) -> None:
    finished = threading.Event()

    def slow_handler(event: dict) -> dict:
        time.sleep(6)  # three times the queue's 2 s visibility timeout
        finished.set()
        return {"batchItemFailures": []}

    queues.sqs.send_message(QueueUrl=queues.url, MessageBody="slow")
    run_poller(slow_handler)
    time.sleep(1)
    while not finished.is_set():
        stolen = queues.sqs.receive_message(QueueUrl=queues.url, WaitTimeSeconds=0)
        assert "Messages" not in stolen, "another worker received a job still running"
        time.sleep(0.3)
    _wait_for(lambda: queues.counts() == 0, 10)


def test_a_poison_message_reaches_the_dlq_after_three_receives(queues: Queues, run_poller) -> None:
    queues.sqs.send_message(QueueUrl=queues.url, MessageBody="not a job")
    run_poller(retry_base_seconds=0)
    _wait_for(lambda: queues.counts(queues.dlq_url) == 1, 60)
    assert queues.counts() == 0


class ReceiveWatched:
    """The SQS client, telling when a receive has been called."""

    def __init__(self, sqs: Any) -> None:
        self.sqs = sqs
        self.receiving = threading.Event()

    def receive_message(self, **options: Any) -> dict[str, Any]:
        self.receiving.set()
        return self.sqs.receive_message(**options)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.sqs, name)


def test_a_message_a_stopping_receive_brings_is_processed_not_released(queues: Queues) -> None:
    """Released, it would have spent one of its receives (maxReceiveCount, the attempt
    count) without being tried."""
    attempts: list[str] = []

    def handler(event: dict) -> dict:
        attempts.extend(r["attributes"]["ApproximateReceiveCount"] for r in event["Records"])
        return {"batchItemFailures": []}

    sqs = ReceiveWatched(queues.sqs)
    settings = get_settings().model_copy(update={"poll_wait_seconds": 5})
    poller = Poller(sqs, settings, handler)
    thread = threading.Thread(target=poller.run, daemon=True)
    thread.start()
    assert sqs.receiving.wait(10)
    poller.stop()  # while the long poll is in flight
    queues.sqs.send_message(QueueUrl=queues.url, MessageBody="late")
    stopped = time.monotonic()
    thread.join(10)
    assert not thread.is_alive()
    assert time.monotonic() - stopped < 3, "the stop waited for more than the message's job"
    assert attempts == ["1"]
    assert queues.counts() == 0 and queues.counts(queues.dlq_url) == 0  # processed, deleted


def _poll_process(env_extra: dict[str, str] | None = None) -> subprocess.Popen:
    env = {**os.environ, **(env_extra or {})}
    return subprocess.Popen(
        [sys.executable, "-m", "anb.cli", "poll"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip


def test_sigterm_while_idle_exits_cleanly(queues: Queues) -> None:
    poller = _poll_process()
    seen: list[str] = []
    polling = threading.Event()

    def read_output() -> None:
        for line in poller.stdout:
            seen.append(line)
            if "polling" in line:
                polling.set()  # its signal handlers are in place: they come first

    reader = threading.Thread(target=read_output, daemon=True)
    reader.start()
    assert polling.wait(60), "".join(seen)
    poller.send_signal(signal.SIGTERM)
    assert poller.wait(15) == 0, "".join(seen)
    reader.join(5)
    assert "stopped cleanly" in "".join(seen)


def test_sigterm_mid_job_finishes_the_job_then_exits_cleanly(
    queues: Queues, client: TestClient, player: Player, clips: Clips
) -> None:
    job = _uploaded(client, player, clips)  # the API enqueued its job
    poller = _poll_process()
    _wait_for(lambda: _status(job["video_id"]) == VideoStatus.processing, 30)
    poller.send_signal(signal.SIGTERM)
    output = poller.communicate(timeout=120)[0]
    assert poller.returncode == 0, output
    assert _status(job["video_id"]) == VideoStatus.processed
    assert queues.counts() == 0
    assert '"VideosProcessed"' in output  # metrics flushed before exiting
