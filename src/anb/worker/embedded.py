"""The embedded worker: threads in `anb serve` feeding the local queue to `handle_batch`."""

from __future__ import annotations

import logging
import threading
from typing import Any

from anb.core.db import in_session
from anb.queue.local import LocalQueue
from anb.videos.service import unfinished_jobs
from anb.worker.backoff import retry_delay
from anb.worker.batch import handle_batch

log = logging.getLogger(__name__)

RETRY_BASE_SECONDS = 2.0
RETRY_MAX_SECONDS = 60.0


class EmbeddedWorker:
    def __init__(self, queue: LocalQueue, *, concurrency: int, max_attempts: int) -> None:
        self.queue = queue
        self.concurrency = concurrency
        self.max_attempts = max_attempts
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        """Enqueue what a previous run left unfinished, then start consuming."""
        jobs = in_session(unfinished_jobs)
        for job in jobs:
            self.queue.send(job)
        if jobs:
            log.info("re-enqueued %d unfinished videos", len(jobs))
        for index in range(self.concurrency):
            thread = threading.Thread(target=self._consume, name=f"anb-worker-{index}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self, timeout: float = 30.0) -> None:
        self._stopping.set()
        for thread in self._threads:
            thread.join(timeout)

    def _consume(self) -> None:
        while not self._stopping.is_set():
            records = self.queue.receive(max_messages=1, wait_seconds=0.5)
            if not records:
                continue
            try:
                failures = handle_batch({"Records": records})["batchItemFailures"]
            except Exception:  # never let one batch stop the worker
                log.exception("the batch handler failed")
                failures = [{"itemIdentifier": record["messageId"]} for record in records]
            failed = {failure["itemIdentifier"] for failure in failures}
            for record in records:
                if record["messageId"] in failed:
                    self._retry_or_drop(record)

    def _retry_or_drop(self, record: dict[str, Any]) -> None:
        attempt = int(record["attributes"].get("ApproximateReceiveCount", "1"))
        if attempt >= self.max_attempts:
            log.error("dropping a job after %d attempts: %s", attempt, record["body"][:200])
            return
        delay = retry_delay(attempt, base=RETRY_BASE_SECONDS, cap=RETRY_MAX_SECONDS)
        self.queue.retry(record, delay_seconds=delay)
