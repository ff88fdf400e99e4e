"""`anb poll`: the EC2 worker's shim between SQS and `handle_batch`.

Long-polls the queue, hands each message to the batch handler as a Lambda-shaped record,
deletes only the messages that succeeded, keeps a running job invisible to other workers
(heartbeat), and on SIGTERM stops receiving, finishes the jobs in hand (with those a receive
already in flight brings, see `Poller.run`), flushes metrics and exits 0.
"""

from __future__ import annotations

import logging
import math
import signal
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse

from anb.core import observability
from anb.core.settings import Settings
from anb.worker.backoff import retry_delay

if TYPE_CHECKING:  # boto3-stubs' SQS types: for the type checker only
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_sqs.type_defs import MessageTypeDef

log = logging.getLogger(__name__)

BatchHandler = Callable[[dict[str, Any]], PartialItemFailureResponse]
RETRY_BASE_SECONDS = 10
RETRY_MAX_SECONDS = 300


def lambda_record(message: MessageTypeDef, queue_arn: str, region: str) -> dict[str, Any]:
    """A raw `ReceiveMessage` message in the shape of a Lambda SQS event record."""
    return {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message["Body"],
        "attributes": message.get("Attributes", {}),
        "messageAttributes": {
            name: {
                "stringValue": value.get("StringValue"),
                "binaryValue": value.get("BinaryValue"),
                "stringListValues": [],
                "binaryListValues": [],
                "dataType": value["DataType"],
            }
            for name, value in message.get("MessageAttributes", {}).items()
        },
        "md5OfBody": message.get("MD5OfBody", ""),
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": region,
    }


class Poller:
    def __init__(
        self,
        sqs: SQSClient,
        settings: Settings,
        handler: BatchHandler,
        *,
        retry_base_seconds: int = RETRY_BASE_SECONDS,
    ) -> None:
        self.sqs = sqs
        self.retry_base_seconds = retry_base_seconds
        self.settings = settings
        self.queue_url = settings.queue_url
        self.handler = handler
        self.stopping = threading.Event()
        attributes = sqs.get_queue_attributes(QueueUrl=self.queue_url, AttributeNames=["QueueArn"])
        self.queue_arn = attributes["Attributes"]["QueueArn"]
        self.region = sqs.meta.region_name

    def install_signal_handlers(self) -> None:
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: self.stop())

    def stop(self) -> None:
        if not self.stopping.is_set():
            log.info("stopping: no new receives; finishing the jobs in hand")
        self.stopping.set()

    def run(self) -> int:
        """Receive for free job slots until stopped; then finish every job in hand.

        A receive in flight when the stop comes (a long poll of up to
        `ANB_POLL_WAIT_SECONDS`) cannot be called back, and what it brings is processed
        like any other message, not released: SQS counts every receive toward the queue's
        maxReceiveCount (`ANB_MAX_ATTEMPTS`, then the dead-letter queue) and toward the
        ApproximateReceiveCount the worker judges its attempts by, so a released message
        would have spent an attempt without being tried, and a few scale-ins could
        dead-letter a video never really tried. The receive asked for no more messages than
        there were free slots, so they all start at once and the stop takes at most the
        rest of that poll plus one job: 20 s more than finishing a job already in hand, which
        the worker unit's TimeoutStopSec (960 s: a 900 s `ANB_JOB_TIMEOUT_SECONDS` and its
        transfers) still covers. Re-sending a copy and deleting the original would reset the
        count, but also forget the real attempts; shorter polls would only narrow the
        window, at the price of more empty receives."""
        slots = self.settings.worker_concurrency
        log.info("polling %s for up to %d jobs at once", self.queue_url, slots)
        running: set[Future[None]] = set()
        with ThreadPoolExecutor(slots, thread_name_prefix="anb-job") as pool:
            while not self.stopping.is_set():
                if len(running) >= slots:
                    _, running = wait(running, timeout=1, return_when=FIRST_COMPLETED)
                    continue
                for message in self._receive(min(self.settings.poll_batch, slots - len(running))):
                    running.add(pool.submit(self._process, message))
                running = {future for future in running if not future.done()}
            wait(running)
        observability.flush_metrics()
        log.info("stopped cleanly")
        return 0

    def _receive(self, count: int) -> list[MessageTypeDef]:
        try:
            response = self.sqs.receive_message(
                QueueUrl=self.queue_url,
                MaxNumberOfMessages=count,
                WaitTimeSeconds=self.settings.poll_wait_seconds,
                AttributeNames=["All"],
                MessageAttributeNames=["All"],
            )
        except Exception:
            log.exception("receiving from SQS failed; trying again shortly")
            self.stopping.wait(5)
            return []
        return response.get("Messages", [])

    def _process(self, message: MessageTypeDef) -> None:
        record = lambda_record(message, self.queue_arn, self.region)
        try:
            with self._heartbeat(message["ReceiptHandle"]):
                failures = self.handler({"Records": [record]})["batchItemFailures"]
        except Exception:
            log.exception("the batch handler failed")
            failures = [{"itemIdentifier": record["messageId"]}]
        if failures:
            self._retry_later(message)
        else:
            self.sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"])

    def _retry_later(self, message: MessageTypeDef) -> None:
        """Make a failed message visible again after a backoff growing with its receives."""
        receives = int(message.get("Attributes", {}).get("ApproximateReceiveCount", "1"))
        delay = retry_delay(receives, base=self.retry_base_seconds, cap=RETRY_MAX_SECONDS)
        self._change_visibility(message["ReceiptHandle"], math.ceil(delay))

    def _change_visibility(self, receipt_handle: str, seconds: int) -> None:
        try:
            self.sqs.change_message_visibility(
                QueueUrl=self.queue_url, ReceiptHandle=receipt_handle, VisibilityTimeout=seconds
            )
        except Exception:
            log.warning("could not change a message's visibility", exc_info=True)

    @contextmanager
    def _heartbeat(self, receipt_handle: str) -> Iterator[None]:
        """While the block runs, keep the message invisible: every `heartbeat_seconds`,
        push its visibility three heartbeats ahead."""
        every = self.settings.heartbeat_seconds
        done = threading.Event()

        def beat() -> None:
            while not done.wait(every):
                self._change_visibility(receipt_handle, every * 3)

        thread = threading.Thread(target=beat, name="anb-heartbeat", daemon=True)
        thread.start()
        try:
            yield
        finally:
            done.set()
            thread.join()
