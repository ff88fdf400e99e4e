"""An in-process queue for the embedded mode. Jobs lost with the process are not lost work:
videos left `uploaded` or `processing` are enqueued again when the server starts."""

from __future__ import annotations

import json
import queue
import threading
import time
import uuid
from typing import Any


class LocalQueue:
    def __init__(self) -> None:
        self._jobs: queue.Queue[dict[str, Any]] = queue.Queue()

    def send(self, job: dict[str, Any]) -> str:
        message_id = str(uuid.uuid4())
        self._jobs.put(_lambda_record(message_id, job))
        return message_id

    def receive(self, max_messages: int = 1, wait_seconds: float = 1.0) -> list[dict[str, Any]]:
        """Up to `max_messages` records shaped like a Lambda SQS event's."""
        try:
            records = [self._jobs.get(timeout=wait_seconds)]
        except queue.Empty:
            return []
        while len(records) < max_messages:
            try:
                records.append(self._jobs.get_nowait())
            except queue.Empty:
                break
        return records

    def retry(self, record: dict[str, Any], *, delay_seconds: float) -> None:
        """Deliver the record again after a delay, counting one more receive."""
        attributes = record["attributes"]
        count = int(attributes.get("ApproximateReceiveCount", "1")) + 1
        again = {**record, "attributes": {**attributes, "ApproximateReceiveCount": str(count)}}
        timer = threading.Timer(delay_seconds, self._jobs.put, args=(again,))
        timer.daemon = True
        timer.start()

    def pending(self) -> int:
        return self._jobs.qsize()

    def check(self) -> None:
        return None


def _lambda_record(message_id: str, job: dict[str, Any]) -> dict[str, Any]:
    return {
        "messageId": message_id,
        "receiptHandle": message_id,
        "body": json.dumps(job),
        "attributes": {
            "ApproximateReceiveCount": "1",
            "SentTimestamp": str(int(time.time() * 1000)),
        },
        "messageAttributes": {},
        "eventSource": "anb:local",
    }
